package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/proxy"
)

// TestStress runs many clients at once for a bounded time, each doing a
// random mix of what txlane routes differently: vector reads idle and in
// transactions, writes with and without units, escapes rerouted into other
// clients' transactions, offloaded errors, cancels and abrupt disconnects.
// Whatever each client sees must be a well-formed answer (a result or an
// ErrorResponse, never a broken stream), and afterwards no vector-lane
// connection is left checked out, no unit is held, and a new client works.
func TestStress(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) {
		o.ReadPool.MaxConns = 3
		o.Rules.Escape = "reroute"
		o.RerouteWaitTimeout = 300 * time.Millisecond
	})
	tb := bed.table
	const clients = 12
	duration := 3 * time.Second
	if testing.Short() {
		duration = time.Second
	}
	deadline := time.Now().Add(duration)

	var mu sync.Mutex
	counts := map[string]int{}
	count := func(k string) { mu.Lock(); counts[k]++; mu.Unlock() }

	// wellFormed: errors a client may legitimately get in this mix.
	wellFormed := func(err error) bool {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			return false
		}
		switch pgErr.Code {
		case "57014", "25P02", "22000", "25L01", "22012", "40001", "40P01", "23505":
			return true
		}
		return false
	}

	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(c)))
			ctx := context.Background()
			for time.Now().Before(deadline) {
				cfg, _ := pgconn.ParseConfig(bed.DSN(t, ""))
				var pgErrs []string
				cfg.OnPgError = func(_ *pgconn.PgConn, e *pgconn.PgError) bool {
					pgErrs = append(pgErrs, e.Severity+" "+e.Code+" "+e.Message)
					return e.Severity != "FATAL" && e.Severity != "PANIC"
				}
				conn, err := pgconn.ConnectConfig(ctx, cfg)
				if err != nil {
					t.Errorf("client %d: connect: %v", c, err)
					return
				}
				unit := fmt.Sprintf("u%d", rng.Intn(4))
				var hist []string
				ops := 3 + rng.Intn(8)
				vanished := false
				for i := 0; i < ops && time.Now().Before(deadline); i++ {
					var sql string
					switch rng.Intn(9) {
					case 0:
						sql = "SELECT id FROM " + tb + " ORDER BY embedding <-> '[1,0,0]' LIMIT 2"
					case 1:
						sql = "BEGIN; SELECT count(*) FROM " + tb + " /*unit='" + unit + "'*/"
					case 2:
						sql = fmt.Sprintf("INSERT INTO %s (id, embedding, note) VALUES (%d, '[0,1,0]', 'stress') ON CONFLICT (id) DO NOTHING /*unit='%s'*/", tb, 1000+rng.Intn(100000), unit)
					case 3:
						sql = "SELECT id FROM " + tb + " ORDER BY embedding <-> '[1,0]' LIMIT 1" // dimension error on the lane
					case 4:
						sql = "COMMIT"
					case 5:
						sql = "ROLLBACK"
					case 6:
						delay := time.Duration(rng.Intn(20)) * time.Millisecond
						go func() { time.Sleep(delay); conn.CancelRequest(ctx) }()
						hist = append(hist, fmt.Sprintf("(cancel in %v)", delay))
						sql = "SELECT pg_sleep(0.05), id FROM " + tb + " LIMIT 1"
					case 7:
						sql = "DELETE FROM " + tb + " WHERE note = 'stress' AND id % 7 = 0 /*unit='" + unit + "'*/"
					case 8:
						if rng.Intn(4) == 0 {
							hj, err := conn.Hijack()
							if err == nil {
								hj.Conn.Close()
								vanished = true
								count("vanished")
							}
						}
					}
					if vanished {
						break
					}
					if sql == "" {
						continue
					}
					qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, err := conn.Exec(qctx, sql).ReadAll()
					cancel()
					hist = append(hist, fmt.Sprintf("%s -> %v (status %c)", sql, err, conn.TxStatus()))
					switch {
					case err == nil:
						count("ok")
					case wellFormed(err):
						count(err.(*pgconn.PgError).Code)
					default:
						t.Errorf("client %d (txlane pid %d, local %s): %q: %v\nerrors: %q\nhistory:\n%s", c, conn.PID(), conn.Conn().LocalAddr(), sql, err, pgErrs, strings.Join(hist, "\n"))
						vanished = true
					}
					if vanished {
						break
					}
				}
				if !vanished {
					conn.Close(ctx)
				}
			}
		}(c)
	}
	wg.Wait()
	t.Logf("outcomes: %v", counts)

	// Everything settles: lane connections back in the pool, no unit held.
	settle := time.Now().Add(5 * time.Second)
	for {
		busy := 0
		for _, p := range bed.Server.Pools() {
			if p.Lane == proxy.LaneVector {
				busy += p.SvActive
			}
		}
		if busy == 0 && len(bed.Server.Units()) == 0 {
			break
		}
		if time.Now().After(settle) {
			t.Fatalf("after the storm: %d vector-lane connections still checked out, units held: %v", busy, bed.Server.Units())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := bed.connect(t)
	if got := scalar(t, c, "SELECT count(*) FROM "+tb+" WHERE id <= 3"); got != "3" {
		t.Fatalf("seed rows: %s", got)
	}
	if counts["ok"] == 0 || !strings.Contains(fmt.Sprint(counts), "22000") {
		t.Fatalf("the mix did not exercise the paths it should: %v", counts)
	}
}
