package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// txCounts are the transaction counters of one lane.
type txCounts struct {
	ImplicitCommit, ImplicitRollback, ExplicitCommit, ExplicitRollback float64
}

func txCountsOf(m *proxy.Metrics, lane string) txCounts {
	return txCounts{
		ImplicitCommit: m.Transactions(lane, "commit", "implicit"), ImplicitRollback: m.Transactions(lane, "rollback", "implicit"),
		ExplicitCommit: m.Transactions(lane, "commit", "explicit"), ExplicitRollback: m.Transactions(lane, "rollback", "explicit"),
	}
}

// run runs sql with the simple protocol and returns the server's error
// (nil for none) and the last command tag.
func run(t *testing.T, c *pgconn.PgConn, sql string) (string, *pgconn.PgError) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Exec(ctx, sql).ReadAll()
	var pe *pgconn.PgError
	if err != nil && !errors.As(err, &pe) {
		t.Fatalf("%q: %v", sql, err)
	}
	tag := ""
	if len(res) > 0 {
		tag = res[len(res)-1].CommandTag.String()
	}
	return tag, pe
}

// TestTransactionMetrics: commits and rollbacks of the primary lane, in both
// pool modes, counted as PostgreSQL ended them; what the table holds at the
// end proves which transactions committed.
func TestTransactionMetrics(t *testing.T) {
	for _, mode := range []proxy.PoolMode{proxy.PoolSession, proxy.PoolTransaction} {
		t.Run(string(mode), func(t *testing.T) {
			p := startProxy(t, func(o *proxy.Options) { o.Pool = proxy.PoolOptions{Mode: mode, Size: 2} })
			tbl := uniqueName("txmetrics")
			pgtest.Exec(t, "CREATE TABLE "+tbl+" (id int UNIQUE DEFERRABLE INITIALLY DEFERRED); GRANT ALL ON "+tbl+" TO PUBLIC")
			t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl) })
			c := p.connect(t)
			m := p.Metrics()
			ins := func(id int) string { return fmt.Sprintf("INSERT INTO %s VALUES (%d)", tbl, id) }
			var want txCounts
			errs := map[string]float64{}
			step := func(name string, wantTag string, wantCode string, sqls ...string) {
				t.Helper()
				var tag string
				var code string
				for _, sql := range sqls {
					tg, pe := run(t, c, sql)
					tag = tg
					if pe != nil {
						code = pe.Code
					}
				}
				if code != wantCode {
					t.Fatalf("%s: SQLSTATE %q, want %q", name, code, wantCode)
				}
				if wantTag != "" && tag != wantTag {
					t.Fatalf("%s: last command tag %q, want %q", name, tag, wantTag)
				}
				if code != "" {
					errs[code[:2]]++
				}
				if got := txCountsOf(m, "primary"); got != want {
					t.Fatalf("after %s: %+v, want %+v", name, got, want)
				}
				for class, n := range errs {
					if got := m.Errors("primary", class); got != n {
						t.Fatalf("after %s: errors of class %s = %v, want %v", name, class, got, n)
					}
				}
			}
			want.ImplicitCommit++
			step("autocommit SELECT", "SELECT 1", "", "SELECT 1")
			want.ImplicitCommit++
			ctx := context.Background()
			if _, err := c.ExecParams(ctx, "SELECT $1::int", [][]byte{[]byte("1")}, nil, nil, nil).Close(); err != nil {
				t.Fatal(err)
			}
			step("extended-protocol SELECT", "", "")
			want.ImplicitRollback++
			step("failing autocommit SELECT", "", "22012", "SELECT 1/0")
			want.ExplicitCommit++
			step("BEGIN; INSERT; COMMIT", "COMMIT", "", "BEGIN", ins(1), "COMMIT")
			want.ExplicitRollback++
			step("BEGIN; INSERT; ROLLBACK", "ROLLBACK", "", "BEGIN", ins(2), "ROLLBACK")
			// The server's own tag says what a COMMIT of a failed block did.
			want.ExplicitRollback++
			step("COMMIT of a failed block", "ROLLBACK", "22012", "BEGIN", ins(3), "SELECT 1/0", "COMMIT")
			want.ExplicitRollback++
			step("COMMIT failing on a deferred constraint", "", "23505", "BEGIN", ins(5), ins(5), "COMMIT")
			want.ExplicitCommit++
			step("a block in one Query", "COMMIT", "", "BEGIN; "+ins(6)+"; COMMIT")
			want.ImplicitRollback++
			step("an implicit block failing", "", "22012", ins(7)+"; SELECT 1/0")
			step("ROLLBACK outside a block", "ROLLBACK", "", "ROLLBACK")
			want.ExplicitRollback++
			step("ROLLBACK TO SAVEPOINT, then ROLLBACK", "ROLLBACK", "22012", "BEGIN", "SAVEPOINT a", "SELECT 1/0", "ROLLBACK TO SAVEPOINT a", ins(8), "ROLLBACK")

			if got := scalar(t, directConn(t), "SELECT string_agg(id::text, ',' ORDER BY id) FROM "+tbl); got != "1,6" {
				t.Fatalf("committed rows %q, want 1,6", got)
			}
		})
	}
}

// TestDeadlockMetric: two clients deadlock through txlane; the one the
// server chose gets 40P01, counted once as a deadlock and in class 40, and
// its COMMIT is a rollback.
func TestDeadlockMetric(t *testing.T) {
	p := startTxPool(t, 4)
	tbl := uniqueName("deadlock")
	pgtest.Exec(t, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, v int); INSERT INTO "+tbl+" VALUES (1, 0), (2, 0); GRANT ALL ON "+tbl+" TO PUBLIC")
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl) })
	a, b := p.connect(t), p.connect(t)
	upd := func(id int) string { return fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = %d", tbl, id) }
	for _, c := range []*pgconn.PgConn{a, b} {
		exec(t, c, "SET deadlock_timeout = '100ms'")
	}
	exec(t, a, "BEGIN")
	exec(t, a, upd(1))
	exec(t, b, "BEGIN")
	exec(t, b, upd(2))
	aErr := make(chan *pgconn.PgError, 1)
	go func() {
		_, err := a.Exec(context.Background(), upd(2)).ReadAll() // waits for b's lock
		var pe *pgconn.PgError
		errors.As(err, &pe)
		aErr <- pe
	}()
	// b asks for a's lock once a waits for b's: a cycle.
	direct := directConn(t)
	waitFor(t, func() bool {
		return scalar(t, direct, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query = "+quote(upd(2))) == "1"
	}, "a to wait for b's row lock")
	_, bPE := run(t, b, upd(1))
	aPE := <-aErr
	var victims int
	for _, pe := range []*pgconn.PgError{aPE, bPE} {
		if pe != nil {
			if pe.Code != "40P01" {
				t.Fatalf("error %s %s, want 40P01", pe.Code, pe.Message)
			}
			victims++
		}
	}
	if victims != 1 {
		t.Fatalf("%d clients got 40P01, want 1", victims)
	}
	tagA, _ := run(t, a, "COMMIT")
	tagB, _ := run(t, b, "COMMIT")
	m := p.Metrics()
	if got := m.Deadlocks("primary"); got != 1 {
		t.Errorf("deadlocks = %v, want 1", got)
	}
	if got := m.Errors("primary", "40"); got != 1 {
		t.Errorf("errors of class 40 = %v, want 1", got)
	}
	if tags := tagA + "," + tagB; tags != "COMMIT,ROLLBACK" && tags != "ROLLBACK,COMMIT" {
		t.Fatalf("COMMIT tags %s: want one COMMIT and one ROLLBACK", tags)
	}
	if got := txCountsOf(m, "primary"); got.ExplicitCommit != 1 || got.ExplicitRollback != 1 {
		t.Errorf("transactions %+v: want 1 explicit commit and 1 explicit rollback", got)
	}
}

// TestLaneTransactionMetrics: each read the vector lane answers is one
// implicit transaction of the lane, rolled back when it fails; its error is
// the lane's, and its latency is in the lane's histogram.
func TestLaneTransactionMetrics(t *testing.T) {
	bed := startVectorProxy(t, nil)
	c := bed.connect(t)
	l := newLanes(t, c)
	read := "SELECT pg_backend_pid() FROM " + bed.table + " ORDER BY embedding <-> '[1,0,0]' LIMIT 1"
	l.wantLane(read)
	l.wantLane(read)
	if _, pe := run(t, c, "SELECT 1/(id - 1) FROM "+bed.table+" ORDER BY embedding <-> '[1,0,0]'"); pe == nil || pe.Code != "22012" {
		t.Fatalf("failing lane read: %v, want 22012", pe)
	}
	m := bed.Metrics()
	if got := m.Routed("vector", "vector_read_idle"); got != 3 {
		t.Fatalf("%v reads on the vector lane, want 3", got)
	}
	if got, want := txCountsOf(m, "vector"), (txCounts{ImplicitCommit: 2, ImplicitRollback: 1}); got != want {
		t.Errorf("vector lane transactions %+v, want %+v", got, want)
	}
	if got := m.Errors("vector", "22"); got != 1 {
		t.Errorf("vector lane errors of class 22 = %v, want 1", got)
	}
	if got := m.Errors("primary", "22"); got != 0 {
		t.Errorf("primary errors of class 22 = %v, want 0", got)
	}
	// The duration is observed once the client has its answer.
	waitFor(t, func() bool {
		return scrape(t, bed.Server)[series("txlane_request_duration_seconds_count", "lane", "vector")] == 3
	}, "3 vector request durations")
}

// TestPoolMetrics: the pool gauges and the wait histogram follow a
// transaction-mode pool and the vector lane's pool.
func TestPoolMetrics(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) {
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}
	})
	cfg := pgtest.Config(t)
	pool := func(name, lane string, state ...string) string {
		labels := []string{"database", cfg.Database, "lane", lane, "user", cfg.User}
		if len(state) > 0 {
			labels = append(labels, "state", state[0])
		}
		return series(name, labels...)
	}
	a, b := bed.connect(t), bed.connect(t)
	exec(t, b, "SELECT 1") // on b's own login backend, which the full pool closes now
	l := newLanes(t, a)
	l.wantLane("SELECT pg_backend_pid() FROM " + bed.table + " ORDER BY embedding <-> '[1,0,0]' LIMIT 1")

	// The lane connection goes back to its pool once the client has its
	// answer.
	waitFor(t, func() bool { return scrape(t, bed.Server)[pool("txlane_pool_backends", "vector", "idle")] == 1 }, "the lane connection to be idle")
	s := scrape(t, bed.Server)
	for series, want := range map[string]float64{
		pool("txlane_pool_max_backends", "primary"):                                                     1,
		pool("txlane_pool_backends", "primary", "active"):                                               0,
		pool("txlane_pool_backends", "primary", "idle"):                                                 1,
		pool("txlane_pool_backends", "primary", "used"):                                                 0,
		pool("txlane_pool_clients_waiting", "primary"):                                                  0,
		pool("txlane_pool_max_backends", "vector"):                                                      4,
		pool("txlane_pool_backends", "vector", "active"):                                                0,
		pool("txlane_pool_backends", "vector", "idle"):                                                  1,
		series("txlane_pool_wait_seconds_count", "lane", "vector"):                                      1,
		series("txlane_pool_acquire_wait_seconds_count", "lane", "vector"):                              1,
		series("txlane_transactions_total", "lane", "vector", "outcome", "commit", "block", "implicit"): 1,
	} {
		if got, ok := s[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}

	// a holds the pool's one backend; b waits for it.
	exec(t, a, "BEGIN")
	exec(t, a, "SELECT 1")
	primaryWaits := series("txlane_pool_wait_seconds_count", "lane", "primary")
	waits := scrape(t, bed.Server)[primaryWaits]
	done := make(chan error, 1)
	go func() {
		_, err := b.Exec(context.Background(), "SELECT 2").ReadAll()
		done <- err
	}()
	waitFor(t, func() bool { return scrape(t, bed.Server)[pool("txlane_pool_clients_waiting", "primary")] == 1 }, "b to wait for a backend")
	s = scrape(t, bed.Server)
	if got := s[pool("txlane_pool_backends", "primary", "active")]; got != 1 {
		t.Errorf("active backends while a holds one: %v, want 1", got)
	}
	exec(t, a, "COMMIT")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s = scrape(t, bed.Server)
	if got := s[primaryWaits]; got != waits+1 {
		t.Errorf("primary pool waits observed %v, want %v", got, waits+1)
	}
	if got := s[pool("txlane_pool_clients_waiting", "primary")]; got != 0 {
		t.Errorf("clients waiting after the wait: %v", got)
	}
}

// series is the key of a series in scrape's map: name and label pairs.
func series(name string, pairs ...string) string {
	var ls []string
	for i := 0; i+1 < len(pairs); i += 2 {
		ls = append(ls, fmt.Sprintf("%s=%q", pairs[i], pairs[i+1]))
	}
	sort.Strings(ls)
	if len(ls) == 0 {
		return name
	}
	return name + "{" + strings.Join(ls, ",") + "}"
}

// scrape gathers srv's metrics as series name{labels in name order} → value
// (histograms as _count and _sum).
func scrape(t *testing.T, srv *proxy.Server) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := srv.Register(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var pairs []string
			for _, l := range m.GetLabel() {
				pairs = append(pairs, l.GetName(), l.GetValue())
			}
			switch {
			case m.Counter != nil:
				out[series(mf.GetName(), pairs...)] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[series(mf.GetName(), pairs...)] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[series(mf.GetName()+"_count", pairs...)] = float64(m.GetHistogram().GetSampleCount())
				out[series(mf.GetName()+"_sum", pairs...)] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}
