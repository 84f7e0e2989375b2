package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// pgx's own test suite, run through txlane.
//
// The suite is the one in the module cache for the pgx version go.mod
// requires: `go test` runs it from there (nothing of pgx is copied into this
// repository). Its tests find their server in PGX_TEST_DATABASE and a few
// optional PGX_TEST_*_CONN_STRING variables; the harness points all of them at
// a txlane proxy in session mode (no vector lane: every statement on the
// client's own backend) in front of a database of its own, set up as pgx's
// testsetup/postgresql_setup.sql sets up pgx's (hstore, ltree, the uint64
// domain).

// pgxSuitePackages are the pgx packages whose tests run: the connection and
// query layer, the wire-protocol layer, database/sql and the pool. (pgtype's
// codec tests pass through txlane too but add about a minute.)
var pgxSuitePackages = []string{
	"github.com/jackc/pgx/v5",
	"github.com/jackc/pgx/v5/pgconn",
	"github.com/jackc/pgx/v5/stdlib",
	"github.com/jackc/pgx/v5/pgxpool",
}

// pgxSuiteSkips are the suite's top-level tests that do not run (exact
// names), each with why. Everything else runs, the three
// *TimeoutBetweenParseAndDescribe tests included (statement_timeout fires
// between a Parse and a Describe sent apart, as without txlane).
var pgxSuiteSkips = []struct{ test, why string }{
	// Cannot pass through txlane, by design: the process ID in
	// BackendKeyData is txlane's own (so that cancel requests come to
	// txlane), and these tests kill "their" backend with
	// pg_terminate_backend(PID()), which then names no backend.
	{"TestFatalRxError", "pg_terminate_backend(PgConn().PID()): txlane's PID is not the server's"},
	{"TestFatalTxError", "pg_terminate_backend(PgConn().PID()): txlane's PID is not the server's"},
	{"TestConnPing", "pg_terminate_backend(PID()): txlane's PID is not the server's"},
	{"TestConnCheckConn", "pg_terminate_backend(PID()), then waits 120 s for a close that never comes"},
	{"TestConnCopyFromConnectionTerminated", "pg_terminate_backend(PID()); passes only when its 120 s context expires"},
	{"TestPoolAcquireChecksIdleConns", "pg_terminate_backend(PID()): txlane's PID is not the server's"},
	{"TestCheckIdleConn", "pg_terminate_backend(PID()): txlane's PID is not the server's"},
	// Pass through txlane, but too slow for this selection.
	{"TestListenNotifyWhileBusyIsSafe", "passes; 15-30 s of 5,000 queries against a NOTIFY loop"},
	{"TestConnQueryErrorWhileReturningRows", "passes; 4-14 s"},
}

// TestPgxSuite runs pgx's test suite (pgxSuitePackages less pgxSuiteSkips)
// through txlane; every test must pass. It skips when pgx's sources or the go
// command are missing, and with -short. About 40 s on two cores once pgx's
// test packages are built (building them adds about 20 s the first time).
func TestPgxSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("pgx's suite takes about 40 s (-short)")
	}
	var skip []string
	for _, s := range pgxSuiteSkips {
		skip = append(skip, s.test)
	}
	runPgxSuite(t, nil, pgxSuitePackages, "", "^("+strings.Join(skip, "|")+")$")
}

// pgxSuiteWatch, when set, runs beside the suite (a diagnostic hook).
var pgxSuiteWatch func(t *testing.T, p *testProxy) (stop func())

// runPgxSuite runs `go test -run run -skip skip pkgs` against txlane
// (options adjusted by mutate, if not nil) and reports every failed pgx test
// by name with its output.
func runPgxSuite(t *testing.T, mutate func(*proxy.Options), pkgs []string, run, skip string) {
	goCmd := goCommand(t)
	dir := pgxSourceDir(t, goCmd)
	if _, err := os.Stat(filepath.Join(dir, "conn_test.go")); err != nil {
		t.Skipf("pgx's test sources are not in the module cache (%v)", err)
	}
	// The test files' own dependencies (testify, ...) must resolve too.
	if out, err := osexec.Command(goCmd, append([]string{"list", "-test"}, pkgs...)...).CombinedOutput(); err != nil {
		t.Skipf("pgx's test packages do not load: %v\n%s", err, out)
	}

	db := pgxSuiteDatabase(t)
	p := startProxy(t, mutate)
	if pgxSuiteWatch != nil {
		stop := pgxSuiteWatch(t, p)
		defer stop()
	}
	through := func(user, password string) string {
		u, err := url.Parse(p.DSN(t, user))
		if err != nil {
			t.Fatal(err)
		}
		if password != "" {
			u.User = url.UserPassword(user, password)
		}
		u.Path = "/" + db
		return u.String()
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PGX_TEST_") })
	env = append(env,
		"PGX_TEST_DATABASE="+through("", ""),
		"PGX_TEST_TCP_CONN_STRING="+through("", ""),
		// pgx's own check that a pooler in front of the server is usable.
		"PGX_TEST_PGBOUNCER_CONN_STRING="+through("", ""),
	)
	for _, r := range pgtest.PasswordRoles() {
		name := map[string]string{"md5": "MD5", "scram-sha-256": "SCRAM", "password": "PLAIN"}[r.Method]
		env = append(env, fmt.Sprintf("PGX_TEST_%s_PASSWORD_CONN_STRING=%s", name, through(r.User, r.Password)))
	}

	args := []string{"test", "-count=1", "-json", "-timeout=5m", "-parallel=8"}
	if run != "" {
		args = append(args, "-run", run)
	}
	if skip != "" {
		args = append(args, "-skip", skip)
	}
	args = append(args, pkgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := osexec.CommandContext(ctx, goCmd, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	res := readTestEvents(stdout)
	waitErr := cmd.Wait()
	t.Logf("go %s: %v; %d passed, %d skipped, %d failed",
		strings.Join(args[:len(args)-len(pkgs)], " "), time.Since(start).Round(100*time.Millisecond), res.passed, res.skipped, len(res.failed))
	for _, pkg := range res.packages {
		t.Log(pkg)
	}
	for _, f := range res.failed {
		t.Errorf("pgx test %s failed through txlane:\n%s", f, res.output[f])
	}
	if waitErr != nil && len(res.failed) == 0 {
		t.Errorf("go test: %v\n%s\n%s", waitErr, res.other, stderr.Bytes())
	}
	if res.passed == 0 && len(res.failed) == 0 {
		t.Errorf("no pgx test ran\n%s", stderr.Bytes())
	}
}

// testEvents is what `go test -json` reported.
type testEvents struct {
	passed, skipped int
	failed          []string          // "package TestName[/subtest]"
	output          map[string]string // by the same key
	packages        []string          // one summary line per package
	other           []byte            // output that belongs to no test (build errors)
}

func readTestEvents(r interface{ Read([]byte) (int, error) }) *testEvents {
	res := &testEvents{output: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			Action, Package, Test, Output string
			Elapsed                       float64
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			res.other = append(append(res.other, sc.Bytes()...), '\n')
			continue
		}
		key := e.Package + " " + e.Test
		switch {
		case e.Action == "output" && e.Test != "":
			res.output[key] += e.Output
		case e.Output != "": // build output, package summaries
			res.other = append(res.other, e.Output...)
		case e.Test == "" && (e.Action == "pass" || e.Action == "fail"):
			res.packages = append(res.packages, fmt.Sprintf("%s %s %.1fs", e.Action, e.Package, e.Elapsed))
		case e.Action == "pass":
			res.passed++
		case e.Action == "skip":
			res.skipped++
		case e.Action == "fail":
			res.failed = append(res.failed, key)
		}
	}
	return res
}

// goCommand returns the go command (`go test` puts its own first in PATH).
func goCommand(t *testing.T) string {
	t.Helper()
	p, err := osexec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to run pgx's tests with: %v", err)
	}
	return p
}

// pgxSourceDir returns where pgx's module (the version go.mod requires) is
// unpacked, skipping the test when it is not.
func pgxSourceDir(t *testing.T, goCmd string) string {
	t.Helper()
	out, err := osexec.Command(goCmd, "list", "-m", "-f", "{{.Dir}}", "github.com/jackc/pgx/v5").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		var ee *osexec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		t.Skipf("pgx's module is not in the module cache (%v)", err)
	}
	return dir
}

// pgxSuiteDatabase creates a database for pgx's tests, as pgx's own test
// setup does (hstore, ltree, the uint64 domain), and drops it at the end.
// pgx's tests create tables of fixed names: a database of their own keeps
// them away from txlane's tests.
func pgxSuiteDatabase(t *testing.T) string {
	t.Helper()
	cfg := pgtest.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	db := uniqueName("txlane_pgx")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db).ReadAll(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if c, err := pgconn.ConnectConfig(ctx, cfg); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)").ReadAll()
			c.Close(ctx)
		}
	})
	in := cfg.Copy()
	in.Database = db
	c, err := pgconn.ConnectConfig(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	setup := `CREATE EXTENSION hstore; CREATE EXTENSION ltree; CREATE DOMAIN uint64 AS numeric(20,0)`
	if _, err := c.Exec(ctx, setup).ReadAll(); err != nil {
		t.Fatalf("setting up pgx's test database (hstore and ltree come with PostgreSQL's contrib modules): %v", err)
	}
	return db
}
