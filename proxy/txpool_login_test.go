package proxy_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/proxy"
)

// TestTxPoolLoginWait: in transaction mode a login txlane checks that the
// pool's login cache cannot answer (a movable value no backend has applied)
// waits for a backend as a request does, up to query_wait_timeout, not for
// the whole client_login_timeout; it is then refused with 57P03.
func TestTxPoolLoginWait(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
		o.Auth = trustAuth(t, "postgres")
		o.QueryWaitTimeout = 300 * time.Millisecond
		o.ClientLoginTimeout = time.Minute
	})
	a := p.connect(t)
	exec(t, a, "BEGIN")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	before := p.Metrics().PoolLogins("backend")
	c, err := pgconn.Connect(ctx, withParams(t, p.DSN(t, ""), map[string]string{"TimeZone": "Asia/Kolkata"}))
	if got := p.Metrics().PoolLogins("backend") - before; got != 1 {
		t.Errorf("txlane_pool_logins_total{from=backend} grew by %v for a login of a new TimeZone, want 1", got)
	}
	if err == nil {
		c.Close(ctx)
		t.Fatal("a login got in while the only backend was in another client's transaction")
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != proxy.CodeCannotConnectNow {
		t.Fatalf("login with the pool busy: %v, want FATAL 57P03 after query_wait_timeout", err)
	}
	exec(t, a, "COMMIT")
	b := p.connect(t)
	exec(t, b, "SET application_name = 'renamed'")
	// SHOW CLIENTS shows the value the client set, as PgBouncer does.
	var names []string
	for _, ci := range p.Server.ClientList() {
		names = append(names, ci.ApplicationName)
	}
	if !slices.Contains(names, "renamed") {
		t.Errorf("SHOW CLIENTS shows application_name %q after SET application_name = 'renamed'", names)
	}
}
