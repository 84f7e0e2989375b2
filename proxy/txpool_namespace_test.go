package proxy_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestTxPoolStatementNamespace: in the server's session, protocol-level and
// SQL-level prepared statements share one namespace. Two clients that share
// one backend (pool_size 1) and use one name, one with Parse and one with
// PREPARE, each get their own statement, as each would on its own backend.
// Before, the second client's PREPARE failed with 42P05 (the first one's
// protocol statement was still on the backend), and a client whose SQL
// statement txlane prepared again on a backend holding another client's
// protocol statement of that name was closed (FATAL 08006).
func TestTxPoolStatementNamespace(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.Auth = trustAuth(t, pgtest.Config(t).User)
	})
	ctx := context.Background()
	a, b := p.connect(t), p.connect(t)
	protoRun := func(name, want string) {
		t.Helper()
		res := a.ExecPrepared(ctx, name, nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != want {
			t.Fatalf("a's protocol statement %s: %v %q, want %q", name, res.Err, res.Rows, want)
		}
	}
	prepare := func(c *pgconn.PgConn, name, sql string) {
		t.Helper()
		if _, err := c.Prepare(ctx, name, sql, nil); err != nil {
			t.Fatalf("Parse %s: %v", name, err)
		}
	}

	// a's protocol statement first, then b's SQL one of the same name.
	prepare(a, "s1", "SELECT 'A'::text")
	protoRun("s1", "A")
	exec(t, b, "PREPARE s1 AS SELECT 'B'::text")
	for i := 0; i < 2; i++ {
		if got := scalar(t, b, "EXECUTE s1"); got != "B" {
			t.Fatalf("b's EXECUTE s1 = %q, want B", got)
		}
		protoRun("s1", "A")
	}

	// b's SQL statement first, then a's protocol one of the same name.
	exec(t, b, "PREPARE s3 AS SELECT 'B'::text")
	prepare(a, "s3", "SELECT 'A'::text")
	protoRun("s3", "A")
	for i := 0; i < 2; i++ {
		if got := scalar(t, b, "EXECUTE s3"); got != "B" {
			t.Fatalf("b's EXECUTE s3 = %q, want B", got)
		}
		protoRun("s3", "A")
	}
	exec(t, b, "DEALLOCATE s3")
	protoRun("s3", "A")
	exec(t, b, "PREPARE s3 AS SELECT 'B2'::text")
	if got := scalar(t, b, "EXECUTE s3"); got != "B2" {
		t.Fatalf("b's EXECUTE s3 after PREPARE again = %q, want B2", got)
	}
	protoRun("s3", "A")

	// A client's own protocol statement still makes its PREPARE of the same
	// name fail, as PostgreSQL's does.
	prepare(a, "s4", "SELECT 1")
	if _, err := a.Exec(ctx, "PREPARE s4 AS SELECT 2").ReadAll(); pgCode(err) != "42P05" {
		t.Fatalf("PREPARE of a name the client holds through Parse: %v, want 42P05", err)
	}
}
