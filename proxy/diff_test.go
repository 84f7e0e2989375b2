package proxy_test

import (
	"testing"

	"github.com/txlane/txlane/internal/difftest"
)

// TestDifferential runs every scenario in testdata/scenarios directly against PostgreSQL
// and through txlane (session mode), and fails on any difference between the two
// transcripts (see package difftest for the format). Scenarios name their objects with
// {{id}}, so they run in parallel on one proxy.
func TestDifferential(t *testing.T) {
	p := startProxy(t, nil)
	difftest.RunDir(t, p.Direct, p.DSN(t, ""), "testdata/scenarios", 8)
}
