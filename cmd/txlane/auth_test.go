package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/proxy/auth"
)

// The configuration's default auth_query is the one package auth runs when
// none is given.
func TestDefaultAuthQuery(t *testing.T) {
	if config.DefaultAuthQuery != auth.DefaultQuery {
		t.Fatalf("config.DefaultAuthQuery %q, auth.DefaultQuery %q", config.DefaultAuthQuery, auth.DefaultQuery)
	}
	if got := config.Default().AuthQuery; got != auth.DefaultQuery {
		t.Fatalf("default auth_query %q", got)
	}
}

// txlane check reads the auth file too and names each bad line.
func TestCheckReadsAuthFile(t *testing.T) {
	t.Setenv("TXLANE_CONFIG", "")
	dir := t.TempDir()
	users := filepath.Join(dir, "users.txt")
	cfg := filepath.Join(dir, "txlane.yaml")
	write := func(path, data string) {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg, goodConfig+"auth_type: scram-sha-256\nauth_file: "+users+"\n")
	check := func() (int, string, string) {
		var out, errOut bytes.Buffer
		code := dispatch([]string{"check", "--config", cfg}, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	write(users, `"alice" "md545f2603610af569b6155c45067268c6b"`+"\n")
	if code, out, errOut := check(); code != 0 || out != cfg+": ok\n" {
		t.Fatalf("good auth file: %d %q %q", code, out, errOut)
	}
	write(users, "\"alice\" \"SCRAM-SHA-256$4096:bad\"\nbob secret\n")
	code, _, errOut := check()
	if code != 1 || !strings.Contains(errOut, users+":1: ") || !strings.Contains(errOut, users+":2: ") {
		t.Fatalf("bad auth file: %d %q", code, errOut)
	}
	os.Remove(users)
	if code, _, errOut := check(); code != 1 || !strings.Contains(errOut, "auth_file: ") {
		t.Fatalf("missing auth file: %d %q", code, errOut)
	}
}
