package proxy

import (
	"slices"
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
	// ServerPID is the process ID of the backend serving the client (0 for
	// none: in transaction mode, between transactions).
	ServerPID uint32
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
			Addr:            clientAddr(sess.client),
			User:            sess.startup.Parameters["user"],
			Database:        sess.database(),
			ApplicationName: sess.startup.Parameters["application_name"],
			State:           sess.TxStatus(),
			Active:          busy || sess.inFlight() > 0,
			Held:            e.held.Load(),
			Since:           e.since,
			Units:           held[sess.id],
			Pinned:          sess.pinnedBy(),
			ServerPID:       sess.serverPID(),
		})
	}
	return out
}

// PoolInfo describes the primary backends of one (database, user), as SHOW
// POOLS lists them, with PgBouncer's columns, and the database's vector-lane
// pool.
type PoolInfo struct {
	Database, User string
	PoolMode       PoolMode
	// ClActive counts clients holding a backend; ClWaiting clients waiting
	// for one.
	ClActive, ClWaiting int
	// SvActive counts backends serving a client; SvIdle backends idle in
	// the pool; SvUsed backends being reset (server_reset_query) before
	// they go back.
	SvActive, SvIdle, SvUsed int
	// MaxWait is how long the oldest waiting client has waited.
	MaxWait time.Duration
	// Vector is the database's vector-lane pool (zero if never used).
	Vector PoolStat
}

// Pools describes the primary backends of each (database, user) in use,
// ordered by database then user.
func (s *Server) Pools() []PoolInfo {
	type key struct{ db, user string }
	by := map[key]*PoolInfo{}
	get := func(db, user string) *PoolInfo {
		p := by[key{db, user}]
		if p == nil {
			mode, _ := s.opts.Pool.For(db, user)
			p = &PoolInfo{Database: db, User: user, PoolMode: mode}
			by[key{db, user}] = p
		}
		return p
	}
	for _, c := range s.ClientList() {
		p := get(c.Database, c.User)
		if c.ServerPID != 0 {
			p.ClActive++
			p.SvActive++
		}
	}
	for _, st := range s.primaryPools() {
		p := get(st.Database, st.User)
		p.ClWaiting += st.ClWaiting
		p.SvIdle += st.SvIdle
		p.SvUsed += st.SvUsed
		p.MaxWait = max(p.MaxWait, st.MaxWait)
	}
	vector := map[string]PoolStat{}
	if s.lanes != nil {
		for _, st := range s.lanes.stats() {
			vector[st.Database] = st
		}
	}
	out := make([]PoolInfo, 0, len(by))
	for _, p := range by {
		p.Vector = vector[p.Database]
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Database != out[j].Database {
			return out[i].Database < out[j].Database
		}
		return out[i].User < out[j].User
	})
	return out
}

// ServerInfo describes one primary backend, as SHOW SERVERS lists it.
type ServerInfo struct {
	User, Database string
	// State is active (serving a client), idle (in its pool) or used (being
	// reset before it goes back).
	State string
	// Addr is the server's address; PID the backend's process ID.
	Addr string
	PID  uint32
	// ConnectTime is when the backend logged in; RequestTime when it was
	// last given a request.
	ConnectTime, RequestTime time.Time
	// Link is the client it serves (0 for none).
	Link uint64
}

// ServerList describes the primary backends: those serving clients, then
// those idle or being reset in the pools.
func (s *Server) ServerList() []ServerInfo {
	var out []ServerInfo
	for _, e := range s.entries() {
		sess := e.sess
		if p := sess.pc.Load(); p != nil {
			out = append(out, p.describe(sess.startup.Parameters["user"], sess.database(), "active", sess.id))
		}
	}
	for _, pl := range s.poolList() {
		pl.mu.Lock()
		idle, used := slices.Clone(pl.idle), pl.resetting
		pl.mu.Unlock()
		for _, c := range idle {
			out = append(out, c.describe(pl.key.user, pl.key.database, "idle", 0))
		}
		for i := 0; i < used; i++ {
			out = append(out, ServerInfo{User: pl.key.user, Database: pl.key.database, State: "used"})
		}
	}
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
//	txlane_pool_*                        per pool: see poolCollector
func (s *Server) Register(reg prometheus.Registerer) error {
	if err := s.metrics.Register(reg); err != nil {
		return err
	}
	if err := reg.Register(&poolCollector{s: s}); err != nil {
		return err
	}
	return reg.Register(&stateCollector{s: s})
}

var (
	descClients = prometheus.NewDesc("txlane_clients",
		"Client connections open, admin console included.", nil, nil)
	descBackends = prometheus.NewDesc("txlane_backends",
		"Backend connections by lane and state. vector: the read pools (active = acquired, idle, waiting = acquires in progress); primary: backends serving a client (active = running a request, else idle), idle in a transaction-mode pool (idle) or being reset (active), and waiting = requests held by PAUSE.",
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
	// Primary backends: those serving a client (active while it runs a
	// request), and in transaction mode those idle or being reset in the
	// pools. A client that holds none counts nowhere.
	for _, cl := range s.ClientList() {
		switch {
		case cl.ServerPID == 0:
		case cl.Active:
			pActive++
		default:
			pIdle++
		}
	}
	for _, st := range s.primaryPools() {
		pIdle += st.SvIdle
		pActive += st.SvUsed
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
