package policy

// MayWrite reports whether s may write: what must not escape another
// connection's open transaction for the same unit of work. Statements txlane
// cannot classify count as writes (fail safe).
func (s *Statement) MayWrite() bool {
	switch s.Class {
	case Write, DDL, Unknown:
		return true
	}
	return s.Flags&(FlagWriteCommand|FlagWritingFunction|FlagDataModifyingCTE|
		FlagSelectInto|FlagWritesUnknown) != 0
}

// WrittenTables returns the tables stmts write, the argument of
// [Rules.EscapeFor], or nil when some statement may write tables it does not
// name (then EscapeFor gives the default action, never an override's).
func WrittenTables(stmts []*Statement) []Table {
	var out []Table
	for _, st := range stmts {
		if !st.MayWrite() {
			continue
		}
		if st.Class == Unknown || st.Flags.Has(FlagWritesUnknown) || len(st.Writes) == 0 {
			return nil
		}
		for _, t := range st.Writes {
			out = AppendTable(out, t)
		}
	}
	return out
}
