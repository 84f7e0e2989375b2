package proxy

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Pool gauges, read from the pools when scraped. A pool is, per lane:
//
//	primary  the backends clients share (pool_mode transaction, and
//	         session-mode pools of logins txlane checks: see pool.go), per
//	         database and user; pools of the same database and user that
//	         differ in startup parameters are summed. Session-mode clients
//	         with relayed logins (auth_type server) have backends of their
//	         own, in no pool: see txlane_backends.
//	vector   the read pool of a database; user is the read pool's login.
//
// Utilization is txlane_pool_backends{state="active"} divided by
// txlane_pool_max_backends; state "used" (a backend being reset by
// server_reset_query: SHOW POOLS' sv_tested, as PgBouncer names it) is brief
// and not counted as busy.
var (
	descPoolBackends = prometheus.NewDesc("txlane_pool_backends",
		"Backends of a pool by state: active (serving a client, or being opened for one), idle, or used (being reset by server_reset_query before it goes back), by lane, database and user.",
		[]string{"lane", "database", "user", "state"}, nil)
	descPoolMax = prometheus.NewDesc("txlane_pool_max_backends",
		"Most backends a pool may have: pool_size (primary) or read_pool.max_conns (vector), by lane, database and user.",
		[]string{"lane", "database", "user"}, nil)
	descPoolWaiting = prometheus.NewDesc("txlane_pool_clients_waiting",
		"Clients waiting for a backend of a pool now, by lane, database and user.",
		[]string{"lane", "database", "user"}, nil)
)

// poolCollector reads the pool gauges from a Server when scraped.
type poolCollector struct{ s *Server }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPoolBackends
	ch <- descPoolMax
	ch <- descPoolWaiting
}

// poolGauges is one row of the pool gauges.
type poolGauges struct {
	lane, database, user             string
	active, idle, used, max, waiting int
}

// poolGauges returns the pools' gauges, ordered by lane, database and user.
func (s *Server) poolGauges() []poolGauges {
	byKey := map[[3]string]*poolGauges{}
	row := func(lane, db, user string) *poolGauges {
		k := [3]string{lane, db, user}
		g := byKey[k]
		if g == nil {
			g = &poolGauges{lane: lane, database: db, user: user}
			byKey[k] = g
		}
		return g
	}
	for _, p := range s.poolList() {
		p.mu.Lock()
		g := row(lanePrimary, p.key.database, p.key.user)
		// total counts the backends serving a client, being opened for
		// one, idle or being reset.
		g.active += p.total - len(p.idle) - p.resetting
		g.idle += len(p.idle)
		g.used += p.resetting
		g.waiting += len(p.waiters)
		g.max += p.size
		p.mu.Unlock()
	}
	if s.lanes != nil {
		user := ""
		if cfg := s.lanes.opts.Config; cfg != nil {
			user = cfg.User
		}
		for _, st := range s.lanes.stats() {
			g := row(laneVector, st.Database, user)
			g.active += st.Total - st.Idle
			g.idle += st.Idle
			g.waiting += st.Waiting
			g.max += st.Max
		}
	}
	out := make([]poolGauges, 0, len(byKey))
	for _, g := range byKey {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b poolGauges) int {
		return cmp.Or(cmp.Compare(a.lane, b.lane), cmp.Compare(a.database, b.database), cmp.Compare(a.user, b.user))
	})
	return out
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.s.poolGauges() {
		ch <- prometheus.MustNewConstMetric(descPoolBackends, prometheus.GaugeValue, float64(g.active), g.lane, g.database, g.user, "active")
		ch <- prometheus.MustNewConstMetric(descPoolBackends, prometheus.GaugeValue, float64(g.idle), g.lane, g.database, g.user, "idle")
		ch <- prometheus.MustNewConstMetric(descPoolBackends, prometheus.GaugeValue, float64(g.used), g.lane, g.database, g.user, "used")
		ch <- prometheus.MustNewConstMetric(descPoolMax, prometheus.GaugeValue, float64(g.max), g.lane, g.database, g.user)
		ch <- prometheus.MustNewConstMetric(descPoolWaiting, prometheus.GaugeValue, float64(g.waiting), g.lane, g.database, g.user)
	}
}

// poolGet takes a backend from pool (see serverPool.get) for a request,
// waiting for at most wait, or until the client's CancelRequest ends w; it
// records how long the client waited (txlane_pool_wait_seconds
// {lane="primary"}). A pool with no backend at all, which fails at once, is
// no wait. An idle backend is taken without a timer (the common case:
// every transaction in pool_mode transaction).
func (s *session) poolGet(w *poolWait, pool *serverPool, wait time.Duration) (*primaryConn, error) {
	if p := pool.tryGet(); p != nil {
		s.srv.metrics.observePoolWait(lanePrimary, 0)
		return p, nil
	}
	w.block(wait)
	defer w.unblock()
	start := time.Now()
	p, err := pool.getWaiting(w)
	if !errors.Is(err, errPoolEmpty) {
		s.srv.metrics.observePoolWait(lanePrimary, time.Since(start))
	}
	return p, err
}

// poolGetCtx takes a backend from pool, waiting until ctx ends, and
// records the wait as poolGet does.
func (s *session) poolGetCtx(ctx context.Context, pool *serverPool) (*primaryConn, error) {
	start := time.Now()
	p, err := pool.get(ctx)
	if !errors.Is(err, errPoolEmpty) {
		s.srv.metrics.observePoolWait(lanePrimary, time.Since(start))
	}
	return p, err
}
