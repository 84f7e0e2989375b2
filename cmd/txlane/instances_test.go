package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
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
	if got := direct(t, dsn, "SELECT count(*) FROM "+table+" WHERE v = 'writer'"); got != "0" {
		t.Errorf("%s rows of refused writes", got)
	}
	if out := procs[2].mustPsql("", "SHOW UNITS"); strings.TrimSpace(out) != "" {
		t.Errorf("SHOW UNITS after the holder's instance died: %q", out)
	}

	t.Run("listen_reuseport", func(t *testing.T) { testReuseport(t, bin, dsn) })
}

// cancelVia sends the CancelRequest of c's key to addr (host:port, or
// unix:PATH).
func cancelVia(t *testing.T, addr string, c *pgconn.PgConn) {
	t.Helper()
	network := "tcp"
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", path
	}
	conn, err := net.DialTimeout(network, addr, 5*time.Second)
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
// kernel gives both clients; each names the other by its Unix-domain socket
// in peers, so that a cancel sent to the shared port reaches its client
// whichever process the kernel hands it to. Without listen_reuseport the
// port cannot be shared.
func testReuseport(t *testing.T, bin, dsn string) {
	addr := testbin.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dirs := []string{t.TempDir(), t.TempDir()}
	var procs []*proc
	for i := range dirs {
		peer := filepath.Join(dirs[1-i], ".s.PGSQL."+port)
		procs = append(procs, startTxlaneOn(t, bin, dsn, addr, fmt.Sprintf(
			"listen_reuseport: true\nunix_socket_dir: %s\ninstance_id: %d\npeers: [{id: %d, addr: %s}]\n", dirs[i], i+1, 2-i, peer)))
	}
	var victims []*pgconn.PgConn
	for i := 0; i < 40; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := pgconn.Connect(ctx, procs[0].clientDSN("spread"))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		if _, err := runSQL(c, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		victims = append(victims, c)
	}
	var served [2]float64
	for i, p := range procs {
		served[i] = p.metric(`txlane_requests_total{lane="primary",reason="not_vector_read"}`)
	}
	if served[0] == 0 || served[1] == 0 || served[0]+served[1] < 40 {
		t.Errorf("requests served: %v; want both processes to serve (40 in all)", served)
	}
	// Cancels to the shared port: the kernel picks a process, which passes
	// the cancel on to its peer when the client is the peer's. The first
	// goes to the other process's own socket: forwarded for certain.
	for i, c := range victims[:6] {
		slow := make(chan error, 1)
		go func() { _, err := runSQL(c, "SELECT pg_sleep(10)"); slow <- err }()
		time.Sleep(100 * time.Millisecond)
		if i == 0 {
			other := 2 - int(c.PID()>>21) // 0-based index of the process the key does not name
			cancelVia(t, "unix:"+filepath.Join(dirs[other], ".s.PGSQL."+port), c)
			if n := procs[other].metric(`txlane_cancel_requests_total{outcome="peer"}`); n != 1 {
				t.Errorf("the other process forwarded %v cancels to its peer, want 1", n)
			}
		} else {
			cancelVia(t, addr, c)
		}
		select {
		case err := <-slow:
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
				t.Fatalf("cancel %d: %v, want 57014", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("cancel %d sent to the shared port did not reach its client (instance %d)", i, c.PID()>>21)
		}
	}
	// Without SO_REUSEPORT the address is taken.
	if ln, err := listenTCP(addr, false); err == nil {
		ln.Close()
		t.Error("a listener without SO_REUSEPORT shares the port")
	}
}
