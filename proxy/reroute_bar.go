package proxy

import (
	"maps"

	"github.com/txlane/txlane/policy"
)

// Why a request may not run inside another client's transaction (escape:
// reroute, and reads that follow rerouted writes). A rerouted request runs on
// the holder's backend: with the holder's login, role, settings, temporary
// tables and SQL prepared statements, and inside its transaction. It moves
// only where none of that can make it do other than on its own connection;
// elsewhere the write is refused (25L01), which is fail-safe.

// rerouteBar returns why the current request may not run in h's transaction
// ("" when it may).
func (s *session) rerouteBar(h *unitHold) string {
	if why := holderBar(h); why != "" {
		return why
	}
	hs := h.sess
	switch {
	case hs.database() != s.database() || hs.startup.Parameters["user"] != s.startup.Parameters["user"]:
		// It would run with the holder's privileges, in its database.
		return "The holder is logged in as another user or to another database: a write is rerouted only between clients of the same user and database."
	case startupKey(hs.startup.Parameters, false) != startupKey(s.startup.Parameters, false):
		return "The holder logged in with other startup parameters (options, search_path, …), which the write would run under."
	case s.ownState.Load() || hs.ownState.Load():
		return "The writer or the holder has session state of its own (a role, temporary tables, SQL prepared statements or cursors, settings txlane cannot read from the statements), which the write would not find, or would find another's, on the holder's connection."
	case !maps.Equal(*s.setValues.Load(), *hs.setValues.Load()):
		return "The writer and the holder have set different session settings, which the write would not find on the holder's connection."
	case s.cur.function():
		return "The request is a fast-path function call, which cannot be wrapped in a savepoint of txlane's on the holder's connection."
	case hs.plans.hasConfirmedPortal(guestPortal):
		return "The holder has a portal named " + guestPortal + ", the name txlane runs a rerouted write under."
	}
	if s.cur.sql != "" && len(s.cur.msgs) == 1 {
		if _, why := guestQueryParts(&s.cur, s.plans.cur.steps); why != "" {
			return why
		}
	}
	for _, st := range s.plans.cur.stmts(0) {
		bar := ""
		eachPart(st, func(p *policy.Statement) {
			switch {
			case p.Class == policy.TxControl:
				bar = "The request has transaction control, which would act on the holder's transaction."
			case p.Flags.Has(policy.FlagCopy):
				bar = "The request is a COPY, whose data cannot move to the holder's connection."
			case p.Class == policy.Session || p.Discard != policy.DiscardNone:
				bar = "The request changes session state, which would change the holder's session."
			case mayChangeUnit(p) && p.FiresCode == "":
				// (Code a write fires that may change the session is
				// rerouteCodeBar's to name.)
				// NOTE: refused rather than read back: a value set there
				// is the holder's session's, not the writer's (a session
				// set_config outlives the holder's transaction and tags its
				// later ones with the writer's unit), and the writer's own
				// session would lack it. Reading it back would only tell
				// txlane that the holder's session changed, not undo it.
				bar = "The request may change session settings in a way its text does not show (set_config, a function, DO, CALL): on the holder's connection that would change the holder's session, its txlane.unit among them, and not the writer's."
			case p.Class == policy.Utility && p.Command != "SET CONSTRAINTS" || len(p.Temp) > 0 || p.Flags&(policy.FlagListen|policy.FlagCursor|policy.FlagSQLPrepare) != 0:
				// LISTEN, DECLARE (WITH HOLD outlives the holder's
				// transaction), PREPARE, LOCK, LOAD, a temporary relation:
				// they stay with the holder's session or transaction.
				bar = "The request has a statement that leaves state in the session or transaction it runs in (LISTEN, a cursor, PREPARE, LOCK, LOAD, a temporary relation), which would be the holder's."
			}
		})
		if bar != "" {
			return bar
		}
	}
	return ""
}

// noteOwnState records that statement st, sent to the primary, may give the
// session state of its own that a rerouted request would not find on another
// client's connection (see rerouteBar). Sticky: what a session set stays
// until it ends (RESET ALL is not tracked back). A SET of txlane.unit alone
// does not count: it is what makes a holder.
func (s *session) noteOwnState(st *policy.Statement) {
	// A request of its own, outside a transaction block: it takes effect
	// (a SET inside a block may be rolled back; DISCARD ALL cannot run in
	// one and so does not fail there).
	if st.Discard == policy.DiscardAll && len(st.Parts) == 0 && s.TxStatus() == TxIdle {
		s.setValues.Store(&map[string]string{})
		s.ownState.Store(false)
		return
	}
	if s.ownState.Load() {
		return
	}
	eachPart(st, func(p *policy.Statement) {
		own := p.Class == policy.Unknown || p.Discard != policy.DiscardNone || len(p.Temp) > 0 ||
			p.Flags&(policy.FlagSQLPrepare|policy.FlagCursor|policy.FlagListen) != 0 ||
			p.Flags.Has(policy.FlagMayChangeSession) && !onlyUnit(p.SetConfig) && !p.SetConfigLocal
		if own {
			s.ownState.Store(true)
			return
		}
		if len(p.Settings) == 0 {
			return
		}
		alone := len(st.Parts) == 0 && s.TxStatus() == TxIdle
		vals := maps.Clone(*s.setValues.Load())
		for _, set := range p.Settings {
			switch {
			case set.Name == unitSetting:
			case set.Local || !alone || set.Name == "role" || set.Name == "session_authorization":
				// In force for a transaction, possibly rolled back, or
				// who the session is: not followed here.
				own = true
			case set.ResetAll:
				clear(vals)
			case set.Reset:
				delete(vals, set.Name)
			default:
				vals[set.Name] = set.Value
			}
		}
		s.setValues.Store(&vals)
		if own {
			s.ownState.Store(true)
		}
	})
}

// onlyUnit reports whether names, the settings set_config calls name, are
// txlane.unit alone.
func onlyUnit(names []string) bool {
	for _, n := range names {
		if n != unitSetting {
			return false
		}
	}
	return len(names) > 0
}
