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
// transaction, with pool_size 10 (TXLANE_PGX_POOL_SIZE sets another): the
// suite's clients (four packages, -parallel=8; about 20 at once) run each
// transaction on whichever backend of their pool is free, and a login's own
// backend beyond pool_size is closed once its client is idle (pools are per
// database, user and the startup parameters that cannot move). About
// 30 s on two cores once pgx's test packages are built (TestPgxSuite builds
// them too), so it runs in make test; it skips with -short, as TestPgxSuite
// does. With a pool much smaller than the suite's concurrency, tests that
// pin a backend (temporary tables, LISTEN) or keep a transaction open while
// they wait for a second connection hold every backend, and the others wait
// up to query_wait_timeout (TestRowsColumnTypeLength and
// TestCancelRequestContextWatcherHandler's stress cases fail that way at 4;
// 8 passed four runs in a row); every 5s the clients holding backends while
// others wait are logged.
func TestPgxSuiteTransactionMode(t *testing.T) {
	if testing.Short() {
		t.Skip("pgx's suite takes about 30 s (-short)")
	}
	size := 10
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
// clients that hold one between requests (in a transaction, or pinned). At
// stop it logs the most clients connected at once and the most primary
// backends (sampled every 100ms).
func watchHeldBackends(t *testing.T, p *testProxy) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	mostClients, mostBackends := 0, 0
	go func() {
		defer close(finished)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for n := 1; ; n++ {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			mostClients = max(mostClients, len(p.Server.ClientList()))
			backends := 0
			for _, pi := range p.Server.Pools() {
				backends += pi.SvActive + pi.SvIdle + pi.SvTested
				if pi.ClWaiting == 0 || n%50 != 0 {
					continue
				}
				var held []string
				for _, ci := range p.Server.ClientList() {
					if ci.Pinned != "" || ci.TxStatus != proxy.TxIdle {
						held = append(held, string(ci.TxStatus)+":"+ci.Pinned+":"+time.Since(ci.Since).Round(time.Second).String())
					}
				}
				t.Logf("%s: %d waiting, %d active, %d idle; holding: %s", pi.Database, pi.ClWaiting, pi.SvActive, pi.SvIdle, strings.Join(held, " "))
			}
			mostBackends = max(mostBackends, backends)
		}
	}()
	return func() {
		close(done)
		<-finished
		t.Logf("at most %d clients at once, at most %d primary backends", mostClients, mostBackends)
	}
}
