package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestTxPoolStress: many clients, two backends, random mixes of what
// clients do (session settings, transactions that commit or roll back,
// pgx's cached prepared statements and batches, temporary tables, advisory
// locks, cancels, clients that leave inside a transaction and come back).
// Each client keeps a model of what its session and its rows must be and
// checks it after every step: another client's state never shows, its own
// always does, and nothing of a rolled-back transaction stays. Run it with
// -race.
func TestTxPoolStress(t *testing.T) {
	const clients = 30
	tbl := uniqueName("brk_stress")
	pgtest.Exec(t, "CREATE TABLE "+tbl+" (who int, n int); GRANT ALL ON "+tbl+" TO PUBLIC")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl) })
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 2}
		o.QueryWaitTimeout = 20 * time.Second
	})
	budget := 8 * time.Second
	if testing.Short() {
		budget = 2 * time.Second
	}
	seed := diffSeed(t)
	deadline := time.Now().Add(budget)
	var steps atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := &stressClient{t: t, i: i, tbl: tbl, dsn: p.DSN(t, ""), rng: rand.New(rand.NewSource(seed + int64(i)))}
			defer c.close()
			if !c.connect() {
				return
			}
			for time.Now().Before(deadline) && !t.Failed() {
				if !c.step() {
					return
				}
				steps.Add(1)
			}
		}(i)
	}
	wg.Wait()
	t.Logf("%d steps by %d clients on pool_size 2", steps.Load(), clients)
	if t.Failed() {
		return
	}
	// Only committed rows stayed: each client's count is its model's.
	direct := directConn(t)
	res := exec(t, direct, "SELECT who, count(*) FROM "+tbl+" GROUP BY who")
	got := map[string]string{}
	for _, row := range res[0].Rows {
		got[string(row[0])] = string(row[1])
	}
	for i := range stressCommitted {
		want := stressCommitted[i].Load()
		if g := got[fmt.Sprint(i)]; g != fmt.Sprint(want) && !(g == "" && want == 0) {
			t.Errorf("client %d: %s rows in the table, %d committed", i, g, want)
		}
	}
}

var stressCommitted [30]atomic.Int64

type stressClient struct {
	t    *testing.T
	i    int
	tbl  string
	dsn  string
	rng  *rand.Rand
	conn *pgx.Conn
	// model
	timeout string // statement_timeout the client set ("0" by default)
	who     string // brk.who the client set ("" when none)
	rows    int64  // rows of the client in tbl, committed
}

func (c *stressClient) connect() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dsn)
	if err != nil {
		c.t.Errorf("client %d: connect: %v", c.i, err)
		return false
	}
	c.conn, c.timeout, c.who = conn, "0", ""
	return true
}

func (c *stressClient) close() {
	if c.conn != nil {
		c.conn.Close(context.Background())
	}
}

func (c *stressClient) fail(format string, args ...any) bool {
	c.t.Errorf("client %d: "+format, append([]any{c.i}, args...)...)
	return false
}

// check reads the session state the model says the client has.
func (c *stressClient) check(ctx context.Context) bool {
	var timeout, who, user string
	var temps, locks int
	err := c.conn.QueryRow(ctx, `SELECT current_setting('statement_timeout'), coalesce(current_setting('brk.who', true), ''), current_user,
		(SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),
		(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())`).Scan(&timeout, &who, &user, &temps, &locks)
	if err != nil {
		return c.fail("check: %v", err)
	}
	if timeout != c.timeout || who != c.who || user != "postgres" || temps != 0 || locks != 0 {
		return c.fail("session shows statement_timeout %s, brk.who %q, user %s, %d temporary relations, %d advisory locks; want %s, %q, postgres, 0, 0",
			timeout, who, user, temps, locks, c.timeout, c.who)
	}
	return true
}

func (c *stressClient) step() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch k := c.rng.Intn(10); k {
	case 0: // session settings, by SET and by set_config
		c.timeout = fmt.Sprintf("%dms", 100000+c.i*10+c.rng.Intn(10))
		c.who = fmt.Sprintf("c%d-%d", c.i, c.rng.Intn(100))
		if _, err := c.conn.Exec(ctx, "SET statement_timeout = '"+c.timeout+"'; SET brk.who = '"+c.who+"'"); err != nil {
			return c.fail("set: %v", err)
		}
		var got string
		if err := c.conn.QueryRow(ctx, "SELECT current_setting('statement_timeout')").Scan(&got); err != nil {
			return c.fail("show: %v", err)
		}
		c.timeout = got // the server's own spelling (e.g. 100s)
	case 1:
		if _, err := c.conn.Exec(ctx, "RESET ALL"); err != nil {
			return c.fail("reset: %v", err)
		}
		c.timeout = "0"
		if c.who != "" {
			c.who = "" // a placeholder reads as '' once set
		}
	case 2, 3: // a transaction of the client's own rows
		tx, err := c.conn.Begin(ctx)
		if err != nil {
			return c.fail("begin: %v", err)
		}
		n := 1 + c.rng.Intn(3)
		for j := 0; j < n; j++ {
			if _, err := tx.Exec(ctx, "INSERT INTO "+c.tbl+" VALUES ($1, $2)", c.i, j); err != nil {
				return c.fail("insert: %v", err)
			}
		}
		var cnt int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+c.tbl+" WHERE who = $1", c.i).Scan(&cnt); err != nil {
			return c.fail("count: %v", err)
		}
		if cnt != c.rows+int64(n) {
			return c.fail("sees %d of its rows inside its transaction, want %d", cnt, c.rows+int64(n))
		}
		if c.rng.Intn(2) == 0 {
			if err := tx.Commit(ctx); err != nil {
				return c.fail("commit: %v", err)
			}
			c.rows += int64(n)
			stressCommitted[c.i].Store(c.rows)
		} else if err := tx.Rollback(ctx); err != nil {
			return c.fail("rollback: %v", err)
		}
	case 4: // a batch: pipelined, with SET LOCAL in a transaction
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue("SET LOCAL statement_timeout = '4242ms'")
		b.Queue("SELECT current_setting('statement_timeout'), $1::int", c.i)
		b.Queue("COMMIT")
		b.Queue("SELECT current_setting('statement_timeout')")
		br := c.conn.SendBatch(ctx, b)
		var local, after string
		var me int
		_, err1 := br.Exec()
		_, err2 := br.Exec()
		err3 := br.QueryRow().Scan(&local, &me)
		_, err4 := br.Exec()
		err5 := br.QueryRow().Scan(&after)
		if err := errors.Join(err1, err2, err3, err4, err5, br.Close()); err != nil {
			return c.fail("batch: %v", err)
		}
		if local != "4242ms" || me != c.i || after != c.timeout {
			return c.fail("batch saw %s, %d, then %s; want 4242ms, %d, then %s", local, me, after, c.i, c.timeout)
		}
	case 5: // a temporary table, made and dropped: pinned meanwhile
		name := fmt.Sprintf("brk_tmp_%d", c.i)
		if _, err := c.conn.Exec(ctx, "CREATE TEMP TABLE "+name+" (x int)"); err != nil {
			return c.fail("create temp: %v", err)
		}
		if _, err := c.conn.Exec(ctx, "INSERT INTO "+name+" VALUES ($1)", c.i); err != nil {
			return c.fail("insert temp: %v", err)
		}
		var x int
		if err := c.conn.QueryRow(ctx, "SELECT x FROM "+name).Scan(&x); err != nil || x != c.i {
			return c.fail("temp table: %v %d", err, x)
		}
		if _, err := c.conn.Exec(ctx, "DROP TABLE "+name); err != nil {
			return c.fail("drop temp: %v", err)
		}
	case 6: // a session advisory lock, taken and released
		if _, err := c.conn.Exec(ctx, "SELECT pg_advisory_lock(4242, $1)", c.i); err != nil {
			return c.fail("lock: %v", err)
		}
		var ok bool
		if err := c.conn.QueryRow(ctx, "SELECT pg_advisory_unlock(4242, $1)", c.i).Scan(&ok); err != nil || !ok {
			return c.fail("unlock: %v %v", err, ok)
		}
	case 7: // leave inside a transaction, come back
		if c.rng.Intn(4) != 0 {
			break
		}
		if _, err := c.conn.Exec(ctx, "BEGIN; INSERT INTO "+c.tbl+" VALUES ("+fmt.Sprint(c.i)+", -1)"); err != nil {
			return c.fail("begin before leaving: %v", err)
		}
		c.conn.PgConn().Conn().Close()
		c.conn.Close(ctx)
		if !c.connect() {
			return false
		}
	case 8: // a statement cancelled by its context (pgx closes the connection)
		if c.rng.Intn(4) != 0 {
			break
		}
		cctx, ccancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := c.conn.Exec(cctx, "SELECT pg_sleep(1)")
		ccancel()
		if err == nil {
			return c.fail("pg_sleep(1) under a 50ms context returned no error")
		}
		c.conn.Close(ctx)
		if !c.connect() {
			return false
		}
	default: // prepared statements cached by pgx, run on whichever backend
		var v int
		var s string
		if err := c.conn.QueryRow(ctx, "SELECT $1::int * 2, $2::text", c.i, strings.Repeat("x", c.i)).Scan(&v, &s); err != nil {
			return c.fail("prepared: %v", err)
		}
		if v != 2*c.i || s != strings.Repeat("x", c.i) {
			return c.fail("prepared answered %d %q", v, s)
		}
	}
	return c.check(ctx)
}
