package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
	"github.com/txlane/txlane/proxy/wire"
)

// instanceBed is several txlane instances (IDs 1..n, each the others'
// peer, policy.shared_units on) in front of one database, and a table
// private to the test: uow(id serial, unit text, who text).
type instanceBed struct {
	inst  []*testProxy
	table string
}

func startInstances(t *testing.T, n int, escape string, mutate func(id int, o *proxy.Options)) *instanceBed {
	t.Helper()
	table := uniqueName("uow")
	pgtest.Exec(t, fmt.Sprintf("CREATE TABLE %[1]s (id serial PRIMARY KEY, unit text, who text); GRANT ALL ON %[1]s TO PUBLIC", table))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+table) })
	lns := make([]net.Listener, n)
	peers := make([]proxy.Peer, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		peers[i] = proxy.Peer{ID: i + 1, Addr: ln.Addr().String()}
	}
	direct := pgtest.DSN(t)
	bed := &instanceBed{table: table}
	for i, ln := range lns {
		cfg, err := pgconn.ParseConfig(direct)
		if err != nil {
			t.Fatal(err)
		}
		others := append(append([]proxy.Peer{}, peers[:i]...), peers[i+1:]...)
		opts := proxy.Options{Primary: cfg, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
			Instances:          proxy.InstanceOptions{ID: i + 1, Peers: others, SharedUnits: true},
			RerouteWaitTimeout: 2 * time.Second}
		opts.Rules.Escape = escape
		if mutate != nil {
			mutate(i+1, &opts)
		}
		rerouteReadsCatalog(t, &opts)
		srv, err := proxy.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		bed.inst = append(bed.inst, &testProxy{Server: srv, Addr: ln.Addr().String(), Direct: direct})
	}
	return bed
}

// connect opens a connection through instance id (1-based) with
// application_name app.
func (b *instanceBed) connect(t *testing.T, id int, app string) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dsn := b.inst[id-1].DSN(t, "")
	if app != "" {
		dsn += "&application_name=" + app
	}
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect through instance %d: %v", id, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func (b *instanceBed) insert(unit, who string) string {
	return fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('%s', '%s') /*unit='%s'*/", b.table, unit, who, unit)
}

func (b *instanceBed) count(t *testing.T, where string) string {
	t.Helper()
	return scalar(t, directConn(t), "SELECT count(*) FROM "+b.table+" WHERE "+where)
}

// wantHeldElsewhere checks that err is the refusal of a write of unit
// whose holder is a client of instance inst on backend pid with
// application_name app.
func wantHeldElsewhere(t *testing.T, err error, unit string, inst int, pid uint32, app string) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeEscapedWrite {
		t.Fatalf("write of %s: got %v, want SQLSTATE %s", unit, err, proxy.CodeEscapedWrite)
	}
	for _, want := range []string{fmt.Sprintf("txlane instance %d", inst), fmt.Sprintf("backend pid %d", pid), fmt.Sprintf("application_name %q", app)} {
		if !strings.Contains(pgErr.Detail, want) {
			t.Errorf("detail %q lacks %q", pgErr.Detail, want)
		}
	}
	if !strings.Contains(pgErr.Hint, "txlane instance") {
		t.Errorf("hint %q does not say the holder is on another instance", pgErr.Hint)
	}
	return pgErr
}

// waitFree retries a write of the unit on conn until it is let through.
func waitFree(t *testing.T, conn *pgconn.PgConn, sql string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := execErr(conn, sql)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("unit still held 5s later: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSharedUnitsAcrossInstances(t *testing.T) {
	for _, escape := range []string{"reject", "reroute"} {
		t.Run(escape, func(t *testing.T) {
			bed := startInstances(t, 3, escape, nil)
			holder := bed.connect(t, 1, "holder-app")
			local := bed.connect(t, 1, "local")
			exec(t, holder, "BEGIN")
			exec(t, holder, bed.insert("u1", "holder"))
			pid := holder.PID() // txlane's key, not the backend's
			backend := scalar(t, holder, "SELECT pg_backend_pid()")
			_ = pid
			for _, id := range []int{2, 3} {
				w := bed.connect(t, id, "writer")
				wantHeldElsewhere(t, execErr(w, bed.insert("u1", fmt.Sprintf("w%d", id))), "u1", 1, parsePID(t, backend), "holder-app")
				if w.TxStatus() != 'I' {
					t.Errorf("refused writer's status %q", w.TxStatus())
				}
				// Reads carrying the unit pass; other units are free.
				if got := scalar(t, w, "SELECT count(*) FROM "+bed.table+" WHERE unit = 'u1' /*unit='u1'*/"); got != "0" {
					t.Errorf("instance %d sees %s uncommitted rows", id, got)
				}
				exec(t, w, bed.insert("u2", fmt.Sprintf("w%d", id)))
			}
			// A writer on the holder's own instance gets the local rules:
			// a reroute runs in the holder's transaction.
			err := execErr(local, bed.insert("u1", "local"))
			if escape == "reroute" && err != nil {
				t.Fatalf("local reroute: %v", err)
			}
			if escape == "reject" {
				wantCode(t, err, proxy.CodeEscapedWrite)
			}
			exec(t, holder, "ROLLBACK")
			if got := bed.count(t, "unit = 'u1'"); got != "0" {
				t.Fatalf("%s rows of u1 after the holder rolled back", got)
			}
			// Released everywhere: the write runs on its own.
			w := bed.connect(t, 3, "writer")
			exec(t, w, bed.insert("u1", "after"))
			if got := bed.count(t, "unit = 'u1'"); got != "1" {
				t.Fatalf("%s rows of u1", got)
			}
			if n := bed.inst[1].Server.Metrics().Escapes("reject", bed.table); n != 1 {
				t.Errorf("instance 2 counted %v rejections", n)
			}
		})
	}
}

func parsePID(t *testing.T, s string) uint32 {
	t.Helper()
	var pid uint32
	if _, err := fmt.Sscan(s, &pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// unitLocks counts the advisory locks of txlane's unit namespace that
// backend pid holds (shared: a holder's), read directly.
func unitLocks(t *testing.T, pid string) string {
	t.Helper()
	return scalar(t, directConn(t), unitLocksSQL(pid))
}

// unitLocksSQL counts the unit locks backend pid holds (see unitLocks).
func unitLocksSQL(pid string) string {
	return "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1954049134 AND objsubid = 2 AND mode = 'ShareLock' AND granted AND pid = " + pid
}

// waitNoUnitLocks waits until backend pid holds no unit lock.
func waitNoUnitLocks(t *testing.T, pid string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for unitLocks(t, pid) != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("backend %s still holds unit locks 5s later", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSharedUnitsRelease: the holder's lock goes exactly when its
// transaction does: COMMIT, ROLLBACK, the backend's death, the client's
// disconnect; nothing the holder did commits unless it committed.
func TestSharedUnitsRelease(t *testing.T) {
	bed := startInstances(t, 2, "reject", nil)
	ends := []struct {
		name      string
		end       func(t *testing.T, holder *pgconn.PgConn, backend, unit string)
		committed string
	}{
		{"commit", func(t *testing.T, h *pgconn.PgConn, _, _ string) { exec(t, h, "COMMIT") }, "1"},
		{"rollback", func(t *testing.T, h *pgconn.PgConn, _, _ string) { exec(t, h, "ROLLBACK") }, "0"},
		{"error outside a savepoint", func(t *testing.T, h *pgconn.PgConn, _, unit string) {
			// The server aborts the transaction at the error (it can only
			// roll back now) and drops its locks there; the ROLLBACK that
			// follows changes nothing more.
			wantCode(t, execErr(h, "SELECT 1/0"), "22012")
			waitFree(t, bed.connect(t, 2, "w"), bed.insert(unit, "w-after-error"))
			exec(t, h, "ROLLBACK")
		}, "0"},
		{"backend terminated", func(t *testing.T, _ *pgconn.PgConn, backend, _ string) {
			exec(t, directConn(t), "SELECT pg_terminate_backend("+backend+")")
		}, "0"},
		{"client disconnects", func(t *testing.T, h *pgconn.PgConn, _, _ string) { vanish(t, h) }, "0"},
	}
	for i, e := range ends {
		t.Run(e.name, func(t *testing.T) {
			unit := fmt.Sprintf("rel%d", i)
			holder := bed.connect(t, 1, "holder")
			writer := bed.connect(t, 2, "writer")
			backend := scalar(t, holder, "SELECT pg_backend_pid()")
			exec(t, holder, "BEGIN")
			exec(t, holder, bed.insert(unit, "holder"))
			if n := unitLocks(t, backend); n != "1" {
				t.Fatalf("holder's backend holds %s unit locks, want 1", n)
			}
			wantCode(t, execErr(writer, bed.insert(unit, "writer")), proxy.CodeEscapedWrite)
			e.end(t, holder, backend, unit)
			waitFree(t, writer, bed.insert(unit, "writer"))
			if got := bed.count(t, "unit = '"+unit+"' AND who = 'holder'"); got != e.committed {
				t.Errorf("%s of the holder's rows committed, want %s", got, e.committed)
			}
			if e.name == "commit" || e.name == "rollback" {
				// The lock went with the transaction, not later.
				if n := unitLocks(t, backend); n != "0" {
					t.Errorf("holder's backend still holds %s unit locks", n)
				}
			}
		})
	}
}

// TestSharedUnitsSavepoints: a transaction holds its unit until it ends,
// whatever ROLLBACK TO SAVEPOINT it runs, whether the unit's lock was
// taken before the savepoint or inside it (where a transaction-level
// advisory lock would go with the savepoint: txlane takes it at session
// level there), and when BEGIN and the unit's first statement come in one
// request.
func TestSharedUnitsSavepoints(t *testing.T) {
	bed := startInstances(t, 2, "reject", nil)
	cases := []struct {
		name string
		// steps run on the holder (through instance 1); "held" checks that
		// a write of the unit through instance 2 is refused.
		steps     []string
		committed string // the holder's rows that commit
	}{
		{"lock before the savepoint", []string{"BEGIN", "INSERT", "SAVEPOINT a", "INSERT", "held", "ROLLBACK TO a", "held",
			"INSERT", "ROLLBACK TO SAVEPOINT a", "held", "COMMIT"}, "1"},
		{"savepoint before the lock", []string{"BEGIN", "SAVEPOINT a", "INSERT", "held", "ROLLBACK TO a", "held",
			"SAVEPOINT b", "ROLLBACK TO a", "held", "INSERT", "RELEASE a", "held", "COMMIT"}, "1"},
		{"savepoint before the lock, rolled back", []string{"BEGIN", "SAVEPOINT a", "INSERT", "ROLLBACK TO a", "held", "ROLLBACK"}, "0"},
		{"error inside a savepoint", []string{"BEGIN", "SAVEPOINT a", "INSERT", "SELECT 1/0", "held", "ROLLBACK TO a", "held", "INSERT", "COMMIT"}, "1"},
		{"error inside a savepoint after the lock", []string{"BEGIN", "INSERT", "SAVEPOINT b", "SELECT 1/0", "held", "ROLLBACK TO b", "held", "COMMIT"}, "1"},
		{"one request", []string{"BEGIN; SAVEPOINT a; INSERT; ROLLBACK TO a", "held", "INSERT", "held", "COMMIT"}, "1"},
		{"one request with the commit", []string{"BEGIN; INSERT; SAVEPOINT a; INSERT; ROLLBACK TO a; COMMIT"}, "1"},
		{"nested savepoints", []string{"BEGIN", "SAVEPOINT a", "SAVEPOINT b", "INSERT", "RELEASE b", "held", "ROLLBACK TO a", "held", "ROLLBACK"}, "0"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			unit := fmt.Sprintf("sp%d", i)
			holder := bed.connect(t, 1, "holder")
			writer := bed.connect(t, 2, "writer")
			for _, st := range c.steps {
				st = strings.ReplaceAll(st, "INSERT", bed.insert(unit, "holder"))
				switch {
				case st == "held":
					wantCode(t, execErr(writer, bed.insert(unit, "writer")), proxy.CodeEscapedWrite)
				case strings.Contains(st, "1/0"):
					wantCode(t, execErr(holder, st), "22012")
				default:
					exec(t, holder, st)
				}
			}
			waitFree(t, writer, bed.insert(unit, "writer"))
			if got := bed.count(t, "unit = '"+unit+"' AND who = 'holder'"); got != c.committed {
				t.Errorf("%s of the holder's rows committed, want %s", got, c.committed)
			}
			if got := bed.count(t, "unit = '"+unit+"' AND who = 'writer'"); got != "1" {
				t.Errorf("%s of the writer's rows committed, want the one after the holder's end", got)
			}
		})
	}
}

// TestSharedUnitsBeginInRequest: a request that begins the transaction and
// runs the unit's first statement (one simple Query, or one extended batch
// as JDBC sends BEGIN with the first statement) holds the unit from that
// statement on; one that also commits leaves nothing held.
func TestSharedUnitsBeginInRequest(t *testing.T) {
	bed := startInstances(t, 2, "reject", nil)
	writer := bed.connect(t, 2, "writer")
	t.Run("simple", func(t *testing.T) {
		holder := bed.connect(t, 1, "holder")
		backend := scalar(t, holder, "SELECT pg_backend_pid()")
		exec(t, holder, "BEGIN; "+bed.insert("b1", "holder"))
		wantCode(t, execErr(writer, bed.insert("b1", "writer")), proxy.CodeEscapedWrite)
		exec(t, holder, "ROLLBACK")
		// Taken before BEGIN (at session level), turned into the
		// transaction's lock once the request was answered (or dropped
		// after the ROLLBACK, had the client been quicker): gone.
		waitNoUnitLocks(t, backend)
		exec(t, writer, bed.insert("b1", "writer"))
	})
	t.Run("extended", func(t *testing.T) {
		holder := bed.connect(t, 1, "holder")
		if err := rawRequest(holder, &pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: bed.insert("b2", "holder")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); err != nil {
			t.Fatal(err)
		}
		wantCode(t, execErr(writer, bed.insert("b2", "writer")), proxy.CodeEscapedWrite)
		exec(t, holder, "COMMIT")
		waitFree(t, writer, bed.insert("b2", "writer"))
	})
	t.Run("implicit transaction of several statements", func(t *testing.T) {
		holder := bed.connect(t, 1, "holder")
		backend := scalar(t, holder, "SELECT pg_backend_pid()")
		exec(t, holder, bed.insert("b3", "holder")+"; "+bed.insert("b3", "holder"))
		waitFree(t, writer, bed.insert("b3", "writer"))
		waitNoUnitLocks(t, backend)
	})
	if got := bed.count(t, "who = 'holder'"); got != "3" {
		t.Errorf("%s holder rows, want 3 (b2 once, b3 twice)", got)
	}
}

// TestSharedUnitsFailedLockCall: a lock call the server refuses (here its
// role may not execute the lock functions) leaves the client's transaction
// as it was: the statement runs, the transaction commits. A write whose
// unit's lock cannot be checked is refused (fail safe).
func TestSharedUnitsFailedLockCall(t *testing.T) {
	bed := startInstances(t, 2, "reject", nil)
	role := uniqueName("nolock")
	fns := "pg_catalog.pg_try_advisory_xact_lock(integer, integer), pg_catalog.pg_try_advisory_lock(integer, integer), pg_catalog.pg_try_advisory_xact_lock_shared(integer, integer), pg_catalog.pg_try_advisory_lock_shared(integer, integer)"
	pgtest.Exec(t, "CREATE ROLE "+role+" LOGIN; GRANT USAGE ON SEQUENCE "+bed.table+"_id_seq TO "+role+"; REVOKE EXECUTE ON FUNCTION "+fns+" FROM PUBLIC")
	t.Cleanup(func() {
		pgtest.Exec(t, "GRANT EXECUTE ON FUNCTION "+fns+" TO PUBLIC; DROP OWNED BY "+role+"; DROP ROLE IF EXISTS "+role)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	holder, err := pgconn.Connect(ctx, bed.inst[0].DSN(t, role))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	read := "SELECT count(*) FROM " + bed.table + " /*unit='UNIT'*/"
	exec(t, holder, "BEGIN")
	exec(t, holder, strings.ReplaceAll(read, "UNIT", "f1")) // in a transaction: the lock call runs in a savepoint
	if holder.TxStatus() != 'T' {
		t.Fatalf("holder's transaction status %q after a failed lock call, want T", holder.TxStatus())
	}
	exec(t, holder, strings.ReplaceAll(read, "UNIT", "f1"))
	exec(t, holder, "COMMIT")
	exec(t, holder, "BEGIN; "+strings.ReplaceAll(read, "UNIT", "f2")) // before the block: at session level
	exec(t, holder, "COMMIT")
	// A write is checked first (another backend may hold its unit too):
	// when the check cannot run, it is refused, in a transaction or not.
	pgErr := wantHeldElsewhereCode(t, execErr(holder, bed.insert("f3", "holder")))
	if !strings.Contains(pgErr.Detail, "could not rule out") {
		t.Errorf("detail %q", pgErr.Detail)
	}
	exec(t, holder, "BEGIN")
	wantHeldElsewhereCode(t, execErr(holder, bed.insert("f4", "holder")))
	exec(t, holder, "ROLLBACK")
	if got := bed.count(t, "who = 'holder'"); got != "0" {
		t.Fatalf("%s rows committed, want 0", got)
	}
}

// TestSharedUnitsTransactionPool: in pool_mode transaction the holder's
// transaction is the backend serving it; the lock goes with the
// transaction, before the backend serves another client.
func TestSharedUnitsTransactionPool(t *testing.T) {
	bed := startInstances(t, 2, "reject", transactionPoolOn(t, 1, 1))
	holder := bed.connect(t, 1, "holder")
	other := bed.connect(t, 1, "holder") // the same pool: same startup parameters
	writer := bed.connect(t, 2, "writer")
	requests := []struct{ name, begin string }{
		{"BEGIN, then the statement", "BEGIN"},
		{"BEGIN and the statement in one request", ""},
	}
	for i, r := range requests {
		t.Run(r.name, func(t *testing.T) {
			unit := fmt.Sprintf("tp%d", i)
			if r.begin != "" {
				exec(t, holder, r.begin)
				exec(t, holder, bed.insert(unit, "holder"))
			} else {
				exec(t, holder, "BEGIN; "+bed.insert(unit, "holder"))
			}
			backend := scalar(t, holder, "SELECT pg_backend_pid()")
			wantCode(t, execErr(writer, bed.insert(unit, "writer")), proxy.CodeEscapedWrite)
			exec(t, holder, "COMMIT")
			// The pool's one backend serves the other client now, without
			// the holder's lock.
			if got := scalar(t, other, "SELECT pg_backend_pid()"); got != backend {
				t.Fatalf("other client got backend %s, want the pool's one, %s", got, backend)
			}
			if n := unitLocks(t, backend); n != "0" {
				t.Fatalf("the pooled backend holds %s unit locks", n)
			}
			exec(t, writer, bed.insert(unit, "writer"))
		})
	}
	t.Run("implicit transaction of several statements", func(t *testing.T) {
		exec(t, holder, bed.insert("tp9", "holder")+"; "+bed.insert("tp9", "holder"))
		backend := scalar(t, other, "SELECT pg_backend_pid()")
		if n := unitLocks(t, backend); n != "0" {
			t.Fatalf("the pooled backend holds %s unit locks after the request", n)
		}
		exec(t, writer, bed.insert("tp9", "writer"))
	})
}

// sendCancel sends a CancelRequest for (pid, secret) to addr, marked as
// forwarded by another instance with forwarded, and waits for addr to
// close the connection.
func sendCancel(t *testing.T, addr string, pid uint32, secret []byte, forwarded bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(wire.EncodeCancel(pid, secret, forwarded)); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, conn)
}

// running starts sql on conn and returns a channel that gets its error.
func running(conn *pgconn.PgConn, sql string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- execErr(conn, sql) }()
	return done
}

// TestInstancesCancel: a CancelRequest reaches the backend of the client
// whose key it carries whichever instance it is sent to, and no other
// client's; a cancel another instance forwarded is never forwarded again.
func TestInstancesCancel(t *testing.T) {
	bed := startInstances(t, 3, "reject", nil)
	for id := 1; id <= 3; id++ {
		c := bed.connect(t, id, "")
		if got := int(c.PID() >> 21); got != id {
			t.Fatalf("instance %d's key carries instance %d (pid %d)", id, got, c.PID())
		}
	}
	for target := 1; target <= 3; target++ {
		for via := 1; via <= 3; via++ {
			t.Run(fmt.Sprintf("client of %d, cancel sent to %d", target, via), func(t *testing.T) {
				victim := bed.connect(t, target, "victim")
				bystander := bed.connect(t, target%3+1, "bystander")
				slow := running(victim, "SELECT pg_sleep(10)")
				other := running(bystander, "SELECT pg_sleep(0.5)")
				time.Sleep(100 * time.Millisecond) // both running
				sendCancel(t, bed.inst[via-1].Addr, victim.PID(), victim.SecretKey(), false)
				select {
				case err := <-slow:
					wantCode(t, err, "57014")
				case <-time.After(5 * time.Second):
					t.Fatal("the cancel did not reach the victim's backend")
				}
				if err := <-other; err != nil {
					t.Fatalf("bystander's statement: %v", err)
				}
			})
		}
	}
	t.Run("forwarded only once", func(t *testing.T) {
		victim := bed.connect(t, 3, "victim")
		slow := running(victim, "SELECT pg_sleep(1)")
		time.Sleep(100 * time.Millisecond)
		before := bed.inst[1].Server.Metrics().Cancels("dropped")
		// As if instance 1 had forwarded it to instance 2 by mistake:
		// instance 2 drops it rather than pass it on to instance 3.
		sendCancel(t, bed.inst[1].Addr, victim.PID(), victim.SecretKey(), true)
		if err := <-slow; err != nil {
			t.Fatalf("a cancel forwarded to the wrong instance reached the backend: %v", err)
		}
		if n := bed.inst[1].Server.Metrics().Cancels("dropped") - before; n != 1 {
			t.Errorf("instance 2 dropped %v cancels, want 1", n)
		}
		// A key of an instance nobody knows is dropped too.
		sendCancel(t, bed.inst[0].Addr, 9<<21|1, victim.SecretKey(), false)
		if n := bed.inst[0].Server.Metrics().Cancels("dropped"); n != 1 {
			t.Errorf("instance 1 dropped %v cancels, want 1", n)
		}
		if n := bed.inst[0].Server.Metrics().Cancels("peer"); n < 2 {
			t.Errorf("instance 1 forwarded %v cancels to peers, want 2 (one to each)", n)
		}
	})
}

// TestSharedUnitsShowUnits: SHOW UNITS lists the units held on every
// instance, from pg_locks, marking this instance's own (local).
func TestSharedUnitsShowUnits(t *testing.T) {
	bed := startInstances(t, 3, "reject", func(_ int, o *proxy.Options) { o.AdminUsers = []string{pgtest.AppRole} })
	h1 := bed.connect(t, 1, "h1")
	h2 := bed.connect(t, 2, "h2")
	exec(t, h1, "BEGIN; "+bed.insert("s1", "h1"))
	exec(t, h2, "BEGIN; "+bed.insert("s2", "h2"))
	pid2 := scalar(t, h2, "SELECT pg_backend_pid()")
	// Instance 1 saw unit s2 once (a refused write): it can name it.
	wantCode(t, execErr(bed.connect(t, 1, "w"), bed.insert("s2", "w")), proxy.CodeEscapedWrite)
	exec(t, bed.connect(t, 3, "h3"), "BEGIN; "+bed.insert("s3", "h3")+"; COMMIT")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgconn.Connect(ctx, bed.inst[0].adminDSN(t, pgtest.AppRole))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	res := exec(t, admin, "SHOW UNITS")
	cols := map[string]int{}
	for i, f := range res[0].FieldDescriptions {
		cols[f.Name] = i
	}
	got := map[string][]string{}
	for _, r := range res[0].Rows {
		row := make([]string, len(r))
		for i, v := range r {
			row[i] = string(v)
		}
		got[row[cols["unit"]]] = row
	}
	if len(got) != 2 {
		t.Fatalf("SHOW UNITS on instance 1: %q, want s1 and s2", got)
	}
	s1, s2 := got["s1"], got["s2"]
	if s1 == nil || s1[cols["local"]] != "true" || s1[cols["instance"]] != "1" || s1[cols["application_name"]] != "h1" || s1[cols["client_id"]] == "" {
		t.Errorf("s1 (held here): %q", s1)
	}
	if s2 == nil || s2[cols["local"]] != "false" || s2[cols["instance"]] != "2" || s2[cols["remote_pid"]] != pid2 || s2[cols["application_name"]] != "h2" || s2[cols["client_id"]] != "" {
		t.Errorf("s2 (held on instance 2): %q", s2)
	}
	// Instance 3 never saw s1 or s2: it lists them by key.
	units, err := bed.inst[2].Server.SharedUnits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != 2 || units[0].Unit != "" || units[0].Local {
		t.Fatalf("instance 3's units: %+v", units)
	}
	exec(t, h1, "ROLLBACK")
	exec(t, h2, "ROLLBACK")
}

// TestSharedUnitsRandomized is TestUnitsRandomized with its workers spread
// over three instances: each unit's holder and writer on random instances,
// checked against the model (a writer on the holder's instance gets the
// local rules; on another it is refused, reroute or not).
func TestSharedUnitsRandomized(t *testing.T) {
	for _, escape := range []string{"reject", "reroute"} {
		t.Run(escape, func(t *testing.T) {
			bed := startInstances(t, 3, escape, nil)
			runUnitModel(t, escape, bed.table, func(rng *rand.Rand) (string, string, bool) {
				h, w := rng.Intn(3), rng.Intn(3)
				return bed.inst[h].DSN(t, ""), bed.inst[w].DSN(t, ""), h == w
			})
		})
	}
}

// TestSharedUnitsTransactionStart: a unit on BEGIN holds it from there (the
// lock is taken before the block opens); txlane's lock calls never take
// the transaction's snapshot before the client sets its isolation level.
func TestSharedUnitsTransactionStart(t *testing.T) {
	bed := startInstances(t, 2, "reject", nil)
	writer := bed.connect(t, 2, "writer")
	cases := []struct {
		name  string
		steps []string
	}{
		{"unit on BEGIN", []string{"BEGIN /*unit='UNIT'*/", "held", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE /*unit='UNIT'*/", "INSERT", "held"}},
		{"unit set first", []string{"BEGIN", "SET LOCAL txlane.unit = 'UNIT'", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "INSERT", "held"}},
		// The one case where the lock follows the statement (a window of one
		// round trip, README): inside the block, before its snapshot.
		{"isolation and the statement in one request", []string{"BEGIN", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; INSERT", "held soon"}},
		{"all in one request", []string{"BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; INSERT", "held"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			unit := fmt.Sprintf("ts%d", i)
			holder := bed.connect(t, 1, "holder")
			for _, st := range c.steps {
				st = strings.ReplaceAll(strings.ReplaceAll(st, "INSERT", bed.insert(unit, "holder")), "UNIT", unit)
				switch st {
				case "held":
					wantCode(t, execErr(writer, bed.insert(unit, "writer")), proxy.CodeEscapedWrite)
					continue
				case "held soon":
					deadline := time.Now().Add(5 * time.Second)
					for execErr(writer, "DELETE FROM "+bed.table+" WHERE false /*unit='"+unit+"'*/") == nil {
						if time.Now().After(deadline) {
							t.Fatal("the unit's lock was not taken after the request")
						}
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				exec(t, holder, st)
			}
			if got := scalar(t, holder, "SHOW transaction_isolation"); got != "serializable" {
				t.Errorf("isolation %q, want serializable", got)
			}
			exec(t, holder, "COMMIT")
			waitFree(t, writer, bed.insert(unit, "writer"))
			if got := bed.count(t, "unit = '"+unit+"' AND who = 'holder'"); got != "1" {
				t.Errorf("%s of the holder's rows committed, want 1", got)
			}
		})
	}
}

// TestSharedUnitsPartlySent: a write whose unit first appears in a part of
// a request sent after an earlier part (a Flush before Sync) is refused:
// the unit's lock could not be taken before the earlier part ran, and
// without it the write might escape another instance's transaction.
func TestSharedUnitsPartlySent(t *testing.T) {
	bed := startInstances(t, 2, "reject", nil)
	c := bed.connect(t, 1, "pipeline")
	err := rawRequest(c, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{},
		&pgproto3.Parse{Query: bed.insert("p1", "late")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	pgErr := wantHeldElsewhereCode(t, err)
	if !strings.Contains(pgErr.Message, "could not be checked") {
		t.Errorf("message %q", pgErr.Message)
	}
	// The unit in the first part: checked before anything is sent.
	if err := rawRequest(c, &pgproto3.Parse{Query: bed.insert("p2", "early")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{},
		&pgproto3.Parse{Query: bed.insert("p2", "early")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); err != nil {
		t.Fatal(err)
	}
	if got := bed.count(t, "true"); got != "2" {
		t.Fatalf("%s rows, want the two of p2", got)
	}
}

func wantHeldElsewhereCode(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeEscapedWrite {
		t.Fatalf("got %v, want SQLSTATE %s", err, proxy.CodeEscapedWrite)
	}
	return pgErr
}
