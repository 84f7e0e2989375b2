package proxy_test

// Writes PostgreSQL runs at a transaction's end (docs/semantics.md, "Units
// of work"; README "Units of work"): a cursor WITH HOLD whose query writes
// runs it at COMMIT, and a deferred constraint trigger fires at COMMIT or at
// SET CONSTRAINTS ... IMMEDIATE. Those writes arrive with that statement, so
// a COMMIT carrying a unit another transaction holds is refused (25L01) when
// the writer's transaction has such work pending, and commits as before when
// it has none. Each shape runs in both pool modes against PostgreSQL.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// endWorkBed is an escapeBed with a volatile function wf that inserts a row
// (who = 'hidden') into the uow table, and a table dtab whose DEFERRABLE
// INITIALLY DEFERRED constraint trigger inserts one too.
type endWorkBed struct {
	*escapeBed
	wf, dtab string
}

func startEndWorkBed(t *testing.T, pool proxy.PoolOptions, escape string) *endWorkBed {
	t.Helper()
	wf, dtab := uniqueName("ewf"), uniqueName("edtab")
	// The objects exist before txlane starts, so its catalog knows them
	// (the uow table has no trigger: its writes queue nothing).
	uow := uniqueName("ewuow")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[3]s (id serial PRIMARY KEY, unit text, who text);
GRANT ALL ON %[3]s TO PUBLIC; GRANT ALL ON SEQUENCE %[3]s_id_seq TO PUBLIC;
CREATE FUNCTION %[1]s(x int) RETURNS boolean LANGUAGE plpgsql VOLATILE
  AS $$BEGIN INSERT INTO %[3]s (unit, who) VALUES ('u1', 'hidden'); RETURN true; END$$;
CREATE TABLE %[2]s (a int); GRANT ALL ON %[2]s TO PUBLIC;
CREATE FUNCTION %[2]s_fn() RETURNS trigger LANGUAGE plpgsql
  AS $$BEGIN INSERT INTO %[3]s (unit, who) VALUES ('u1', 'hidden'); RETURN NULL; END$$;
CREATE CONSTRAINT TRIGGER %[2]s_trg AFTER INSERT ON %[2]s DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION %[2]s_fn()`, wf, dtab, uow))
	t.Cleanup(func() {
		pgtest.Exec(t, fmt.Sprintf("DROP TABLE IF EXISTS %[2]s, %[3]s; DROP FUNCTION IF EXISTS %[1]s(int); DROP FUNCTION IF EXISTS %[2]s_fn()", wf, dtab, uow))
	})
	b := startEscapeBed(t, func(o *proxy.Options) { o.Pool, o.Rules.Escape = pool, escape })
	b.uow = uow
	return &endWorkBed{escapeBed: b, wf: wf, dtab: dtab}
}

// holdRead opens a transaction on a new connection that holds u1 by a read.
func (b *endWorkBed) holdRead(t *testing.T) *pgconn.PgConn {
	t.Helper()
	h := b.connect(t)
	exec(t, h, "BEGIN")
	exec(t, h, "SELECT 1 /*unit='u1'*/")
	waitFor(t, func() bool { return len(b.Units()) >= 1 }, "the holder to hold u1")
	return h
}

// commitWhileHeld commits w's transaction carrying u1 while another
// connection holds u1, which must succeed; the holder then rolls back.
func (b *endWorkBed) commitWhileHeld(t *testing.T, w *pgconn.PgConn) {
	t.Helper()
	h := b.holdRead(t)
	if err := escapeErr(w, "COMMIT /*unit='u1'*/"); err != nil {
		t.Fatalf("COMMIT carrying u1 while u1 is held: %v", err)
	}
	exec(t, h, "ROLLBACK")
}

var endWorkPools = []proxy.PoolOptions{{Mode: proxy.PoolSession}, {Mode: proxy.PoolTransaction, Size: 4}}

// TestEndWorkEscapes: every shape of the adversarial review (and END,
// COMMIT AND CHAIN, PREPARE TRANSACTION, an extended-protocol COMMIT): the
// writer queued end work before the holder took u1, then ends its
// transaction carrying u1. The end is refused with 25L01 (the message
// names the tables written at the transaction's end), under
// escape: reroute too (a transaction's end cannot move), the writer's
// transaction is left failed (its ROLLBACK discards the work), and after the
// holder rolls back no row of the hidden writes exists.
func TestEndWorkEscapes(t *testing.T) {
	type shape struct {
		name   string
		before []string // the writer, before the holder holds u1
		after  []string // the writer, after: all but the last succeed
		end    func(w *pgconn.PgConn) error
	}
	hold := func(b *endWorkBed) string {
		return fmt.Sprintf("DECLARE h CURSOR WITH HOLD FOR SELECT %s(g) FROM generate_series(1, 3) g", b.wf)
	}
	ins := func(b *endWorkBed) string { return "INSERT INTO " + b.dtab + " VALUES (1)" }
	simple := func(sql string) func(*pgconn.PgConn) error {
		return func(w *pgconn.PgConn) error { return escapeErr(w, sql) }
	}
	shapes := func(b *endWorkBed) []shape {
		return []shape{
			{"hold cursor, COMMIT tagged", []string{"BEGIN", hold(b)}, nil, simple("COMMIT /*unit='u1'*/")},
			{"hold cursor, END tagged", []string{"BEGIN", hold(b)}, nil, simple("END /*unit='u1'*/")},
			{"hold cursor, COMMIT AND CHAIN tagged", []string{"BEGIN", hold(b)}, nil, simple("COMMIT AND CHAIN /*unit='u1'*/")},
			{"hold cursor, SET LOCAL unit then COMMIT", []string{"BEGIN", hold(b)}, []string{"SET LOCAL txlane.unit = 'u1'"}, simple("COMMIT")},
			{"session unit, hold cursor, COMMIT", []string{"SET txlane.unit = 'u1'", "BEGIN", hold(b)}, nil, simple("COMMIT")},
			{"hold cursor, PREPARE TRANSACTION tagged", []string{"BEGIN", hold(b)}, nil, simple("PREPARE TRANSACTION 'ew' /*unit='u1'*/")},
			{"deferred trigger, COMMIT tagged", []string{"BEGIN", ins(b)}, nil, simple("COMMIT /*unit='u1'*/")},
			{"deferred trigger, SET CONSTRAINTS ALL IMMEDIATE tagged", []string{"BEGIN", ins(b)}, nil, simple("SET CONSTRAINTS ALL IMMEDIATE /*unit='u1'*/")},
			{"deferred trigger, SET LOCAL unit then COMMIT", []string{"BEGIN", ins(b)}, []string{"SET LOCAL txlane.unit = 'u1'"}, simple("COMMIT")},
			{"deferred trigger, PREPARE TRANSACTION tagged", []string{"BEGIN", ins(b)}, nil, simple("PREPARE TRANSACTION 'ew' /*unit='u1'*/")},
			{"deferred trigger, extended COMMIT tagged", []string{"BEGIN", ins(b)}, nil, func(w *pgconn.PgConn) error {
				r := newPrepConn(t, w).run(pParse("", "COMMIT /*unit='u1'*/"), pBind(""), pExecute(), pSync())
				if len(r.errs) == 0 {
					return nil
				}
				code, msg, _ := strings.Cut(r.errs[0], ": ")
				return &pgconn.PgError{Code: code, Message: msg}
			}},
			{"deferred trigger, SAVEPOINT and RELEASE, COMMIT tagged", []string{"BEGIN", "SAVEPOINT s", ins(b), "RELEASE SAVEPOINT s"}, nil, simple("COMMIT /*unit='u1'*/")},
		}
	}
	for _, pool := range endWorkPools {
		for _, escape := range []string{"reject", "reroute"} {
			t.Run(string(pool.Mode)+"/"+escape, func(t *testing.T) {
				b := startEndWorkBed(t, pool, escape)
				for _, sh := range shapes(b) {
					t.Run(sh.name, func(t *testing.T) {
						pgtest.Exec(t, "TRUNCATE "+b.uow)
						w := b.connect(t)
						for _, q := range sh.before {
							exec(t, w, q)
						}
						h := b.holdRead(t)
						for _, q := range sh.after {
							exec(t, w, q)
						}
						err := sh.end(w)
						got := sqlstate(err)
						if w.TxStatus() != 'I' {
							exec(t, w, "ROLLBACK")
						}
						exec(t, h, "ROLLBACK")
						if got != proxy.CodeEscapedWrite {
							t.Errorf("end of the writer's transaction: got %s, want SQLSTATE %s", got, proxy.CodeEscapedWrite)
						} else if !strings.Contains(err.Error(), "written at the transaction's end") {
							t.Errorf("refusal %q does not say the writes are the transaction's end's", err)
						}
						if n := b.count(t, "who = 'hidden'"); n != "0" {
							t.Errorf("%s row(s) written at the end of the writer's transaction survived the holder's rollback", n)
						}
					})
				}
			})
		}
	}
}

// TestEndWorkNothingPending: a transaction whose writes queue nothing for
// its end (a table without triggers, a cursor WITH HOLD over a plain read,
// a cursor WITH HOLD declared and materialized by an earlier transaction)
// commits carrying u1 while another transaction holds u1: its writes were
// checked when they arrived, before anyone held u1, and its COMMIT writes
// nothing more. Also COMMIT PREPARED of a transaction prepared before runs
// nothing new (PREPARE TRANSACTION ran its end work): with prepared
// transactions off it is the server's error, not txlane's refusal.
func TestEndWorkNothingPending(t *testing.T) {
	for _, pool := range endWorkPools {
		t.Run(string(pool.Mode), func(t *testing.T) {
			b := startEndWorkBed(t, pool, "reject")
			pgtest.Exec(t, "TRUNCATE "+b.uow)
			w := b.connect(t)
			// An earlier transaction's cursor WITH HOLD is materialized by now.
			exec(t, w, fmt.Sprintf("BEGIN; DECLARE old CURSOR WITH HOLD FOR SELECT %s(1); COMMIT", b.wf))
			exec(t, w, "BEGIN")
			exec(t, w, b.ins("u1", "writer"))
			exec(t, w, "DECLARE r CURSOR WITH HOLD FOR SELECT id FROM "+b.uow)
			b.commitWhileHeld(t, w)
			if n := b.count(t, "who = 'writer'"); n != "1" {
				t.Errorf("the writer's row: %s, want 1 (committed)", n)
			}
			// The deferred trigger's work of a transaction that rolled back
			// is gone with it: the next transaction commits freely.
			exec(t, w, "BEGIN")
			exec(t, w, "INSERT INTO "+b.dtab+" VALUES (1)")
			exec(t, w, "ROLLBACK")
			exec(t, w, "BEGIN")
			b.commitWhileHeld(t, w)
			h := b.holdRead(t)
			if got := sqlstate(escapeErr(w, "COMMIT PREPARED 'nosuch' /*unit='u1'*/")); got == proxy.CodeEscapedWrite {
				t.Errorf("COMMIT PREPARED refused by txlane (%s); it runs nothing of this transaction", got)
			}
			exec(t, h, "ROLLBACK")
		})
	}
}

// TestEndWorkSharedUnits: with policy.shared_units, a transaction's end
// that fires a deferred trigger is checked against the holders of other
// instances like any write: the writer on instance 2 queued the trigger's
// work before the holder on instance 1 took u1; its COMMIT carrying u1 is
// refused, and nothing of the trigger survives the holder's rollback.
func TestEndWorkSharedUnits(t *testing.T) {
	bed := startInstances(t, 2, "reject", nil)
	dtab := uniqueName("edtab")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (a int); GRANT ALL ON %[1]s TO PUBLIC;
CREATE FUNCTION %[1]s_fn() RETURNS trigger LANGUAGE plpgsql
  AS $$BEGIN INSERT INTO %[2]s (unit, who) VALUES ('u1', 'hidden'); RETURN NULL; END$$;
CREATE CONSTRAINT TRIGGER %[1]s_trg AFTER INSERT ON %[1]s DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION %[1]s_fn()`, dtab, bed.table))
	t.Cleanup(func() {
		pgtest.Exec(t, fmt.Sprintf("DROP TABLE IF EXISTS %[1]s; DROP FUNCTION IF EXISTS %[1]s_fn()", dtab))
	})
	w := bed.connect(t, 2, "writer")
	exec(t, w, "BEGIN")
	exec(t, w, "INSERT INTO "+dtab+" VALUES (1)")
	h := bed.connect(t, 1, "holder")
	exec(t, h, "BEGIN")
	exec(t, h, "SELECT 1 /*unit='u1'*/")
	if n := unitLocks(t, scalar(t, h, "SELECT pg_backend_pid()")); n != "1" {
		t.Fatalf("the holder holds %s unit locks, want 1", n)
	}
	wantCode(t, execErr(w, "COMMIT /*unit='u1'*/"), proxy.CodeEscapedWrite)
	exec(t, w, "ROLLBACK")
	exec(t, h, "ROLLBACK")
	if n := bed.count(t, "who = 'hidden'"); n != "0" {
		t.Errorf("%s row(s) of the deferred trigger survived the holder's rollback", n)
	}
}

// TestEndWorkLogAllows: under escape: log a transaction's end that runs
// end work of a held unit is let through, as any escaping write: the
// cursor's three rows commit.
func TestEndWorkLogAllows(t *testing.T) {
	b := startEndWorkBed(t, proxy.PoolOptions{Mode: proxy.PoolSession}, "log")
	pgtest.Exec(t, "TRUNCATE "+b.uow)
	w := b.connect(t)
	exec(t, w, "BEGIN")
	exec(t, w, fmt.Sprintf("DECLARE h CURSOR WITH HOLD FOR SELECT %s(g) FROM generate_series(1, 3) g", b.wf))
	b.commitWhileHeld(t, w)
	if n := b.count(t, "who = 'hidden'"); n != "3" {
		t.Errorf("%s rows of the cursor's query, want 3", n)
	}
}
