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

var (
	mainCalled atomic.Bool

	// Written once by start inside startOnce; read after startOnce.Do.
	startOnce  sync.Once
	startedDir string // cluster directory this process must stop, "" if none
	startedDSN string
	startErr   error
)

// Main runs the tests of m, stops the cluster that DSN started (if any) and exits with the
// tests' status. Call it from TestMain in every package whose tests use pgtest.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	// Wait for a start still in progress, and make later ones impossible.
	startOnce.Do(func() {})
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// DSN returns a connection string for the superuser postgres on the test database. It fails
// the test when no database can be provided; it never skips.
func DSN(tb testing.TB) string {
	tb.Helper()
	if dsn := os.Getenv(EnvDatabase); dsn != "" {
		return dsn
	}
	startOnce.Do(start)
	if startErr != nil {
		tb.Fatalf("pgtest: %v", startErr)
	}
	return startedDSN
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

// start runs scripts/pg.sh start in a new temp dir; it runs at most once per process.
func start() {
	if !mainCalled.Load() {
		startErr = errors.New("no cluster to stop at exit: add `func TestMain(m *testing.M) { pgtest.Main(m) }` " +
			"to this package, or set " + EnvDatabase)
		return
	}
	script, err := script()
	if err != nil {
		startErr = err
		return
	}
	dir, err := os.MkdirTemp("", "txlane-pg-")
	if err != nil {
		startErr = err
		return
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script, "start", dir)
	// The script leaves a watcher that stops the cluster if this process dies before Main
	// stops it (panic, test timeout, signal).
	cmd.Env = append(os.Environ(), "TXLANE_PG_OWNER_PID="+strconv.Itoa(os.Getpid()))
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if testing.Verbose() {
		// Installing PostgreSQL and pgvector can take minutes: show progress.
		cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	}
	startedDir = dir
	if err := cmd.Run(); err != nil {
		startErr = fmt.Errorf("bash %s start %s: %v\n%s", script, dir, err, stderr.String())
		if err := stop(); err != nil {
			startErr = fmt.Errorf("%w\n(and %v)", startErr, err)
		}
		os.Remove(dir) // when the script failed before taking dir over, it is still empty
		return
	}
	startedDSN = strings.TrimSpace(stdout.String())
	if startedDSN == "" || strings.ContainsAny(startedDSN, "\n") {
		startErr = fmt.Errorf("bash %s start %s printed %q, want one DSN line\n%s", script, dir, stdout.String(), stderr.String())
	}
}

// stop stops and removes the cluster this process started, if any.
func stop() error {
	dir := startedDir
	if dir == "" {
		return nil
	}
	startedDir = ""
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
