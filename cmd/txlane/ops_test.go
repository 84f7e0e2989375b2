package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/internal/testbin"
	"github.com/txlane/txlane/router"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestOperations starts the real binary against the test database and
// operates it as people do: edits of its configuration file, signals, the
// admin console with psql, /metrics, a graceful stop.
func TestOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatal("psql is not installed: scripts/pg.sh install provides it")
	}
	bin := testbin.Build(t, "./cmd/txlane")
	dsn := pgtest.DSN(t)

	t.Run("reload", func(t *testing.T) { testReload(t, bin, dsn) })
	t.Run("admin console", func(t *testing.T) { testAdminConsole(t, bin, dsn) })
	t.Run("metrics and health", func(t *testing.T) { testMetricsAndHealth(t, bin, dsn) })
	t.Run("pprof", func(t *testing.T) { testPprof(t, bin, dsn) })
	t.Run("graceful stop", func(t *testing.T) { testGracefulStop(t, bin, dsn) })
	t.Run("second signal", func(t *testing.T) { testSecondSignal(t, bin, dsn) })
	t.Run("idle in transaction", func(t *testing.T) { testIdleInTransaction(t, bin, dsn) })
	t.Run("explain and SHOW POLICY", func(t *testing.T) { testExplainAndPolicy(t, bin, dsn) })
	t.Run("unix socket", func(t *testing.T) { testUnixSocket(t, bin, dsn) })
}

// testUnixSocket: with unix_socket_dir, psql -h DIR -p PORT reaches txlane
// (and through it the server); the admin console takes the same OS user
// over the socket (SO_PEERCRED) and shows its clients as "unix", as
// PgBouncer does, and refuses another OS user (when the test runs as root,
// psql runs as nobody); the socket goes when txlane stops.
func testUnixSocket(t *testing.T, bin, dsn string) {
	// Not t.TempDir: its parent is private to this user, and nobody must reach the socket.
	dir, err := os.MkdirTemp("", "txlane-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := startTxlane(t, bin, dsn, "unix_socket_dir: "+dir+"\n")
	_, port, _ := net.SplitHostPort(p.listen)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("psql", "-X", "-At", "-h", dir, "-p", port, "-U", u.User.Username(), "-d", strings.TrimPrefix(u.Path, "/"),
		"-c", "SELECT 'via ' || coalesce(inet_client_addr()::text, 'local')").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "via 127.0.0.1") {
		t.Fatalf("psql over the socket: %v: %s", err, out)
	}

	// A client held open over the socket, and the console over the socket as this OS user.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	held, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s dbname=%s application_name=over-unix",
		dir, port, u.User.Username(), strings.TrimPrefix(u.Path, "/")))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	console := func(cred *syscall.Credential) (string, error) {
		cmd := exec.Command("psql", "-X", "-At", "-h", dir, "-p", port, "-d", "txlane", "-U", "whoever", "-c", "SHOW CLIENTS")
		cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
		cmd.Dir = "/"
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			cmd.Env = append(cmd.Env, "HOME=/")
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out2, err := console(nil)
	if err != nil {
		t.Fatalf("admin console over the socket as the same OS user: %v\n%s", err, out2)
	}
	if !regexp.MustCompile(`(?m)^C\|[^|]*\|[^|]*\|[^|]*\|unix\|\|[^|]*\|[^|]*\|[^|]*\|[^|]*\|over-unix\|`).MatchString(out2) {
		t.Errorf("SHOW CLIENTS does not show the Unix client's addr as unix:\n%s", out2)
	}
	if os.Getuid() != 0 {
		t.Log("not root: cannot run a client as another OS user")
	} else {
		out3, err := console(&syscall.Credential{Uid: 65534, Gid: 65534})
		if err == nil || !strings.Contains(out3, "accepts only local connections from the operating-system user running txlane") ||
			!strings.Contains(out3, "uid 65534") {
			t.Errorf("admin console over the socket as uid 65534: %v\n%s", err, out3)
		}
	}

	socket := filepath.Join(dir, ".s.PGSQL."+port)
	if _, err := os.Stat(socket); err != nil {
		t.Fatal(err)
	}
	held.Close(context.Background())
	p.cmd.Process.Signal(os.Interrupt)
	<-p.exited
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
}

// proc is one running txlane process.
type proc struct {
	t      *testing.T
	dsn    string // the test database, direct
	cmd    *exec.Cmd
	config string // path of its configuration file
	listen string // host:port of clients
	admin  string // host:port of the HTTP endpoint
	users  string // admin.users, as a YAML flow list ("" for none)
	logs   *testbin.SyncBuffer
	exited chan struct{}
	code   int // valid after exited
}

// configText is a configuration for p: listen and admin.listen, the primary,
// then extra (YAML, top-level keys).
func (p *proc) configText(extra string) string {
	users := ""
	if p.users != "" {
		users = "  users: " + p.users + "\n"
	}
	return fmt.Sprintf("listen: %s\nprimary: %q\nadmin:\n  listen: %s\n%s%s", p.listen, p.dsn, p.admin, users, extra)
}

// startTxlane writes a configuration (see configText) and starts the binary
// on it, waiting until it serves. adminUsers, if given, is admin.users.
func startTxlane(t *testing.T, bin, dsn, extra string, adminUsers ...string) *proc {
	t.Helper()
	return startTxlaneOn(t, bin, dsn, testbin.FreeAddr(t), extra, adminUsers...)
}

// startTxlaneOn is startTxlane with listen as the client address.
func startTxlaneOn(t *testing.T, bin, dsn, listen, extra string, adminUsers ...string) *proc {
	t.Helper()
	p := &proc{t: t, dsn: dsn, config: filepath.Join(t.TempDir(), "txlane.yaml"),
		listen: listen, admin: testbin.FreeAddr(t), logs: &testbin.SyncBuffer{}, exited: make(chan struct{})}
	if len(adminUsers) > 0 {
		p.users = "[" + strings.Join(adminUsers, ", ") + "]"
	}
	p.write(p.configText(extra))
	p.cmd = exec.Command(bin, "--config", p.config)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("txlane output:\n%s", p.logs)
		}
	})
	p.waitFor(15*time.Second, "txlane to serve", func() bool {
		c, err := net.DialTimeout("tcp", p.listen, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return p.httpStatus("/healthz") == http.StatusOK
	})
	return p
}

// write replaces the configuration file in place.
func (p *proc) write(text string) {
	p.t.Helper()
	if err := os.WriteFile(p.config, []byte(text), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func (p *proc) waitFor(timeout time.Duration, what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-p.exited:
			p.t.Fatalf("txlane exited (code %d) while waiting for %s", p.code, what)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("txlane did not exit within %s", timeout)
		return -1
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proc) httpGet(path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func (p *proc) httpStatus(path string) int {
	code, _ := p.httpGet(path)
	return code
}

// metric returns the value of one series of /metrics (name with its labels
// as exposed, e.g. `txlane_requests_total{lane="vector",reason="vector_read_idle"}`),
// 0 when absent.
func (p *proc) metric(series string) float64 {
	p.t.Helper()
	code, body := p.httpGet("/metrics")
	if code != http.StatusOK {
		p.t.Fatalf("/metrics: %d %s", code, body)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				p.t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	return 0
}

// clientDSN is a DSN that reaches the test database through txlane.
func (p *proc) clientDSN(appName string) string {
	u, err := url.Parse(p.dsn)
	if err != nil {
		p.t.Fatal(err)
	}
	u.Host = p.listen
	q := u.Query()
	q.Set("sslmode", "disable")
	q.Set("application_name", appName)
	u.RawQuery = q.Encode()
	return u.String()
}

// connect opens a client connection through txlane.
func (p *proc) connect(appName string) *pgconn.PgConn {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, p.clientDSN(appName))
	if err != nil {
		p.t.Fatalf("connect through txlane: %v", err)
	}
	p.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// runSQL runs sql on c and returns the first column of the last row of the last
// result ("" if none), or the error.
func runSQL(c *pgconn.PgConn, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	last := res[len(res)-1]
	if len(last.Rows) == 0 {
		return "", nil
	}
	return string(last.Rows[len(last.Rows)-1][0]), nil
}

func mustRun(t *testing.T, c *pgconn.PgConn, sql string) string {
	t.Helper()
	v, err := runSQL(c, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// direct runs sql on the test database without txlane.
func direct(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	return mustRun(t, c, sql)
}

// psql runs psql on the admin console as user with -At and the commands,
// and returns its output; err is set when psql fails.
func (p *proc) psql(user string, commands ...string) (string, error) {
	host, port, _ := net.SplitHostPort(p.listen)
	args := []string{"-X", "-At", "-h", host, "-p", port, "-U", user, "-d", "txlane", "-v", "ON_ERROR_STOP=1"}
	for _, c := range commands {
		args = append(args, "-c", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5", "PGSSLMODE=disable")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *proc) mustPsql(user string, commands ...string) string {
	p.t.Helper()
	out, err := p.psql(user, commands...)
	if err != nil {
		p.t.Fatalf("psql %q: %v\n%s", commands, err, out)
	}
	return out
}

// route is the route admin EXPLAIN gives sql.
func (p *proc) route(sql string) string {
	p.t.Helper()
	out := p.mustPsql("admin", "EXPLAIN "+sql)
	for _, line := range strings.Split(out, "\n") {
		if r, ok := strings.CutPrefix(line, "route|"); ok {
			return r
		}
	}
	p.t.Fatalf("EXPLAIN output without a route:\n%s", out)
	return ""
}

// plainTable creates a table without vector columns (discovery does not
// find it) and returns its name.
func plainTable(t *testing.T, dsn string) string {
	t.Helper()
	name := fmt.Sprintf("ops_bin_%d", time.Now().UnixNano()%1_000_000_000)
	direct(t, dsn, fmt.Sprintf("CREATE TABLE %[1]s (id int); INSERT INTO %[1]s VALUES (1), (2); GRANT ALL ON %[1]s TO PUBLIC", name))
	t.Cleanup(func() { direct(t, dsn, "DROP TABLE IF EXISTS "+name) })
	return name
}

func testReload(t *testing.T, bin, dsn string) {
	table := plainTable(t, dsn)
	policy := func(tables, afterWrite string) string {
		return fmt.Sprintf("policy:\n  vector_tables: [%s]\n  discover_vector_tables: false\n  after_write: %s\nlog:\n  level: info\n", tables, afterWrite)
	}
	p := startTxlane(t, bin, dsn, policy("optimization_logs", "table"))
	client := p.connect("ops-reload") // stays connected through every reload
	read := "SELECT count(*) FROM " + table
	vectorReads := `txlane_requests_total{lane="vector",reason="vector_read_idle"}`

	if r := p.route(read); r != "primary (not_vector_read)" {
		t.Fatalf("route before the edit: %s", r)
	}
	mustRun(t, client, read)
	if n := p.metric(vectorReads); n != 0 {
		t.Fatalf("vector reads before the edit: %v", n)
	}

	// A good edit, in place: the table becomes a vector table.
	p.write(p.configText(policy("optimization_logs, "+table, "table")))
	p.waitFor(5*time.Second, "the edit to apply", func() bool { return p.metric("txlane_config_reloads_total") == 1 })
	if r := p.route(read); r != "vector (vector_read_idle)" {
		t.Fatalf("route after the edit: %s", r)
	}
	if out := p.mustPsql("admin", "SHOW POLICY"); !strings.Contains(out, "vector_table|"+table+" (any schema)|config") {
		t.Fatalf("SHOW POLICY lacks the new table:\n%s", out)
	}
	if got := mustRun(t, client, read); got != "2" {
		t.Fatalf("count = %s", got)
	}
	if n := p.metric(vectorReads); n != 1 {
		t.Fatalf("vector reads after the edit: %v, want 1 (the connected client takes the new policy)", n)
	}

	// A bad edit: the last good configuration stays, the problem is logged
	// as FILE:LINE:COL and counted.
	p.write(p.configText(policy("optimization_logs", "sometimes")))
	p.waitFor(5*time.Second, "the reload error", func() bool { return p.metric("txlane_config_reload_errors_total") == 1 })
	if re := regexp.MustCompile(regexp.QuoteMeta(p.config) + `:\d+:\d+: policy\.after_write: `); !re.MatchString(p.logs.String()) {
		t.Fatalf("no FILE:LINE:COL line for the bad edit in the log:\n%s", p.logs)
	}
	if p.metric("txlane_config_last_reload_successful") != 0 {
		t.Error("txlane_config_last_reload_successful is not 0 after a bad edit")
	}
	if r := p.route(read); r != "vector (vector_read_idle)" {
		t.Fatalf("route after the bad edit: %s (the old policy must stay)", r)
	}
	mustRun(t, client, read)
	if n := p.metric(vectorReads); n != 2 {
		t.Fatalf("vector reads after the bad edit: %v, want 2", n)
	}

	// An editor's save: write a temporary file, rename it over the original.
	tmp := p.config + ".swp"
	if err := os.WriteFile(tmp, []byte(p.configText(policy("optimization_logs", "any"))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.config); err != nil {
		t.Fatal(err)
	}
	p.waitFor(5*time.Second, "the renamed file to apply", func() bool { return p.metric("txlane_config_reloads_total") == 2 })
	if r := p.route(read); r != "primary (not_vector_read)" {
		t.Fatalf("route after the rename: %s", r)
	}
	if out := p.mustPsql("admin", "SHOW POLICY"); !strings.Contains(out, "policy.after_write|any|file") {
		t.Fatalf("SHOW POLICY after the rename:\n%s", out)
	}

	// SIGHUP and RELOAD reload even an unchanged file.
	p.signal(syscall.SIGHUP)
	p.waitFor(5*time.Second, "SIGHUP to reload", func() bool { return p.metric("txlane_config_reloads_total") == 3 })
	p.mustPsql("admin", "RELOAD")
	if n := p.metric("txlane_config_reloads_total"); n != 4 {
		t.Fatalf("reloads after RELOAD: %v", n)
	}

	// listen cannot change live: reported, and the old address keeps serving.
	oldListen := p.listen
	p.listen = testbin.FreeAddr(t)
	p.write(p.configText(policy("optimization_logs", "any")))
	p.listen = oldListen
	p.waitFor(5*time.Second, "the listen edit to be seen", func() bool { return p.metric("txlane_config_reloads_total") == 5 })
	if logs := p.logs.String(); !strings.Contains(logs, "apply only after a restart") || !strings.Contains(logs, `"listen"`) {
		t.Fatalf("the listen change was not reported as needing a restart:\n%s", logs)
	}
	// Nothing else changed: said so, not "changed: []".
	if logs := p.logs.String(); !strings.Contains(logs, "configuration reloaded; no key that applies live changed") ||
		strings.Contains(logs, `"changed": []`) {
		t.Fatalf("a reload that changed only a restart key is not reported as changing no live key:\n%s", logs)
	}
	// SHOW POLICY shows the value in force, the old one.
	if out := p.mustPsql("admin", "SHOW POLICY"); !strings.Contains("\n"+out, "\nlisten|"+oldListen+"|file\n") {
		t.Fatalf("SHOW POLICY after the listen edit lacks the listen in force (%s):\n%s", oldListen, out)
	}

	// The client was never dropped.
	if got := mustRun(t, client, "SELECT 41 + 1"); got != "42" {
		t.Fatalf("client after the reloads: %s", got)
	}
	if out := p.mustPsql("admin", "SHOW CLIENTS"); !regexp.MustCompile(`\|ops-reload\|\d+\|I\|`).MatchString(out) {
		t.Fatalf("SHOW CLIENTS lacks the client:\n%s", out)
	}
}

func testAdminConsole(t *testing.T, bin, dsn string) {
	table := plainTable(t, dsn)
	// Without admin.users: local connections of the same OS user (the test
	// runs psql as the user running txlane).
	p := startTxlane(t, bin, dsn, "policy:\n  discover_vector_tables: false\n")
	c := p.connect("ops-console")
	mustRun(t, c, "BEGIN")
	mustRun(t, c, "SELECT count(*) FROM "+table)

	// PgBouncer's columns first (a session-mode client is linked to its
	// backend: active), then txlane's (transaction status T).
	out := p.mustPsql("admin", "SHOW CLIENTS")
	if !regexp.MustCompile(`(?m)^C\|[^|]+\|[^|]+\|active\|127\.0\.0\.1\|\d+\|\d{4}-\d\d-\d\d [\d:.]+Z\|0\|0\|\d+\|ops-console\|\d+\|T\|\|0\|$`).MatchString(out) {
		t.Fatalf("SHOW CLIENTS:\n%s", out)
	}
	// SHOW VERSION is what the binary says it is.
	v, err := exec.Command(p.cmd.Path, "version").Output()
	first, _, _ := strings.Cut(string(v), "\n")
	if err != nil || !strings.HasPrefix(first, "txlane ") {
		t.Fatalf("txlane version: %v: %s", err, v)
	}
	if out := p.mustPsql("admin", "SHOW VERSION"); out != first+"\n" {
		t.Fatalf("SHOW VERSION %q, txlane version %q", out, first)
	}
	mustRun(t, c, "COMMIT")
	db := direct(t, dsn, "SELECT current_database()")
	if out := p.mustPsql("admin", "SHOW POOLS"); !strings.Contains(out, db+"|") {
		t.Fatalf("SHOW POOLS lacks %s:\n%s", db, out)
	}
	if out := p.mustPsql("admin", "SHOW STATS"); !strings.Contains(out, "primary|not_vector_read|") {
		t.Fatalf("SHOW STATS:\n%s", out)
	}
	p.mustPsql("admin", "SHOW UNITS", "SHOW HELP")
	if out := p.mustPsql("admin", "PAUSE", "SHOW POLICY", "RESUME"); !strings.Contains(out, "paused|true|") {
		t.Fatalf("PAUSE then SHOW POLICY:\n%s", out)
	}
	out, err = p.psql("admin", "SELECT 1")
	if err == nil || !strings.Contains(out, "unsupported command") {
		t.Fatalf("SELECT on the console: %v\n%s", err, out)
	}

	// With admin.users, exactly those users, as PostgreSQL authenticates
	// them (pgtest.AppRole needs no password).
	q := startTxlane(t, bin, dsn, "", pgtest.AppRole)
	if out := q.mustPsql(pgtest.AppRole, "SHOW HELP"); !strings.Contains(out, "SHOW CLIENTS|") {
		t.Fatalf("SHOW HELP as %s:\n%s", pgtest.AppRole, out)
	}
	out, err = q.psql("admin", "SHOW HELP")
	if err == nil || !strings.Contains(out, "may not use the txlane admin console") {
		t.Fatalf("a user outside admin.users: %v\n%s", err, out)
	}
}

// testPprof: /debug/pprof/ is 404 while admin.pprof is off (the default),
// serves Go's profiles once a reload turns it on, and is 404 again after a
// reload turns it off.
func testPprof(t *testing.T, bin, dsn string) {
	p := startTxlane(t, bin, dsn, "")
	paths := []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline",
		"/debug/pprof/symbol", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=0.1"}
	off := func(when string) {
		t.Helper()
		for _, path := range paths {
			if code, body := p.httpGet(path); code != http.StatusNotFound {
				t.Errorf("%s: %s: %d %.100q, want 404", when, path, code, body)
			}
		}
	}
	off("by default")

	p.write(fmt.Sprintf("listen: %s\nprimary: %q\nadmin:\n  listen: %s\n  pprof: true\n", p.listen, p.dsn, p.admin))
	p.waitFor(5*time.Second, "the edit to apply", func() bool { return p.metric("txlane_config_reloads_total") == 1 })
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/goroutine?debug=1": "goroutine profile: total",
		"/debug/pprof/heap?debug=1":      "heap profile:",
		"/debug/pprof/cmdline":           "--config",
		"/debug/pprof/profile?seconds=1": "", // a gzipped protobuf
	} {
		code, body := p.httpGet(path)
		if code != http.StatusOK || !strings.Contains(body, want) || body == "" {
			t.Errorf("on: %s: %d %.200q, want 200 with %q", path, code, body, want)
		}
	}

	p.write(p.configText(""))
	p.waitFor(5*time.Second, "the edit to apply", func() bool { return p.metric("txlane_config_reloads_total") == 2 })
	off("turned off again")
}

func testMetricsAndHealth(t *testing.T, bin, dsn string) {
	p := startTxlane(t, bin, dsn, "")
	c := p.connect("ops-metrics")
	mustRun(t, c, "SELECT 1")
	if code, body := p.httpGet("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	_, body := p.httpGet("/metrics")
	for _, name := range []string{
		"txlane_clients ", `txlane_backends{lane="primary",state="idle"} `, `txlane_backends{lane="vector",state="waiting"} `,
		`txlane_requests_total{lane="primary",reason="not_vector_read"} `,
		`txlane_pool_acquire_wait_seconds_bucket{lane="primary",`, `txlane_request_duration_seconds_count{lane="primary"} `,
		"txlane_config_reloads_total ", "txlane_config_reload_errors_total ", "txlane_paused ",
		"go_goroutines ", "process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if n := p.metric("txlane_clients"); n != 1 {
		t.Errorf("txlane_clients = %v, want 1", n)
	}

	// A primary that does not answer: alive, not ready.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	u, _ := url.Parse(dsn)
	u.Host = deadAddr
	dead := startTxlane(t, bin, u.String(), "")
	if code := dead.httpStatus("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the primary down: %d", code)
	}
	start := time.Now()
	if code, body := dead.httpGet("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the primary down: %d %s", code, body)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("/readyz took %s", d)
	}
}

func testGracefulStop(t *testing.T, bin, dsn string) {
	table := plainTable(t, dsn)
	p := startTxlane(t, bin, dsn, "shutdown_timeout: 20s\n")
	idle := p.connect("ops-idle")
	inTx := p.connect("ops-tx")
	mustRun(t, inTx, "BEGIN")
	mustRun(t, inTx, fmt.Sprintf("INSERT INTO %s VALUES (100)", table))

	p.signal(syscall.SIGTERM)
	// The idle client is closed with 57P01; new clients are refused.
	p.waitFor(5*time.Second, "the idle client to be closed", func() bool {
		_, err := runSQL(idle, "SELECT 1")
		return err != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if c, err := pgconn.Connect(ctx, p.clientDSN("late")); err == nil {
		c.Close(ctx)
		t.Error("a new client was accepted during the graceful stop")
	}
	cancel()
	select {
	case <-p.exited:
		t.Fatal("txlane exited with a transaction open")
	case <-time.After(200 * time.Millisecond):
	}
	if code, _ := p.httpGet("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the stop: %d, want 503", code)
	}
	// The transaction finishes.
	mustRun(t, inTx, fmt.Sprintf("INSERT INTO %s VALUES (101)", table))
	mustRun(t, inTx, "COMMIT")
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if n := direct(t, dsn, fmt.Sprintf("SELECT count(*) FROM %s WHERE id >= 100", table)); n != "2" {
		t.Fatalf("committed rows: %s, want 2", n)
	}
	if !strings.Contains(p.logs.String(), "txlane stopped") {
		t.Errorf("no stop line in the log:\n%s", p.logs)
	}
}

func testSecondSignal(t *testing.T, bin, dsn string) {
	table := plainTable(t, dsn)
	p := startTxlane(t, bin, dsn, "shutdown_timeout: 60s\n")
	inTx := p.connect("ops-tx")
	mustRun(t, inTx, "BEGIN")
	mustRun(t, inTx, fmt.Sprintf("INSERT INTO %s VALUES (200)", table))
	p.signal(syscall.SIGTERM)
	p.waitFor(5*time.Second, "the graceful stop to begin", func() bool {
		return strings.Contains(p.logs.String(), "stopping gracefully")
	})
	start := time.Now()
	p.signal(syscall.SIGINT)
	if code := p.wait(5 * time.Second); code != 1 {
		t.Fatalf("exit code %d after a second signal, want 1", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the second signal took %s to stop txlane", d)
	}
	if _, err := runSQL(inTx, "COMMIT"); err == nil {
		t.Error("COMMIT succeeded after a stop at once")
	}
	if n := direct(t, dsn, fmt.Sprintf("SELECT count(*) FROM %s WHERE id = 200", table)); n != "0" {
		t.Fatal("the cut-off transaction committed")
	}
	if !strings.Contains(p.logs.String(), "second signal") {
		t.Errorf("no second-signal line in the log:\n%s", p.logs)
	}
}

func testIdleInTransaction(t *testing.T, bin, dsn string) {
	p := startTxlane(t, bin, dsn, "idle_in_transaction_timeout: 300ms\n")
	c := p.connect("ops-idle-tx")
	mustRun(t, c, "BEGIN")
	time.Sleep(time.Second)
	_, err := runSQL(c, "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25P03" || pe.Severity != "FATAL" {
		t.Fatalf("after idling in a transaction: %v, want FATAL 25P03", err)
	}
	if n := p.metric(`txlane_timeouts_total{kind="idle_in_transaction"}`); n != 1 {
		t.Errorf("txlane_timeouts_total{kind=idle_in_transaction} = %v", n)
	}
}

// testExplainAndPolicy: `txlane explain` on the running server's file
// answers exactly as the server's own EXPLAIN (both take their rules from
// config.Config.RulesConfig), and SHOW POLICY gives every key with its source.
func testExplainAndPolicy(t *testing.T, bin, dsn string) {
	t.Setenv("TXLANE_OPS_REROUTE_WAIT", "4s")
	p := startTxlane(t, bin, dsn, `read_pool: {on_unavailable: error}
policy:
  vector_tables: [docs, app."My-Vec", my-table]
  discover_vector_tables: false
  after_write: any
  escape: reroute
  escape_overrides: [{table: "audit.*", escape: allow}, {table: "public.items", escape: log}]
  unit_comment_keys: [request_id]
  reroute_wait_timeout: ${TXLANE_OPS_REROUTE_WAIT}
  writing_functions: [app.bump]
  read_only_functions: [app.pure]
`)
	for _, sql := range []string{
		"INSERT INTO audit.log VALUES (1) /*request_id='r1'*/",
		"UPDATE items SET a = 1 /*unit='u1'*/",
		"SELECT app.bump() FROM docs /*request_id='r2',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/",
		"SELECT app.pure() FROM docs",
		`SELECT * FROM "my-table" JOIN app."My-Vec" USING (id)`,
		"SELECT * FROM docs FOR UPDATE",
		"SELEC 1 /*request_id='r3'*/",
	} {
		var out, errOut bytes.Buffer
		if code := explain([]string{"--config", p.config, "--json", sql}, &out, &errOut); code != 0 {
			t.Fatalf("explain %q: exit %d: %s", sql, code, &errOut)
		}
		var e router.Explanation
		if err := json.Unmarshal(out.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		var cli []string
		for _, kv := range e.Lines() {
			cli = append(cli, kv[0]+"|"+kv[1])
		}
		server := strings.Split(strings.TrimSuffix(p.mustPsql("admin", "EXPLAIN "+sql), "\n"), "\n")
		if !reflect.DeepEqual(cli, server) {
			t.Errorf("%s:\ntxlane explain:\n  %s\nserver EXPLAIN:\n  %s", sql, strings.Join(cli, "\n  "), strings.Join(server, "\n  "))
		}
	}

	out := p.mustPsql("admin", "SHOW POLICY")
	for _, row := range []string{
		"listen|" + p.listen + "|file",
		"policy.escape|reroute|file",
		"policy.escape_overrides|[audit.*: allow, public.items: log]|file",
		"policy.reroute_wait_timeout|4s|env",
		"read_pool.max_lifetime|1h|default",
		"max_message_size|64MiB|default",
	} {
		if !strings.Contains("\n"+out, "\n"+row+"\n") {
			t.Errorf("SHOW POLICY lacks the row %s:\n%s", row, out)
		}
	}
	keys := 0
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(line, "|"); len(f) == 3 && (f[2] == "default" || f[2] == "file" || f[2] == "env") {
			keys++
		}
	}
	if keys != len(config.Keys()) {
		t.Errorf("SHOW POLICY has %d configuration rows, want one per key (%d):\n%s", keys, len(config.Keys()), out)
	}
}
