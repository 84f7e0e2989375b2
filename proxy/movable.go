package proxy

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/wire"
)

// movableParams are the startup parameters that do not split transaction-mode
// pools: the GUC_REPORT settings (PostgreSQL reports every change of them in
// a ParameterStatus message, protocol "Asynchronous Operations"), so txlane
// always knows each backend's current value, and a client attaching a
// backend gets its own values by set_config when they differ (moveState).
// Names as ParameterStatus spells them. PgBouncer tracks the same set less
// IntervalStyle.
//
// NOTE: extra_float_digits and search_path are not GUC_REPORT before
// PostgreSQL 18: a backend's value would have to be asked for, so they stay
// in the pool key (with options and every other parameter).
var movableParams = []string{"application_name", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone", "standard_conforming_strings"}

// movableName returns the ParameterStatus spelling of a movable parameter
// named name in any letter case (GUC names are case-insensitive), and
// whether it is one.
func movableName(name string) (string, bool) {
	for _, m := range movableParams {
		if strings.EqualFold(m, name) {
			return m, true
		}
	}
	return "", false
}

// movableOf returns the movable parameters of ParameterStatus values params.
func movableOf(params map[string]string) map[string]string {
	out := make(map[string]string, len(movableParams))
	for _, m := range movableParams {
		if v, ok := params[m]; ok {
			out[m] = v
		}
	}
	return out
}

// withoutMovable returns params less the movable parameters the client sent
// (client), which a transaction-mode pool's own logins leave out: its
// backends then log in with the defaults of a client that sends none of them
// (those of the primary DSN's runtime parameters included).
func withoutMovable(params, client, dsn map[string]string) map[string]string {
	out := make(map[string]string, len(params))
	for k, v := range params {
		if _, ok := movableName(k); ok {
			if _, sent := client[k]; sent {
				if dv, ok := dsn[k]; ok {
					out[k] = dv
				}
				continue
			}
		}
		out[k] = v
	}
	return out
}

// moveQueries counts the queries moveState sent (tests: none when the
// backend already has the client's settings).
var moveQueries atomic.Int64

// MoveQueries returns how many queries txlane sent to make a pooled backend's
// session settings a client's (transaction mode) since the process started.
func MoveQueries() int64 { return moveQueries.Load() }

// currentParam returns the backend's current value of a ParameterStatus
// parameter.
func (p *primaryConn) currentParam(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.params[name]
}

// movableSets returns the set_config calls (comma-separated, "" for none)
// that give p the client's movable parameters once stateDiffSQL(have, want)
// has run (reset is whether it runs at all). The client's value is the one
// it set (its session settings: pg_settings spells these names as
// ParameterStatus does), else its login value. A setting the diff RESETs
// goes back to p's login value, one it sets is the client's, and any other
// keeps p's current value (p.params, from ParameterStatus).
func (s *session) movableSets(p *primaryConn, have, want *sessionSettings, reset bool) string {
	if s.own == nil {
		return ""
	}
	var sets []string
	// NOTE: one hold of p.mu for all of them: this runs at every attach in
	// transaction mode.
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range movableParams {
		if _, ok := want.get(m); ok {
			continue // stateDiffSQL sets it, if it differs
		}
		cur := p.mu.params[m]
		if reset {
			if _, ok := have.get(m); ok {
				cur = p.login[m]
			}
		}
		if v := s.own[m]; v != cur {
			sets = append(sets, setConfig(m, v))
		}
	}
	return strings.Join(sets, ", ")
}

// takeOwnValues gives p, a pooled backend a login took (its owner swallows
// what it says), the movable parameters of the client's login (startup; the
// values of a client that sent none are p's login's) and records them as
// the client's own, as the server normalized them (DateStyle 'iso' reads
// 'ISO, MDY'). A value the server refuses fails the login with the server's
// error, as PostgreSQL's own login does (22023).
func (s *session) takeOwnValues(p *primaryConn, startup map[string]string) error {
	var sets []string
	for k, v := range startup {
		if m, ok := movableName(k); ok && p.currentParam(m) != v {
			// NOTE: a login's value applies to the server's default (that of
			// p's login), and a partial one combines with it (DateStyle
			// 'SQL' keeps the default's order): back to it first.
			sets = append(sets, setConfig(m, p.login[m]), setConfig(m, v))
		}
	}
	for _, m := range movableParams {
		sent := false
		for k := range startup {
			sent = sent || strings.EqualFold(k, m)
		}
		if !sent && p.currentParam(m) != p.login[m] {
			sets = append(sets, setConfig(m, p.login[m]))
		}
	}
	if len(sets) > 0 {
		p.acquire()
		q, err := p.queryKeep(protectSQL+"SELECT "+strings.Join(sets, ", "), true)
		p.release()
		if err != nil {
			return err
		}
		if q.err != nil {
			return &wire.Error{Severity: "FATAL", Code: q.err.Code, Message: q.err.Message, Detail: q.err.Detail, Hint: q.err.Hint}
		}
	}
	s.own = movableOf(p.params())
	return nil
}

// noteReset records that st resets a movable parameter (RESET, SET … TO
// DEFAULT, RESET ALL, DISCARD ALL): the backend then goes back to its own
// login value, which may be another client's (see clientParam). Called
// before st is written to the backend, with its wsem held.
func (s *session) noteReset(st *policy.Statement) {
	eachPart(st, func(p *policy.Statement) {
		// Code txlane cannot read (DO, CALL, a function or what a write
		// fires) may RESET anything: counted as a reset.
		reset := p.Discard == policy.DiscardAll || mayChangeUnseen(p)
		for _, set := range p.Settings {
			if _, ok := movableName(set.Name); set.ResetAll || set.Reset && ok {
				reset = true
			}
		}
		if reset {
			s.resets.Add(1)
		}
	})
}

// clientParam is the ParameterStatus body the owner's client gets for ps,
// which the server sent for a statement of the client (body as received;
// ps becomes what the client gets): a movable parameter that a reset of
// the client's took back to the backend's login value, another client's,
// reads as the client's own login value, which txlane gives the backend
// before the client next runs anything there (resetFixSQL, moveState).
func (p *primaryConn) clientParam(ps *pgproto3.ParameterStatus, body []byte) []byte {
	s, ok := p.owner().(*session)
	if !ok || s.own == nil || s.resets.Load() == s.resetsFixed.Load() {
		return body
	}
	m, ok := movableName(ps.Name)
	if !ok || ps.Value != p.login[m] || s.own[m] == ps.Value {
		return body
	}
	out, err := (&pgproto3.ParameterStatus{Name: ps.Name, Value: s.own[m]}).Encode(nil)
	if err != nil {
		return body
	}
	ps.Value = s.own[m]
	return out[5:] // the body: past the type byte and length
}

// resetFixSQL is what the pin check ends with after the client sent a reset
// of a movable parameter ("" otherwise, and when every value it may reset
// to is the client's), and the count of resets it undoes (for resetsFixed,
// once the pin check has succeeded: one cancelled, 57014, is sent again):
// each movable parameter that is at p's login value (its source is not
// 'session': nothing SET it since a reset) and whose login value is not the
// client's gets the client's login value. The pin check has read the
// settings before it, so the client's settings do not list these. It runs
// before the client's next statement there, unless the client sent one
// before its backend was idle (README). The caller holds p's wsem.
func (s *session) resetFixSQL(p *primaryConn) (string, uint64) {
	n := s.resets.Load()
	if s.own == nil || n == s.resetsFixed.Load() {
		return "", n
	}
	var vals []string
	for _, m := range movableParams {
		if v := s.own[m]; v != p.login[m] {
			vals = append(vals, "("+quoteLiteral(m)+", "+textLiteral(v)+")")
		}
	}
	if len(vals) == 0 {
		return "", n
	}
	moveQueries.Add(1)
	return "; SELECT pg_catalog.set_config(o.n, o.v, false) FROM (VALUES " + strings.Join(vals, ", ") +
		") AS o(n, v) JOIN pg_catalog.pg_settings ON name OPERATOR(pg_catalog.=) o.n WHERE source OPERATOR(pg_catalog.<>) 'session'", n
}

// poolDial returns the function a transaction-mode pool opens backends
// with: d's logins with startup less the client's movable parameters.
func (s *session) poolDial(d *backendDialer, startup *pgproto3.StartupMessage) func(context.Context) (*primaryConn, error) {
	if s.txModeFor() {
		startup = &pgproto3.StartupMessage{ProtocolVersion: startup.ProtocolVersion,
			Parameters: withoutMovable(startup.Parameters, s.startup.Parameters, s.srv.opts.Primary.RuntimeParams)}
	}
	return func(ctx context.Context) (*primaryConn, error) {
		b, res, err := d.dial(ctx, startup)
		if err != nil {
			return nil, err
		}
		p := newPrimaryConn(*b, nil)
		p.setIdle()
		p.loggedIn(res.TxStatus, res.Params)
		go p.relay()
		return p, nil
	}
}

// txModeFor reports whether the client's (database, user) pools per
// transaction.
func (s *session) txModeFor() bool {
	mode, _ := s.srv.opts.Pool.For(s.database(), s.startup.Parameters["user"])
	return mode == PoolTransaction
}

// dropOwnValues removes from ss, a client's session settings as the pin
// check read them, the movable parameters whose value is the client's login
// value: txlane set them on the backend (source 'session' there), and for
// the client they are its login's. Two clients of equal login values then
// have equal settings, and take each other's backend without a query.
func (s *session) dropOwnValues(ss *sessionSettings) {
	for m, v := range s.own {
		if sv, ok := ss.values[m]; ok && sv == v {
			delete(ss.values, m)
		}
	}
}
