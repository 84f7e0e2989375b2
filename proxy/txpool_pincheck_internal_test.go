package proxy

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
)

// TestPinCheckBeforeTheNextRequest: in transaction mode a client sets a
// parse setting (DateStyle), waits for the answer, and PREPAREs at once.
// The relay's idle call, which sends the pin check that reads the new
// setting back, comes after it flushed the ReadyForQuery; a client that
// answers at once may take wsem for its PREPARE first. The PREPARE then
// found its parse settings unknown and pinned the client (parse_settings)
// for as long as the statement existed, and with pool_size 1 the pool's
// other client waited for the backend (TestParseEnvSharedSQLPrepare hung
// 30 s once). The test stages that order with testIdleEnterHook: the
// relay's idle call after the SET waits until the PREPARE is sent. Now
// the check goes ahead of the PREPARE, which waits for its answer: the
// client is not pinned, and the other client gets the backend.
func TestPinCheckBeforeTheNextRequest(t *testing.T) {
	opts := Options{Primary: pgtest.Config(t), Pool: PoolOptions{Mode: PoolTransaction, Size: 1}}
	opts.QueryWaitTimeout = 5 * time.Second
	srv, addr := serveOn(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := fmt.Sprintf("postgres://postgres@%s/txlane_test?sslmode=disable", addr)
	x, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close(context.Background())
	s := onlySession(t, srv)
	for deadline := time.Now().Add(10 * time.Second); s.pc.Load() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the login's backend did not go back to the pool")
		}
	}
	run := func(c *pgconn.PgConn, sql string) string {
		t.Helper()
		res, err := c.Exec(ctx, sql).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if last := res[len(res)-1]; len(last.Rows) > 0 {
			return string(last.Rows[0][0])
		}
		return ""
	}

	// stage: 0 armed; 1 the relay's idle call with the check due waits;
	// 2 it saw the client's next request sent (in flight) before it could
	// look: the relay, waiting here, reads no answer meanwhile.
	var stage atomic.Int32
	testIdleEnterHook = func(hs *session, p *primaryConn) {
		if hs != s || p.inFlight() > 0 || p.TxStatus() != TxIdle || s.dirtyGen.Load() == s.cleanGen.Load() || !fromRelay() || !stage.CompareAndSwap(0, 1) {
			return
		}
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if p.inFlight() > 0 {
				stage.Store(2)
				return
			}
		}
	}
	defer func() { testIdleEnterHook = nil }()

	staged := false
	for try := 0; try < 5 && !staged; try++ {
		name := fmt.Sprintf("penv%d", try)
		stage.Store(0)
		run(x, fmt.Sprintf("SET DateStyle = 'ISO, %s'", []string{"DMY", "MDY"}[try%2]))
		run(x, "PREPARE "+name+" AS SELECT '01/02/2026'::date::text")
		staged = stage.Load() == 2
		stage.Store(3)     // disarmed
		run(x, "SELECT 1") // its answer follows the pin check after the PREPARE
		if staged {
			if why := s.pinnedBy(); why != "" {
				t.Fatalf("the client is pinned (%s) after a PREPARE that followed its answered SET", why)
			}
			want := []string{"2026-02-01", "2026-01-02"}[try%2]
			if got := run(x, "EXECUTE "+name); got != want {
				t.Fatalf("EXECUTE %s: %q, want %q", name, got, want)
			}
		}
		run(x, "DEALLOCATE "+name)
	}
	if !staged {
		t.Fatal("the PREPARE was never sent before the relay's idle call looked: the test tests nothing")
	}
	y, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close(context.Background())
	if got := run(y, "SELECT 42"); got != "42" {
		t.Fatalf("the other client: %q", got)
	}
}

// fromRelay reports whether the caller runs in a primary connection's relay
// (its idle call after a ReadyForQuery), not in the client's goroutine.
func fromRelay() bool {
	buf := make([]byte, 16<<10)
	return strings.Contains(string(buf[:runtime.Stack(buf, false)]), ").afterReady(")
}
