package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy"
)

// unitBed is a proxy with the given escape action and a table private to the
// test: uow(id serial, unit text, who text).
type unitBed struct {
	*testProxy
	table string
}

func startUnitProxy(t *testing.T, escape string, mutate func(*proxy.Options)) *unitBed {
	t.Helper()
	table := uniqueName("uow")
	pgtest.Exec(t, fmt.Sprintf("CREATE TABLE %[1]s (id serial PRIMARY KEY, unit text, who text); GRANT ALL ON %[1]s TO PUBLIC", table))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+table) })
	p := startProxy(t, func(o *proxy.Options) {
		o.Rules.Escape = escape
		o.RerouteWaitTimeout = 2 * time.Second
		if mutate != nil {
			mutate(o)
		}
	})
	return &unitBed{testProxy: p, table: table}
}

func (u *unitBed) insert(unit, who string) string {
	return fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('%s', '%s') /*unit='%s'*/", u.table, unit, who, unit)
}

func (u *unitBed) count(t *testing.T, where string) string {
	t.Helper()
	return scalar(t, directConn(t), "SELECT count(*) FROM "+u.table+" WHERE "+where)
}

func execErr(conn *pgconn.PgConn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, sql).ReadAll()
	return err
}

func TestUnitsReject(t *testing.T) {
	bed := startUnitProxy(t, "reject", nil)
	holder, other := bed.connect(t), bed.connect(t)

	exec(t, holder, "BEGIN")
	exec(t, holder, bed.insert("u1", "holder"))

	err := execErr(other, bed.insert("u1", "other"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeEscapedWrite {
		t.Fatalf("escaping write: got %v, want SQLSTATE %s", err, proxy.CodeEscapedWrite)
	}
	for _, want := range []string{bed.table, `"u1"`} {
		if !strings.Contains(pgErr.Message, want) {
			t.Errorf("message %q lacks %s", pgErr.Message, want)
		}
	}
	if !strings.Contains(pgErr.Detail, "held by client") || !strings.Contains(pgErr.Detail, "since") || pgErr.Hint == "" {
		t.Errorf("detail/hint: %q / %q", pgErr.Detail, pgErr.Hint)
	}
	if other.TxStatus() != 'I' {
		t.Errorf("rejected writer's status %q", other.TxStatus())
	}
	// Reads carrying the unit are never refused; other units are unaffected.
	if got := scalar(t, other, "SELECT count(*) FROM "+bed.table+" /*unit='u1'*/"); got != "0" {
		t.Errorf("other connection sees %s uncommitted rows", got)
	}
	exec(t, other, bed.insert("u2", "other"))
	// The rule is symmetric: a write by the holder's connection is fine.
	exec(t, holder, bed.insert("u1", "holder"))
	exec(t, holder, "ROLLBACK")
	if got := bed.count(t, "unit = 'u1'"); got != "0" {
		t.Fatalf("%s rows of u1 after the holder rolled back", got)
	}
	// Released: now the write runs on its own.
	exec(t, other, bed.insert("u1", "other"))
	if got := bed.count(t, "unit = 'u1'"); got != "1" {
		t.Fatalf("%s rows of u1", got)
	}
	if n := bed.Server.Metrics().Escapes("reject", bed.table); n != 1 {
		t.Errorf("rejections counted: %v", n)
	}
}

func TestUnitsSources(t *testing.T) {
	bed := startUnitProxy(t, "reject", nil)
	tp := func(span string) string {
		return "/*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-" + span + "-01'*/"
	}
	t.Run("traceparent trace-id", func(t *testing.T) {
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN "+tp("00f067aa0ba902b7"))
		exec(t, holder, "SELECT 1 "+tp("00f067aa0ba902b8"))
		err := execErr(other, "DELETE FROM "+bed.table+" "+tp("1111111111111111"))
		wantCode(t, err, proxy.CodeEscapedWrite)
		exec(t, holder, "COMMIT")
		exec(t, other, "DELETE FROM "+bed.table+" "+tp("1111111111111111"))
	})
	t.Run("SET txlane.unit on the writer", func(t *testing.T) {
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u3", "holder"))
		exec(t, other, "SET txlane.unit = 'u3'")
		err := execErr(other, "INSERT INTO "+bed.table+" (unit) VALUES ('x')")
		wantCode(t, err, proxy.CodeEscapedWrite)
		exec(t, other, "RESET txlane.unit")
		exec(t, other, "INSERT INTO "+bed.table+" (unit) VALUES ('x')")
		exec(t, holder, "ROLLBACK")
	})
	t.Run("SET LOCAL txlane.unit on the holder", func(t *testing.T) {
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN")
		exec(t, holder, "SET LOCAL txlane.unit = 'u4'")
		exec(t, holder, "INSERT INTO "+bed.table+" (unit) VALUES ('u4')")
		wantCode(t, execErr(other, bed.insert("u4", "other")), proxy.CodeEscapedWrite)
		exec(t, holder, "COMMIT")
		exec(t, other, bed.insert("u4", "other"))
		// SET LOCAL ended with the transaction: the holder's next write has no unit.
		exec(t, holder, "BEGIN; INSERT INTO "+bed.table+" (unit) VALUES ('plain')")
		exec(t, other, bed.insert("u4", "other"))
		exec(t, holder, "ROLLBACK")
	})
	t.Run("holder that vanishes releases its unit", func(t *testing.T) {
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u5", "holder"))
		wantCode(t, execErr(other, bed.insert("u5", "other")), proxy.CodeEscapedWrite)
		vanish(t, holder)
		deadline := time.Now().Add(2 * time.Second)
		for execErr(other, bed.insert("u5", "other")) != nil {
			if time.Now().After(deadline) {
				t.Fatal("unit still held 2s after its holder vanished")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got := bed.count(t, "unit = 'u5'"); got != "1" {
			t.Fatalf("%s rows of u5, want only the writer's", got)
		}
	})
	t.Run("extended protocol through pgx", func(t *testing.T) {
		holder := bed.connect(t)
		ctx := context.Background()
		pc, err := pgx.Connect(ctx, bed.DSN(t, ""))
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		exec(t, holder, "BEGIN; "+bed.insert("u6", "holder"))
		_, err = pc.Exec(ctx, "INSERT INTO "+bed.table+" (unit, who) VALUES ($1, $2) /*unit='u6'*/", "u6", "pgx")
		wantCode(t, err, proxy.CodeEscapedWrite)
		// Reads with the unit pass.
		var n int
		if err := pc.QueryRow(ctx, "SELECT count(*) FROM "+bed.table+" WHERE unit = $1 /*unit='u6'*/", "u6").Scan(&n); err != nil {
			t.Fatal(err)
		}
		exec(t, holder, "ROLLBACK")
	})
}

func TestUnitsLogAndAllow(t *testing.T) {
	for _, action := range []string{"log", "allow"} {
		t.Run(action, func(t *testing.T) {
			bed := startUnitProxy(t, action, nil)
			holder, other := bed.connect(t), bed.connect(t)
			exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
			exec(t, other, bed.insert("u1", "other"))
			exec(t, holder, "ROLLBACK")
			// Allowed: the write escaped and survives the rollback.
			if got := bed.count(t, "unit = 'u1'"); got != "1" {
				t.Fatalf("%s rows", got)
			}
			if n := bed.Server.Metrics().Escapes(action, bed.table); n != 1 {
				t.Fatalf("escapes counted: %v", n)
			}
		})
	}
	t.Run("per-table override", func(t *testing.T) {
		bed := startUnitProxy(t, "reject", func(o *proxy.Options) {
			o.Rules.EscapeOverrides = []policy.EscapeOverride{{Table: "public.uow_*", Escape: "allow"}}
		})
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		exec(t, other, bed.insert("u1", "other"))
		exec(t, holder, "ROLLBACK")
		if n := bed.Server.Metrics().Escapes("allow", bed.table); n != 1 {
			t.Fatalf("allowed escapes counted: %v", n)
		}
	})
}

func TestUnitsReroute(t *testing.T) {
	t.Run("holder commits: exactly one rerouted row", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		res := exec(t, other, bed.insert("u1", "other"))
		if tag := res[0].CommandTag.String(); tag != "INSERT 0 1" {
			t.Fatalf("rerouted write answered %q", tag)
		}
		if other.TxStatus() != 'I' {
			t.Fatalf("writer's status %q, want I", other.TxStatus())
		}
		// Not visible outside the holder's transaction yet...
		if got := bed.count(t, "who = 'other'"); got != "0" {
			t.Fatalf("rerouted write visible before the holder commits: %s", got)
		}
		// ...but reads carrying the unit follow it into the transaction.
		if got := scalar(t, other, "SELECT count(*) FROM "+bed.table+" WHERE unit = 'u1' /*unit='u1'*/"); got != "2" {
			t.Fatalf("read in the unit sees %s rows, want 2", got)
		}
		if got := scalar(t, holder, "SELECT count(*) FROM "+bed.table+" WHERE who = 'other'"); got != "1" {
			t.Fatalf("holder sees %s rerouted rows", got)
		}
		exec(t, holder, "COMMIT")
		if got := bed.count(t, "who = 'other'"); got != "1" {
			t.Fatalf("%s rerouted rows after COMMIT, want exactly 1", got)
		}
		if n := bed.Server.Metrics().Escapes("reroute", bed.table); n != 1 {
			t.Errorf("reroutes counted: %v", n)
		}
	})
	t.Run("holder rolls back: no row", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		exec(t, other, bed.insert("u1", "other"))
		exec(t, holder, "ROLLBACK")
		if got := bed.count(t, "true"); got != "0" {
			t.Fatalf("%s rows after the holder rolled back", got)
		}
	})
	t.Run("writer in its own transaction is rejected", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		exec(t, other, "BEGIN")
		wantCode(t, execErr(other, bed.insert("u1", "other")), proxy.CodeEscapedWrite)
		if other.TxStatus() != 'E' {
			t.Fatalf("writer's transaction status %q, want E (an error inside it)", other.TxStatus())
		}
		exec(t, other, "ROLLBACK")
		exec(t, holder, "COMMIT")
		if got := bed.count(t, "who = 'other'"); got != "0" {
			t.Fatalf("%s rows written by the rejected writer", got)
		}
	})
	t.Run("failed holder transaction is rejected", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		execErr(holder, "SELECT 1/0 /*unit='u1'*/")
		wantCode(t, execErr(other, bed.insert("u1", "other")), proxy.CodeEscapedWrite)
		exec(t, holder, "ROLLBACK")
	})
	t.Run("holder disconnects while the write waits", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		go func() {
			time.Sleep(50 * time.Millisecond)
			vanish(t, holder, "SELECT pg_sleep(0.5) /*unit='u1'*/") // busy, then gone
		}()
		time.Sleep(100 * time.Millisecond)
		err := execErr(other, bed.insert("u1", "other"))
		if err == nil {
			t.Fatal("rerouted write succeeded although its holder vanished")
		}
		time.Sleep(200 * time.Millisecond)
		if got := bed.count(t, "true"); got != "0" {
			t.Fatalf("%s rows after the holder vanished", got)
		}
		if scalar(t, other, "SELECT 1") != "1" {
			t.Fatal("writer's session broken")
		}
	})
	t.Run("holder busy past the wait timeout", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", func(o *proxy.Options) { o.RerouteWaitTimeout = 200 * time.Millisecond })
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		busy := make(chan error, 1)
		go func() { busy <- execErr(holder, "SELECT pg_sleep(1)") }()
		time.Sleep(50 * time.Millisecond)
		wantCode(t, execErr(other, bed.insert("u1", "other")), "57014")
		if err := <-busy; err != nil {
			t.Fatal(err)
		}
		exec(t, holder, "COMMIT")
		if got := bed.count(t, "who = 'other'"); got != "0" {
			t.Fatalf("%s rows from a write that timed out", got)
		}
	})
	t.Run("cancel of a rerouted write reaches the holder's backend, not its transaction", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		go func() {
			time.Sleep(300 * time.Millisecond)
			other.CancelRequest(context.Background())
		}()
		start := time.Now()
		err := execErr(other, "INSERT INTO "+bed.table+" (unit, who) SELECT 'u1', 'slow' FROM pg_sleep(10) /*unit='u1'*/")
		wantCode(t, err, "57014")
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("cancel took %v", took)
		}
		// The write was rolled back to txlane's savepoint: the holder's
		// transaction goes on and commits its own row alone.
		if got := scalar(t, holder, "SELECT 1"); got != "1" {
			t.Fatalf("holder's next statement: %s", got)
		}
		exec(t, holder, "COMMIT")
		if got := bed.count(t, "true"); got != "1" {
			t.Fatalf("%s rows, want the holder's one", got)
		}
		if got := bed.count(t, "who = 'slow'"); got != "0" {
			t.Fatalf("%s rows of the canceled write", got)
		}
	})
	t.Run("rerouted extended-protocol write", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder := bed.connect(t)
		ctx := context.Background()
		pc, err := pgx.Connect(ctx, bed.DSN(t, ""))
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		for i := 0; i < 3; i++ {
			if _, err := pc.Exec(ctx, "INSERT INTO "+bed.table+" (unit, who) VALUES ($1, $2) /*unit='u1'*/", "u1", "pgx"); err != nil {
				t.Fatal(err)
			}
		}
		exec(t, holder, "COMMIT")
		if got := bed.count(t, "who = 'pgx'"); got != "3" {
			t.Fatalf("%s rerouted pgx rows, want 3", got)
		}
		// The holder's own prepared statements still work afterwards.
		if got := scalar(t, holder, "SELECT count(*) FROM "+bed.table); got != "4" {
			t.Fatalf("count %s", got)
		}
	})
	t.Run("write waits for a busy holder, then runs in its transaction", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder, other := bed.connect(t), bed.connect(t)
		exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
		busy := make(chan time.Time, 1)
		go func() {
			exec(t, holder, "SELECT pg_sleep(0.4)")
			busy <- time.Now()
		}()
		time.Sleep(100 * time.Millisecond)
		exec(t, other, bed.insert("u1", "other"))
		answered := time.Now()
		if idle := <-busy; answered.Before(idle.Add(-50 * time.Millisecond)) {
			// The holder's client got its answer after the server sent it;
			// the write cannot have run before the holder's statement ended.
			t.Fatalf("rerouted write answered %v before the holder's statement ended", idle.Sub(answered))
		}
		exec(t, holder, "ROLLBACK")
		if got := bed.count(t, "true"); got != "0" {
			t.Fatalf("%s rows after the holder rolled back: the write ran outside its transaction", got)
		}
	})
	t.Run("holder DISCARD ALL drops the statements rerouted writes prepared", func(t *testing.T) {
		bed := startUnitProxy(t, "reroute", nil)
		holder := bed.connect(t)
		ctx := context.Background()
		pc := pgxConnect(t, bed.DSN(t, ""))
		ins := "INSERT INTO " + bed.table + " (unit, who) VALUES ($1, $2) /*unit='u1'*/"
		for round := 0; round < 2; round++ {
			exec(t, holder, "BEGIN; "+bed.insert("u1", "holder"))
			if _, err := pc.Exec(ctx, ins, "u1", "pgx"); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			exec(t, holder, "COMMIT")
			// The server forgets every prepared statement of the holder's
			// session, the content-named ones of the rerouted write too.
			exec(t, holder, "DISCARD ALL")
		}
		if got := bed.count(t, "who = 'pgx'"); got != "2" {
			t.Fatalf("%s rerouted rows, want 2", got)
		}
	})
}

// TestUnitsRandomized runs many units over several connections with random
// outcomes and checks that the database ends exactly as a model of what
// should have committed says.
func TestUnitsRandomized(t *testing.T) {
	for _, escape := range []string{"reject", "reroute"} {
		t.Run(escape, func(t *testing.T) {
			bed := startUnitProxy(t, escape, nil)
			runUnitModel(t, escape, bed.table, func(*rand.Rand) (string, string, bool) {
				return bed.DSN(t, ""), bed.DSN(t, ""), true
			})
		})
	}
}

// runUnitModel runs units of work on table (uow: unit, who) from several
// workers, each unit a holder's transaction with random writes of a
// writer beside it and a random end, and checks the table against a
// model of what must have committed. pick chooses the DSNs of a unit's
// holder and writer; same says they reach the same txlane instance (a
// write is rerouted only there, and refused from any other).
func runUnitModel(t *testing.T, escape, table string, pick func(*rand.Rand) (holderDSN, writerDSN string, same bool)) {
	insert := func(unit, who string) string {
		return fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('%s', '%s') /*unit='%s'*/", table, unit, who, unit)
	}
	const workers, unitsPerWorker = 4, 12
	var mu sync.Mutex
	want := map[string]int{}            // who -> rows that must exist
	var elsewhere, writes, rerouted int // units with the writer on another instance; the writers' writes, those let through
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w) + 1))
			for i := 0; i < unitsPerWorker; i++ {
				unit := fmt.Sprintf("w%d-u%d", w, i)
				hdsn, wdsn, same := pick(rng)
				holder, err := pgconn.Connect(context.Background(), hdsn)
				if err != nil {
					t.Error(err)
					return
				}
				writer, err := pgconn.Connect(context.Background(), wdsn)
				if err != nil {
					t.Error(err)
					return
				}
				hrows := 1 + rng.Intn(3)
				if !same {
					mu.Lock()
					elsewhere++
					mu.Unlock()
				}
				execErr(holder, "BEGIN")
				for r := 0; r < hrows; r++ {
					// Any shape holds the unit (a named portal would
					// outlive the statement in the holder's transaction).
					shape := writeShapes[rng.Intn(len(writeShapes)-1)]
					if err := shape.write(holder, insert(unit, "holder-"+unit)); err != nil {
						t.Errorf("holder %s insert: %v", shape.name, err)
					}
				}
				wrows := rng.Intn(3)
				accepted := 0
				for r := 0; r < wrows; r++ {
					shape := writeShapes[rng.Intn(len(writeShapes))]
					err := shape.write(writer, insert(unit, "writer-"+unit))
					reroutes := escape == "reroute" && same
					switch {
					case !reroutes && err == nil:
						t.Errorf("%s: escaping %s write accepted (same instance: %v)", unit, shape.name, same)
					case reroutes && shape.whole && err != nil:
						t.Errorf("%s: rerouted %s write failed: %v", unit, shape.name, err)
					case reroutes && !shape.whole && err == nil:
						t.Errorf("%s: a %s write was rerouted, though part of it had gone to its own backend", unit, shape.name)
					case err != nil && !strings.Contains(err.Error(), proxy.CodeEscapedWrite):
						t.Errorf("%s: %s write: %v, want %s", unit, shape.name, err, proxy.CodeEscapedWrite)
					case err == nil:
						accepted++
					}
				}
				mu.Lock()
				writes, rerouted = writes+wrows, rerouted+accepted
				mu.Unlock()
				outcome := rng.Intn(3)
				switch outcome {
				case 0:
					if err := execErr(holder, "COMMIT"); err != nil {
						t.Errorf("commit: %v", err)
					}
					mu.Lock()
					want["holder-"+unit] = hrows
					want["writer-"+unit] = accepted
					mu.Unlock()
				case 1:
					execErr(holder, "ROLLBACK")
				case 2:
					hj, _ := holder.Hijack()
					hj.Conn.Close()
				}
				if outcome != 2 {
					holder.Close(context.Background())
					// A write with the unit after the holder is done runs
					// on its own, on any instance: the holder's lock went
					// with its transaction.
					if err := execErr(writer, insert(unit, "after-"+unit)); err != nil {
						t.Errorf("%s: write after release: %v", unit, err)
					}
					mu.Lock()
					want["after-"+unit] = 1
					mu.Unlock()
				}
				writer.Close(context.Background())
			}
		}(w)
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // vanished holders' backends roll back
	res := exec(t, directConn(t), "SELECT who, count(*) FROM "+table+" GROUP BY who")
	got := map[string]int{}
	for _, row := range res[0].Rows {
		var n int
		fmt.Sscan(string(row[1]), &n)
		got[string(row[0])] = n
	}
	for who, n := range want {
		if n > 0 && got[who] != n {
			t.Errorf("%s: %d rows, want %d", who, got[who], n)
		}
	}
	for who, n := range got {
		if want[who] != n {
			t.Errorf("%s: %d rows that should not have committed", who, n)
		}
	}
	t.Logf("%d units (%d with the writer on another instance than the holder), %d escaping writes (%d rerouted, the others refused), %d row groups committed as the model says",
		workers*unitsPerWorker, elsewhere, writes, rerouted, len(got))
}

// writeShape is one way a client sends a write: whole says it reaches txlane
// as one request that can still be rerouted.
type writeShape struct {
	name  string
	whole bool
	write func(conn *pgconn.PgConn, sql string) error
}

var writeShapes = []writeShape{
	{"simple", true, execErr},
	{"extended", true, func(c *pgconn.PgConn, sql string) error {
		return rawRequest(c, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	}},
	{"flush-split", false, func(c *pgconn.PgConn, sql string) error {
		return rawRequest(c, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}, &pgproto3.Sync{})
	}},
	{"size-capped", false, func(c *pgconn.PgConn, sql string) error {
		// The INSERT, then a 1.1 MiB parameter: past the size txlane holds
		// back, so the request goes out before its Sync.
		big := strings.Repeat("x", 1100*1024)
		return rawRequest(c, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "SELECT length($1)"}, &pgproto3.Bind{Parameters: [][]byte{[]byte(big)}},
			&pgproto3.Execute{}, &pgproto3.Sync{})
	}},
	{"named-portal", false, func(c *pgconn.PgConn, sql string) error {
		return rawRequest(c, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{DestinationPortal: "p1"},
			&pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{})
	}},
}

// rawRequest sends msgs, one request ending in Sync, and reads the answer up
// to ReadyForQuery; the first ErrorResponse is returned as a *pgconn.PgError.
func rawRequest(c *pgconn.PgConn, msgs ...pgproto3.FrontendMessage) error {
	fe := c.Frontend()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		return err
	}
	c.Conn().SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.Conn().SetReadDeadline(time.Time{})
	var first error
	for {
		msg, err := fe.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			if first == nil {
				first = &pgconn.PgError{Code: m.Code, Message: m.Message, Detail: m.Detail}
			}
		case *pgproto3.ReadyForQuery:
			return first
		}
	}
}
