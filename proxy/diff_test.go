package proxy_test

import (
	"testing"
	"time"

	"github.com/txlane/txlane/internal/difftest"
	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestDifferential runs every scenario in testdata/scenarios directly against PostgreSQL
// and through txlane (session mode), and fails on any difference between the two
// transcripts (see package difftest for the format). Scenarios name their objects with
// {{id}}, so they run in parallel on one proxy.
func TestDifferential(t *testing.T) {
	p := startProxy(t, nil)
	difftest.RunDir(t, p.Direct, p.DSN(t, ""), "testdata/scenarios", 8)
}

// TestDifferentialVectorLane runs the same scenarios through txlane with the vector lane on
// (tables with vector columns discovered from the catalog): whichever lane serves a request,
// the client must see what PostgreSQL itself answers.
func TestDifferentialVectorLane(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 4, AcquireTimeout: 2 * time.Second}
		o.Discover = true
		// NOTE: scenarios create their vector tables as they run: rediscover often.
		o.DiscoverInterval = 50 * time.Millisecond
	})
	t.Cleanup(func() {
		// Parallel subtests end before cleanups run: by now the scenarios are done.
		m := p.Server.Metrics()
		if n := m.Routed("vector", "vector_read_idle") + m.Routed("vector", "vector_read_in_tx"); n == 0 {
			t.Error("the vector lane served no request: the scenarios did not exercise it")
		}
	})
	difftest.RunDir(t, p.Direct, p.DSN(t, ""), "testdata/scenarios", 8)
}

// TestDifferentialTransactionMode runs the same scenarios through txlane in
// pool_mode transaction, several scenarios sharing six backends, with the
// vector lane on: every client must still see what PostgreSQL itself
// answers. txlane checks the logins itself (auth_type trust), so that the
// pool can replace the backends scenarios end (a relayed login's pool only
// grows through logins).
func TestDifferentialTransactionMode(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Auth = trustAuth(t, "postgres")
		// NOTE: scenarios that pin a backend (LISTEN, temporary tables) hold
		// it for seconds: six backends for the eight scenarios at a time.
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 6}
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 4, AcquireTimeout: 2 * time.Second}
		o.Discover = true
		o.DiscoverInterval = 50 * time.Millisecond
	})
	difftest.RunDirExcept(t, p.Direct, p.DSN(t, ""), "testdata/scenarios", 8, map[string]string{
		"termination": "a backend terminated while its client holds none is replaced, and the client does not notice " +
			"(TestTxPoolBackendTerminatedWhileIdle)",
	})
}
