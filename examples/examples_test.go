// Package examples_test runs every example through the real txlane binary, against the
// test database of internal/pgtest:
//
//   - examples/prisma-drizzle (Node: Prisma 7 + Drizzle + pgvector), after
//     scripts/examples.sh installed its npm packages; it needs node and npm, and fails
//     without them unless TXLANE_SKIP_NODE=1;
//   - examples/go-semantic-cache (pgx + pgvector-go), built with go build;
//   - examples/psql, the walkthrough of its README.md, statement by statement through psql;
//   - examples/monitoring, whose alert rules and dashboard queries must name only metrics,
//     labels and values a running txlane exposes (monitoring_test.go).
//
// Each example gets a database of its own (CREATE DATABASE, dropped at the end) and one
// txlane process per policy.escape it is run with. txlane is built from ./cmd/txlane, or
// taken from $TXLANE_BIN when that names a binary.
package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/internal/testbin"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// database creates an empty database for one example on the test server and returns
// its DSN for direct connections (superuser) and its name. It is dropped at the end.
func database(t *testing.T, prefix string) (dsn, name string) {
	t.Helper()
	name = fmt.Sprintf("txlane_ex_%s_%08x", prefix, rand.Uint32())
	admin := pgtest.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(sql string) error {
		conn, err := pgconn.ConnectConfig(ctx, admin)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, sql).ReadAll()
		return err
	}
	// template0 accepts no connections, so no other test can make the copy fail (55006);
	// each example's setup creates the vector extension.
	if err := run(`CREATE DATABASE ` + name + ` TEMPLATE template0`); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgconn.ConnectConfig(ctx, admin)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`).ReadAll(); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return clientURL(t, admin.Host, admin.Port, admin.User, admin.Password, name), name
}

func clientURL(t *testing.T, host string, port uint16, user, password, db string) string {
	t.Helper()
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(host, strconv.Itoa(int(port))), Path: "/" + db, RawQuery: "sslmode=disable"}
	if strings.HasPrefix(host, "/") { // a Unix socket directory
		u.Host = ""
		u.RawQuery += "&host=" + url.QueryEscape(host) + "&port=" + strconv.Itoa(int(port))
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

// execFile runs a SQL file (several statements) directly on dsn.
func execFile(t *testing.T, dsn, path string) {
	t.Helper()
	sql, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, string(sql)).ReadAll(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// proxyProcess is a running txlane.
type proxyProcess struct {
	addr   string // host:port clients connect to
	config string // path of its configuration file
	out    *testbin.SyncBuffer
}

// URL is the connection URL of database db through this txlane, as user.
func (p *proxyProcess) URL(user, db string) string {
	return "postgres://" + url.User(user).String() + "@" + p.addr + "/" + db + "?sslmode=disable"
}

// writeConfig writes a txlane configuration listening on addr with the given escape
// action and returns its path.
func writeConfig(t *testing.T, addr, escape string) string {
	t.Helper()
	cfg := fmt.Sprintf(`# written by examples_test.go
listen: %s
primary: %s
read_pool:
  max_conns: 4
  acquire_timeout: 2s
policy:
  vector_tables: [optimization_logs]
  escape: %s
  unit_comment_keys: [unit]
  reroute_wait_timeout: 5s
admin:
  listen: ""
log:
  level: info
`, addr, strconv.Quote(pgtest.DSN(t)), escape)
	path := filepath.Join(t.TempDir(), "txlane-"+escape+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startTxlane runs bin with a configuration for escape on a free port and waits until it
// accepts connections. It is stopped at the end of the test; its output is logged when the
// test failed.
func startTxlane(t *testing.T, bin, escape string) *proxyProcess {
	t.Helper()
	return startTxlaneWith(t, bin, "escape: "+escape, func(addr string) string { return writeConfig(t, addr, escape) })
}

// startTxlaneWith runs bin with the configuration file config writes for a free port, and
// waits until it accepts connections there (three attempts: the port may be taken
// meanwhile). It is stopped at the end of the test; its output, under name, is logged when
// the test failed.
func startTxlaneWith(t *testing.T, bin, name string, config func(addr string) (path string)) *proxyProcess {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr := testbin.FreeAddr(t)
		p := &proxyProcess{addr: addr, config: config(addr), out: &testbin.SyncBuffer{}}
		cmd := exec.Command(bin, "--config", p.config)
		cmd.Stdout = p.out
		cmd.Stderr = p.out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start txlane: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if lastErr = waitListening(addr, exited); lastErr == nil {
			t.Cleanup(func() {
				cmd.Process.Signal(os.Interrupt)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					<-exited
				}
				if t.Failed() {
					t.Logf("txlane (%s) output:\n%s", name, tail(p.out.String(), 60))
				}
			})
			return p
		}
		cmd.Process.Kill()
		t.Logf("txlane on %s did not start (attempt %d): %v\n%s", addr, attempt+1, lastErr, tail(p.out.String(), 30))
	}
	t.Fatalf("txlane did not start: %v", lastErr)
	return nil
}

func waitListening(addr string, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("txlane exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not accepting connections on %s after 30s", addr)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// summary is the JSON both application examples print.
type summary struct {
	Example   string `json:"example"`
	Escape    string `json:"escape"`
	OK        bool   `json:"ok"`
	Scenarios []struct {
		Name    string `json:"name"`
		Kind    string `json:"kind"`
		OK      bool   `json:"ok"`
		Detail  string `json:"detail"`
		Problem string `json:"problem"`
	} `json:"scenarios"`
}

// wantScenarios lists the scenarios each escape action must run (both examples name theirs
// the same way, with the ORM's words in them).
var wantScenarios = map[string][]string{
	"reject":  {"vector read outside", "vector reads inside", "after the", "concurrent independent", "rejected", "rejected"},
	"reroute": {"vector read outside", "vector reads inside", "after the", "concurrent independent", "rolls back with", "commits with", "follow a rerouted write", "still rejected"},
	"allow":   {"vector read outside", "vector reads inside", "after the", "concurrent independent", "escapes the rollback"},
}

// runApp runs an example program (its summary on stdout) and reports each scenario.
func runApp(t *testing.T, escape string, cmd *exec.Cmd) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	// Each scenario has its own time limit; this one is for a program that hangs anyway.
	kill := time.AfterFunc(5*time.Minute, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	kill.Stop()
	name := filepath.Base(cmd.Args[0])
	if name == "node" && len(cmd.Args) > 1 {
		name = cmd.Args[1]
	}
	t.Logf("%s ran in %v", name, time.Since(start).Round(time.Millisecond))
	var s summary
	if jerr := json.Unmarshal(stdout.Bytes(), &s); jerr != nil {
		t.Fatalf("%v: %v; no JSON summary (%v)\nstdout:\n%s\nstderr:\n%s", cmd.Args, err, jerr, stdout.String(), tail(stderr.String(), 40))
	}
	if s.Escape != escape {
		t.Errorf("summary says escape %q, want %q", s.Escape, escape)
	}
	for _, sc := range s.Scenarios {
		if sc.OK {
			t.Logf("ok   %-9s %s: %s", sc.Kind, sc.Name, sc.Detail)
		} else {
			t.Errorf("FAIL %-9s %s: %s", sc.Kind, sc.Name, sc.Problem)
		}
	}
	want := wantScenarios[escape]
	if len(s.Scenarios) != len(want) {
		t.Errorf("ran %d scenarios, want %d", len(s.Scenarios), len(want))
	} else {
		for i, w := range want {
			if !strings.Contains(s.Scenarios[i].Name, w) {
				t.Errorf("scenario %d is %q, want one about %q", i+1, s.Scenarios[i].Name, w)
			}
		}
	}
	if s.OK != (err == nil) {
		t.Errorf("summary ok=%v but exit status %v", s.OK, err)
	}
	if err != nil && stderr.Len() > 0 {
		t.Logf("stderr:\n%s", tail(stderr.String(), 40))
	}
}

var escapes = []string{"reject", "reroute", "allow"}

// installNode runs scripts/examples.sh (npm ci) once for the tests that
// need the Node example: two npm ci at once in one directory collide.
func installNode(t *testing.T) {
	t.Helper()
	nodeInstall.Do(func() {
		cmd := exec.Command("bash", "scripts/examples.sh")
		cmd.Dir = testbin.Root(t)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		nodeInstall.out, nodeInstall.took = string(out), time.Since(start)
		if err != nil {
			nodeInstall.err = fmt.Errorf("bash scripts/examples.sh: %v\n%s", err, out)
		}
	})
	if nodeInstall.err != nil {
		t.Fatal(nodeInstall.err)
	}
	if nodeInstall.out != "" {
		t.Logf("scripts/examples.sh (%v):\n%s", nodeInstall.took.Round(time.Millisecond), tail(nodeInstall.out, 10))
	}
}

var nodeInstall struct {
	sync.Once
	out  string
	took time.Duration
	err  error
}

func TestPrismaDrizzle(t *testing.T) {
	t.Parallel()
	if os.Getenv("TXLANE_SKIP_NODE") == "1" {
		t.Skip("TXLANE_SKIP_NODE=1")
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not on PATH: the Node example needs Node.js 20.19+ and npm (TXLANE_SKIP_NODE=1 skips it)", tool)
		}
	}
	dir := filepath.Join(testbin.Root(t), "examples", "prisma-drizzle")
	installNode(t)

	direct, db := database(t, "prisma_drizzle")
	execFile(t, direct, filepath.Join(testbin.Root(t), "examples", "setup.sql"))
	bin := testbin.Txlane(t)
	user := pgtest.Config(t).User
	// In transaction mode with pool_size 2 the example's two pools of five
	// connections (a txlane pool each: application_name prisma and drizzle)
	// share two backends each; logins are relayed, as by default.
	for _, mode := range []string{"session", "transaction"} {
		for _, escape := range escapes {
			t.Run(mode+"/"+escape, func(t *testing.T) {
				p := startTxlaneWith(t, bin, "pool_mode "+mode+", escape "+escape, func(addr string) string {
					path := writeConfig(t, addr, escape)
					if mode == "transaction" {
						appendConfig(t, path, "pool_mode: transaction\npool_size: 2\n")
					}
					return path
				})
				cmd := exec.Command("node", "main.mjs")
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "DATABASE_URL="+p.URL(user, db), "TXLANE_ESCAPE="+escape, "SCENARIO_TIMEOUT_MS=30000")
				runApp(t, escape, cmd)
			})
		}
	}
}

// appendConfig appends text (YAML keys) to the configuration file at path.
func appendConfig(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// TestPrismaDrizzleBackends runs the Prisma + Drizzle example (two pools of
// five connections each) in both pool modes and reports the most backends
// its two pools used at once on the server; in transaction mode with
// pool_size 2 (a pool per application_name: prisma and drizzle) at most four.
func TestPrismaDrizzleBackends(t *testing.T) {
	t.Parallel()
	if os.Getenv("TXLANE_SKIP_NODE") == "1" {
		t.Skip("TXLANE_SKIP_NODE=1")
	}
	installNode(t)
	direct, db := database(t, "prisma_drizzle_pool")
	execFile(t, direct, filepath.Join(testbin.Root(t), "examples", "setup.sql"))
	bin := testbin.Txlane(t)
	user := pgtest.Config(t).User
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			p := startTxlaneWith(t, bin, "pool_mode "+mode, func(addr string) string {
				path := writeConfig(t, addr, "reject")
				// txlane checks the logins (trust: the test cluster trusts its
				// user), so that a login takes no backend of its own.
				users := filepath.Join(t.TempDir(), "users.txt")
				if err := os.WriteFile(users, []byte(strconv.Quote(user)+` "unused"`+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				// In session mode pool_size caps a pool's sessions: the
				// example's five per pool must fit.
				size := 2
				if mode == "session" {
					size = 10
				}
				appendConfig(t, path, fmt.Sprintf("pool_mode: %s\npool_size: %d\nauth_type: trust\nauth_file: %s\n", mode, size, users))
				return path
			})
			// Sample the server's backends of the two pools while the app runs.
			stop := make(chan struct{})
			peak := make(chan int, 1)
			go func() {
				ctx := context.Background()
				conn, err := pgconn.ConnectConfig(ctx, pgtest.Config(t))
				if err != nil {
					peak <- -1
					return
				}
				defer conn.Close(ctx)
				most := 0
				for {
					select {
					case <-stop:
						peak <- most
						return
					case <-time.After(20 * time.Millisecond):
					}
					rs, err := conn.Exec(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = '"+db+"' AND application_name IN ('prisma', 'drizzle')").ReadAll()
					if err == nil {
						n, _ := strconv.Atoi(string(rs[0].Rows[0][0]))
						most = max(most, n)
					}
				}
			}()
			cmd := exec.Command("node", "main.mjs")
			cmd.Dir = filepath.Join(testbin.Root(t), "examples", "prisma-drizzle")
			cmd.Env = append(os.Environ(), "DATABASE_URL="+p.URL(user, db), "TXLANE_ESCAPE=reject", "SCENARIO_TIMEOUT_MS=30000")
			runApp(t, "reject", cmd)
			close(stop)
			most := <-peak
			t.Logf("pool_mode %s: at most %d backends served the two pools of five", mode, most)
			if mode == "transaction" && (most < 1 || most > 4) {
				t.Fatalf("%d backends at once in transaction mode, want 1 to 4 (pool_size 2 per pool)", most)
			}
		})
	}
}

func TestGoSemanticCache(t *testing.T) {
	t.Parallel()
	direct, db := database(t, "go_semantic_cache")
	execFile(t, direct, filepath.Join(testbin.Root(t), "examples", "setup.sql"))
	bin := testbin.Txlane(t)
	app := testbin.Build(t, "./examples/go-semantic-cache")
	user := pgtest.Config(t).User
	for _, escape := range escapes {
		t.Run(escape, func(t *testing.T) {
			p := startTxlane(t, bin, escape)
			runApp(t, escape, exec.Command(app, "-database-url", p.URL(user, db), "-escape", escape, "-timeout", "30s"))
		})
	}
}

// ---------------------------------------------------------------------------
// The psql walkthrough: examples/psql/README.md, run as written.
//
// Its fenced blocks are tagged after the language:
//
//	```sql session-a     statements for psql session A (one session for the whole walkthrough)
//	```sql session-b     statements for psql session B
//	```sh explain        one `txlane explain ... "SQL"` command line
//	```text              the expected output of the block before it
//
// Expected lines are matched in order against the actual output, each line as a pattern in
// which … stands for any text; every actual line must be matched, except where an expected
// line is … alone, which stands for any number of lines (an abbreviation the page marks).
// Blank lines are ignored. Blocks without a tag are not run.

type walkBlock struct {
	tag, body, want string
	line            int
}

var fenceRE = regexp.MustCompile("^```([a-z]*)\\s*(\\S*)\\s*$")

func walkthrough(t *testing.T, path string) []walkBlock {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []walkBlock
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		m := fenceRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		start := i + 1
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body = append(body, lines[i])
		}
		text := strings.Join(body, "\n")
		switch {
		case m[2] == "session-a" || m[2] == "session-b" || m[2] == "explain":
			blocks = append(blocks, walkBlock{tag: m[2], body: text, line: start})
		case m[1] == "text" && len(blocks) > 0 && blocks[len(blocks)-1].want == "" && m[2] == "":
			blocks[len(blocks)-1].want = text
		}
	}
	return blocks
}

// psqlPrefix is what non-interactive psql puts before its messages.
var psqlPrefix = regexp.MustCompile(`^psql:[^:]*:[0-9]+: `)

// matchLines checks that the lines of got are those of want, in order: each want line is a
// pattern in which … stands for any text, and a want line that is … alone matches any number
// of got lines. Blank lines, trailing blanks and psql's "psql:<stdin>:N: " prefix are ignored.
func matchLines(got, want string) error {
	var gl []string
	for _, l := range strings.Split(got, "\n") {
		if l = strings.TrimRight(psqlPrefix.ReplaceAllString(l, ""), " "); l != "" {
			gl = append(gl, l)
		}
	}
	var wl []string
	for _, w := range strings.Split(want, "\n") {
		if w = strings.TrimRight(w, " "); w != "" {
			wl = append(wl, w)
		}
	}
	if !matchFrom(gl, wl) {
		return fmt.Errorf("the output is not the expected one (a line alone … marks lines left out)")
	}
	return nil
}

// matchFrom reports whether got matches want (see matchLines).
func matchFrom(got, want []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if strings.TrimSpace(want[0]) == "…" {
		for i := 0; i <= len(got); i++ {
			if matchFrom(got[i:], want[1:]) {
				return true
			}
		}
		return false
	}
	if len(got) == 0 {
		return false
	}
	parts := strings.Split(want[0], "…")
	for k := range parts {
		parts[k] = regexp.QuoteMeta(parts[k])
	}
	re := regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
	return re.MatchString(got[0]) && matchFrom(got[1:], want[1:])
}

// psqlSession is an interactive psql fed through a pipe.
type psqlSession struct {
	stdin io.WriteCloser
	lines chan string // stdout and stderr, in order; closed when psql exits
	n     int
}

func startPsql(t *testing.T, dsn, app string) *psqlSession {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=0", dsn)
	cmd.Env = append(os.Environ(), "PGAPPNAME="+app, "PGTZ=UTC", "PAGER=", "PSQL_PAGER=")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatalf("psql: %v", err)
	}
	s := &psqlSession{stdin: stdin, lines: make(chan string, 1000)}
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stdin.Close() // psql quits at the end of its input
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	return s
}

// run sends sql and returns everything psql printed for it.
func (s *psqlSession) run(t *testing.T, sql string) string {
	t.Helper()
	s.n++
	marker := fmt.Sprintf("--walkthrough-done-%d--", s.n)
	if _, err := io.WriteString(s.stdin, sql+"\n\\echo "+marker+"\n"); err != nil {
		t.Fatalf("psql stdin: %v", err)
	}
	var out []string
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("psql exited; output so far:\n%s", strings.Join(out, "\n"))
			}
			if l == marker {
				return strings.Join(out, "\n")
			}
			out = append(out, l)
		case <-timeout:
			t.Fatalf("psql did not finish in 30s; output so far:\n%s", strings.Join(out, "\n"))
		}
	}
}

func TestPsqlWalkthrough(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatalf("psql is not on PATH: %v", err)
	}
	readme := filepath.Join(testbin.Root(t), "examples", "psql", "README.md")
	blocks := walkthrough(t, readme)
	if len(blocks) < 8 {
		t.Fatalf("%s: found %d tagged blocks, want the whole walkthrough", readme, len(blocks))
	}
	// As after `make run`: the sessions are txlane_app (no superuser), which may create
	// tables, and the vector lane logs in as a NOSUPERUSER NOINHERIT role granted it
	// (txlane_reader there, one of the test's own here).
	dsn0, db := database(t, "psql")
	reader := fmt.Sprintf("txlane_ex_reader_%08x", rand.Uint32())
	pgtest.Exec(t, "CREATE ROLE "+reader+" LOGIN NOSUPERUSER NOINHERIT; GRANT "+pgtest.AppRole+" TO "+reader)
	t.Cleanup(func() { pgtest.Exec(t, "DROP ROLE IF EXISTS "+reader) })
	execSQL(t, dsn0, "CREATE EXTENSION IF NOT EXISTS vector; GRANT CREATE ON SCHEMA public TO "+pgtest.AppRole)
	admin := pgtest.Config(t)
	readerDSN := clientURL(t, admin.Host, admin.Port, reader, "", db)
	bin := testbin.Txlane(t)
	p := startTxlaneWith(t, bin, "escape: reject", func(addr string) string {
		path := writeConfig(t, addr, "reject")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		data = []byte(strings.Replace(string(data), "read_pool:\n", "read_pool:\n  dsn: "+strconv.Quote(readerDSN)+"\n", 1))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	})
	dsn := p.URL(pgtest.AppRole, db)
	sessions := map[string]*psqlSession{
		"session-a": startPsql(t, dsn, "session-a"),
		"session-b": startPsql(t, dsn, "session-b"),
	}
	// The walkthrough's commands name .tmp/txlane.yaml, the configuration make run wrote
	// (examples/txlane.yaml names a server that is not there, which --discover would reach);
	// the test's own configuration (same policy, another port) stands in for it.
	explainArgs := regexp.MustCompile(`^bin/txlane explain --config \.tmp/txlane\.yaml (.*)$`)
	for _, b := range blocks {
		var got string
		switch b.tag {
		case "explain":
			m := explainArgs.FindStringSubmatch(strings.TrimSpace(b.body))
			if m == nil {
				t.Fatalf("README.md:%d: want `bin/txlane explain --config .tmp/txlane.yaml ...`, got %q", b.line, b.body)
			}
			cmd := exec.Command("bash", "-c", `exec "$0" explain --config "$1" `+m[1], bin, p.config)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("README.md:%d: %s: %v\n%s", b.line, b.body, err, out)
				continue
			}
			got = string(out)
		default:
			got = sessions[b.tag].run(t, b.body)
		}
		t.Logf("README.md:%d %s:\n%s\n--- output:\n%s", b.line, b.tag, b.body, got)
		if b.want == "" {
			continue
		}
		if err := matchLines(got, b.want); err != nil {
			t.Errorf("README.md:%d (%s): %v\n--- want:\n%s\n--- got:\n%s", b.line, b.tag, err, b.want, got)
		}
	}
}
