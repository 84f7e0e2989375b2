package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// EnvDatabase is the environment variable naming an existing test database (a superuser DSN).
const EnvDatabase = "TXLANE_TEST_DATABASE"

// AppRole is a LOGIN role without a password (trust authentication) that may create tables in
// the public schema of the test database.
const AppRole = "txlane_app"

// Role is a role that logs in over TCP with a password.
type Role struct {
	User     string
	Password string
	// Method is the pg_hba.conf authentication method for User: md5, scram-sha-256 or password.
	Method string
}

// PasswordRoles returns the roles scripts/pg.sh creates for each password authentication
// method. They may connect to and create tables in the test database.
func PasswordRoles() []Role {
	return []Role{
		{User: "txlane_md5", Password: "md5pass", Method: "md5"},
		{User: "txlane_scram", Password: "scrampass", Method: "scram-sha-256"},
		{User: "txlane_password", Password: "plainpass", Method: "password"},
	}
}

// EnvTLSDatabase is the environment variable naming an existing TLS test database (a
// superuser DSN with its password), set up as `scripts/pg.sh start-tls` sets one up.
const EnvTLSDatabase = "TXLANE_TEST_TLS_DATABASE"

// The TLS cluster (TLSDSN) is what managed PostgreSQL services look like: over TCP only TLS
// and passwords. These are its roles and its auth_query helper.
var (
	// TLSSCRAMRole logs in with scram-sha-256 (and SCRAM-SHA-256-PLUS when offered).
	TLSSCRAMRole = Role{User: "txlane_scram", Password: "scrampass", Method: "scram-sha-256"}
	// TLSMD5Role has an md5 secret and logs in with md5.
	TLSMD5Role = Role{User: "txlane_md5", Password: "md5pass", Method: "md5"}
	// TLSAuthRole is no superuser, logs in with scram-sha-256, and may call the function of
	// TLSAuthQuery.
	TLSAuthRole = Role{User: "txlane_auth", Password: "authpass", Method: "scram-sha-256"}
)

// TLSAuthQuery is an auth_query for TLSAuthRole in the TLS cluster's test database: a
// SECURITY DEFINER function that returns a user's name and secret from pg_authid.
const TLSAuthQuery = "SELECT usename, passwd FROM txlane_auth.lookup($1)"

var mainCalled atomic.Bool

// cluster is a throwaway cluster this process may start: at most once, on first use, and
// stopped by Main.
type cluster struct {
	env  string // environment variable naming an existing one instead
	mode string // scripts/pg.sh command: start or start-tls

	// Written once by start inside once; read after once.Do.
	once sync.Once
	dir  string // cluster directory this process must stop, "" if none
	dsn  string
	err  error
}

var (
	plain  = &cluster{env: EnvDatabase, mode: "start"}
	secure = &cluster{env: EnvTLSDatabase, mode: "start-tls"}
)

// Main runs the tests of m, stops the clusters that DSN and TLSDSN started (if any) and exits with the
// tests' status. Call it from TestMain in every package whose tests use pgtest.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	for _, c := range []*cluster{plain, secure} {
		// Wait for a start still in progress, and make later ones impossible.
		c.once.Do(func() {})
		if err := c.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// DSN returns a connection string for the superuser postgres on the test database. It fails
// the test when no database can be provided; it never skips.
func DSN(tb testing.TB) string {
	tb.Helper()
	return plain.get(tb)
}

// TLSDSN returns a connection string for the superuser postgres (with its password) on the
// test database of a second cluster that takes TCP connections only over TLS, with
// scram-sha-256 (md5 for TLSMD5Role) and a self-signed certificate; the DSN verifies it
// (sslmode=verify-full, sslrootcert). It is $TXLANE_TEST_TLS_DATABASE when set, otherwise a
// cluster `scripts/pg.sh start-tls` starts for this test binary. It fails the test when no
// database can be provided; it never skips.
func TLSDSN(tb testing.TB) string {
	tb.Helper()
	return secure.get(tb)
}

func (c *cluster) get(tb testing.TB) string {
	tb.Helper()
	if dsn := os.Getenv(c.env); dsn != "" {
		return dsn
	}
	c.once.Do(c.start)
	if c.err != nil {
		tb.Fatalf("pgtest: %v", c.err)
	}
	return c.dsn
}

// Config returns DSN parsed by pgconn.ParseConfig; the caller may modify it.
func Config(tb testing.TB) *pgconn.Config {
	tb.Helper()
	cfg, err := pgconn.ParseConfig(DSN(tb))
	if err != nil {
		tb.Fatalf("pgtest: parse %s: %v", EnvDatabase, err)
	}
	return cfg
}

// Exec runs sql, which may hold several statements, as the superuser on the test database
// and fails the test on any error.
func Exec(tb testing.TB, sql string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, Config(tb))
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		tb.Fatalf("pgtest: exec %q: %v", sql, err)
	}
}

// start runs scripts/pg.sh start (or start-tls) in a new temp dir; it runs at most once per
// process.
func (c *cluster) start() {
	if !mainCalled.Load() {
		c.err = errors.New("no cluster to stop at exit: add `func TestMain(m *testing.M) { pgtest.Main(m) }` " +
			"to this package, or set " + c.env)
		return
	}
	script, err := script()
	if err != nil {
		c.err = err
		return
	}
	dir, err := os.MkdirTemp("", "txlane-pg-")
	if err != nil {
		c.err = err
		return
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script, c.mode, dir)
	// The script leaves a watcher that stops the cluster if this process dies before Main
	// stops it (panic, test timeout, signal).
	cmd.Env = append(os.Environ(), "TXLANE_PG_OWNER_PID="+strconv.Itoa(os.Getpid()))
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if testing.Verbose() {
		// Installing PostgreSQL and pgvector can take minutes: show progress.
		cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	}
	c.dir = dir
	if err := cmd.Run(); err != nil {
		c.err = fmt.Errorf("bash %s %s %s: %v\n%s", script, c.mode, dir, err, stderr.String())
		if err := c.stop(); err != nil {
			c.err = fmt.Errorf("%w\n(and %v)", c.err, err)
		}
		os.Remove(dir) // when the script failed before taking dir over, it is still empty
		return
	}
	c.dsn = strings.TrimSpace(stdout.String())
	if c.dsn == "" || strings.ContainsAny(c.dsn, "\n") {
		c.err = fmt.Errorf("bash %s %s %s printed %q, want one DSN line\n%s", script, c.mode, dir, stdout.String(), stderr.String())
	}
}

// stop stops and removes the cluster this process started, if any.
func (c *cluster) stop() error {
	dir := c.dir
	if dir == "" {
		return nil
	}
	c.dir = ""
	script, err := script()
	if err != nil {
		return err
	}
	out, err := exec.Command("bash", script, "stop", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bash %s stop %s: %v\n%s", script, dir, err, out)
	}
	return nil
}

// script returns the path of scripts/pg.sh in the module that holds the working directory.
func script() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "scripts", "pg.sh"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: cannot find scripts/pg.sh")
		}
		dir = parent
	}
}
