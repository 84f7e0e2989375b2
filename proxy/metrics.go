package proxy

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/txlane/txlane/policy"
)

// Metrics are the proxy's Prometheus metrics. A Server without
// Options.Metrics keeps an unregistered set. Gauges of the server's live
// state (clients, backends) are not here: see Server.Register.
type Metrics struct {
	// requests counts requests routed, by lane and reason.
	requests *prometheus.CounterVec
	// escapes counts writes that would have escaped a transaction held by
	// another connection, by the action taken and the table written.
	escapes *prometheus.CounterVec
	// acquireWait is how long requests waited for a backend, by lane.
	acquireWait *prometheus.HistogramVec
	// requestSeconds is how long requests took, from dispatch to
	// ReadyForQuery, by lane.
	requestSeconds *prometheus.HistogramVec
	// timeouts counts clients and requests ended by a txlane timeout, by kind.
	timeouts *prometheus.CounterVec
	// pins counts clients pinned to their backend in transaction mode, by
	// reason (see pinReasons).
	pins *prometheus.CounterVec
	// pinChecks counts the reads of a client's session state back from its
	// backend (the pin check, transaction mode).
	pinChecks prometheus.Counter
	// stateReads counts the reads of a client's session state before an
	// offload (refreshSnapshot: settings, role, isolation, temporary
	// relations).
	stateReads prometheus.Counter
	// refusedWrites counts writes hidden in reads that the vector lane's
	// read-only transactions refused, by outcome (rerun, error).
	refusedWrites *prometheus.CounterVec
	// laneDiscards counts vector-lane connections closed because a read
	// left their session other than txlane believes it, by reason.
	laneDiscards *prometheus.CounterVec
	// transactions counts transactions that ended, by lane, outcome
	// (commit, rollback) and block (explicit, implicit): see
	// metrics_tx.go.
	transactions *prometheus.CounterVec
	// txCounters are transactions' series, resolved once: [lane: primary,
	// vector][commit][explicit].
	txCounters [2][2][2]prometheus.Counter
	// requestHist, poolWaitHist and acquireHist are requestSeconds,
	// poolWait and acquireWait with their lanes' series resolved once.
	requestHist, poolWaitHist, acquireHist laneHist
	// routes caches the requests counter's series by lane and reason, each
	// resolved at its first use: a lookup per request is two array indexes
	// and an atomic load, with no lock shared by every client.
	routes [2][256]atomic.Pointer[prometheus.Counter]
	// errors counts the ErrorResponses servers sent to clients, by lane and
	// SQLSTATE class; deadlocks those of SQLSTATE 40P01, by lane.
	serverErrors *prometheus.CounterVec
	deadlocks    *prometheus.CounterVec
	// poolWait is how long clients waited for a backend of a pool, by lane.
	poolWait *prometheus.HistogramVec
	// cancels counts CancelRequests by outcome (backend, peer, dropped).
	cancels *prometheus.CounterVec
	// poolLogins counts pool_mode transaction logins txlane checked, by
	// where their ParameterStatus values came from (logincache.go).
	poolLogins   *prometheus.CounterVec
	reloads      prometheus.Counter
	reloadErrors prometheus.Counter
	reloadOK     prometheus.Gauge
}

// NewMetrics returns a fresh, unregistered metric set.
func NewMetrics() *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_requests_total",
			Help: "Requests (a simple Query, or an extended batch up to Sync) routed, by lane and reason.",
		}, []string{"lane", "reason"}),
		escapes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_escapes_total",
			Help: "Writes that would escape a transaction held by another connection for the same unit of work, by action (reject, reroute, log, allow) and table.",
		}, []string{"action", "table"}),
		acquireWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "txlane_pool_acquire_wait_seconds",
			Help:    "Time a request waited for a backend connection, by lane (vector: each read-pool acquire; primary: each request PAUSE held at dispatch, observed when released).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs .. 26s
		}, []string{"lane"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "txlane_request_duration_seconds",
			Help:    "Time from sending a request to a backend to its ReadyForQuery, by lane.",
			Buckets: latencyBuckets,
		}, []string{"lane"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_transactions_total",
			Help: "Transactions that ended, by lane, outcome (commit, rollback; a COMMIT of a failed transaction is a rollback) and block (explicit: BEGIN ... COMMIT/ROLLBACK; implicit: a request outside a transaction block).",
		}, []string{"lane", "outcome", "block"}),
		serverErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_errors_total",
			Help: "ErrorResponses the PostgreSQL servers sent to clients, by lane and SQLSTATE class (the code's first two characters; XX when the code is missing or malformed).",
		}, []string{"lane", "class"}),
		deadlocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_deadlocks_total",
			Help: "ErrorResponses with SQLSTATE 40P01 (deadlock_detected) the servers sent to clients, by lane; also counted in txlane_errors_total{class=\"40\"}.",
		}, []string{"lane"}),
		poolWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "txlane_pool_wait_seconds",
			Help:    "Time a client waited for a backend of its pool, by lane (vector: a read-pool connection; primary: a pooled backend, in pool_mode transaction for each transaction, and for a login txlane checked that the pool's login cache cannot answer; in session mode for a login txlane checked).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs .. 26s
		}, []string{"lane"}),
		pinChecks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "txlane_pin_checks_total",
			Help: "Reads of a client's session state back from its backend in pool_mode transaction (one query each), after a transaction that may have changed it.",
		}),
		stateReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "txlane_lane_state_reads_total",
			Help: "Reads of a client's session state from the primary before a read ran on the vector lane (one query, two with temporary relations), after a statement that may have changed it.",
		}),
		pins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_pins_total",
			Help: "Clients becoming pinned to their primary backend in pool_mode transaction, by reason (temp_table, advisory_lock, listen, hold_cursor, sql_prepare, parse_settings, load, set_config, unknown): once each time a reason joins a client's pins.",
		}, []string{"reason"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_timeouts_total",
			Help: "Clients or requests ended by a txlane timeout, by kind (idle_in_transaction, query_wait).",
		}, []string{"kind"}),
		refusedWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_lane_refused_writes_total",
			Help: "Writes hidden in reads that the vector lane refused (SQLSTATE 25006, 25001), by outcome: rerun (it ran again on the primary) or error (part of the answer had reached the client, which got the server's error).",
		}, []string{"outcome"}),
		laneDiscards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_lane_connections_discarded_total",
			Help: "Vector-lane connections closed instead of reused because a read left their session other than txlane set it, by reason: role, settings, prepared_statements, reported_setting, notification, transaction, check_failed.",
		}, []string{"reason"}),
		cancels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_cancel_requests_total",
			Help: "CancelRequests received, by outcome: backend (a key of this instance's, passed on to the backend running that client's request), peer (a key of another instance's, forwarded to it), dropped (an unknown key or instance, or a forwarded request for another instance).",
		}, []string{"outcome"}),
		poolLogins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_pool_logins_total",
			Help: "Logins txlane checked itself in pool_mode transaction (the password accepted), by where their ParameterStatus values came from: cache (the pool's login cache, no backend taken) or backend (a pooled backend took part: the pool's first login, a value no backend has applied yet, or values the server changed since).",
		}, []string{"from"}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "txlane_config_reloads_total",
			Help: "Configuration reloads applied.",
		}),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "txlane_config_reload_errors_total",
			Help: "Configuration reloads refused (the last good configuration stays).",
		}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "txlane_config_last_reload_successful",
			Help: "1 when the last configuration reload succeeded (or none was attempted), 0 when it failed.",
		}),
	}
	m.reloadOK.Set(1)
	// NOTE: series that alerts watch for any increase exist from the start:
	// increase() sees nothing in a series' first sample.
	m.requestHist = newLaneHist(m.requestSeconds)
	m.poolWaitHist = newLaneHist(m.poolWait)
	m.acquireHist = newLaneHist(m.acquireWait)
	for i, lane := range []string{lanePrimary, laneVector} {
		m.deadlocks.WithLabelValues(lane)
		for j, outcome := range []string{outcomeRollback, outcomeCommit} {
			for k, block := range []string{blockImplicit, blockExplicit} {
				m.txCounters[i][j][k] = m.transactions.WithLabelValues(lane, outcome, block)
			}
		}
	}
	return m
}

// latencyBuckets are the bounds of txlane_request_duration_seconds: 1-2-5
// steps from 500µs to 20s, so that thresholds such as 20 ms are bucket
// bounds and a quantile alert at them is exact.
var latencyBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20}

// Register adds the metrics to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.escapes, m.acquireWait, m.requestSeconds,
		m.timeouts, m.pins, m.pinChecks, m.stateReads, m.refusedWrites, m.laneDiscards, m.transactions, m.serverErrors, m.deadlocks, m.poolWait,
		m.cancels, m.poolLogins, m.reloads, m.reloadErrors, m.reloadOK} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Escape counts one write that would escape a transaction held by another
// connection: action is what the policy did (reject, reroute, log, allow) and
// table the schema-qualified table written.
//
// NOTE: table is a label, so the series grow with the tables written across
// units of work; that is bounded by the schema, never by parameter values.
func (m *Metrics) Escape(action, table string) {
	m.escapes.WithLabelValues(action, table).Inc()
}

// cancel counts one CancelRequest by outcome (backend, peer, dropped).
func (m *Metrics) cancel(outcome string) { m.cancels.WithLabelValues(outcome).Inc() }

// Cancels returns how many CancelRequests had outcome (backend, peer,
// dropped: txlane_cancel_requests_total).
func (m *Metrics) Cancels(outcome string) float64 {
	return labeledValue(m.cancels, outcome)
}

// Reloaded counts one configuration reload attempt: a success when err is
// nil, an error otherwise.
func (m *Metrics) Reloaded(err error) {
	if err != nil {
		m.reloadErrors.Inc()
		m.reloadOK.Set(0)
		return
	}
	m.reloads.Inc()
	m.reloadOK.Set(1)
}

// ReloadCounts returns the counts of applied and refused reloads.
func (m *Metrics) ReloadCounts() (ok, failed float64) {
	return counterValue(m.reloads), counterValue(m.reloadErrors)
}

// observeAcquire records how long a request waited for a backend of lane:
// every acquire of the vector lane (also a wait for a backend of its pool),
// on the primary lane a request PAUSE held (admit).
func (m *Metrics) observeAcquire(lane string, d time.Duration) {
	m.acquireHist.observe(lane, d)
	if lane == laneVector {
		m.observePoolWait(lane, d)
	}
}

// observePoolWait records how long a client waited for a backend of a pool
// of lane.
func (m *Metrics) observePoolWait(lane string, d time.Duration) {
	m.poolWaitHist.observe(lane, d)
}

// observeRequest records how long a request took on lane.
func (m *Metrics) observeRequest(lane string, d time.Duration) {
	m.requestHist.observe(lane, d)
}

// laneHist is a histogram vector by lane whose primary and vector series
// are resolved once: WithLabelValues hashes and locks on every call, which
// the per-request path would pay.
type laneHist struct {
	vec    *prometheus.HistogramVec
	byLane [2]prometheus.Observer // primary, vector
}

func newLaneHist(vec *prometheus.HistogramVec) laneHist {
	return laneHist{vec: vec, byLane: [2]prometheus.Observer{vec.WithLabelValues(lanePrimary), vec.WithLabelValues(laneVector)}}
}

// observe records d (seconds) in lane's series.
func (h *laneHist) observe(lane string, d time.Duration) {
	switch lane {
	case lanePrimary:
		h.byLane[0].Observe(d.Seconds())
	case laneVector:
		h.byLane[1].Observe(d.Seconds())
	default:
		h.vec.WithLabelValues(lane).Observe(d.Seconds())
	}
}

// PinChecks returns how many times clients' session state was read back
// from their backends (txlane_pin_checks_total).
func (m *Metrics) PinChecks() float64 { return counterValue(m.pinChecks) }

// LaneStateReads returns how many times clients' session state was read
// from the primary before an offload (txlane_lane_state_reads_total).
func (m *Metrics) LaneStateReads() float64 { return counterValue(m.stateReads) }

// poolLogin counts a pool_mode transaction login txlane checked, by where
// its ParameterStatus values came from (loginFromCache, loginFromBackend).
func (m *Metrics) poolLogin(from string) { m.poolLogins.WithLabelValues(from).Inc() }

// PoolLogins returns how many pool_mode transaction logins txlane checked
// got their ParameterStatus values from (cache or backend:
// txlane_pool_logins_total).
func (m *Metrics) PoolLogins(from string) float64 { return labeledValue(m.poolLogins, from) }

// pinned counts a client becoming pinned for reason (see newPins).
func (m *Metrics) pinned(reason string) { m.pins.WithLabelValues(reason).Inc() }

// Pins returns how many times clients were pinned for reason.
func (m *Metrics) Pins(reason string) float64 {
	return labeledValue(m.pins, reason)
}

// timeout counts one timeout of kind.
func (m *Metrics) timeout(kind string) {
	m.timeouts.WithLabelValues(kind).Inc()
}

// RouteCount is the number of requests routed to Lane for Reason.
type RouteCount struct {
	Lane, Reason string
	Requests     float64
}

// Routes returns every (lane, reason) pair counted so far, sorted.
func (m *Metrics) Routes() []RouteCount {
	ch := make(chan prometheus.Metric, 64)
	go func() { m.requests.Collect(ch); close(ch) }()
	var out []RouteCount
	for pm := range ch {
		var d dto.Metric
		if pm.Write(&d) != nil {
			continue
		}
		rc := RouteCount{Requests: d.GetCounter().GetValue()}
		for _, l := range d.GetLabel() {
			switch l.GetName() {
			case "lane":
				rc.Lane = l.GetValue()
			case "reason":
				rc.Reason = l.GetValue()
			}
		}
		out = append(out, rc)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Lane != out[j].Lane {
			return out[i].Lane < out[j].Lane
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	return d.GetCounter().GetValue()
}

// route counts one request routed to lane for reason.
func (m *Metrics) route(lane policy.Lane, reason policy.Reason) {
	slot := &m.routes[lane][reason]
	c := slot.Load()
	if c == nil {
		// Two clients may resolve the same series at once: both get the
		// same counter from the vector.
		v := m.requests.WithLabelValues(lane.String(), reason.String())
		c = &v
		slot.Store(c)
	}
	(*c).Inc()
}

// Routed returns how many requests went to lane for reason.
func (m *Metrics) Routed(lane, reason string) float64 {
	return labeledValue(m.requests, lane, reason)
}

// Escapes returns how many escaping writes to table got action.
func (m *Metrics) Escapes(action, table string) float64 {
	return labeledValue(m.escapes, action, table)
}

func labeledValue(v *prometheus.CounterVec, labels ...string) float64 {
	c, err := v.GetMetricWithLabelValues(labels...)
	if err != nil {
		return 0
	}
	return counterValue(c)
}

// laneRefusedWrite counts a write the vector lane refused, by outcome.
func (m *Metrics) laneRefusedWrite(outcome string) {
	m.refusedWrites.WithLabelValues(outcome).Inc()
}

// RefusedWrites is the number of writes the vector lane refused with outcome
// "rerun" or "error" (txlane_lane_refused_writes_total).
func (m *Metrics) RefusedWrites(outcome string) float64 {
	return labeledValue(m.refusedWrites, outcome)
}

// laneDiscarded counts a vector-lane connection closed for reason (see
// laneConn.discard).
func (m *Metrics) laneDiscarded(reason string) {
	m.laneDiscards.WithLabelValues(reason).Inc()
}

// LaneDiscards is the number of vector-lane connections closed for reason
// (txlane_lane_connections_discarded_total).
func (m *Metrics) LaneDiscards(reason string) float64 {
	return labeledValue(m.laneDiscards, reason)
}
