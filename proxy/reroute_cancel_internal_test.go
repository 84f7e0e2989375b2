package proxy

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/policy"
)

// TestRerouteLateCancelSparesTheHolder: a writer's cancel of its rerouted
// write that is still on its way to the server when the write ends must not
// reach the holder's next statement (an adversarial tester saw the holder's
// transaction fail with 57014 about once in 100 rerouted writes). The test
// stages that order with testCancelHook: the cancel, decided while the
// write runs on the holder's backend, is held back until after the write's
// answer, while the holder starts its next statement. The writer's session
// hands the holder's backend back only once the cancel is through, so the
// cancel finds the backend idle and the holder's statement runs.
func TestRerouteLateCancelSparesTheHolder(t *testing.T) {
	table := fmt.Sprintf("rrcancel_%d", time.Now().UnixNano()%1_000_000)
	pgtest.Exec(t, fmt.Sprintf("CREATE TABLE %s (id serial PRIMARY KEY, unit text, who text)", table))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+table) })
	_, addr := serveOn(t, Options{Primary: pgtest.Config(t), RerouteWaitTimeout: 5 * time.Second,
		Rules:    policy.RulesConfig{Escape: "reroute"},
		ReadPool: ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: time.Second}, Discover: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connect := func() *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/txlane_test?sslmode=disable", addr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	holder, writer := connect(), connect()
	run := func(c *pgconn.PgConn, sql string) error {
		_, err := c.Exec(ctx, sql).ReadAll()
		return err
	}
	if err := run(holder, fmt.Sprintf("BEGIN; INSERT INTO %s (unit, who) VALUES ('c1', 'holder') /*unit='c1'*/", table)); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	decided := make(chan struct{})
	testCancelHook = func() {
		once.Do(func() {
			close(decided)
			time.Sleep(800 * time.Millisecond)
		})
	}
	defer func() { testCancelHook = nil }()

	wrote := make(chan error, 1)
	go func() {
		wrote <- run(writer, fmt.Sprintf("INSERT INTO %s (unit, who) SELECT 'c1', 'writer' FROM pg_sleep(0.4) /*unit='c1'*/", table))
	}()
	time.Sleep(150 * time.Millisecond)
	go writer.CancelRequest(context.Background())
	select {
	case <-decided:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer's cancel was not forwarded")
	}
	if err := <-wrote; err != nil {
		t.Logf("the rerouted write: %v", err)
	}
	if err := run(holder, "SELECT pg_sleep(1)"); err != nil {
		t.Fatalf("the holder's next statement after the rerouted write: %v", err)
	}
	if err := run(holder, "COMMIT"); err != nil {
		t.Fatal(err)
	}
}
