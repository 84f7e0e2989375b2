package proxy

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txlane/txlane/policy"
)

// ClientInfo describes one logged-in client, as SHOW CLIENTS lists it.
type ClientInfo struct {
	ID              uint64
	Addr            string
	User            string
	Database        string
	ApplicationName string
	// State is the transaction status: I, T or E.
	State TxStatus
	// Active: a request of the client is being dispatched or answered.
	Active bool
	// Held: a request of the client is held by PAUSE.
	Held  bool
	Since time.Time
	// Units is how many units of work the client holds.
	Units int
	// Pinned says what keeps the client on its backend in transaction
	// mode (comma-separated pin reasons; "" for nothing).
	Pinned string
}

// ClientList describes the logged-in clients, ordered by ID.
func (s *Server) ClientList() []ClientInfo {
	held := map[uint64]int{}
	for _, u := range s.Units() {
		held[u.ClientID]++
	}
	entries := s.entries()
	out := make([]ClientInfo, 0, len(entries))
	for _, e := range entries {
		sess := e.sess
		e.mu.Lock()
		busy := e.mu.busy
		e.mu.Unlock()
		out = append(out, ClientInfo{
			ID:              sess.id,
			Addr:            sess.client.RemoteAddr().String(),
			User:            sess.startup.Parameters["user"],
			Database:        sess.database(),
			ApplicationName: sess.startup.Parameters["application_name"],
			State:           sess.TxStatus(),
			Active:          busy || sess.inFlight() > 0,
			Held:            e.held.Load(),
			Since:           e.since,
			Units:           held[sess.id],
			Pinned:          sess.pinnedBy(),
		})
	}
	return out
}

// PoolInfo describes one database's backends, as SHOW POOLS lists it.
type PoolInfo struct {
	Database string
	// Vector is the database's vector-lane pool (zero if never used).
	Vector PoolStat
	// PrimaryConns counts primary-lane connections: one per client.
	PrimaryConns int
	// PrimaryActive counts those running a request.
	PrimaryActive int
	// PoolMode is pool_mode; in transaction mode ClWaiting counts clients
	// waiting for a backend, SvActive backends serving a client and SvIdle
	// backends idle in the pool (PgBouncer's SHOW POOLS columns).
	PoolMode                    PoolMode
	ClWaiting, SvActive, SvIdle int
}

// Pools describes the backends of each database in use, ordered by name.
func (s *Server) Pools() []PoolInfo {
	byDB := map[string]*PoolInfo{}
	get := func(db string) *PoolInfo {
		p := byDB[db]
		if p == nil {
			p = &PoolInfo{Database: db}
			byDB[db] = p
		}
		return p
	}
	if s.lanes != nil {
		for _, st := range s.lanes.stats() {
			get(st.Database).Vector = st
		}
	}
	for _, c := range s.ClientList() {
		p := get(c.Database)
		if mode, _ := s.opts.Pool.For(c.Database, c.User); mode == PoolSession {
			p.PrimaryConns++
		}
		if c.Active {
			p.PrimaryActive++
		}
	}
	for _, st := range s.primaryPools() {
		p := get(st.Database)
		p.ClWaiting += st.ClWaiting
		p.SvActive += st.SvActive
		p.SvIdle += st.SvIdle
		p.PrimaryConns += st.SvActive + st.SvIdle
	}
	for _, p := range byDB {
		p.PoolMode, _ = s.opts.Pool.For(p.Database, "")
	}
	out := make([]PoolInfo, 0, len(byDB))
	for _, p := range byDB {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Database < out[j].Database })
	return out
}

// PolicyInfo is the routing policy in force.
type PolicyInfo struct {
	// Settings is the configuration as given (Options.Settings).
	Settings []Setting
	// Rules are the configured rules, without discovered tables.
	Rules *policy.Rules
	// Discovered lists, by database, the vector tables found in its catalog.
	Discovered map[string][]policy.Table
}

// Policy returns the routing policy in force.
func (s *Server) Policy() PolicyInfo {
	pi := PolicyInfo{Settings: s.live().Settings, Rules: s.policy.Load().rules, Discovered: map[string][]policy.Table{}}
	for db, dr := range s.allRouting() {
		if t := dr.discoveredTables(); len(t) > 0 {
			pi.Discovered[db] = t
		}
	}
	return pi
}

// Register adds the server's metrics to reg: the Metrics given in Options,
// and gauges read from the server's state when scraped:
//
//	txlane_clients                       client connections open (admin console included)
//	txlane_backends{lane,state}          backend connections by lane and state (active, idle, waiting)
//	txlane_paused                        1 while PAUSE is in force
func (s *Server) Register(reg prometheus.Registerer) error {
	if err := s.metrics.Register(reg); err != nil {
		return err
	}
	return reg.Register(&stateCollector{s: s})
}

var (
	descClients = prometheus.NewDesc("txlane_clients",
		"Client connections open, admin console included.", nil, nil)
	descBackends = prometheus.NewDesc("txlane_backends",
		"Backend connections by lane and state. vector: the read pools (active = acquired, idle, waiting = acquires in progress); primary: the clients' own connections (active = running a request, idle, waiting = requests held by PAUSE).",
		[]string{"lane", "state"}, nil)
	descPaused = prometheus.NewDesc("txlane_paused",
		"1 while PAUSE is in force on the admin console.", nil, nil)
)

// stateCollector reads gauges from a Server when scraped.
type stateCollector struct{ s *Server }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descClients
	ch <- descBackends
	ch <- descPaused
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(s.Clients()))
	var vActive, vIdle, vWaiting, pActive, pIdle int
	if s.lanes != nil {
		for _, st := range s.lanes.stats() {
			vActive += st.Acquired
			vIdle += st.Idle
			vWaiting += st.Waiting
		}
	}
	for _, cl := range s.ClientList() {
		if cl.Active {
			pActive++
		} else {
			pIdle++
		}
	}
	for _, m := range []struct {
		lane, state string
		n           int
	}{
		{"vector", "active", vActive}, {"vector", "idle", vIdle}, {"vector", "waiting", vWaiting},
		{"primary", "active", pActive}, {"primary", "idle", pIdle}, {"primary", "waiting", int(s.ops.held.Load())},
	} {
		ch <- prometheus.MustNewConstMetric(descBackends, prometheus.GaugeValue, float64(m.n), m.lane, m.state)
	}
	paused := 0.0
	if s.Paused() {
		paused = 1
	}
	ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, paused)
}
