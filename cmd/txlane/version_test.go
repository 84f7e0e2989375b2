package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/txlane/txlane/config"
)

// TestConsoleVersionIsTheBinarys: the version the proxy is given, which
// the admin console's SHOW VERSION shows after "txlane " (a proxy test
// checks that part), is the one `txlane version` prints on its first line.
func TestConsoleVersionIsTheBinarys(t *testing.T) {
	saved := version
	t.Cleanup(func() { version = saved })
	version = "v1.2.3-console"
	cfg, err := config.Load("../../examples/txlane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := proxyOptions(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := versionCommand(nil, &out, &errOut); code != exitOK {
		t.Fatalf("txlane version: exit %d: %s", code, errOut.String())
	}
	first, _, _ := strings.Cut(out.String(), "\n")
	if want := "txlane " + opts.Version; first != want || opts.Version != version {
		t.Fatalf("txlane version prints %q; the proxy is given %q (SHOW VERSION: %q)", first, opts.Version, want)
	}
}
