package proxy_test

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestShutdownCutsWaitingReads: a stop cut short ends a session whose
// statement waits on the server (here for a lock another connection holds),
// on the primary and on the vector lane, within moments: shutdown_timeout
// and a second signal stop txlane whatever its sessions wait for.
func TestShutdownCutsWaitingReads(t *testing.T) {
	for _, lane := range []string{"primary", "vector"} {
		t.Run(lane, func(t *testing.T) {
			bed := startVectorProxy(t, nil)
			read := "SELECT id FROM " + bed.table + " ORDER BY embedding <-> '[1,0,0]' LIMIT 1"
			if lane == "primary" {
				read = "SELECT count(*) FROM " + bed.table
			}
			c := bed.connect(t)
			if lane == "vector" {
				newLanes(t, c).wantLane("SELECT pg_backend_pid() FROM " + bed.table + " ORDER BY embedding <-> '[1,0,0]' LIMIT 1")
			}
			locker := directConn(t)
			exec(t, locker, "BEGIN; LOCK TABLE "+bed.table+" IN ACCESS EXCLUSIVE MODE")
			t.Cleanup(func() { exec(t, locker, "ROLLBACK") })
			go c.Exec(context.Background(), read).ReadAll()
			waitFor(t, func() bool {
				return directScalar(t, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position('"+bed.table+"' in query) > 0") == "1"
			}, "the read to wait for the lock")

			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- bed.Shutdown(ctx) }()
			select {
			case err := <-done:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown = %v, want the deadline", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Shutdown did not return within 15 s while a session's read waited for a lock")
			}
			t.Logf("Shutdown took %s", time.Since(start))
		})
	}
}
