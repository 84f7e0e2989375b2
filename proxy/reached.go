package proxy

import "github.com/txlane/txlane/policy"

// reroutedTables returns the tables a write rerouted into another
// connection's transaction wrote, for the reads that must follow it there:
// those the statements name and those their writes reach (cascades, rules,
// writable views, partitions). nil when some statement may have written
// tables nobody can name (a user trigger fired, an opaque write): then every
// read carrying the unit follows.
//
// NOTE: escape decisions and messages use writtenTables (the names only).
func reroutedTables(stmts []*policy.Statement) []policy.Table {
	out := writtenTables(stmts)
	if out == nil {
		return nil
	}
	for _, st := range stmts {
		if !isWrite(st) {
			continue
		}
		if st.Flags.Has(policy.FlagReachesUnknown) {
			return nil
		}
		for _, t := range st.WritesReached {
			out = policy.AppendTable(out, t)
		}
	}
	return out
}
