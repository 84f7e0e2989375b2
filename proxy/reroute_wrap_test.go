package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy"
)

// rerouteWriters are the shapes a rerouted write comes in: a simple Query
// of one statement, of several, and an extended-protocol request with a
// bind parameter. Each inserts the row with id 1 (a unique key the holder
// took first) for unit u1, who "other".
var rerouteWriters = []struct {
	name  string
	write func(c *pgconn.PgConn, table string) error
}{
	{"simple Query", func(c *pgconn.PgConn, table string) error {
		return execErr(c, fmt.Sprintf("INSERT INTO %s (id, unit, who) VALUES (1, 'u1', 'other') /*unit='u1'*/", table))
	}},
	{"simple Query of two statements", func(c *pgconn.PgConn, table string) error {
		return execErr(c, fmt.Sprintf("INSERT INTO %[1]s (id, unit, who) VALUES (100, 'u1', 'other') /*unit='u1'*/; INSERT INTO %[1]s (id, unit, who) VALUES (1, 'u1', 'other') /*unit='u1'*/", table))
	}},
	{"extended", func(c *pgconn.PgConn, table string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.ExecParams(ctx, fmt.Sprintf("INSERT INTO %s (id, unit, who) VALUES ($1, 'u1', 'other') /*unit='u1'*/", table),
			[][]byte{[]byte("1")}, nil, nil, nil).Read().Err
	}},
}

// TestUnitsRerouteFailureIsTheWriters: a write rerouted into a holder's
// transaction that fails fails the writer alone. The writer gets the
// server's error (23505); the holder's transaction is as it was: its next
// statement runs, and its COMMIT commits its rows and nothing of the write.
// (A holder that has made savepoints of its own takes no rerouted write:
// TestUnitsRerouteNotPastASavepoint.)
func TestUnitsRerouteFailureIsTheWriters(t *testing.T) {
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
		for _, w := range rerouteWriters {
			t.Run(string(pool.Mode)+"/"+w.name, func(t *testing.T) {
				bed := startUnitProxy(t, "reroute", func(o *proxy.Options) { o.Pool = pool })
				holder, writer := bed.connect(t), bed.connect(t)
				exec(t, holder, "BEGIN")
				exec(t, holder, fmt.Sprintf("INSERT INTO %s (id, unit, who) VALUES (1, 'u1', 'holder') /*unit='u1'*/", bed.table))

				wantCode(t, w.write(writer, bed.table), "23505")
				if writer.TxStatus() != 'I' {
					t.Fatalf("writer's status %q, want I", writer.TxStatus())
				}
				if got := scalar(t, holder, "SELECT count(*) FROM "+bed.table); got != "1" {
					t.Fatalf("holder sees %s rows, want its 1", got)
				}
				exec(t, holder, fmt.Sprintf("INSERT INTO %s (id, unit, who) VALUES (2, 'u1', 'holder2') /*unit='u1'*/", bed.table))
				exec(t, holder, "COMMIT")
				if got := bed.count(t, "true"); got != "2" {
					t.Fatalf("%s rows committed, want the holder's 2", got)
				}
				if got := bed.count(t, "who = 'holder'"); got != "1" {
					t.Fatalf("the holder's row: %s", got)
				}
			})
		}
	}
	t.Run("a write that succeeds after one that failed", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, writer := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+fmt.Sprintf("INSERT INTO %s (id, unit, who) VALUES (1, 'u1', 'holder') /*unit='u1'*/", bed.table))
		wantCode(t, rerouteWriters[0].write(writer, bed.table), "23505")
		exec(t, writer, fmt.Sprintf("INSERT INTO %s (id, unit, who) VALUES (5, 'u1', 'other') /*unit='u1'*/", bed.table))
		exec(t, holder, "COMMIT")
		if got := bed.count(t, "true"); got != "2" {
			t.Fatalf("%s rows committed, want the holder's and the second write's", got)
		}
	})
	t.Run("holder in a failed transaction", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, writer := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		wantCode(t, execErr(holder, "SELECT 1/0 /*unit='u1'*/"), "22012")
		for _, w := range rerouteWriters {
			err := w.write(writer, bed.table)
			wantCode(t, err, proxy.CodeEscapedWrite)
		}
		exec(t, holder, "ROLLBACK")
		if got := bed.count(t, "true"); got != "0" {
			t.Fatalf("%s rows", got)
		}
	})
}

// rawRows sends msgs, one request ending in Sync, and returns the first
// column of the DataRows of the answer and its first error.
func rawRows(t *testing.T, c *pgconn.PgConn, msgs ...pgproto3.FrontendMessage) ([]string, error) {
	t.Helper()
	var rows []string
	var first error
	rawExchange(t, c, func(msg pgproto3.BackendMessage) {
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			if first == nil {
				first = &pgconn.PgError{Code: m.Code, Message: m.Message, Detail: m.Detail}
			}
		}
	}, msgs...)
	return rows, first
}

// rawExchange sends msgs, one request ending in Sync, and passes each
// message of the answer to each, up to and including its ReadyForQuery.
func rawExchange(t *testing.T, c *pgconn.PgConn, each func(pgproto3.BackendMessage), msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	fe := c.Frontend()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Conn().SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.Conn().SetReadDeadline(time.Time{})
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		each(msg)
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return
		}
	}
}

// suspendedPortal opens the holder's transaction on unit u1 and runs its
// unnamed portal over sql (a query of several rows) for one row.
func suspendedPortal(t *testing.T, bed *unitBed, holder *pgconn.PgConn, sql string) {
	t.Helper()
	exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
	rows, err := rawRows(t, holder, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{},
		&pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
	if err != nil || len(rows) != 1 || rows[0] != "1" {
		t.Fatalf("first Execute: %q, %v", rows, err)
	}
}

// nextRow executes the holder's unnamed portal for one more row: want.
func nextRow(t *testing.T, holder *pgconn.PgConn, want string) {
	t.Helper()
	rows, err := rawRows(t, holder, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
	if err != nil || len(rows) != 1 || rows[0] != want {
		t.Fatalf("next Execute of the holder's portal: %q, %v; want %s", rows, err, want)
	}
}

// TestUnitsRerouteKeepsTheHoldersPortal: a holder that executes its unnamed
// portal in parts gets its next row after a write was rerouted into its
// transaction (succeeding or failing, simple Query or extended), and after
// txlane's own query behind one of its requests (the read of txlane.unit
// set unseen by set_config).
func TestUnitsRerouteKeepsTheHoldersPortal(t *testing.T) {
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
		t.Run(string(pool.Mode), func(t *testing.T) {
			bed := startUnitProxy(t, "reroute", func(o *proxy.Options) { o.Pool = pool })
			holder, writer := bed.connect(t), bed.connect(t)
			suspendedPortal(t, bed, holder, "SELECT g FROM generate_series(1, 9) g")
			next := 2
			for _, w := range rerouteWriters {
				wantCode(t, w.write(writer, bed.table), "23505") // id 1 is the holder's
				nextRow(t, holder, fmt.Sprint(next))
				next++
			}
			exec(t, writer, bed.insert("u1", "other"))
			nextRow(t, holder, fmt.Sprint(next))
			next++
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := writer.ExecParams(ctx, "INSERT INTO "+bed.table+" (unit, who) VALUES ($1, 'other') /*unit='u1'*/",
				[][]byte{[]byte("u1")}, nil, nil, nil).Read().Err; err != nil {
				t.Fatal(err)
			}
			nextRow(t, holder, fmt.Sprint(next))
			// Its unnamed statement, which the rerouted writes' statements
			// replaced on the server, binds again as the holder defined it.
			if rows, err := rawRows(t, holder, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); err != nil || len(rows) != 9 {
				t.Fatalf("Bind of the holder's unnamed statement: %q, %v", rows, err)
			}
			exec(t, holder, "COMMIT")
			if got := bed.count(t, "who = 'other'"); got != "2" {
				t.Fatalf("%s rerouted rows committed, want 2", got)
			}
		})
	}
	t.Run("txlane's read of a unit set unseen", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder := bed.connect(t)
		suspendedPortal(t, bed, holder, "SELECT g FROM generate_series(1, 9) g, pg_catalog.set_config('txlane.unit', 'u1', true)")
		nextRow(t, holder, "2")
		exec(t, holder, "COMMIT")
	})
}

// TestUnitsRerouteSetsNothingInTheHolder: a request that may change
// session settings in a way its text does not show (set_config of
// txlane.unit or of another setting, local or not, with a constant or a
// bind parameter, a DO block) is not rerouted into a holder's transaction:
// it would change the holder's session (its unit among it), not the
// writer's. It is refused (25L01), nothing of it is written, and the
// holder's txlane.unit and transaction are as they were.
func TestUnitsRerouteSetsNothingInTheHolder(t *testing.T) {
	bed := startUnitProxy(t, "reroute", nil)
	ins := "INSERT INTO " + bed.table + " (unit, who) VALUES ('u1', 'other') /*unit='u1'*/"
	cases := []struct {
		name  string
		write func(c *pgconn.PgConn) error
	}{
		{"set_config of the unit", func(c *pgconn.PgConn) error {
			return execErr(c, "SELECT set_config('txlane.unit', 'u9', false) /*unit='u1'*/; "+ins)
		}},
		{"local set_config of the unit", func(c *pgconn.PgConn) error {
			return execErr(c, "SELECT set_config('txlane.unit', 'u9', true) /*unit='u1'*/; "+ins)
		}},
		{"set_config of another setting", func(c *pgconn.PgConn) error {
			return execErr(c, "SELECT set_config('search_path', 'pg_catalog', false) /*unit='u1'*/; "+ins)
		}},
		{"a DO block", func(c *pgconn.PgConn) error {
			return execErr(c, "DO $$BEGIN PERFORM set_config('txlane.unit', 'u9', false); END$$ /*unit='u1'*/; "+ins)
		}},
		{"set_config of a bind parameter", func(c *pgconn.PgConn) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return c.ExecParams(ctx, "WITH s AS (SELECT set_config('txlane.unit', $1, false)) INSERT INTO "+bed.table+" (unit, who) SELECT 'u1', 'other' FROM s /*unit='u1'*/",
				[][]byte{[]byte("u9")}, nil, nil, nil).Read().Err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			holder, writer := bed.connect(t), bed.connect(t)
			exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
			wantCode(t, tc.write(writer), proxy.CodeEscapedWrite)
			if holder.TxStatus() != 'T' {
				t.Fatalf("the holder's status is %q, want T", holder.TxStatus())
			}
			if got := scalar(t, holder, "SELECT coalesce(current_setting('txlane.unit', true), '') || '/' || current_setting('search_path')"); got != "/\"$user\", public" {
				t.Fatalf("the holder's txlane.unit/search_path: %q", got)
			}
			exec(t, holder, "COMMIT")
			if got := bed.count(t, "who = 'other'"); got != "0" {
				t.Fatalf("%s rows of the refused write", got)
			}
			pgtestExecDirect(t, "DELETE FROM "+bed.table)
		})
	}
}

// unitSetBeds are the set-ups TestUnitsSetInTheRequest runs in: one
// instance without shared_units, and two with it (holder on instance 2,
// writer on instance 1), in both pool modes. Each returns connect(id) and
// the test table.
func unitSetBeds(t *testing.T, shared bool, pool proxy.PoolOptions) (connect func(id int) *pgconn.PgConn, table string) {
	if shared {
		bed := startInstances(t, 2, "reject", func(_ int, o *proxy.Options) { o.Pool = pool })
		return func(id int) *pgconn.PgConn { return bed.connect(t, id, "") }, bed.table
	}
	bed := startUnitProxy(t, "reject", func(o *proxy.Options) { o.Pool = pool })
	return func(int) *pgconn.PgConn { return bed.connect(t) }, bed.table
}

// TestUnitsSetInTheRequest: a unit set inside the request that writes, by
// set_config with a constant or a bind parameter, carries the request's
// writes (refused while another transaction holds the unit; allowed for
// another unit); set where txlane cannot read it before the write runs (a
// DO block, a computed value), the writes after it are of an unknown unit
// and are refused (25L01) while another transaction holds a unit, with or
// without shared_units, in a simple Query and in a pipelined extended
// request. Nothing refused is written.
func TestUnitsSetInTheRequest(t *testing.T) {
	for _, shared := range []bool{false, true} {
		for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
			t.Run(fmt.Sprintf("shared_units=%v/%s", shared, pool.Mode), func(t *testing.T) {
				connect, table := unitSetBeds(t, shared, pool)
				holder := connect(2)
				exec(t, holder, "BEGIN")
				exec(t, holder, "INSERT INTO "+table+" (unit, who) VALUES ('u4', 'holder') /*unit='u4'*/")
				ins := func(who string) string {
					return "INSERT INTO " + table + " (unit, who) VALUES ('u4', '" + who + "')"
				}
				pipelined := func(c *pgconn.PgConn, set string, args [][]byte, who string) error {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					p := c.StartPipeline(ctx)
					p.SendQueryParams(set, args, nil, nil, nil)
					p.SendQueryParams(ins(who), nil, nil, nil, nil)
					p.Sync()
					var first error
					for {
						r, err := p.GetResults()
						if err != nil {
							if first == nil {
								first = err
							}
							continue
						}
						switch rr := r.(type) {
						case *pgconn.ResultReader:
							if _, err := rr.Close(); err != nil && first == nil {
								first = err
							}
						case *pgconn.PipelineSync:
							if err := p.Close(); err != nil {
								t.Fatal(err)
							}
							return first
						}
					}
				}
				writer := connect(1)
				// Read from the text: the unit held elsewhere.
				wantCode(t, execErr(writer, "SELECT set_config('txlane.unit', 'u4', true); "+ins("simple")), proxy.CodeEscapedWrite)
				wantCode(t, pipelined(writer, "SELECT set_config('txlane.unit', $1, true)", [][]byte{[]byte("u4")}, "param"), proxy.CodeEscapedWrite)
				// Another unit: allowed.
				if err := execErr(writer, "SELECT set_config('txlane.unit', 'u5', true); "+ins("other unit")); err != nil {
					t.Fatalf("write of another unit: %v", err)
				}
				// Not readable before the write runs: refused.
				wantCode(t, execErr(writer, "DO $$BEGIN PERFORM set_config('txlane.unit', 'u4', true); END$$; "+ins("do")), proxy.CodeEscapedWrite)
				wantCode(t, execErr(writer, "SELECT set_config('txlane.unit', 'u' || 4, true); "+ins("computed")), proxy.CodeEscapedWrite)
				wantCode(t, pipelined(writer, "SELECT set_config('txlane.unit', lower($1), true)", [][]byte{[]byte("U4")}, "computed param"), proxy.CodeEscapedWrite)
				exec(t, holder, "COMMIT")
				if got := scalar(t, directConn(t), "SELECT string_agg(who, ',' ORDER BY who) FROM "+table); got != "holder,other unit" {
					t.Fatalf("rows: %s, want the holder's and the other unit's", got)
				}
				if !shared {
					// Nobody holds a unit: the same request runs.
					if err := execErr(writer, "DO $$BEGIN PERFORM set_config('txlane.unit', 'u4', true); END$$; "+ins("free")); err != nil {
						t.Fatalf("with no unit held: %v", err)
					}
				}
			})
		}
	}
}

func pgtestExecDirect(t *testing.T, sql string) {
	t.Helper()
	exec(t, directConn(t), sql)
}

// TestUnitsCheckThenWrite: a write of a unit nobody holds, sent outside a
// transaction, is still running when another connection's transaction
// begins to carry the unit: that transaction waits for the write to end
// (it sees the write's row, committed before it took the unit), or, when
// the write runs past reroute_wait_timeout, its request is refused (25L01)
// and it holds nothing. In both pool modes.
func TestUnitsCheckThenWrite(t *testing.T) {
	for _, pool := range []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}} {
		t.Run(string(pool.Mode)+"/waits", func(t *testing.T) {
			bed := startUnitProxy(t, "reject", func(o *proxy.Options) { o.Pool = pool })
			holder := bed.connect(t)
			done := slowUnitWrite(t, bed, "0.5")
			exec(t, holder, "BEGIN")
			if got := scalar(t, holder, "SELECT count(*) FROM "+bed.table+" WHERE who = 'writer' /*unit='u6'*/"); got != "1" {
				t.Fatalf("the transaction took the unit while the write ran: it sees %s of its rows", got)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			exec(t, holder, "COMMIT")
		})
		t.Run(string(pool.Mode)+"/past the bound", func(t *testing.T) {
			bed := startUnitProxy(t, "reject", func(o *proxy.Options) {
				o.Pool = pool
				o.RerouteWaitTimeout = 100 * time.Millisecond
			})
			holder := bed.connect(t)
			done := slowUnitWrite(t, bed, "1")
			exec(t, holder, "BEGIN")
			wantCode(t, execErr(holder, "SELECT count(*) FROM "+bed.table+" /*unit='u6'*/"), proxy.CodeEscapedWrite)
			exec(t, holder, "ROLLBACK")
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := bed.count(t, "who = 'writer'"); got != "1" {
				t.Fatalf("%s rows of the write, want 1", got)
			}
		})
	}
}

// slowUnitWrite starts an autocommit write of unit u6 on a connection of
// its own that sleeps sleep seconds before it inserts, and returns once
// the server runs it.
func slowUnitWrite(t *testing.T, bed *unitBed, sleep string) chan error {
	t.Helper()
	writer := bed.connect(t)
	done := make(chan error, 1)
	go func() {
		done <- execErr(writer, "INSERT INTO "+bed.table+" (unit, who) SELECT 'u6', 'writer' FROM pg_sleep("+sleep+") /*unit='u6'*/")
	}()
	deadline := time.Now().Add(5 * time.Second)
	direct := directConn(t)
	for scalar(t, direct, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO "+bed.table+"%pg_sleep%' AND state = 'active'") != "1" {
		if time.Now().After(deadline) {
			t.Fatal("the write did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return done
}
