package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// query runs sql on conn and returns the first column of the first row as text.
func query(t *testing.T, conn *pgconn.PgConn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("%s: %v", sql, res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) < 1 {
		t.Fatalf("%s: got %d rows, want 1", sql, len(res.Rows))
	}
	return string(res.Rows[0][0])
}

func connect(t *testing.T, cfg *pgconn.Config) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s to %s: %v", cfg.User, cfg.Database, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestVector(t *testing.T) {
	conn := connect(t, pgtest.Config(t))
	if v := query(t, conn, `SELECT extversion FROM pg_extension WHERE extname = 'vector'`); v == "" {
		t.Fatal("vector extension has an empty version")
	}
	if d := query(t, conn, `SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector`); d != "1" {
		t.Fatalf("distance = %s, want 1", d)
	}
}

// A database created later inherits vector from template1.
func TestTemplate1HasVector(t *testing.T) {
	cfg := pgtest.Config(t)
	cfg.Database = "template1"
	conn := connect(t, cfg)
	if n := query(t, conn, `SELECT count(*) FROM pg_extension WHERE extname = 'vector'`); n != "1" {
		t.Fatalf("template1 has %s vector extensions, want 1", n)
	}
}

func TestExec(t *testing.T) {
	table := fmt.Sprintf("pgtest_exec_%d", time.Now().UnixNano())
	pgtest.Exec(t, "CREATE TABLE "+table+" (id int, v vector(3)); INSERT INTO "+table+" VALUES (1, '[1,2,3]')")
	pgtest.Exec(t, "DROP TABLE "+table)
}

func TestAppRoleCreatesTables(t *testing.T) {
	cfg := pgtest.Config(t)
	cfg.User, cfg.Password = pgtest.AppRole, ""
	conn := connect(t, cfg)
	table := fmt.Sprintf("pgtest_app_%d", time.Now().UnixNano())
	if got := query(t, conn, "SELECT current_user"); got != pgtest.AppRole {
		t.Fatalf("current_user = %s, want %s", got, pgtest.AppRole)
	}
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (v vector(3)); DROP TABLE "+table).ReadAll(); err != nil {
		t.Fatalf("%s cannot create a table: %v", pgtest.AppRole, err)
	}
}

func TestPasswordRoles(t *testing.T) {
	super := connect(t, pgtest.Config(t))
	for _, role := range pgtest.PasswordRoles() {
		t.Run(role.Method, func(t *testing.T) {
			// md5 needs an md5 hash on the server; the other two work from a SCRAM verifier.
			stored := query(t, super, "SELECT rolpassword FROM pg_authid WHERE rolname = '"+role.User+"'")
			wantPrefix := "SCRAM-SHA-256$"
			if role.Method == "md5" {
				wantPrefix = "md5"
			}
			if !strings.HasPrefix(stored, wantPrefix) {
				t.Errorf("%s password is stored as %.14s..., want prefix %s", role.User, stored, wantPrefix)
			}

			cfg := pgtest.Config(t)
			cfg.User, cfg.Password = role.User, role.Password
			conn := connect(t, cfg)
			if got := query(t, conn, "SELECT current_user"); got != role.User {
				t.Fatalf("current_user = %s, want %s", got, role.User)
			}

			cfg = pgtest.Config(t)
			cfg.User, cfg.Password = role.User, role.Password+"-wrong"
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			bad, err := pgconn.ConnectConfig(ctx, cfg)
			if err == nil {
				bad.Close(ctx)
				t.Fatalf("%s logged in with a wrong password", role.User)
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Fatalf("wrong password for %s: got %v, want SQLSTATE 28P01", role.User, err)
			}
		})
	}
}

// The TLS cluster takes TCP logins only over TLS with a password: the
// superuser's DSN verifies the certificate, plaintext is refused, each role
// logs in with its method, and the auth role reads secrets only through
// its function.
func TestTLSCluster(t *testing.T) {
	cfg, err := pgconn.ParseConfig(pgtest.TLSDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, cfg)
	if ssl := query(t, conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); ssl != "t" {
		t.Fatalf("ssl = %s", ssl)
	}
	plainCfg := cfg.Copy()
	plainCfg.TLSConfig, plainCfg.Fallbacks = nil, nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c, err := pgconn.ConnectConfig(ctx, plainCfg); err == nil {
		c.Close(ctx)
		t.Fatal("a plaintext login succeeded")
	}
	for _, r := range []pgtest.Role{pgtest.TLSSCRAMRole, pgtest.TLSMD5Role, pgtest.TLSAuthRole} {
		rc := cfg.Copy()
		rc.User, rc.Password = r.User, r.Password
		c := connect(t, rc)
		if got := query(t, c, "SELECT current_user"); got != r.User {
			t.Fatalf("current_user %s, want %s", got, r.User)
		}
		if r == pgtest.TLSAuthRole {
			secret := query(t, c, strings.Replace(pgtest.TLSAuthQuery, "$1", "'txlane_scram'", 1)+" OFFSET 0")
			if !strings.HasPrefix(secret, "txlane_scram") {
				t.Fatalf("lookup: %q", secret)
			}
			res := c.ExecParams(ctx, "SELECT rolpassword FROM pg_authid", nil, nil, nil, nil).Read()
			var pgErr *pgconn.PgError
			if !errors.As(res.Err, &pgErr) || pgErr.Code != "42501" {
				t.Fatalf("the auth role reads pg_authid: %v", res.Err)
			}
		}
	}
}
