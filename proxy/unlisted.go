package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"sync"

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
// their client instead, while its role cannot read them (hiddenSettingsSQL).

// noteSeed records that st, sent to the client's backend, seeds its random
// sequence (any pool mode; from any goroutine).
func (s *session) noteSeed(st *policy.Statement) {
	eachPart(st, func(p *policy.Statement) {
		if p.Seeds {
			s.seeded.Store(true)
		}
	})
}

// noteLoad records that the client ran LOAD (client goroutine, both pool
// modes): the library stays in its backend for the backend's life (no
// DISCARD ALL or RESET undoes it, PostgreSQL's LOAD), so that backend
// serves no other client; leavePrimary closes it.
func (s *session) noteLoad(st *policy.Statement) {
	eachPart(st, func(p *policy.Statement) {
		if p.Command == "LOAD" {
			s.loaded.Store(true)
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

// settingNames are the names of the settings a client named in SET (or
// RESET) and in set_config calls with a constant name, in lower case;
// transaction-local changes (which cannot outlive the transaction) and
// custom (dotted) names left out: those the pin check may ask about in
// hiddenSettingsSQL.
type settingNames struct {
	mu sync.Mutex
	m  map[string]bool
}

// note adds the settings st names (from any goroutine).
func (n *settingNames) note(st *policy.Statement) {
	eachPart(st, func(p *policy.Statement) {
		for _, set := range p.Settings {
			if !set.ResetAll && !set.Local {
				n.add(set.Name)
			}
		}
		for _, name := range p.SetConfig {
			n.add(name)
		}
	})
}

func (n *settingNames) add(name string) {
	name = strings.ToLower(name)
	if strings.Contains(name, ".") {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]bool{}
	}
	n.m[name] = true
}

// list returns, sorted, the names the pin check asks about, given known
// (the session's settings as the last pin check read them). A client that
// never changed its identity (role, session_authorization) sees what it
// saw: only the names noted that known lacks may be hidden from it (set
// but not read back: hidden, or reset, or the SET failed). One that did
// may no longer see what it saw before: every name noted or known.
func (n *settingNames) list(known *sessionSettings) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	switched := n.m["role"] || n.m["session_authorization"]
	seen := map[string]bool{}
	if known != nil {
		for name := range known.values {
			seen[strings.ToLower(name)] = true
		}
	}
	var out []string
	for name := range n.m {
		if switched || !seen[name] {
			out = append(out, name)
		}
	}
	if switched {
		for name := range seen {
			if !n.m[name] && !strings.Contains(name, ".") {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// hiddenSettingsSQL is the pin check's column that says whether the
// session may hold a setting pg_settings does not show it, which therefore
// cannot follow the client. pg_settings (and current_setting) hide the
// settings PostgreSQL marks GUC_SUPERUSER_ONLY (dynamic_library_path,
// session_preload_libraries, ...) from a current role without the
// privileges of pg_read_all_settings (PostgreSQL's "pg_settings" view),
// though the session may have set them: before it took a lesser role (SET
// ROLE, SET SESSION AUTHORIZATION), or as a role granted SET on such a
// parameter (GRANT SET ON PARAMETER). So: the current role lacks those
// privileges, and a setting the client named (named, see settingNames)
// exists but is hidden from it (names compared in lower case, as
// PostgreSQL compares them: pg_settings spells DateStyle so; other than
// those no role sees:
// GUC_NO_SHOW_ALL, pg_settings_get_flags), or the role may SET a parameter
// it cannot see.
//
// NOTE: a name counts from the client's first SET of it on, whether that
// SET succeeded or was reset since: fail safe, the client stays on its
// backend while its role cannot read that setting. It costs a role with
// those privileges nothing (CASE), and one without them a second read of
// pg_settings (about 1 ms of server time) only when there are names to
// look up: the caller leaves out those the last pin check read back
// (settingNames.list), and GRANT SET ON PARAMETER is rare.
func hiddenSettingsSQL(named []string) string {
	lits := make([]string, len(named))
	for i, n := range named {
		lits[i] = textLiteral(n)
	}
	return `CASE WHEN pg_catalog.pg_has_role(current_user, 'pg_read_all_settings', 'USAGE') THEN false ELSE EXISTS (` +
		`SELECT 1 FROM pg_catalog.unnest(ARRAY[` + strings.Join(lits, ", ") + `]::pg_catalog.text[] OPERATOR(pg_catalog.||) ` +
		`ARRAY(SELECT a.parname FROM pg_catalog.pg_parameter_acl a WHERE pg_catalog.has_parameter_privilege(a.parname, 'SET'))) AS n(name) ` +
		`WHERE NOT (pg_catalog.pg_settings_get_flags(n.name) OPERATOR(pg_catalog.@>) '{NO_SHOW_ALL}'::pg_catalog.text[]) ` +
		`AND NOT (n.name OPERATOR(pg_catalog.=) ANY (SELECT pg_catalog.lower(s.name) FROM pg_catalog.pg_settings s))) END`
}
