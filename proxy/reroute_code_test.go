package proxy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy"
)

// rerouteReadsCatalog gives o, a proxy whose escape actions may reroute, the
// catalog txlane reads by default (policy.discover_vector_tables: true, over
// a read pool on the primary's server): without one no write is rerouted
// (reroute_code.go). A test that sets a read pool itself keeps its choice.
func rerouteReadsCatalog(tb testing.TB, o *proxy.Options) {
	if o.ReadPool.Config != nil || !mayReroute(o.Rules) {
		return
	}
	o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(tb), MaxConns: 2, AcquireTimeout: 2 * time.Second}
	o.Discover = true
}

// mayReroute reports whether rules reroute some write.
func mayReroute(rules policy.RulesConfig) bool {
	if rules.Escape == "reroute" {
		return true
	}
	for _, o := range rules.EscapeOverrides {
		if o.Escape == "reroute" {
			return true
		}
	}
	return false
}

// wantCodeBar fails t unless err is the refusal of a write kept from the
// holder's transaction by what it runs besides its text: 25L01, the hint
// that says so, and a detail that names why (holding want).
func wantCodeBar(t *testing.T, err error, want string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != proxy.CodeEscapedWrite {
		t.Fatalf("got %v, want SQLSTATE %s", err, proxy.CodeEscapedWrite)
	}
	if !strings.Contains(pe.Hint, "reroutes a write only when the catalog shows") {
		t.Errorf("hint %q, want the one of a write kept from the holder's transaction by what it runs", pe.Hint)
	}
	if !strings.Contains(pe.Detail, "nothing was written") || !strings.Contains(pe.Detail, want) {
		t.Errorf("detail %q, want one that says nothing was written and names %q", pe.Detail, want)
	}
}
