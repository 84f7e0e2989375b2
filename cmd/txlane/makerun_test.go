package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/internal/testbin"
)

// TestMakeRun runs `make run` as README's Set-up does (into a directory of
// the test: PGDIR, BIN, RUNCONF, LISTEN and ADMIN_LISTEN point there) and
// checks what a new user gets: the generated configuration's vector-lane
// login is not a superuser and cannot become one, txlane logs no error or
// warning (the lane's login checks), and a read of a vector table by txlane_app, the role README says
// to connect as, runs on the vector lane (txlane_requests_total on /metrics).
func TestMakeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster and the binary through make")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	dir := t.TempDir()
	pgdir := filepath.Join(dir, "pg")
	conf := filepath.Join(dir, "txlane.yaml")
	listen, admin := testbin.FreeAddr(t), testbin.FreeAddr(t)
	root := testbin.Root(t)
	logs := &testbin.SyncBuffer{}
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "run", "PGDIR="+pgdir,
		"BIN="+filepath.Join(dir, "txlane"), "RUNCONF="+conf, "LISTEN="+listen, "ADMIN_LISTEN="+admin)
	// The owner pid has pg.sh stop the cluster once this test binary exits, whatever happens.
	cmd.Env = append(os.Environ(), "TXLANE_PG_OWNER_PID="+strconv.Itoa(os.Getpid()))
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // make and the txlane it runs
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if out, err := exec.Command("bash", filepath.Join(root, "scripts", "pg.sh"), "stop", pgdir).CombinedOutput(); err != nil {
			t.Errorf("pg.sh stop: %v\n%s", err, out)
		}
	})
	// pg.sh may install PostgreSQL and build pgvector first.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("make run exited:\n%s", logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("txlane does not listen on %s:\n%s", listen, logs.String())
		}
	}

	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReadPool.DSN == "" {
		t.Fatalf("%s has no read_pool.dsn: the lane would log in as the primary's superuser", conf)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	query := func(dsn, sql string) [][][]byte {
		t.Helper()
		c, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		defer c.Close(context.Background())
		res, err := c.Exec(ctx, sql).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return res[len(res)-1].Rows
	}
	// What proxy/lane.go checks at each lane login: a superuser, or a member of a superuser
	// role, serves only superusers' reads.
	rows := query(cfg.ReadPool.DSN, `SELECT current_user, r.rolsuper, r.rolinherit,
	  (SELECT coalesce(bool_or(s.rolsuper), false) FROM pg_roles s WHERE pg_has_role(current_user, s.oid, 'MEMBER'))
	  FROM pg_roles r WHERE r.rolname = current_user`)
	login := string(rows[0][0])
	if got := string(rows[0][1]) + string(rows[0][2]) + string(rows[0][3]); got != "fff" {
		t.Fatalf("lane login %s: rolsuper, rolinherit, member of a superuser = %q, want fff", login, got)
	}

	app := "postgres://txlane_app@" + listen + "/txlane_test?sslmode=disable"
	query(app, `CREATE TABLE IF NOT EXISTS optimization_logs (id serial PRIMARY KEY, prompt text, embedding vector(3));
INSERT INTO optimization_logs (prompt, embedding) VALUES ('make run', '[1,0,0]')`)
	rows = query(app, `SELECT current_user, prompt FROM optimization_logs ORDER BY embedding <-> '[1,0,0]' LIMIT 1`)
	if got := string(rows[0][0]); got != "txlane_app" {
		t.Fatalf("current_user %s, want txlane_app", got)
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := `txlane_requests_total{lane="vector",reason="vector_read_idle"} 1`
	if !strings.Contains(string(metrics), want+"\n") {
		t.Errorf("txlane_app's vector read did not run on the lane: no %s in\n%s\n--- log:\n%s",
			want, grepLines(string(metrics), "txlane_requests_total"), logs.String())
	}
	// The lane's login checks (proxy/lane.go) log at error (a superuser) or warn level.
	if l := logs.String(); strings.Contains(l, "\tERROR\t") || strings.Contains(l, "\tWARN\t") {
		t.Errorf("txlane logged an error or a warning:\n%s", l)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
