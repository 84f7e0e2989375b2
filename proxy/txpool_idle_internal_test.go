package proxy

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
)

// TestIdleCallNotLost: in transaction mode a backend goes back to the pool
// when its client's request ends even if the relay's idle call finds wsem
// taken by the client goroutine's own idle call, which looked while the
// request was still in flight. The test stages that order with testIdleHook:
// the request waits on an advisory lock the test holds until the client
// goroutine's idle call holds wsem, and that call gives wsem up only after
// the relay's has found it taken. Before idleCalls, nobody gave the backend
// back, and the pool's next client waited for it up to query_wait_timeout
// (TestTxPoolStartupParameters hung so, now and then, on a busy machine).
func TestIdleCallNotLost(t *testing.T) {
	srv, addr := serveOn(t, Options{Primary: pgtest.Config(t), Pool: PoolOptions{Mode: PoolTransaction, Size: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/txlane_test?sslmode=disable", addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(context.Background())
	s := onlySession(t, srv)
	backInPool := func() bool {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if s.pc.Load() == nil {
				return true
			}
		}
		return false
	}
	if !backInPool() {
		t.Fatal("the login's backend did not go back to the pool")
	}

	locker, err := pgconn.ConnectConfig(ctx, pgtest.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(context.Background())
	const key = 770_417_001
	if _, err := locker.Exec(ctx, fmt.Sprintf("SELECT pg_advisory_lock(%d)", key)).ReadAll(); err != nil {
		t.Fatal(err)
	}

	// stage: 0 armed; 1 the client goroutine's idle holds wsem with the
	// request in flight; 2 the relay's idle found wsem taken.
	var stage atomic.Int32
	holding, relayLost := make(chan struct{}), make(chan struct{})
	testIdleHook = func(hs *session, busy bool) {
		switch {
		case hs != s:
		case !busy && stage.CompareAndSwap(0, 1):
			close(holding)
			select {
			case <-relayLost:
			case <-time.After(30 * time.Second):
			}
		case busy && stage.CompareAndSwap(1, 2):
			close(relayLost)
		}
	}
	defer func() { testIdleHook = nil }()

	done := make(chan error, 1)
	go func() {
		_, err := client.Exec(ctx, fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", key)).ReadAll()
		done <- err
	}()
	select {
	case <-holding:
	case err := <-done:
		t.Fatalf("the request ended before the client goroutine's idle call held wsem: %v", err)
	case <-ctx.Done():
		t.Fatal("the client goroutine's idle call never found the request in flight")
	}
	if _, err := locker.Exec(ctx, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", key)).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if stage.Load() != 2 {
		t.Fatalf("stage %d: the relay's idle call did not find wsem taken", stage.Load())
	}
	if !backInPool() {
		t.Fatalf("the backend stayed with its idle client (pinned by %q): the relay's idle call was lost", s.pinnedBy())
	}
}

// TestOwnForLeaveBackendGone: a client that leaves while a query of
// txlane's own is in flight on its backend stops waiting for the answer
// once the backend is gone (nothing will answer), rather than waiting, and
// spinning, until internalQueryTimeout.
func TestOwnForLeaveBackendGone(t *testing.T) {
	p := newPrimaryConn(backend{}, nil)
	p.mu.pending = []*request{{internal: &internalQuery{done: make(chan struct{})}}}
	close(p.gone) // its relay has returned
	s := &session{}
	s.pc.Store(p)
	done := make(chan bool, 1)
	go func() { done <- s.ownForLeave(p) }()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("ownForLeave gave up a backend that is still the client's")
		}
	case <-time.After(internalQueryTimeout / 2):
		t.Fatal("ownForLeave still waits for the answer of a backend that is gone")
	}
}
