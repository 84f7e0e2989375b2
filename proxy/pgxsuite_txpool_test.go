package proxy_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/txlane/txlane/proxy"
)

// pgxSuiteTxSkips are pgx tests that cannot pass through transaction
// pooling by its nature, each with why (besides pgxSuiteSkips).
var pgxSuiteTxSkips = []struct{ test, why string }{
	{"TestConnMultiplePrepareAndDeallocate", "counts pg_prepared_statements, which shows the statements of whichever clients used the backend (txlane prepares a client's statements on each backend it runs on and leaves them there)"},
}

// TestPgxSuiteTransactionMode runs pgx's suite through txlane in pool_mode
// transaction: pool_size TXLANE_PGX_POOL_SIZE (default 50, about what the
// suite runs at once). About 2.5 minutes on two cores, so it runs only with
// TXLANE_PGX_TX=1. With a pool much smaller than the suite's concurrency,
// tests that pin a backend (temporary tables, LISTEN) or keep a transaction
// open while they wait for a second connection hold every backend, and the
// others wait up to query_wait_timeout (TestRowsColumnTypeLength and
// TestCancelRequestContextWatcherHandler's stress cases fail that way at 4);
// every 5s the clients holding backends while others wait are logged.
func TestPgxSuiteTransactionMode(t *testing.T) {
	if os.Getenv("TXLANE_PGX_TX") == "" {
		t.Skip("about 2.5 minutes: set TXLANE_PGX_TX=1")
	}
	size := 50
	if n, err := strconv.Atoi(os.Getenv("TXLANE_PGX_POOL_SIZE")); err == nil {
		size = n
	}
	var skip []string
	for _, s := range pgxSuiteSkips {
		skip = append(skip, s.test)
	}
	for _, s := range pgxSuiteTxSkips {
		skip = append(skip, s.test)
	}
	pgxSuiteWatch = watchHeldBackends
	defer func() { pgxSuiteWatch = nil }()
	runPgxSuite(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: size}
	}, pgxSuitePackages, os.Getenv("TXLANE_PGX_RUN"), "^("+strings.Join(skip, "|")+")$")
}

// watchHeldBackends logs, every 5s while clients wait for a backend, the
// clients that hold one between requests (in a transaction, or pinned).
func watchHeldBackends(t *testing.T, p *testProxy) (stop func()) {
	done := make(chan struct{})
	go func() {
		tk := time.NewTicker(5 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			for _, pi := range p.Server.Pools() {
				if pi.ClWaiting == 0 {
					continue
				}
				var held []string
				for _, ci := range p.Server.ClientList() {
					if ci.Pinned != "" || ci.State != proxy.TxIdle {
						held = append(held, string(ci.State)+":"+ci.Pinned+":"+time.Since(ci.Since).Round(time.Second).String())
					}
				}
				t.Logf("%s: %d waiting, %d active, %d idle; holding: %s", pi.Database, pi.ClWaiting, pi.SvActive, pi.SvIdle, strings.Join(held, " "))
			}
		}
	}()
	return func() { close(done) }
}
