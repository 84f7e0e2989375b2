package proxy_test

import (
	"context"
	"testing"

	"github.com/txlane/txlane/proxy"
)

// TestLoadClosesTheBackend: a library a client loads with LOAD stays in its
// backend for good (DISCARD ALL does not unload it), so in both pool modes
// that backend serves nobody after the client: it is closed when the client
// leaves, and the next client's backend knows nothing of the library
// (auto_explain's settings exist only where it is loaded: 42704 elsewhere).
func TestLoadClosesTheBackend(t *testing.T) {
	for _, mode := range []proxy.PoolMode{proxy.PoolSession, proxy.PoolTransaction} {
		t.Run(string(mode), func(t *testing.T) {
			p := startProxy(t, func(o *proxy.Options) {
				o.Pool = proxy.PoolOptions{Mode: mode, Size: 1}
				o.Auth = trustAuth(t, "postgres")
			})
			ctx := context.Background()
			c := p.connect(t)
			pid := scalar(t, c, "SELECT pg_backend_pid()")
			exec(t, c, "LOAD 'auto_explain'")
			if got := scalar(t, c, "SHOW auto_explain.log_min_duration"); got != "-1" {
				t.Fatalf("auto_explain.log_min_duration = %q after LOAD", got)
			}
			c.Close(ctx)
			next := nextAfterClosed(t, p, pid, "loaded auto_explain")
			wantCode(t, execErr(next, "SHOW auto_explain.log_min_duration"), "42704")
		})
	}
}
