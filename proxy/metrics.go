package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Routing reasons decided by the proxy itself, before or after policy.Decide
// (whose reasons are policy.Reason values).
const (
	reasonPipelined   = "pipelined"    // queued behind requests the primary has not answered
	reasonFlushed     = "flushed"      // the client flushed before Sync: the unit is pinned to the primary
	reasonUnitShape   = "unit_shape"   // named portal, Close, function call, nothing executed
	reasonNoLane      = "no_read_pool" // no vector lane is configured
	reasonSettingsErr = "lane_settings"
)

// Metrics are the proxy's Prometheus metrics. A Server without
// Options.Metrics keeps an unregistered set.
type Metrics struct {
	units *prometheus.CounterVec
}

// NewMetrics returns a fresh, unregistered metric set.
func NewMetrics() *Metrics {
	return &Metrics{
		units: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txlane_statements_total",
			Help: "Request units (a simple Query, or an extended batch up to Sync) routed, by lane and reason.",
		}, []string{"lane", "reason"}),
	}
}

// Register adds the metrics to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	return reg.Register(m.units)
}

// route counts one request unit routed to lane for reason.
func (m *Metrics) route(lane, reason string) {
	m.units.WithLabelValues(lane, reason).Inc()
}

// Routed returns how many request units went to lane for reason.
func (m *Metrics) Routed(lane, reason string) float64 {
	c, err := m.units.GetMetricWithLabelValues(lane, reason)
	if err != nil {
		return 0
	}
	var out dto.Metric
	if c.Write(&out) != nil {
		return 0
	}
	return out.GetCounter().GetValue()
}
