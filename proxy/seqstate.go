package proxy

import (
	"strings"
	"sync/atomic"

	"github.com/txlane/txlane/policy"
)

// A backend's sequence state is what nextval and setval leave in its
// session: the last value per sequence, which currval reads, and the last
// value of all, which lastval reads (PostgreSQL's "Sequence Manipulation
// Functions"). It lives until the session ends or DISCARD SEQUENCES (or
// DISCARD ALL), and no view lists it, so it cannot move with a client as
// settings do. A client's currval on a backend that served another client
// would read the other client's value.
//
// So each backend records the client whose statements may have set its
// sequence state (primaryConn.seqClient: policy.Statement.MaySetSequences,
// fail safe), and a backend that goes to a different client gets DISCARD
// SEQUENCES first: that client's currval then fails as on a fresh session
// (55000, "currval of sequence ... is not yet defined in this session"),
// and lastval too (55000, "lastval is not yet defined in this session").
// A client that gets its own backend back keeps its values. txlane does not
// prefer a client's previous backend (neither does PgBouncer): whether a
// currval after the transaction that called nextval works would then
// depend on the load of the pool, where it fails always and plainly
// otherwise.
//
// Cost: nothing for a client whose backend no other client's nextval
// touched. Otherwise the DISCARD SEQUENCES joins the query that moves the
// client's settings (moveState), or, when there is none, is written ahead
// of the client's first request on the backend without waiting for its
// answer (the same round trip).

// discardSequencesSQL resets a session's sequence state. It may run in a
// transaction block (unlike DISCARD ALL), so it joins other statements in
// one Query.
const discardSequencesSQL = "DISCARD SEQUENCES"

// noteSequences records that st, sent to the client's backend (by the client
// or by a write rerouted into its transaction), may set that backend's
// sequence state (any pool mode; from any goroutine).
func (s *session) noteSequences(st *policy.Statement) {
	if !st.MaySetSequences() {
		return
	}
	if p := s.pc.Load(); p != nil && p.seqClient.Load() != s.id {
		p.seqClient.Store(s.id)
	}
}

// foreignSequences reports whether p's session may hold sequence state that
// another client's statements set.
func (s *session) foreignSequences(p *primaryConn) bool {
	c := p.seqClient.Load()
	return c != 0 && c != s.id
}

// discardSequencesAhead writes DISCARD SEQUENCES to p, which is to serve the
// client and holds sequence state of another's, ahead of the client's first
// request there; the caller holds p's wsem. It does not wait for the answer:
// if the server refuses it, p is closed before anything of the request
// behind it reaches the client (fail safe: the request may have read another
// client's value). It reports false, having written nothing, when the
// backend's statement_timeout (another client's) may cancel it: the caller
// then sends it and waits, with retries (moveState).
func (s *session) discardSequencesAhead(p *primaryConn) bool {
	if v, ok := p.settings.get("statement_timeout"); ok && v != "0" {
		return false
	}
	q := &internalQuery{done: make(chan struct{}), then: func(q *internalQuery) {
		if q.err != nil {
			s.log.Warn("DISCARD SEQUENCES failed on a pooled backend; closing it")
			p.conn.Close()
		}
	}}
	seqDiscards.Add(1)
	if err := p.write(q, protectSQL+discardSequencesSQL); err != nil {
		p.conn.Close() // the relay ends; the client's request fails with it
	}
	p.seqClient.Store(0)
	return true
}

// sequencesAhead reports whether p, about to serve the client, needs no
// DISCARD SEQUENCES in the query that moves the client's settings: it holds
// no other client's sequence state, or DISCARD SEQUENCES was written ahead
// (discardSequencesAhead). Called only when that query is empty.
func (s *session) sequencesAhead(p *primaryConn) bool {
	return !s.foreignSequences(p) || s.discardSequencesAhead(p)
}

// resetDiscardsSequences reports whether a session-mode reset with query
// (server_reset_query) resets the sequence state: DISCARD ALL or DISCARD
// SEQUENCES, alone.
func resetDiscardsSequences(query string) bool {
	q := strings.Join(strings.Fields(strings.TrimSuffix(strings.TrimSpace(query), ";")), " ")
	return strings.EqualFold(q, "DISCARD ALL") || strings.EqualFold(q, discardSequencesSQL)
}

// seqDiscards counts the DISCARD SEQUENCES txlane sent (tests).
var seqDiscards atomic.Int64

// withSequenceDiscard returns sql with DISCARD SEQUENCES first when p holds
// another client's sequence state, and whether it added it.
func (s *session) withSequenceDiscard(p *primaryConn, sql string) (string, bool) {
	if !s.foreignSequences(p) {
		return sql, false
	}
	seqDiscards.Add(1)
	if sql == "" {
		return discardSequencesSQL, true
	}
	return discardSequencesSQL + "; " + sql, true
}
