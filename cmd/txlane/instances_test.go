package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/internal/testbin"
	"github.com/txlane/txlane/proxy"
	"github.com/txlane/txlane/proxy/wire"
)

// TestInstanceIDRange: the configuration and the proxy agree on the
// largest instance_id (the bits of a cancel key's process ID).
func TestInstanceIDRange(t *testing.T) {
	if config.MaxInstanceID != proxy.MaxInstanceID {
		t.Fatalf("config.MaxInstanceID %d, proxy.MaxInstanceID %d", config.MaxInstanceID, proxy.MaxInstanceID)
	}
}

// TestInstances runs three txlane processes against one database, each
// the others' peer, with policy.shared_units: a holder on one, writers on
// the others; SHOW UNITS; a cancel sent to the wrong instance; the holder's
// instance killed with SIGKILL, after which its units are free (PostgreSQL
// ends the backends whose client died) and nothing it held committed. Then
// two processes share one port with listen_reuseport.
func TestInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := testbin.Build(t, "./cmd/txlane")
	dsn := pgtest.DSN(t)
	table := fmt.Sprintf("units_bin_%d", time.Now().UnixNano()%1_000_000_000)
	direct(t, dsn, fmt.Sprintf("CREATE TABLE %[1]s (v text); GRANT ALL ON %[1]s TO PUBLIC", table))
	t.Cleanup(func() { direct(t, dsn, "DROP TABLE IF EXISTS "+table) })
	// NOTE: the addresses stay bound until their process starts, so that
	// no other address picked meanwhile (an admin endpoint) is one of them.
	var addrs []string
	var held []net.Listener
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	var procs []*proc
	for i := range addrs {
		held[i].Close()
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, fmt.Sprintf("{id: %d, addr: %q}", j+1, a))
			}
		}
		extra := fmt.Sprintf("instance_id: %d\npeers: [%s]\npolicy: {shared_units: true}\n", i+1, strings.Join(peers, ", "))
		procs = append(procs, startTxlaneOn(t, bin, dsn, addrs[i], extra))
	}
	insert := func(unit, who string) string {
		return fmt.Sprintf("INSERT INTO %s (v) VALUES ('%s') /*unit='%s'*/", table, who, unit)
	}

	holder := procs[0].connect("holder")
	mustRun(t, holder, "BEGIN")
	mustRun(t, holder, insert("k1", "holder"))
	mustRun(t, holder, "BEGIN; "+insert("k2", "holder")) // a warning: already in a block
	backend := mustRun(t, holder, "SELECT pg_backend_pid()")
	for _, p := range procs[1:] {
		w := p.connect("writer")
		_, err := runSQL(w, insert("k1", "writer"))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeEscapedWrite ||
			!strings.Contains(pgErr.Detail, "txlane instance 1 (backend pid "+backend) || !strings.Contains(pgErr.Detail, `"holder"`) {
			t.Fatalf("write through %s: %v (detail %q), want 25L01 naming instance 1, backend %s", p.listen, err, detail(err), backend)
		}
	}
	// SHOW UNITS on instance 3 lists the units instance 1's client holds.
	out := procs[2].mustPsql("", "SHOW UNITS")
	if n := strings.Count(out, "|false|1|"+backend+"|"); n != 2 {
		t.Errorf("SHOW UNITS on instance 3: %q, want k1 and k2 held on instance 1 (backend %s)", out, backend)
	}

	// A cancel sent to instance 2 for a client of instance 3.
	victim := procs[2].connect("victim")
	slow := make(chan error, 1)
	go func() { _, err := runSQL(victim, "SELECT pg_sleep(10)"); slow <- err }()
	time.Sleep(200 * time.Millisecond)
	cancelVia(t, procs[1].listen, victim)
	select {
	case err := <-slow:
		if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("cancelled statement: %v, want 57014", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cancel sent to instance 2 did not reach instance 3's client")
	}

	// Instance 1 dies. Its backends, idle in their transactions, read the
	// closed socket at once and exit: the locks go, nothing commits.
	procs[0].signal(syscall.SIGKILL)
	<-procs[0].exited
	w := procs[1].connect("writer")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := runSQL(w, insert("k1", "after"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unit k1 still held 10s after its instance was killed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustRun(t, w, insert("k2", "after"))
	if got := direct(t, dsn, "SELECT count(*) FROM "+table+" WHERE v = 'holder'"); got != "0" {
		t.Errorf("%s of the killed instance's rows committed", got)
	}
	if out := procs[2].mustPsql("", "SHOW UNITS"); strings.TrimSpace(out) != "" {
		t.Errorf("SHOW UNITS after the holder's instance died: %q", out)
	}

	t.Run("listen_reuseport", func(t *testing.T) { testReuseport(t, bin, dsn) })
}

// cancelVia sends the CancelRequest of c's key to addr.
func cancelVia(t *testing.T, addr string, c *pgconn.PgConn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(wire.EncodeCancel(c.PID(), c.SecretKey(), false)); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, conn)
}

func detail(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Detail
	}
	return ""
}

// testReuseport: two processes listen on one address and port, and the
// kernel gives both clients; without listen_reuseport a third cannot.
func testReuseport(t *testing.T, bin, dsn string) {
	addr := testbin.FreeAddr(t)
	a := startTxlaneOn(t, bin, dsn, addr, "listen_reuseport: true\ninstance_id: 1\n")
	b := startTxlaneOn(t, bin, dsn, addr, "listen_reuseport: true\ninstance_id: 2\n")
	for i := 0; i < 40; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := pgconn.Connect(ctx, a.clientDSN("spread"))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		c.Exec(ctx, "SELECT 1").ReadAll()
		c.Close(ctx)
		cancel()
	}
	na := a.metric(`txlane_requests_total{lane="primary",reason="not_vector_read"}`)
	nb := b.metric(`txlane_requests_total{lane="primary",reason="not_vector_read"}`)
	if na == 0 || nb == 0 || na+nb < 40 {
		t.Errorf("requests served: %v by one process, %v by the other; want both to serve (40 in all)", na, nb)
	}
	// Without SO_REUSEPORT the address is taken.
	if ln, err := listenTCP(addr, false); err == nil {
		ln.Close()
		t.Error("a listener without SO_REUSEPORT shares the port")
	}
}
