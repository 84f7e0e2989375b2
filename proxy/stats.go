package proxy

import (
	"cmp"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txlane/txlane/policy"
)

// Client states, as SHOW CLIENTS' state column shows them: PgBouncer's
// values and meanings (its SHOW CLIENTS and cl_active / cl_waiting).
const (
	// ClientActive: the client holds a primary backend, or a request of
	// it is being dispatched or answered (a read on the vector lane holds
	// no primary backend in transaction mode).
	ClientActive = "active"
	// ClientIdle: the client holds no backend and has no request under way.
	ClientIdle = "idle"
	// ClientWaiting: a request of the client waits for a server before it
	// can run: for a backend of its pool (transaction mode, pool_size
	// reached), or held by PAUSE. SHOW POOLS counts it in cl_waiting.
	ClientWaiting = "waiting"
)

// What a waiting client waits for (ClientInfo.WaitingFor).
const (
	// WaitingForServer: a backend of its pool (transaction mode: every
	// backend serves a client and pool_size is reached, or one is being
	// opened for it).
	WaitingForServer = "server"
	// WaitingForResume: the end of PAUSE (RESUME on the admin console).
	WaitingForResume = "resume"
)

// ClientInfo describes one logged-in client, as SHOW CLIENTS lists it.
type ClientInfo struct {
	ID              uint64
	Addr            string
	User            string
	Database        string
	ApplicationName string
	// State is ClientActive, ClientIdle or ClientWaiting.
	State string
	// WaitingFor is WaitingForServer or WaitingForResume while State is
	// ClientWaiting, and "" otherwise; WaitSince is when that wait began.
	WaitingFor string
	WaitSince  time.Time
	// TxStatus is the transaction status: I, T or E.
	TxStatus TxStatus
	// Active: a request of the client is being dispatched or answered.
	Active bool
	Since  time.Time
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
		c := ClientInfo{
			ID:              sess.id,
			Addr:            clientAddr(sess.client),
			User:            sess.startup.Parameters["user"],
			Database:        sess.database(),
			ApplicationName: sess.applicationName(),
			TxStatus:        sess.TxStatus(),
			Active:          busy || sess.inFlight() > 0,
			Since:           e.since,
			Units:           held[sess.id],
			Pinned:          sess.pinnedBy(),
			ServerPID:       sess.serverPID(),
		}
		c.State, c.WaitingFor, c.WaitSince = clientState(e, c.Active || c.ServerPID != 0)
		out = append(out, c)
	}
	return out
}

// clientState is the state SHOW CLIENTS shows for the client of e, and
// what it waits for since when; linked says it holds a primary backend or
// has a request under way. A wait comes first: a held request and one
// blocked in its pool have not begun to run (a session-mode client held by
// PAUSE keeps its backend meanwhile).
func clientState(e *clientEntry, linked bool) (state, waitingFor string, since time.Time) {
	if ns := e.heldSince.Load(); ns != 0 {
		return ClientWaiting, WaitingForResume, time.Unix(0, ns)
	}
	if t, ok := e.sess.wait.blocked(); ok {
		return ClientWaiting, WaitingForServer, t
	}
	if linked {
		return ClientActive, "", time.Time{}
	}
	return ClientIdle, "", time.Time{}
}

// Lanes, as SHOW POOLS' and SHOW SERVERS' lane column names them.
const (
	// LanePrimary: the primary lane, the backends clients' requests run on
	// (their own, or shared in a pool).
	LanePrimary = lanePrimary
	// LaneVector: the vector lane, the read pools (one per database) that
	// serve pure reads of vector tables.
	LaneVector = laneVector
)

// PoolInfo describes one pool, as SHOW POOLS lists it with PgBouncer's
// columns: the primary backends of one (database, user), or the vector
// lane's read pool of one database (Lane).
type PoolInfo struct {
	Database, User string
	// Lane is LanePrimary, LaneVector or LaneConsole. A vector pool's
	// User is the read pool's login.
	Lane     string
	PoolMode PoolMode
	// ClActive counts the clients that are not waiting (holding a backend
	// or idle: PgBouncer's cl_active); ClWaiting those waiting for a
	// server (ClientWaiting). On the vector lane: the acquires holding a
	// connection, and those waiting for one.
	ClActive, ClWaiting int
	// SvActive counts backends serving a client; SvIdle backends idle in
	// the pool; SvTested backends running server_reset_query before they
	// go back (PgBouncer's sv_tested; never on the vector lane).
	SvActive, SvIdle, SvTested int
	// MaxWait is how long the oldest waiting client has waited.
	MaxWait time.Duration
	// PoolSize is the most backends of the pool: pool_size for the
	// database and user (per set of startup parameters that splits
	// pools), read_pool.max_conns for a vector pool.
	PoolSize int
}

// Pools describes the primary backends of each (database, user) that has
// clients or a pool (pools stay once made, with no clients and no
// backends too, as PgBouncer's do), each database's vector-lane pool and
// the admin console's clients per user (console_clients.go), ordered by
// database, user and lane. The primary rows' clients' counts
// and MaxWait are read from ClientList, so they agree with SHOW CLIENTS'
// state column.
func (s *Server) Pools() []PoolInfo {
	type key struct{ db, user string }
	by := map[key]*PoolInfo{}
	get := func(db, user string) *PoolInfo {
		p := by[key{db, user}]
		if p == nil {
			mode, size := s.opts.Pool.For(db, user)
			p = &PoolInfo{Database: db, User: user, Lane: LanePrimary, PoolMode: mode, PoolSize: size}
			by[key{db, user}] = p
		}
		return p
	}
	now := time.Now()
	for _, c := range s.ClientList() {
		p := get(c.Database, c.User)
		if c.State == ClientWaiting {
			p.ClWaiting++
			p.MaxWait = max(p.MaxWait, now.Sub(c.WaitSince))
		} else {
			p.ClActive++
		}
		if c.ServerPID != 0 {
			p.SvActive++
		}
	}
	for _, st := range s.primaryPools() {
		p := get(st.Database, st.User)
		p.SvIdle += st.SvIdle
		p.SvTested += st.SvTested
	}
	out := make([]PoolInfo, 0, len(by))
	for _, p := range by {
		out = append(out, *p)
	}
	out = append(out, s.vectorPools()...)
	out = append(out, s.consolePools()...)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return cmp.Or(cmp.Compare(a.Database, b.Database), cmp.Compare(a.User, b.User), cmp.Compare(a.Lane, b.Lane)) < 0
	})
	return out
}

// vectorPools describes the vector lane's read pools as SHOW POOLS rows:
// an acquire holding a connection is an active client of the pool (one
// read, or txlane's catalog read), an acquire in progress a waiting one.
// A lane connection is held for one read, a transaction of its own: the
// pool mode is transaction.
func (s *Server) vectorPools() []PoolInfo {
	if s.lanes == nil {
		return nil
	}
	user := ""
	if cfg := s.lanes.opts.Config; cfg != nil {
		user = cfg.User
	}
	var out []PoolInfo
	for _, st := range s.lanes.stats() {
		out = append(out, PoolInfo{Database: st.Database, User: user, Lane: LaneVector, PoolMode: PoolTransaction,
			ClActive: st.Acquired, ClWaiting: st.Waiting, SvActive: st.Acquired, SvIdle: st.Idle,
			MaxWait: st.MaxWait, PoolSize: st.Max})
	}
	return out
}

// ServerInfo describes one backend, as SHOW SERVERS lists it.
type ServerInfo struct {
	User, Database string
	// Lane is LanePrimary or LaneVector; a vector-lane connection's User
	// is the read pool's login (its session_user).
	Lane string
	// State is active (serving a client; on the vector lane: acquired),
	// idle (in its pool) or tested (running server_reset_query before it
	// goes back), PgBouncer's names.
	State string
	// Addr is the server's address; PID the backend's process ID.
	Addr string
	PID  uint32
	// ConnectTime is when the backend logged in; RequestTime when it was
	// last given a request (on the vector lane: when it last began a
	// client's read).
	ConnectTime, RequestTime time.Time
	// Link is the client it serves (0 for none; on the vector lane also
	// while it runs txlane's own catalog read).
	Link uint64
}

// ServerList describes the backends: the primary lane's serving clients,
// then those idle or being reset in its pools, then the vector lane's.
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
			out = append(out, ServerInfo{User: pl.key.user, Database: pl.key.database, Lane: LanePrimary, State: "tested"})
		}
	}
	if s.lanes != nil {
		out = append(out, s.lanes.servers()...)
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
		pActive += st.SvTested
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

// applicationName is the client's application_name as the server last
// reported it to the client (a SET changes it), else as it logged in.
func (s *session) applicationName() string {
	if v := s.out.appName.Load(); v != nil {
		return *v
	}
	return s.startup.Parameters["application_name"]
}
