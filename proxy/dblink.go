package proxy

import "github.com/txlane/txlane/policy"

// dblink (PostgreSQL contrib "dblink") keeps the connections dblink_connect
// and dblink_connect_u open, named or the unnamed one, in the backend's
// memory until dblink_disconnect or the backend's end: DISCARD ALL, RESET
// ALL and a ROLLBACK leave them, each with its remote session, its remote
// settings and an open remote transaction. A backend on which one may have
// been opened serves no other client: its client is pinned (pin reason
// "dblink") for the rest of its session, and the backend is closed when the
// client leaves, in both pool modes, as after LOAD (noteLoad).
//
// The router flags every call of a dblink function (policy.FlagDblink), in
// the statement's text or hidden where the catalog shows it (a view, a
// function whose body it reads), and, with dblink installed, any code whose
// body txlane cannot read (fail safe). A connection dblink_disconnect closed
// still counts: txlane does not follow which ones remain.
//
// postgres_fdw caches its connections in the backend too, but they carry no
// client's remote transaction past the local one (postgres_fdw commits or
// aborts the remote transaction with the local one), and their remote
// sessions are opened with the user mapping's credentials, the same for
// every client of that local user; a foreign table txlane cannot prove
// harmless already keeps its statement on the primary (FlagUnproven).
// postgres_fdw_disconnect_all() closes them; they are not pinned.

// noteDblink records that st, sent to the client's backend, may open a
// dblink connection there (any pool mode; from any goroutine).
func (s *session) noteDblink(st *policy.Statement) {
	eachPart(st, func(p *policy.Statement) {
		if p.Flags.Has(policy.FlagDblink) {
			s.dblink.Store(true)
		}
	})
}
