package proxy_test

import (
	"testing"
	"time"

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
