package proxy_test

import (
	"testing"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestIgnoreStartupParameters: clients that differ only in startup
// parameters of ignore_startup_parameters (search_path, extra_float_digits;
// listed in another letter case) share one pool in transaction mode: with
// pool_size 1 both run on the same backend, and the session has the
// server's defaults, not the values sent (PgBouncer's meaning: ignored).
// Without the setting the same clients split into two pools (two
// backends) and keep their values. In session mode the relayed login
// leaves them out as well.
func TestIgnoreStartupParameters(t *testing.T) {
	const show = "SELECT current_setting('search_path') || '|' || current_setting('extra_float_digits')"
	direct := scalar(t, directConn(t), show)
	for _, tc := range []struct {
		name   string
		mode   proxy.PoolMode
		ignore []string
		shared bool // a and b on one backend
	}{
		{"transaction, ignored", proxy.PoolTransaction, []string{"SEARCH_PATH", "extra_float_digits"}, true},
		{"transaction, kept", proxy.PoolTransaction, nil, false},
		{"session, ignored", proxy.PoolSession, []string{"search_path", "extra_float_digits"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, func(o *proxy.Options) {
				o.Auth = trustAuth(t, pgtest.AppRole)
				// Session mode: pool_size caps the sessions of a pool.
				size := map[proxy.PoolMode]int{proxy.PoolTransaction: 1, proxy.PoolSession: 2}[tc.mode]
				o.Pool = proxy.PoolOptions{Mode: tc.mode, Size: size, IgnoreStartupParameters: tc.ignore}
			})
			a := connectDSN(t, p.DSN(t, pgtest.AppRole)+"&search_path=pg_catalog&extra_float_digits=1")
			b := connectDSN(t, p.DSN(t, pgtest.AppRole)+"&extra_float_digits=2")
			pa, pb := backendPID(t, a), backendPID(t, b)
			if (pa == pb) != tc.shared {
				t.Fatalf("a on backend %s, b on %s: want shared %v", pa, pb, tc.shared)
			}
			gotA, gotB := scalar(t, a, show), scalar(t, b, show)
			switch {
			case tc.ignore != nil && (gotA != direct || gotB != direct):
				t.Fatalf("a sees %q, b %q: want the server's defaults %q (parameters ignored)", gotA, gotB, direct)
			case tc.ignore == nil && (gotA != "pg_catalog|1" || gotB[len(gotB)-2:] != "|2"):
				t.Fatalf("a sees %q, b %q: want their own values", gotA, gotB)
			}
		})
	}
}
