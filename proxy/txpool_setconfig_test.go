package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A setting set with set_config under a constant name (as applications
// set a tenant or user id for row-level security, and as psycopg sends it)
// moves with its client like one set with SET: the client is not pinned,
// the other client sharing the backend does not see it, and the client
// finds it on whichever backend serves it next. One set under a name
// txlane cannot see (a parameter) still pins the client (set_config).
func TestTxPoolSetConfigMoves(t *testing.T) {
	p := startTxPoolWait(t, 1, false)
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "SELECT set_config('app.Tenant', 'a-tenant', false), set_config('search_path', 'pg_catalog, public', false)")
	exec(t, b, "SELECT set_config('app.tenant', 'b-tenant', false)")
	for i := 0; i < 3; i++ {
		if got := scalar(t, a, "SELECT current_setting('app.tenant') || '|' || current_setting('search_path')"); got != "a-tenant|pg_catalog, public" {
			t.Fatalf("a: %s, want its own a-tenant|pg_catalog, public", got)
		}
		if got := scalar(t, b, "SELECT current_setting('app.tenant') || '|' || current_setting('search_path')"); got != `b-tenant|"$user", public` {
			t.Fatalf("b: %s, want its own b-tenant and the default search_path", got)
		}
	}
	if got := pinnedReasons(p); strings.Trim(got, ";") != "" {
		t.Fatalf("SHOW CLIENTS pinned %q after set_config of constant names, want nothing", got)
	}

	// A name given as a parameter is not seen: a keeps its backend.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.ExecParams(ctx, "SELECT set_config($1, 'hidden', false)", [][]byte{[]byte("app.secret")}, nil, nil, nil).Read().Err; err != nil {
		t.Fatal(err)
	}
	wantNotOnBackendOf(t, b, "SELECT 1", "set_config of a name given as a parameter")
	if got := pinnedReasons(p); !strings.Contains(got, "set_config") {
		t.Fatalf("SHOW CLIENTS pinned %q, want set_config", got)
	}
}

// What txlane cannot attribute to a statement counts as code that may have
// set custom settings under names it cannot see, even the Execute of a
// portal whose Bind named a statement that does not exist (26000: nothing
// ran, but txlane does not predict the server's answer): the client keeps
// its backend until a RESET ALL.
func TestTxPoolUnattributablePins(t *testing.T) {
	p := startTxPoolWait(t, 1, false)
	a, b := p.connect(t), p.connect(t)
	r := newPrepConn(t, a).run(exec1("nosuch")...)
	wantErrCode(t, "Bind of a statement that does not exist", r, "26000", `prepared statement "nosuch" does not exist`)
	wantNotOnBackendOf(t, b, "SELECT 1", "an Execute txlane cannot attribute")
	if got := pinnedReasons(p); !strings.Contains(got, "set_config") {
		t.Fatalf("SHOW CLIENTS pinned %q, want set_config", got)
	}
	exec(t, a, "RESET ALL")
	// b was closed (query_wait_timeout); the next client runs.
	if got := scalar(t, p.connect(t), "SELECT 'c runs'"); got != "c runs" {
		t.Fatal(got)
	}
}
