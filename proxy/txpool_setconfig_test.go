package proxy_test

import (
	"context"
	"fmt"
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

// set_config(name, value, true) with a constant name and true lasts for its
// transaction, as SET LOCAL (the per-transaction tenant of row-level
// security): it neither pins the client nor costs a read of the session's
// state, and nothing of it reaches the next client of the backend.
func TestTxPoolSetConfigLocal(t *testing.T) {
	p := startTxPoolWait(t, 1, false)
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "SELECT 1") // the pooled backend's first idle is checked once
	exec(t, b, "SELECT 1")
	before := p.Server.Metrics().PinChecks()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 10; i++ {
		tenant := fmt.Sprintf("t%d", i)
		exec(t, a, "BEGIN")
		if err := a.ExecParams(ctx, "SELECT set_config('app.tenant', $1, true)", [][]byte{[]byte(tenant)}, nil, nil, nil).Read().Err; err != nil {
			t.Fatal(err)
		}
		if got := scalar(t, a, "SELECT current_setting('app.tenant')"); got != tenant {
			t.Fatalf("a in its transaction: %q, want %q", got, tenant)
		}
		exec(t, a, "COMMIT")
		exec(t, a, "SELECT set_config('app.tenant', 'auto', 'on')") // its own implicit transaction
		if got := scalar(t, b, "SELECT coalesce(current_setting('app.tenant', true), '')"); got != "" {
			t.Fatalf("b sees a's transaction-local setting: %q", got)
		}
	}
	if got := p.Server.Metrics().PinChecks() - before; got != 0 {
		t.Fatalf("%v pin checks after transaction-local set_config calls, want none", got)
	}
	if got := pinnedReasons(p); strings.Trim(got, ";") != "" {
		t.Fatalf("pinned %q after transaction-local set_config calls", got)
	}
	// A session-level one is read back (and moves with a).
	exec(t, a, "SELECT set_config('app.tenant', 'kept', false)")
	if got := scalar(t, b, "SELECT coalesce(current_setting('app.tenant', true), '')"); got != "" {
		t.Fatalf("b sees a's setting: %q", got)
	}
	if got := scalar(t, a, "SELECT current_setting('app.tenant')"); got != "kept" {
		t.Fatalf("a: %q, want kept", got)
	}
	if p.Server.Metrics().PinChecks() == before {
		t.Fatal("no pin check after a session-level set_config")
	}
}

// A custom setting the client set and reset where it was only a placeholder
// reads as an empty string there; moved onto a backend where an extension
// defines the name (an empty string is no valid ivfflat.probes, an integer)
// it must become the default, not fail the client (FATAL 08006 "could not
// restore").
func TestTxPoolPlaceholderMovesOntoExtension(t *testing.T) {
	p := startTxPoolWait(t, 1, false)
	a, b := p.connect(t), p.connect(t)
	if scalar(t, a, "SELECT count(*) FROM pg_settings WHERE name = 'ivfflat.probes'") != "0" {
		t.Skip("the pooled backend has pgvector's library loaded already")
	}
	exec(t, a, "SET ivfflat.probes = 3; RESET ivfflat.probes")
	if got := scalar(t, a, "SELECT current_setting('ivfflat.probes')"); got != "" {
		t.Fatalf("a's placeholder reads %q, want ''", got)
	}
	exec(t, b, "SELECT '[1,2]'::vector") // loads pgvector on the one backend
	if got := scalar(t, a, "SELECT current_setting('ivfflat.probes')"); got != "1" {
		t.Fatalf("a: ivfflat.probes %q, want pgvector's default 1", got)
	}
}
