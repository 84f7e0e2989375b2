package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/proxy"
)

// pipelineResults sends each of sqls as its own request (Parse, Bind,
// Execute, Sync) in one pgx pipeline and reads every answer: one error per
// statement (nil if it ran). A hang fails the test at the context's end.
func pipelineResults(t *testing.T, conn *pgconn.PgConn, sqls ...string) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := conn.StartPipeline(ctx)
	for _, sql := range sqls {
		p.SendQueryParams(sql, nil, nil, nil, nil)
		p.Sync()
	}
	errs := make([]error, 0, len(sqls))
	for len(errs) < len(sqls) {
		r, err := p.GetResults()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			// pgx reports a statement's ErrorResponse here.
			errs = append(errs, err)
			continue
		}
		if err != nil {
			t.Fatalf("pipeline %q: answer %d: %v", sqls, len(errs), err)
		}
		switch rr := r.(type) {
		case *pgconn.ResultReader:
			errs = append(errs, rr.Read().Err)
		case *pgconn.PipelineSync:
		case nil:
			t.Fatalf("pipeline %q: no more answers after %d", sqls, len(errs))
		}
	}
	// The last Sync's answer, then the end of the pipeline.
	if r, err := p.GetResults(); err != nil {
		t.Fatalf("pipeline %q: last Sync: %v", sqls, err)
	} else if _, ok := r.(*pgconn.PipelineSync); !ok {
		t.Fatalf("pipeline %q: got %T, want the last Sync", sqls, r)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("pipeline %q: close: %v", sqls, err)
	}
	return errs
}

// TestSharedUnitsPipelined: a unit-tagged write pipelined behind requests of
// the client still in flight gets its answer (with policy.shared_units its
// lock cannot be taken on the client's busy backend: it is refused with
// 25L01, never waited for and never let through unchecked), in session and
// transaction mode, and the session ends when its client closes.
func TestSharedUnitsPipelined(t *testing.T) {
	bed := startInstances(t, 3, "reject", transactionPoolOn(t, 2, 2))
	for _, id := range []int{1, 2} {
		for i, first := range []string{"SELECT pg_sleep(0.3)", "SELECT 1"} {
			t.Run(fmt.Sprintf("instance %d after %s", id, first), func(t *testing.T) {
				unit := fmt.Sprintf("pipe%d-%d", id, i)
				conn := bed.connect(t, id, "pipeline")
				errs := pipelineResults(t, conn, first, bed.insert(unit, "pipelined"))
				if errs[0] != nil {
					t.Fatalf("%s: %v", first, errs[0])
				}
				wantUncheckedOrNil(t, errs[1])
				want := "1"
				if errs[1] != nil {
					want = "0"
				}
				if got := bed.count(t, "unit = '"+unit+"'"); got != want {
					t.Fatalf("%s rows of %s, want %s (write: %v)", got, unit, want, errs[1])
				}
				// The connection goes on: a write sent on its own is checked.
				exec(t, conn, bed.insert(unit, "alone"))
				waitClientsGone(t, bed.inst[id-1].Server, conn)
			})
		}
		t.Run(fmt.Sprintf("instance %d transaction", id), func(t *testing.T) {
			unit := fmt.Sprintf("pipetx%d", id)
			conn := bed.connect(t, id, "pipeline")
			errs := pipelineResults(t, conn, "BEGIN", bed.insert(unit, "pipelined"), "COMMIT")
			if errs[0] != nil || errs[2] != nil {
				t.Fatalf("BEGIN, COMMIT: %v", errs)
			}
			wantUncheckedOrNil(t, errs[1])
			if errs[1] == nil {
				// Let through: then its lock was held, and it committed.
				if got := bed.count(t, "unit = '"+unit+"'"); got != "1" {
					t.Fatalf("%s rows", got)
				}
			} else if got := bed.count(t, "unit = '"+unit+"'"); got != "0" {
				t.Fatalf("%s rows after a refused write", got)
			}
			waitClientsGone(t, bed.inst[id-1].Server, conn)
		})
	}
	// A holder on instance 3: the pipelined write on instance 1 must not
	// pass it.
	holder := bed.connect(t, 3, "holder")
	exec(t, holder, "BEGIN")
	exec(t, holder, bed.insert("pipeheld", "holder"))
	for _, id := range []int{1, 2} {
		conn := bed.connect(t, id, "pipeline")
		errs := pipelineResults(t, conn, "SELECT pg_sleep(0.1)", bed.insert("pipeheld", "pipelined"))
		wantHeldElsewhereCode(t, errs[1])
	}
	exec(t, holder, "ROLLBACK")
	if got := bed.count(t, "unit = 'pipeheld'"); got != "0" {
		t.Fatalf("%s rows of pipeheld after the holder rolled back", got)
	}
}

// wantUncheckedOrNil accepts a write that ran, or one refused as unchecked
// (25L01); anything else fails.
func wantUncheckedOrNil(t *testing.T, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	if err != nil && (!errors.As(err, &pgErr) || pgErr.Code != proxy.CodeEscapedWrite) {
		t.Fatalf("pipelined write: %v, want success or SQLSTATE %s", err, proxy.CodeEscapedWrite)
	}
}

// waitClientsGone closes conn and waits until srv has no client left: a
// session stuck (or spinning) on a request never leaves.
func waitClientsGone(t *testing.T, srv *proxy.Server, conn *pgconn.PgConn) {
	t.Helper()
	conn.Close(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for srv.Clients() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients still listed 10s after the last one closed", srv.Clients())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSharedUnitsSessionUnit: a writer whose unit comes from its session
// (options=-c txlane.unit=... at login, or set_config(..., false)) on an
// instance where no client holds anything reads its unit before an
// untagged write, which is then refused while another instance's client
// holds the unit.
func TestSharedUnitsSessionUnit(t *testing.T) {
	bed := startInstances(t, 2, "reject", nil)
	cases := []struct {
		name, unit, options, set string // options: URL-escaped
	}{
		{"startup options", "u-opt", "-c%20txlane.unit%3Du-opt", ""},
		{"set_config outside a transaction", "u-stale", "", "SELECT set_config('txlane.unit', 'u-stale', false)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			holder := bed.connect(t, 1, "holder")
			exec(t, holder, "BEGIN")
			exec(t, holder, bed.insert(c.unit, "holder"))
			dsn := bed.inst[1].DSN(t, "") + "&application_name=writer"
			if c.options != "" {
				dsn += "&options=" + c.options // escaped
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			w, err := pgconn.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close(context.Background())
			if c.set != "" {
				exec(t, w, c.set)
			}
			if got := scalar(t, w, "SELECT current_setting('txlane.unit', true)"); got != c.unit {
				t.Fatalf("writer's unit %q, want %q", got, c.unit)
			}
			untagged := fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('%s', 'escape')", bed.table, c.unit)
			wantHeldElsewhereCode(t, execErr(w, untagged))
			exec(t, holder, "ROLLBACK")
			if got := bed.count(t, "unit = '"+c.unit+"'"); got != "0" {
				t.Fatalf("%s rows of %s after the holder rolled back", got, c.unit)
			}
			// Free now: the same write runs.
			exec(t, w, untagged)
		})
	}
}

// transactionPoolOn is a startInstances mutation: instance id runs
// pool_mode transaction with pool_size size, logins checked by txlane.
func transactionPoolOn(t *testing.T, id, size int) func(int, *proxy.Options) {
	return transactionPoolOnUsers(t, id, size)
}
