package proxy_test

import (
	"context"
	"testing"
	"time"
)

// TestCancelGate: a client's CancelRequest interrupts only a request of its
// own (cancel_gate.go).
func TestCancelGate(t *testing.T) {
	t.Run("an idle holder's cancel spares the write rerouted into its transaction", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		done := make(chan error, 1)
		go func() {
			done <- execErr(other, "INSERT INTO "+bed.table+" (unit, who) SELECT 'u1', 'guest' FROM pg_sleep(1) /*unit='u1'*/")
		}()
		time.Sleep(300 * time.Millisecond)
		// The holder's client runs nothing: PostgreSQL would ignore this.
		if err := holder.CancelRequest(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("rerouted write failed after the holder's cancel: %v", err)
		}
		exec(t, holder, "SELECT 1") // not 25P02: the transaction is intact
		exec(t, holder, "COMMIT")
		if got := bed.count(t, "true"); got != "2" {
			t.Fatalf("%s rows after COMMIT, want 2", got)
		}
	})
	t.Run("the holder's cancel still reaches its own statement", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder := bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		go func() {
			time.Sleep(300 * time.Millisecond)
			holder.CancelRequest(context.Background())
		}()
		wantCode(t, execErr(holder, "SELECT pg_sleep(10)"), "57014")
		exec(t, holder, "ROLLBACK")
	})
	t.Run("a writer's cancel ends its wait for the holder's backend", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		busy := make(chan error, 1)
		go func() { busy <- execErr(holder, "SELECT pg_sleep(1.5)") }()
		time.Sleep(100 * time.Millisecond)
		go func() {
			time.Sleep(200 * time.Millisecond)
			other.CancelRequest(context.Background())
		}()
		wantCode(t, execErr(other, bed.insert("u1", "other")), "57014")
		select {
		case <-busy:
			t.Fatal("the canceled write was answered only after the holder's statement")
		default:
		}
		if err := <-busy; err != nil {
			t.Fatalf("the holder's statement failed: %v", err)
		}
		exec(t, holder, "COMMIT")
		if got := bed.count(t, "who = 'other'"); got != "0" {
			t.Fatalf("%s rows of the canceled write", got)
		}
		exec(t, other, "SELECT 1")
	})
}
