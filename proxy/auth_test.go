package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
	"github.com/txlane/txlane/proxy/auth"
	"github.com/txlane/txlane/proxy/wire"
)

// The tests here put txlane, with TLS towards its clients (a self-signed
// certificate), in front of pgtest's TLS cluster: TCP logins only over TLS,
// with scram-sha-256 (md5 for pgtest.TLSMD5Role), as managed PostgreSQL
// services run it.

// startTLSBed starts such a proxy; mutate adjusts its options.
func startTLSBed(t *testing.T, mutate func(*proxy.Options)) *testProxy {
	t.Helper()
	return startProxyOn(t, pgtest.TLSDSN(t), func(o *proxy.Options) {
		o.TLS = selfSigned(t)
		if mutate != nil {
			mutate(o)
		}
	})
}

// tlsDSN reaches the TLS cluster's test database through p as r, over TLS
// to txlane (sslmode=require), with extra URL parameters.
func (p *testProxy) tlsDSN(r pgtest.Role, extra ...string) string {
	return fmt.Sprintf("postgres://%s@%s/txlane_test?%s", url.UserPassword(r.User, r.Password), p.Addr,
		strings.Join(append([]string{"sslmode=require", "connect_timeout=10"}, extra...), "&"))
}

// serverSecrets returns an auth file holding what the TLS cluster stores for
// users (read from pg_authid by its superuser), and extra lines.
func serverSecrets(t *testing.T, users []string, extra ...string) *auth.File {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.TLSDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY($1)", users)
	if err != nil {
		t.Fatal(err)
	}
	lines := extra
	for rows.Next() {
		var name, secret string
		if err := rows.Scan(&name, &secret); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%q %q", name, secret))
	}
	if rows.Err() != nil || len(lines) != len(users)+len(extra) {
		t.Fatalf("secrets of %q: %v (%d lines)", users, rows.Err(), len(lines))
	}
	f, err := auth.ParseFile("users.txt", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// pgxTry connects with pgx to dsn; the connection is closed when the test ends.
func pgxTry(t *testing.T, dsn string) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err == nil {
		t.Cleanup(func() { c.Close(context.Background()) })
	}
	return c, err
}

// runPSQL runs libpq's psql with dsn and sql; PGCHANNELBINDING and the
// like come from the DSN.
func runPSQL(t *testing.T, dsn, sql string) (string, error) {
	t.Helper()
	psql, err := osexec.LookPath("psql")
	if err != nil {
		t.Fatal("psql not installed: scripts/pg.sh install provides it")
	}
	cmd := osexec.Command(psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, dsn)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// wantSQLState fails unless err is a PostgreSQL error with code and message.
func wantSQLState(t *testing.T, err error, code, message string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code || message != "" && pgErr.Message != message {
		t.Fatalf("got %v, want %s %q", err, code, message)
	}
}

// backendOf returns what the server says of the backend serving conn:
// its user, whether it is on TLS, and its application_name.
const backendOfSQL = `SELECT a.usename || ' ' || s.ssl || ' ' || a.application_name
FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.pid = pg_backend_pid()`

// TestTLSSCRAMRelayed: with auth_type server, a client on TLS to txlane
// cannot log in to a server that txlane reaches over TLS with SCRAM: the
// client, offered no SCRAM-SHA-256-PLUS, says it supports channel binding
// (gs2 flag y), and the server, which offers it on its TLS connection,
// refuses that as a downgrade. The client's answer is covered by its proof,
// so no relay can change it. channel_binding=disable, or plaintext to
// txlane, makes the client send n and works.
func TestTLSSCRAMRelayed(t *testing.T) {
	p := startTLSBed(t, nil)
	role := pgtest.TLSSCRAMRole
	_, err := pgxTry(t, p.tlsDSN(role))
	wantSQLState(t, err, "28000", "SCRAM channel binding negotiation error")
	if out, err := runPSQL(t, p.tlsDSN(role, "channel_binding=prefer"), "SELECT 1"); err == nil || !strings.Contains(out, "SCRAM channel binding negotiation error") {
		t.Fatalf("psql, channel_binding=prefer: %v\n%s", err, out)
	}
	if out, err := runPSQL(t, p.tlsDSN(role, "channel_binding=disable"), "SELECT current_user"); err != nil || out != role.User {
		t.Fatalf("psql, channel_binding=disable: %v\n%s", err, out)
	}
	c, err := pgxTry(t, strings.Replace(p.tlsDSN(role), "sslmode=require", "sslmode=disable", 1))
	if err != nil {
		t.Fatalf("plaintext to txlane: %v", err)
	}
	var user string
	if err := c.QueryRow(context.Background(), "SELECT current_user").Scan(&user); err != nil || user != role.User {
		t.Fatalf("current_user %q, %v", user, err)
	}
}

// TestTLSSCRAMAuthFile: with auth_type scram-sha-256 and the server's
// verifiers in the auth file, txlane checks the client's SCRAM (with
// channel binding to its own certificate when the client wants it) and logs
// in to the TLS + SCRAM server with the keys the client's proof gave: pgx and
// psql over TLS, with and without channel binding. Wrong passwords, unknown
// users and users whose secret SCRAM cannot use get PostgreSQL's 28P01.
func TestTLSSCRAMAuthFile(t *testing.T) {
	file := serverSecrets(t, []string{pgtest.TLSSCRAMRole.User, pgtest.TLSMD5Role.User})
	p := startTLSBed(t, func(o *proxy.Options) {
		o.Auth = proxy.AuthOptions{Type: auth.MethodSCRAM, File: file}
	})
	role := pgtest.TLSSCRAMRole
	ctx := context.Background()
	t.Run("pgx", func(t *testing.T) {
		c, err := pgxTry(t, p.tlsDSN(role, "application_name=pgx_app"))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
			t.Fatalf("client connection is %T, want TLS", c.PgConn().Conn())
		}
		// The server sees the client's user on a TLS backend: the pass-through login.
		var seen string
		if err := c.QueryRow(ctx, backendOfSQL).Scan(&seen); err != nil || seen != role.User+" true pgx_app" {
			t.Fatalf("server sees %q, %v", seen, err)
		}
	})
	t.Run("pgx channel_binding=require", func(t *testing.T) {
		// pgx refuses unless txlane offers SCRAM-SHA-256-PLUS and the binding to its certificate checks out.
		if _, err := pgxTry(t, p.tlsDSN(role, "channel_binding=require")); err != nil {
			t.Fatal(err)
		}
	})
	for _, cb := range []string{"prefer", "require"} {
		t.Run("psql channel_binding="+cb, func(t *testing.T) {
			out, err := runPSQL(t, p.tlsDSN(role, "channel_binding="+cb, "application_name=psql_app"), backendOfSQL)
			if err != nil || out != role.User+" true psql_app" {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
	t.Run("cancel", func(t *testing.T) {
		c, err := pgxTry(t, p.tlsDSN(role))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := c.Exec(ctx, "SELECT pg_sleep(30)")
			done <- err
		}()
		// Cancel once the statement runs (a cancel that arrives before is ignored).
		super, err := pgxTry(t, pgtest.TLSDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		for running := 0; running == 0; time.Sleep(20 * time.Millisecond) {
			if err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(30)'").Scan(&running); err != nil {
				t.Fatal(err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.PgConn().CancelRequest(cctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			wantSQLState(t, err, "57014", "")
		case <-time.After(20 * time.Second):
			t.Fatal("the cancel request did not reach the backend")
		}
	})
	t.Run("refusals", func(t *testing.T) {
		wrong := role
		wrong.Password = "wrong"
		_, err := pgxTry(t, p.tlsDSN(wrong))
		wantSQLState(t, err, "28P01", `password authentication failed for user "txlane_scram"`)
		out, err := runPSQL(t, p.tlsDSN(wrong), "SELECT 1")
		if err == nil || !strings.Contains(out, `password authentication failed for user "txlane_scram"`) {
			t.Fatalf("psql with a wrong password: %v\n%s", err, out)
		}
		_, err = pgxTry(t, p.tlsDSN(pgtest.Role{User: "txlane_nobody", Password: "x"}))
		wantSQLState(t, err, "28P01", `password authentication failed for user "txlane_nobody"`)
		// An md5 secret cannot check SCRAM: refused, as PostgreSQL refuses it.
		_, err = pgxTry(t, p.tlsDSN(pgtest.TLSMD5Role))
		wantSQLState(t, err, "28P01", `password authentication failed for user "txlane_md5"`)
	})
}

// TestTLSMD5AuthType: with auth_type md5, a user whose secret is an md5
// hash logs in with md5 (to txlane, and from txlane to the server, whose
// pg_hba.conf says md5 for that user), and a user with a SCRAM verifier
// with SCRAM, as PostgreSQL's md5 method does.
func TestTLSMD5AuthType(t *testing.T) {
	file := serverSecrets(t, []string{pgtest.TLSSCRAMRole.User, pgtest.TLSMD5Role.User})
	p := startTLSBed(t, func(o *proxy.Options) { o.Auth = proxy.AuthOptions{Type: auth.MethodMD5, File: file} })
	for _, role := range []pgtest.Role{pgtest.TLSMD5Role, pgtest.TLSSCRAMRole} {
		c, err := pgxTry(t, p.tlsDSN(role, "application_name=md5_app"))
		if err != nil {
			t.Fatalf("%s: %v", role.User, err)
		}
		var seen string
		if err := c.QueryRow(context.Background(), backendOfSQL).Scan(&seen); err != nil || seen != role.User+" true md5_app" {
			t.Fatalf("server sees %q, %v", seen, err)
		}
		wrong := role
		wrong.Password = "wrong"
		_, err = pgxTry(t, p.tlsDSN(wrong))
		wantSQLState(t, err, "28P01", fmt.Sprintf("password authentication failed for user %q", role.User))
	}
}

// TestTLSAuthQuery: users not in the auth file are looked up with the
// auth_query, run as an unprivileged auth_user (through a SECURITY DEFINER
// function) over a connection that itself logs in with SCRAM over TLS; its
// password comes from the auth file or, without one, from the primary DSN.
func TestTLSAuthQuery(t *testing.T) {
	authRole := pgtest.TLSAuthRole
	for _, source := range []string{"auth_file", "primary DSN"} {
		t.Run("password from "+source, func(t *testing.T) {
			p := startTLSBed(t, func(o *proxy.Options) {
				o.Auth = proxy.AuthOptions{Type: auth.MethodSCRAM, User: authRole.User, Query: pgtest.TLSAuthQuery}
				if source == "auth_file" {
					f, err := auth.ParseFile("users.txt", []byte(fmt.Sprintf("%q %q\n", authRole.User, authRole.Password)))
					if err != nil {
						t.Fatal(err)
					}
					o.Auth.File = f
				} else {
					o.Primary.User, o.Primary.Password = authRole.User, authRole.Password
				}
			})
			role := pgtest.TLSSCRAMRole
			c, err := pgxTry(t, p.tlsDSN(role, "application_name=query_app"))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var seen string
			if err := c.QueryRow(ctx, backendOfSQL).Scan(&seen); err != nil || seen != role.User+" true query_app" {
				t.Fatalf("server sees %q, %v", seen, err)
			}
			// The lookup ran as the auth user, on TLS (which the server
			// accepts only with SCRAM for that user).
			super, err := pgxTry(t, pgtest.TLSDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			var lookups int
			if err := super.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
				WHERE a.usename = $1 AND a.application_name = 'txlane auth_query' AND s.ssl`, authRole.User).Scan(&lookups); err != nil || lookups < 1 {
				t.Fatalf("auth_query connections on TLS: %d, %v", lookups, err)
			}
			wrong := role
			wrong.Password = "wrong"
			_, err = pgxTry(t, p.tlsDSN(wrong))
			wantSQLState(t, err, "28P01", `password authentication failed for user "txlane_scram"`)
			_, err = pgxTry(t, p.tlsDSN(pgtest.Role{User: "txlane_nobody", Password: "x"}))
			wantSQLState(t, err, "28P01", `password authentication failed for user "txlane_nobody"`)
			// psql (libpq), with channel binding.
			if out, err := runPSQL(t, p.tlsDSN(role, "channel_binding=require"), "SELECT current_user"); err != nil || out != role.User {
				t.Fatalf("psql: %v\n%s", err, out)
			}
		})
	}
}

// TestTLSAuthQueryFails: an auth_query that cannot run refuses the client
// with 57P03, not with a password error, and says nothing of the cause.
func TestTLSAuthQueryFails(t *testing.T) {
	p := startTLSBed(t, func(o *proxy.Options) {
		o.Auth = proxy.AuthOptions{Type: auth.MethodSCRAM, User: pgtest.TLSAuthRole.User, Query: "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1"}
		o.Primary.User, o.Primary.Password = pgtest.TLSAuthRole.User, pgtest.TLSAuthRole.Password
	})
	_, err := pgxTry(t, p.tlsDSN(pgtest.TLSSCRAMRole))
	wantSQLState(t, err, "57P03", `txlane cannot look up the password of user "txlane_scram"`)
}

// TestAuthenticatedLoginProtocol: a client that txlane authenticates is
// told its protocol version before txlane has a server connection. The
// first such login assumes the server speaks what txlane speaks (3.2);
// later ones are told what the server granted (a PostgreSQL 15 grants 3.0),
// as the server itself would tell them.
func TestAuthenticatedLoginProtocol(t *testing.T) {
	file := serverSecrets(t, []string{pgtest.TLSSCRAMRole.User})
	p := startTLSBed(t, func(o *proxy.Options) { o.Auth = proxy.AuthOptions{Type: auth.MethodSCRAM, File: file} })
	role := pgtest.TLSSCRAMRole
	creds := &auth.Credentials{User: role.User, Password: role.Password}
	login := func(dial func(ctx context.Context) (net.Conn, error)) uint32 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		conn, err := dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		startup := &pgproto3.StartupMessage{ProtocolVersion: 3<<16 | 2, Parameters: map[string]string{"user": role.User, "database": "txlane_test"}}
		res, err := auth.Login(ctx, conn, wire.NewReader[wire.Backend](conn, 0), bufio.NewWriter(conn), startup, creds)
		if err != nil {
			t.Fatal(err)
		}
		return res.Protocol
	}
	cfg, err := pgconn.ParseConfig(pgtest.TLSDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	direct := login(func(ctx context.Context) (net.Conn, error) {
		c, _, err := wire.Dial(ctx, cfg)
		return c, err
	})
	viaTxlane := func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", p.Addr)
	}
	if first := login(viaTxlane); first != 3<<16|2 {
		t.Fatalf("first login granted %x, want 3.2", first)
	}
	if second := login(viaTxlane); second != direct {
		t.Fatalf("second login granted %x, the server grants %x", second, direct)
	}
}

// TestAdminConsoleWithVerifiers: with an auth_type other than server, an
// admin console user is checked by txlane against its secret, as clients
// are; no server login is made.
func TestAdminConsoleWithVerifiers(t *testing.T) {
	file := serverSecrets(t, []string{pgtest.TLSSCRAMRole.User})
	p := startTLSBed(t, func(o *proxy.Options) {
		o.Auth = proxy.AuthOptions{Type: auth.MethodSCRAM, File: file}
		o.AdminUsers = []string{pgtest.TLSSCRAMRole.User}
	})
	role := pgtest.TLSSCRAMRole
	admin := strings.Replace(p.tlsDSN(role, "channel_binding=require"), "/txlane_test?", "/"+proxy.AdminDatabase+"?", 1)
	c, err := pgxTry(t, admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(context.Background(), "SHOW CLIENTS"); err != nil {
		t.Fatal(err)
	}
	_, err = pgxTry(t, strings.Replace(admin, role.Password, "wrong", 1))
	wantSQLState(t, err, "28P01", `password authentication failed for user "txlane_scram"`)
}

// TestAuthFileReload: Reload replaces the auth file, and logins from then
// on check against the new one; auth_type keeps its value until a restart.
func TestAuthFileReload(t *testing.T) {
	file := serverSecrets(t, []string{pgtest.TLSSCRAMRole.User})
	var opts proxy.Options
	p := startTLSBed(t, func(o *proxy.Options) {
		o.Auth = proxy.AuthOptions{Type: auth.MethodSCRAM, File: file}
		opts = *o
	})
	if _, err := pgxTry(t, p.tlsDSN(pgtest.TLSSCRAMRole)); err != nil {
		t.Fatal(err)
	}
	empty, err := auth.ParseFile("users.txt", nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Auth = proxy.AuthOptions{Type: auth.MethodServer, File: empty}
	if err := p.Reload(opts); err != nil {
		t.Fatal(err)
	}
	// Still checked by txlane (a relayed login would fail with 28000), now
	// against a file without the user.
	_, err = pgxTry(t, p.tlsDSN(pgtest.TLSSCRAMRole))
	wantSQLState(t, err, "28P01", `password authentication failed for user "txlane_scram"`)
}

// TestVerifierModeServerMethods: with auth_type scram-sha-256, what txlane
// can answer depends on the server's method (plain cluster: no TLS). A
// server asking for a cleartext password gets one only from a plain
// password in the auth file; with a verifier alone the client is refused
// with 28000. A server that trusts the user asks for nothing.
func TestVerifierModeServerMethods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	super, err := pgx.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(ctx)
	var verifier string
	if err := super.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'txlane_password'").Scan(&verifier); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$") {
		t.Fatalf("txlane_password's secret %q is not a verifier", verifier[:10])
	}
	for _, tc := range []struct {
		name, line, user, password string
		wantCode                   string
	}{
		{"cleartext, verifier only", fmt.Sprintf("%q %q", "txlane_password", verifier), "txlane_password", "plainpass", "28000"},
		{"cleartext, plain password", `"txlane_password" "plainpass"`, "txlane_password", "plainpass", ""},
		{"trust", `"txlane_app" "anything"`, pgtest.AppRole, "anything", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := auth.ParseFile("users.txt", []byte(tc.line))
			if err != nil {
				t.Fatal(err)
			}
			p := startProxy(t, func(o *proxy.Options) { o.Auth = proxy.AuthOptions{Type: auth.MethodSCRAM, File: f} })
			u, _ := url.Parse(p.DSN(t, ""))
			u.User = url.UserPassword(tc.user, tc.password)
			c, err := pgxTry(t, u.String())
			if tc.wantCode != "" {
				wantSQLState(t, err, tc.wantCode, fmt.Sprintf("txlane cannot log in to the PostgreSQL server as user %q", tc.user))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var user string
			if err := c.QueryRow(ctx, "SELECT session_user").Scan(&user); err != nil || user != tc.user {
				t.Fatalf("session_user %q, %v", user, err)
			}
			// The password is still checked by txlane.
			u.User = url.UserPassword(tc.user, "wrong")
			_, err = pgxTry(t, u.String())
			wantSQLState(t, err, "28P01", "")
		})
	}
}

// TestAuthQueryUnknownDatabase: a client naming a database that does not
// exist cannot be looked up there (57P03); txlane keeps no pool for it.
func TestAuthQueryUnknownDatabase(t *testing.T) {
	p := startTLSBed(t, func(o *proxy.Options) {
		o.Auth = proxy.AuthOptions{Type: auth.MethodSCRAM, User: pgtest.TLSAuthRole.User, Query: pgtest.TLSAuthQuery}
		o.Primary.User, o.Primary.Password = pgtest.TLSAuthRole.User, pgtest.TLSAuthRole.Password
	})
	for i := range 3 {
		dsn := strings.Replace(p.tlsDSN(pgtest.TLSSCRAMRole), "/txlane_test?", fmt.Sprintf("/nodb_%d?", i), 1)
		_, err := pgxTry(t, dsn)
		wantSQLState(t, err, "57P03", `txlane cannot look up the password of user "txlane_scram"`)
	}
}
