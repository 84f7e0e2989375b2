package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"

	"github.com/txlane/txlane/policy"
)

// The random sequence of a backend (random(), random_normal()) is session
// state that no setting shows: SET seed, SET LOCAL seed, set_config('seed',
// ...) and setseed() seed it, and nothing but another seeding takes that
// back (policy.Statement.Seeds). pg_settings does not list seed (it is
// GUC_NO_SHOW_ALL, and SHOW seed reads "unavailable"), so the pin check
// cannot see it, and it cannot move: how far a client has read its
// sequence is not known. So a client that seeds its backend keeps it for
// the rest of its session (pin "seed", transaction mode), and a backend
// whose client seeded it is seeded afresh, with a value only txlane knows,
// before the pool gives it to another client (resetLeft, resetForPool).
//
// NOTE: the other settings pg_settings does not list (GUC_NO_SHOW_ALL in
// PostgreSQL 15's guc.c) need nothing of this: role and
// session_authorization are read by the pin check itself, is_superuser
// cannot be set, and default_with_oids and ssl_renegotiation_limit accept
// only their defaults (false, 0). Those pg_settings hides from a role
// without the privileges of pg_read_all_settings (GUC_SUPERUSER_ONLY) pin
// their client instead (hiddenSettingsSQL).

// noteSeed records that st, sent to the client's backend, seeds its random
// sequence (any pool mode; from any goroutine).
func (s *session) noteSeed(st *policy.Statement) {
	eachPart(st, func(p *policy.Statement) {
		if p.Seeds {
			s.seeded.Store(true)
		}
	})
}

// reseed writes, when the client seeded p, a query that seeds p afresh
// (reseedSQL) ahead of what the caller sends next; the caller holds p's
// wsem. The function returned says, once that query's answer is in (in
// relay, as the next query's then runs), whether p was seeded afresh or
// needed not be: when false, p must not serve another client. DISCARD ALL
// cannot share a Query with it (it refuses to run in a transaction block,
// which a Query of several statements is).
func (s *session) reseed(p *primaryConn) func() bool {
	if !s.seeded.Load() {
		return func() bool { return true }
	}
	var ok bool // written and read in relay, in the order of the answers
	q := &internalQuery{done: make(chan struct{}), then: func(q *internalQuery) { ok = q.err == nil }}
	if p.write(q, reseedSQL()) != nil {
		return func() bool { return false }
	}
	return func() bool { return ok }
}

// reseedSQL seeds a backend's random sequence with a value drawn from
// crypto/rand, in [-1, 1) as setseed takes it (53 bits, all a float64's
// mantissa holds): the next client cannot tell which sequence it gets.
func reseedSQL() string {
	var b [8]byte
	rand.Read(b[:])
	x := float64(binary.LittleEndian.Uint64(b[:])>>11)/(1<<52) - 1
	return "SELECT pg_catalog.setseed(" + strconv.FormatFloat(x, 'g', -1, 64) + ")"
}
