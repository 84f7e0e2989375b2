package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	goodConfig = "listen: 127.0.0.1:6432\nprimary: postgres://app@127.0.0.1:5432/app?sslmode=disable\n"
	badConfig  = "listen: 6432\nprimary: postgres://app@127.0.0.1:5432/app\nread_pool:\n  max_con: 3\n"
)

// writeConfigs writes a valid and an invalid configuration file into dir.
func writeConfigs(t *testing.T, dir string) (good, bad string) {
	t.Helper()
	good, bad = filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	for path, data := range map[string]string{good: goodConfig, bad: badConfig} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return good, bad
}

// badWant is what check reports for badConfig at path.
func badWant(path string) string {
	return path + `:1:9: listen: invalid address "6432": missing port in address (want host:port, such as 127.0.0.1:6432)` + "\n" +
		path + `:4:3: unknown key "max_con" (did you mean "max_conns"?)` + "\n"
}

// TestBinary builds the command and runs it as users do.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "txlane")
	build := exec.Command(goTool, "build", "-o", bin, "-ldflags", "-X main.version=v0.0.0-test", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	good, bad := writeConfigs(t, dir)

	for _, tc := range []struct {
		name       string
		args       []string
		env        []string
		wantCode   int
		wantStdout string // exact, unless wantPrefix
		wantPrefix bool
		wantStderr string // exact, unless stderrContains
		contains   bool
	}{
		{name: "check good", args: []string{"check", "--config", good},
			wantCode: 0, wantStdout: good + ": ok\n"},
		{name: "check bad", args: []string{"check", "--config", bad},
			wantCode: 1, wantStderr: badWant(bad)},
		{name: "check single-dash flag", args: []string{"check", "-config=" + bad},
			wantCode: 1, wantStderr: badWant(bad)},
		{name: "check from TXLANE_CONFIG", args: []string{"check"}, env: []string{"TXLANE_CONFIG=" + good},
			wantCode: 0, wantStdout: good + ": ok\n"},
		{name: "check missing file", args: []string{"check", "--config", filepath.Join(dir, "nope.yaml")},
			wantCode: 1, wantStderr: "no such file or directory", contains: true},
		{name: "run with bad config", args: []string{"--config", bad},
			wantCode: 1, wantStderr: badWant(bad)},
		{name: "explicit run with bad config", args: []string{"run", "--config", bad},
			wantCode: 1, wantStderr: badWant(bad)},
		{name: "version", args: []string{"version"},
			wantCode: 0, wantStdout: "txlane v0.0.0-test\n  go           go", wantPrefix: true},
		{name: "help", args: []string{"help"},
			wantCode: 0, wantStdout: "Usage:\n", wantPrefix: true},
		{name: "unknown command", args: []string{"frobnicate"},
			wantCode: 2, wantStderr: `txlane: unknown command "frobnicate"`, contains: true},
		{name: "unknown flag", args: []string{"check", "--cfg", good},
			wantCode: 2, wantStderr: "flag provided but not defined: -cfg", contains: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "TXLANE_CONFIG=")
			cmd.Env = append(cmd.Env, tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				code = exitErr.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, &stdout, &stderr)
			}
			checkOutput(t, "stdout", stdout.String(), tc.wantStdout, tc.wantPrefix)
			if tc.contains {
				if !strings.Contains(stderr.String(), tc.wantStderr) {
					t.Errorf("stderr %q does not contain %q", &stderr, tc.wantStderr)
				}
			} else if stderr.String() != tc.wantStderr {
				t.Errorf("stderr:\n got %q\nwant %q", &stderr, tc.wantStderr)
			}
		})
	}

	// The version lists pgx, which the binary links through package config.
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(out), "\n  pgx          v5.") {
		t.Errorf("version output %q (%v) lacks the pgx version", out, err)
	}
}

func checkOutput(t *testing.T, name, got, want string, prefix bool) {
	t.Helper()
	if prefix {
		if !strings.HasPrefix(got, want) {
			t.Errorf("%s %q does not start with %q", name, got, want)
		}
	} else if got != want {
		t.Errorf("%s:\n got %q\nwant %q", name, got, want)
	}
}

// TestDispatch runs the commands in process, for the paths the binary test
// does not need to cover.
func TestDispatch(t *testing.T) {
	t.Setenv("TXLANE_CONFIG", "")
	dir := t.TempDir()
	good, bad := writeConfigs(t, dir)

	run := func(args ...string) (code int, stdout, stderr string) {
		var out, errOut bytes.Buffer
		code = dispatch(args, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	if code, out, _ := run("check", "--config", good); code != 0 || out != good+": ok\n" {
		t.Errorf("check good: %d %q", code, out)
	}
	if code, _, errOut := run("check", "--config", bad); code != 1 || errOut != badWant(bad) {
		t.Errorf("check bad: %d %q", code, errOut)
	}
	t.Setenv("TXLANE_CONFIG", bad)
	if code, _, errOut := run("check"); code != 1 || errOut != badWant(bad) {
		t.Errorf("check with TXLANE_CONFIG: %d %q", code, errOut)
	}
	if code, _, errOut := run("check", "-h"); code != 0 || !strings.Contains(errOut, "Usage: txlane check [--config FILE]") {
		t.Errorf("check -h: %d %q", code, errOut)
	}
	if code, _, errOut := run("check", "extra.yaml"); code != 2 || !strings.Contains(errOut, `unexpected argument "extra.yaml"`) {
		t.Errorf("check with an argument: %d %q", code, errOut)
	}
	if code, _, errOut := run("-h"); code != 0 || !strings.Contains(errOut, "txlane [run]") {
		t.Errorf("-h: %d %q", code, errOut)
	}

	code, out, _ := run("help")
	if code != 0 {
		t.Errorf("help: exit %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out, "txlane "+c.name) && !strings.Contains(out, "txlane ["+c.name+"]") {
			t.Errorf("usage does not list %s:\n%s", c.name, out)
		}
	}

	if explainCommand == nil {
		if code, _, errOut := run("explain", "SELECT 1"); code != 1 || !strings.Contains(errOut, "explain is not available") {
			t.Errorf("explain without an implementation: %d %q", code, errOut)
		}
	}
}
