package proxy_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestManyIdleClients: in transaction mode, with logins txlane checks
// itself, thousands of idle clients hold no backend: the server sees
// pool_size backends, and every client still answers. The count is
// TXLANE_TEST_IDLE_CLIENTS (default 1000; the README's 10,000 figure comes
// from this test run with 10000); the heap per idle client is logged.
func TestManyIdleClients(t *testing.T) {
	n := 1000
	if v := os.Getenv("TXLANE_TEST_IDLE_CLIENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	// Two descriptors per client in this process (its end and txlane's).
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(2*n+1000) {
		lim.Cur = uint64(2*n + 1000)
		if lim.Max < lim.Cur {
			lim.Max = lim.Cur
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Skipf("cannot raise the open-file limit to %d: %v", lim.Cur, err)
		}
	}
	p := startProxy(t, func(o *proxy.Options) {
		o.Auth = trustAuth(t, pgtest.AppRole)
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 2}
		o.MaxClientConn = n + 10
	})
	app := uniqueName("idle")
	u, _ := url.Parse(p.DSN(t, pgtest.AppRole))
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	dsn := u.String()

	ctx := context.Background()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	conns := make([]*pgconn.PgConn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := pgconn.Connect(ctx, dsn)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.Close(ctx)
		}
	}()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// The test's own clients live in this process too: this is an upper
	// bound of txlane's part.
	t.Logf("%d idle clients: heap +%d KiB (%.1f KiB per client, txlane's and the test's clients'), %d goroutines",
		n, (after.HeapInuse-before.HeapInuse)/1024, float64(after.HeapInuse-before.HeapInuse)/1024/float64(n), runtime.NumGoroutine())
	if got := backendCount(t, app); got != "1" && got != "2" {
		t.Fatalf("%s backends for %d clients, want at most pool_size 2", got, n)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		if got := scalar(t, conns[i], "SELECT 1"); got != "1" {
			t.Fatalf("client %d answered %s", i, got)
		}
	}
}
