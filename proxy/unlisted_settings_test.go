package proxy_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// seedSequence is what random() answers, in order, after setseed(0.5):
// read directly.
func seedSequence(t *testing.T) []string {
	t.Helper()
	c := directConn(t)
	exec(t, c, "SELECT setseed(0.5)")
	var seq []string
	for range 8 {
		seq = append(seq, scalar(t, c, "SELECT random()::text"))
	}
	return seq
}

// randomOn runs random() on c and returns the backend that answered and
// the value.
func randomOn(t *testing.T, c *pgconn.PgConn) (pid, value string) {
	t.Helper()
	res := exec(t, c, "SELECT pg_backend_pid()::text, random()::text")
	row := res[len(res)-1].Rows[0]
	return string(row[0]), string(row[1])
}

// The random sequence a client seeds stays with it (SET seed, SET LOCAL
// seed, RESET after SET, set_config, transaction-local too, setseed(), also
// after RESET ALL, which does not take a seed back): pg_settings does not
// show seed, so the pin check's settings cannot. The client keeps its
// backend (pin seed) and reads on in its own sequence, exactly as on
// PostgreSQL directly; no other client runs on that backend meanwhile; and
// once the client has left, the next client on the backend gets a sequence
// seeded afresh, not the rest of the first client's.
func TestTxPoolSeedStaysWithItsClient(t *testing.T) {
	seq := seedSequence(t)
	cases := []struct {
		name  string
		steps []string
	}{
		{"SET", []string{"SET seed = 0.5"}},
		{"SET LOCAL", []string{"BEGIN", "SET LOCAL seed = 0.5", "COMMIT"}},
		{"SET then RESET", []string{"SET seed = 0.5", "RESET seed"}},
		{"set_config", []string{"SELECT set_config('seed', '0.5', false)"}},
		{"set_config local", []string{"BEGIN; SELECT set_config('seed', '0.5', true); COMMIT"}},
		{"setseed then RESET ALL", []string{"SELECT setseed(0.5)", "RESET ALL"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startTxPoolWait(t, 1, true)
			a := p.connect(t)
			for _, sql := range tc.steps {
				exec(t, a, sql)
			}
			apid, v := randomOn(t, a)
			if v != seq[0] {
				t.Fatalf("a's first random() after seeding is %s, want %s (PostgreSQL's)", v, seq[0])
			}
			waitFor(t, func() bool { return strings.Contains(pinnedReasons(p), "seed") }, "a pinned by seed")
			b := p.connect(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			res, err := b.Exec(ctx, "SELECT pg_backend_pid()::text, random()::text").ReadAll()
			cancel()
			if err == nil {
				row := res[0].Rows[0]
				if string(row[0]) == apid || slices.Contains(seq, string(row[1])) {
					t.Fatalf("b ran on a's seeded backend (pid %s, random %s)", row[0], row[1])
				}
			} else if !strings.Contains(err.Error(), "query_wait_timeout") {
				t.Fatal(err)
			}
			if _, v := randomOn(t, a); v != seq[1] {
				t.Fatalf("a's second random() is %s, want %s", v, seq[1])
			}
			a.Close(context.Background())
			deadline := time.Now().Add(10 * time.Second)
			// A login's first statement may run on the backend the login
			// forked (auth_type server); its next on a pooled one.
			for c := p.connect(t); ; {
				pid, v := randomOn(t, c)
				if pid == apid {
					if slices.Contains(seq, v) {
						t.Fatalf("the next client on a's backend reads on in a's sequence: %s", v)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no client got a's backend %s back from the pool", apid)
				}
			}
		})
	}
}

// The other settings pg_settings does not list (PostgreSQL 15's
// GUC_NO_SHOW_ALL ones a client may set): role and session_authorization
// follow the client (the pin check reads them itself); default_with_oids
// and ssl_renegotiation_limit take only their defaults, so there is nothing
// to follow. Whatever a sets, by SET, SET LOCAL, set_config or RESET, b on
// the same backend sees the defaults.
func TestTxPoolHiddenSettingsDoNotReachNextClient(t *testing.T) {
	user := "SELECT current_user::text || ' ' || session_user::text || ' ' || current_setting('default_with_oids') || ' ' || current_setting('ssl_renegotiation_limit')"
	steps := [][]string{
		{"SET ROLE txlane_app"},
		{"BEGIN", "SET LOCAL ROLE txlane_app", "COMMIT"},
		{"SELECT set_config('role', 'txlane_app', false)"},
		{"SET SESSION AUTHORIZATION txlane_app"},
		{"SET ROLE txlane_app", "RESET ROLE"},
		{"SET default_with_oids = false", "SET ssl_renegotiation_limit = 0"},
		{"SELECT set_config('default_with_oids', 'false', false), set_config('ssl_renegotiation_limit', '0', false)"},
		{"BEGIN", "SET LOCAL default_with_oids = false", "SET LOCAL ssl_renegotiation_limit = 0", "COMMIT"},
	}
	want := "postgres postgres off 0"
	for _, st := range steps {
		t.Run(st[0], func(t *testing.T) {
			p := startTxPoolWait(t, 1, false)
			a, b := p.connect(t), p.connect(t)
			before := scalar(t, a, user)
			for _, sql := range st {
				exec(t, a, sql)
			}
			after := scalar(t, a, user)
			wantOwnValue(t, b, user, want)
			if before != want {
				t.Fatalf("a's session starts as %q, want %q", before, want)
			}
			if got := scalar(t, a, user); got != after {
				t.Fatalf("a's session reads %q after b ran, %q before: it did not follow a", got, after)
			}
		})
	}
}

// Session mode with pooled logins: a client that seeded its backend's
// random sequence leaves; the next login on that backend gets it seeded
// afresh (server_reset_query, DISCARD ALL, does not take a seed back).
func TestSessionPoolSeedDoesNotReachNextClient(t *testing.T) {
	seq := seedSequence(t)
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolSession, Size: 1}
		o.Auth = trustAuth(t, pgtest.AppRole)
	})
	dsn := p.DSN(t, pgtest.AppRole)
	a := connectDSN(t, dsn)
	exec(t, a, "SET seed = 0.5")
	apid, v := randomOn(t, a)
	if v != seq[0] {
		t.Fatalf("a's first random() after SET seed is %s, want %s", v, seq[0])
	}
	a.Close(context.Background())
	b := connectDSN(t, dsn)
	pid, v := randomOn(t, b)
	if pid != apid {
		t.Fatalf("b runs on backend %s, not a's %s: the test needs the pool to hand a's on", pid, apid)
	}
	if slices.Contains(seq, v) {
		t.Fatalf("b reads on in a's sequence: %s", v)
	}
}

// Settings pg_settings shows only to roles with the privileges of
// pg_read_all_settings (GUC_SUPERUSER_ONLY: dynamic_library_path, ...):
// a superuser client that set one and then took a lesser role (SET ROLE,
// SET SESSION AUTHORIZATION) keeps its backend (pin hidden_settings) while
// its current role cannot read them, and gets them back when it can
// again; b on that backend never sees a's value.
func TestTxPoolSuperuserOnlySettingsDoNotReachNextClient(t *testing.T) {
	const read = "SELECT current_setting('dynamic_library_path')"
	for _, lesser := range []string{"SET ROLE txlane_app", "SET SESSION AUTHORIZATION txlane_app"} {
		t.Run(lesser, func(t *testing.T) {
			p := startTxPoolWait(t, 1, false)
			a, b := p.connect(t), p.connect(t)
			exec(t, a, "SET dynamic_library_path = '$libdir:/tmp'")
			exec(t, a, lesser)
			waitFor(t, func() bool { return strings.Contains(pinnedReasons(p), "hidden_settings") }, "a pinned by hidden_settings")
			wantOwnValue(t, b, read, "$libdir")
			exec(t, a, "RESET SESSION AUTHORIZATION; RESET ROLE")
			if got := scalar(t, a, read); got != "$libdir:/tmp" {
				t.Fatalf("a's dynamic_library_path is %q, want its own", got)
			}
			waitFor(t, func() bool { return !strings.Contains(pinnedReasons(p), "hidden_settings") }, "a unpinned")
			b = p.connect(t)
			wantOwnValue(t, b, read, "$libdir")
		})
	}
}

// A role granted SET on such a parameter (GRANT SET ON PARAMETER) sets it
// but cannot read it back: it keeps its backend (pin hidden_settings).
func TestTxPoolGrantedHiddenSettingDoesNotReachNextClient(t *testing.T) {
	pgtest.Exec(t, "GRANT SET ON PARAMETER dynamic_library_path TO "+pgtest.AppRole)
	t.Cleanup(func() { pgtest.Exec(t, "REVOKE SET ON PARAMETER dynamic_library_path FROM "+pgtest.AppRole) })
	p := startTxPoolWait(t, 1, false)
	dsn := p.DSN(t, pgtest.AppRole)
	a, b := connectDSN(t, dsn), connectDSN(t, dsn)
	exec(t, a, "SET dynamic_library_path = '$libdir:/tmp'")
	waitFor(t, func() bool { return strings.Contains(pinnedReasons(p), "hidden_settings") }, "a pinned by hidden_settings")
	wantNotOnBackendOf(t, b, "SELECT 1", "a setting a may set but not read")
}

// Settings the client's role can read move with it and pin nothing, in
// whatever letter case it names them (pg_settings spells DateStyle so).
func TestTxPoolVisibleSettingsDoNotPinHidden(t *testing.T) {
	p := startTxPoolWait(t, 1, false)
	dsn := p.DSN(t, pgtest.AppRole)
	a, b := connectDSN(t, dsn), connectDSN(t, dsn)
	exec(t, a, "SET datestyle = 'SQL, DMY'")
	exec(t, a, "SELECT set_config('WORK_MEM', '13MB', false)")
	exec(t, a, "SELECT 1")
	if got := scalar(t, b, "SELECT current_setting('DateStyle') || ' ' || current_setting('work_mem')"); got != "ISO, MDY 4MB" {
		t.Fatalf("b's settings read %q, want its own", got)
	}
	if got := scalar(t, a, "SELECT current_setting('DateStyle') || ' ' || current_setting('work_mem')"); got != "SQL, DMY 13MB" {
		t.Fatalf("a's settings read %q, want its own", got)
	}
	if got := pinnedReasons(p); strings.Contains(got, "hidden_settings") {
		t.Fatalf("SHOW CLIENTS pinned %q", got)
	}
}
