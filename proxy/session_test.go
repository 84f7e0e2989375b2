package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	osexec "os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// backendPID returns the server process serving conn (through the proxy,
// pgconn's PID is txlane's key, not the server's).
func backendPID(t *testing.T, conn *pgconn.PgConn) string {
	return scalar(t, conn, "SELECT pg_backend_pid()")
}

// waitGone polls the server directly until no backend with pid exists.
func waitGone(t *testing.T, pid string, within time.Duration) time.Duration {
	t.Helper()
	direct := directConn(t)
	start := time.Now()
	for {
		n := scalar(t, direct, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid)
		if n == "0" {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("backend %s still present after %v", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func directConn(t *testing.T) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// vanish drops the client's TCP connection without a Terminate message,
// after sending the simple queries in pending (not waiting for their results).
func vanish(t *testing.T, conn *pgconn.PgConn, pending ...string) {
	t.Helper()
	hj, err := conn.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range pending {
		buf, _ := (&pgproto3.Query{String: sql}).Encode(nil)
		if _, err := hj.Conn.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if len(pending) > 0 {
		time.Sleep(100 * time.Millisecond) // let the statement start
	}
	hj.Conn.Close()
}

func TestClientVanishesMidTransaction(t *testing.T) {
	p := startProxy(t, nil)
	table := uniqueName("vanish")
	direct := directConn(t)
	exec(t, direct, "CREATE TABLE "+table+" (id int primary key, v int); INSERT INTO "+table+" VALUES (1, 0)")
	t.Cleanup(func() { exec(t, directConn(t), "DROP TABLE IF EXISTS "+table) })

	t.Run("idle in transaction holding a row lock", func(t *testing.T) {
		c := p.connect(t)
		pid := backendPID(t, c)
		exec(t, c, "BEGIN; UPDATE "+table+" SET v = v + 1 WHERE id = 1")
		vanish(t, c)
		took := waitGone(t, pid, time.Second)
		t.Logf("backend gone %v after the client vanished", took)
		// The update was rolled back and the row is free.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		res, err := direct.Exec(ctx, "SET lock_timeout = '500ms'; UPDATE "+table+" SET v = v WHERE id = 1; SELECT v FROM "+table).ReadAll()
		if err != nil {
			t.Fatalf("row still locked: %v", err)
		}
		if got := string(res[2].Rows[0][0]); got != "0" {
			t.Fatalf("v = %s, want 0 (the vanished transaction must roll back)", got)
		}
	})
	t.Run("while a statement runs inside the transaction", func(t *testing.T) {
		c := p.connect(t)
		pid := backendPID(t, c)
		exec(t, c, "BEGIN; LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE")
		vanish(t, c, "SELECT pg_sleep(60)")
		took := waitGone(t, pid, time.Second)
		t.Logf("busy backend gone %v after the client vanished", took)
		if got := scalar(t, direct, "SELECT count(*) FROM pg_locks WHERE relation = '"+table+"'::regclass"); got != "0" {
			t.Fatalf("%s locks remain on the table", got)
		}
	})
}

func TestBackendTerminated(t *testing.T) {
	p := startProxy(t, nil)
	c := p.connect(t)
	other := p.connect(t)
	pid := backendPID(t, c)
	direct := directConn(t)
	exec(t, direct, "SELECT pg_terminate_backend("+pid+")")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Exec(ctx, "SELECT 1").ReadAll()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57P01" {
		// The FATAL may already have been consumed by pgconn as an async message.
		if !c.IsClosed() {
			t.Fatalf("after pg_terminate_backend: %v; connection not closed", err)
		}
	}
	if scalar(t, other, "SELECT 7") != "7" {
		t.Fatal("other client broken")
	}
}

// tcpCutter forwards TCP connections to target and can cut them all at once,
// to make a backend vanish without a word, as a crashed host would.
type tcpCutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newTCPCutter(t *testing.T, target string) *tcpCutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &tcpCutter{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); c.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

func (c *tcpCutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

func TestBackendVanishes(t *testing.T) {
	cfg := pgtest.Config(t)
	cutter := newTCPCutter(t, fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	p := startProxy(t, func(o *proxy.Options) {
		host, port, _ := net.SplitHostPort(cutter.ln.Addr().String())
		c := o.Primary.Copy()
		c.Host = host
		fmt.Sscan(port, &c.Port)
		c.Fallbacks = nil
		o.Primary = c
	})
	healthy := startProxy(t, nil).connect(t)
	c := p.connect(t)
	exec(t, c, "BEGIN")
	cutter.cut()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Exec(ctx, "SELECT 1").ReadAll()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeConnectionFailure {
		t.Fatalf("after the backend vanished: got %v, want SQLSTATE %s", err, proxy.CodeConnectionFailure)
	}
	if !strings.Contains(pgErr.Message, "server connection lost") {
		t.Fatalf("message %q", pgErr.Message)
	}
	if scalar(t, healthy, "SELECT 3") != "3" {
		t.Fatal("other client broken")
	}
}

func TestCancelUnknownKeyIgnored(t *testing.T) {
	p := startProxy(t, nil)
	c := p.connect(t)
	// A made-up key must not cancel anything.
	raw := rawDial(t, p)
	raw.Write([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2})
	io.ReadAll(raw)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, "SELECT pg_sleep(0.3)").ReadAll(); err != nil {
		t.Fatalf("statement disturbed by a bogus cancel: %v", err)
	}
}

func TestPsqlThroughProxy(t *testing.T) {
	psql, err := osexec.LookPath("psql")
	if err != nil {
		t.Fatal("psql not installed: scripts/pg.sh install provides it")
	}
	p := startProxy(t, nil)
	script := `
CREATE TEMP TABLE t (id int, name text);
INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 5) g;
\copy t FROM stdin
6	six
\.
SELECT count(*), max(name) FROM t;
BEGIN;
SELECT 1/0;
ROLLBACK;
SELECT 'done';
`
	cmd := osexec.Command(psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=0", p.DSN(t, ""))
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"6|six", "ERROR:  division by zero", "done"} {
		if !strings.Contains(text, want) {
			t.Fatalf("psql output lacks %q:\n%s", want, text)
		}
	}
}
