package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy/auth"
	"github.com/txlane/txlane/proxy/wire"
)

// serveOn starts a Server for opts on a loopback port.
func serveOn(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Addr().String()
}

// onlySession returns the dialer of the one session srv serves.
func onlySession(t *testing.T, srv *Server) *session {
	t.Helper()
	// NOTE: a session is registered just after the client got its
	// ReadyForQuery: give it a moment.
	entries := srv.entries()
	for deadline := time.Now().Add(2 * time.Second); len(entries) == 0 && time.Now().Before(deadline); entries = srv.entries() {
		time.Sleep(5 * time.Millisecond)
	}
	if len(entries) != 1 {
		t.Fatalf("%d sessions, want 1", len(entries))
	}
	return entries[0].sess
}

// secondBackend opens another backend with d for user on txlane_test, and
// returns its server pid.
func secondBackend(t *testing.T, d *backendDialer, user string) (uint32, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	startup := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": user, "database": "txlane_test", "application_name": "second backend"}}
	b, res, err := d.dial(ctx, startup)
	if err != nil {
		return 0, err
	}
	t.Cleanup(func() {
		wire.WriteMsg(b.w, &pgproto3.Terminate{})
		b.w.Flush()
		b.conn.Close()
	})
	if res.Key.ProcessID != b.target.PID || res.TxStatus != 'I' || res.Params["server_version"] == "" {
		t.Fatalf("login result %+v, target %+v", res, b.target)
	}
	return b.target.PID, nil
}

// TestDialerOpensMoreBackends: after a login that txlane checked itself,
// the session's dialer opens further backends for its (database, user)
// with the credentials the client's SCRAM proof gave, while the client is
// connected and after it has left: what a pool needs. The server sees them
// as that user. After a relayed login the dialer holds no credentials: it
// gets in only where the server asks for no password.
func TestDialerOpensMoreBackends(t *testing.T) {
	direct := pgtest.TLSDSN(t)
	cfg, err := pgconn.ParseConfig(direct)
	if err != nil {
		t.Fatal(err)
	}
	super, err := pgconn.Connect(context.Background(), direct)
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(context.Background())
	role := pgtest.TLSSCRAMRole
	res := super.ExecParams(context.Background(), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", [][]byte{[]byte(role.User)}, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 {
		t.Fatal(res.Err)
	}
	file, err := auth.ParseFile("users.txt", fmt.Appendf(nil, "%q %q\n", role.User, res.Rows[0][0]))
	if err != nil {
		t.Fatal(err)
	}
	srv, addr := serveOn(t, Options{Primary: cfg, Auth: AuthOptions{Type: auth.MethodSCRAM, File: file}})
	ctx := context.Background()
	client, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/txlane_test?sslmode=disable", role.User, role.Password, addr))
	if err != nil {
		t.Fatal(err)
	}
	d := onlySession(t, srv).dialer
	if d == nil || d.creds == nil || d.creds.Keys == nil || d.creds.Password != "" {
		t.Fatalf("dialer %+v: want SCRAM keys and no password", d)
	}
	userOf := func(pid uint32) string {
		r := super.ExecParams(ctx, "SELECT usename FROM pg_stat_activity WHERE pid = $1", [][]byte{[]byte(strconv.Itoa(int(pid)))}, nil, nil, nil).Read()
		if r.Err != nil || len(r.Rows) != 1 {
			t.Fatalf("pid %d: %v, %d rows", pid, r.Err, len(r.Rows))
		}
		return string(r.Rows[0][0])
	}
	pid, err := secondBackend(t, d, role.User)
	if err != nil {
		t.Fatal(err)
	}
	if pid == client.PID() || userOf(pid) != role.User {
		t.Fatalf("second backend %d (the client's is %d) runs as %q", pid, client.PID(), userOf(pid))
	}
	client.Close(ctx)
	for len(srv.entries()) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	pid, err = secondBackend(t, d, role.User)
	if err != nil || userOf(pid) != role.User {
		t.Fatalf("a backend after the client left: %v", err)
	}

	// A relayed login (plaintext to txlane, so that SCRAM relays) leaves
	// nothing to log in with.
	srv, addr = serveOn(t, Options{Primary: cfg})
	client, err = pgconn.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/txlane_test?sslmode=disable", role.User, role.Password, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(ctx)
	_, err = secondBackend(t, onlySession(t, srv).dialer, role.User)
	var ce *auth.CredentialsError
	if !errors.As(err, &ce) {
		t.Fatalf("relayed login's dialer: got %v, want a CredentialsError", err)
	}

	// Unless the server asks for no password (trust on the plain cluster).
	plainCfg, err := pgconn.ParseConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	srv, addr = serveOn(t, Options{Primary: plainCfg})
	app, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s@%s/txlane_test?sslmode=disable", pgtest.AppRole, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	if _, err := secondBackend(t, onlySession(t, srv).dialer, pgtest.AppRole); err != nil {
		t.Fatalf("trusted user: %v", err)
	}
}
