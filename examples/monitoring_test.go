package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/internal/testbin"
)

// The example's files (examples/monitoring).
const (
	alertsFile    = "monitoring/alerts.yml"
	dashboardFile = "monitoring/dashboard.json"
)

// ruleFile is a Prometheus rule file ("Alerting rules" / "Recording rules"
// in Prometheus's configuration documentation); fields it does not know
// are errors.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// alertRule is one alerting rule with its expression parsed.
type alertRule struct {
	name        string
	expr        parser.Expr
	annotations map[string]string
}

// loadAlerts reads alertsFile as Prometheus would: its shape, each rule's
// name, expression (PromQL), duration, severity and summary.
func loadAlerts(t *testing.T) []alertRule {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var rf ruleFile
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []alertRule
	names := map[string]bool{}
	nameRE := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("%s: group %q has no name or no rules", alertsFile, g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || r.Record != "" {
				t.Errorf("%s: rule %q%q: want alerting rules only", alertsFile, r.Alert, r.Record)
				continue
			}
			if !nameRE.MatchString(r.Alert) || names[r.Alert] {
				t.Errorf("%s: alert name %q is invalid or repeated", alertsFile, r.Alert)
			}
			names[r.Alert] = true
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: %s: for %q: %v", alertsFile, r.Alert, r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: %s: severity %q, want warning or critical", alertsFile, r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: %s: no summary or description", alertsFile, r.Alert)
			}
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %s: %v", alertsFile, r.Alert, err)
				continue
			}
			if expr.Type() != parser.ValueTypeVector {
				t.Errorf("%s: %s: the expression gives a %s, want a vector", alertsFile, r.Alert, expr.Type())
			}
			out = append(out, alertRule{name: r.Alert, expr: expr, annotations: r.Annotations})
		}
	}
	return out
}

// TestMonitoringAlertThresholds: the rules are the spike's four thresholds,
// each a comparison "> threshold" on the metric that measures it.
func TestMonitoringAlertThresholds(t *testing.T) {
	want := map[string]struct {
		metrics   []string
		threshold float64
	}{
		"TxlanePoolBusy":      {[]string{"txlane_pool_backends", "txlane_pool_max_backends"}, 0.9},
		"TxlaneRollbackRate":  {[]string{"txlane_transactions_total"}, 0.05},
		"TxlaneDeadlock":      {[]string{"txlane_deadlocks_total"}, 0},
		"TxlaneLaneReadsSlow": {[]string{"txlane_request_duration_seconds_bucket"}, 0.02},
	}
	rules := loadAlerts(t)
	if len(rules) != len(want) {
		t.Errorf("%d alerts, want %d", len(rules), len(want))
	}
	for _, r := range rules {
		w, ok := want[r.name]
		if !ok {
			t.Errorf("unexpected alert %s", r.name)
			continue
		}
		b, ok := r.expr.(*parser.BinaryExpr)
		if !ok || b.Op != parser.GTR {
			t.Errorf("%s: %s is not a comparison with >", r.name, r.expr)
			continue
		}
		if n, ok := b.RHS.(*parser.NumberLiteral); !ok || n.Val != w.threshold {
			t.Errorf("%s: compared with %s, want %v", r.name, b.RHS, w.threshold)
		}
		var got []string
		for _, s := range selectors(r.expr) {
			got = append(got, s.Name)
		}
		for _, m := range w.metrics {
			if !slices.Contains(got, m) {
				t.Errorf("%s: does not read %s (reads %v)", r.name, m, got)
			}
		}
		if r.name == "TxlaneLaneReadsSlow" && !strings.Contains(r.expr.String(), `lane="vector"`) {
			t.Errorf("%s: not restricted to the vector lane: %s", r.name, r.expr)
		}
	}
}

// TestMonitoringExample runs the real txlane binary against PostgreSQL,
// drives traffic through both lanes and both pool modes, and checks that
// every metric, label and label value the alert rules and the dashboard
// name is in its /metrics, and that each alert's annotations use only the
// labels its expression keeps.
func TestMonitoringExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	rules := loadAlerts(t)
	queries := loadDashboard(t)
	bin := testbin.Txlane(t)
	dsn, db := database(t, "monitoring")
	execSQL(t, dsn, `CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE docs (id int PRIMARY KEY, embedding vector(3));
INSERT INTO docs VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0,0,1]');
CREATE TABLE notes (id int);
GRANT ALL ON docs, notes TO PUBLIC`)

	// The superuser's clients pool transactions and read on the vector lane
	// (whose login is the superuser too); txlane_app's keep a session.
	admin := pgtest.Config(t)
	var adminAddr string
	proc := startTxlaneWith(t, bin, "monitoring", func(addr string) string {
		adminAddr = testbin.FreeAddr(t)
		path := filepath.Join(t.TempDir(), "txlane.yaml")
		cfg := fmt.Sprintf(`listen: %s
primary: %s
pool_mode: transaction
pool_size: 2
pool_overrides:
  - {user: %s, pool_mode: session}
read_pool: {max_conns: 2}
policy: {vector_tables: [docs]}
admin: {listen: %s}
`, addr, strconv.Quote(pgtest.DSN(t)), pgtest.AppRole, adminAddr)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	})
	metricsURL := "http://" + adminAddr + "/metrics"

	pooled := connectURL(t, proc.URL(admin.User, db))
	session := connectURL(t, proc.URL(pgtest.AppRole, db))
	read := "SELECT id FROM docs ORDER BY embedding <-> '[1,0,0]' LIMIT 1"
	for _, step := range []struct {
		c    *pgconn.PgConn
		sql  string
		code string // the SQLSTATE it fails with ("" for none)
	}{
		{pooled, read, ""},
		{pooled, "SELECT 1 / (id - 1) FROM docs ORDER BY embedding <-> '[1,0,0]'", "22012"}, // fails on the lane
		{pooled, "BEGIN", ""}, {pooled, "INSERT INTO notes VALUES (1)", ""}, {pooled, "COMMIT", ""},
		{pooled, "BEGIN", ""}, {pooled, "INSERT INTO notes VALUES (2)", ""}, {pooled, "ROLLBACK", ""},
		{pooled, "SELECT 1 / 0", "22012"},
		{session, "SELECT count(*) FROM notes", ""},
		{session, "BEGIN", ""}, {session, "SELECT 1", ""}, {session, "COMMIT", ""},
	} {
		_, err := step.c.Exec(context.Background(), step.sql).ReadAll()
		var pe *pgconn.PgError
		switch {
		case step.code == "" && err != nil, step.code != "" && (!errors.As(err, &pe) || pe.Code != step.code):
			t.Fatalf("%s: %v, want SQLSTATE %q", step.sql, err, step.code)
		}
	}

	exposed := scrapeMetrics(t, metricsURL)
	// The traffic reached what the example watches.
	for _, s := range []struct{ name, label, value string }{
		{"txlane_request_duration_seconds_bucket", "lane", "vector"},
		{"txlane_pool_max_backends", "lane", "primary"},
		{"txlane_pool_max_backends", "lane", "vector"},
		{"txlane_errors_total", "lane", "vector"},
		{"txlane_errors_total", "lane", "primary"},
	} {
		if !exposed[s.name][s.label][s.value] {
			t.Errorf("/metrics has no %s{%s=%q} after the traffic", s.name, s.label, s.value)
		}
	}
	for _, r := range rules {
		checkQuery(t, "alert "+r.name, r.expr, exposed)
		if out, ok := outputLabels(r.expr); ok {
			for key, text := range r.annotations {
				for _, m := range labelRef.FindAllStringSubmatch(text, -1) {
					if !out[m[1]] {
						t.Errorf("alert %s: annotation %s uses $labels.%s, which its expression drops (keeps %v)", r.name, key, m[1], slices.Sorted(maps.Keys(out)))
					}
				}
			}
		}
	}
	for _, q := range queries {
		checkQuery(t, q.where, q.expr, exposed)
	}
	for _, v := range dashboardVariables {
		if _, ok := exposed[v.metric]; !ok {
			t.Errorf("dashboard variable %s: /metrics has no %s", v.name, v.metric)
		}
	}
}

// exposition is what /metrics exposes: series name (histograms as _bucket,
// _sum and _count) → label name → values seen.
type exposition map[string]map[string]map[string]bool

// targetLabels are added by Prometheus to every series it scrapes.
var targetLabels = map[string]bool{"instance": true, "job": true}

// scrapeMetrics reads url (Prometheus text format).
func scrapeMetrics(t *testing.T, url string) exposition {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %v", url, resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	out := exposition{}
	add := func(name string, labels map[string]string) {
		if out[name] == nil {
			out[name] = map[string]map[string]bool{}
		}
		for k, v := range labels {
			if out[name][k] == nil {
				out[name][k] = map[string]bool{}
			}
			out[name][k][v] = true
		}
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Histogram != nil:
				add(name+"_sum", labels)
				add(name+"_count", labels)
				for _, b := range m.GetHistogram().GetBucket() {
					labels["le"] = strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					add(name+"_bucket", labels)
				}
			case m.Summary != nil:
				add(name+"_sum", labels)
				add(name+"_count", labels)
				add(name, labels)
			default:
				add(name, labels)
			}
		}
	}
	return out
}

// selectors returns the vector selectors of expr.
func selectors(expr parser.Node) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// checkQuery checks that every series expr selects is exposed: its name;
// each label it matches (but Prometheus's target labels) on that name, and
// for an equality matcher, that value; and that every label it groups or
// matches by is on a series below that aggregation or binary operation.
func checkQuery(t *testing.T, where string, expr parser.Expr, exposed exposition) {
	t.Helper()
	for _, vs := range selectors(expr) {
		if vs.Name == "" {
			t.Errorf("%s: a selector without a metric name: %s", where, vs)
			continue
		}
		have, ok := exposed[vs.Name]
		if !ok {
			t.Errorf("%s: /metrics has no %s", where, vs.Name)
			continue
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel || targetLabels[m.Name] {
				continue
			}
			values, ok := have[m.Name]
			switch {
			case !ok:
				t.Errorf("%s: %s has no label %s", where, vs.Name, m.Name)
			case m.Type == labels.MatchEqual && !values[m.Value]:
				t.Errorf("%s: no series %s{%s=%q} in /metrics (values: %v)", where, vs.Name, m.Name, m.Value, slices.Sorted(maps.Keys(values)))
			}
		}
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		var grouping []string
		switch n := n.(type) {
		case *parser.AggregateExpr:
			grouping = n.Grouping
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				grouping = append(grouping, n.VectorMatching.MatchingLabels...)
				grouping = append(grouping, n.VectorMatching.Include...)
			}
		default:
			return nil
		}
		have := map[string]bool{}
		for _, vs := range selectors(n) {
			for l := range exposed[vs.Name] {
				have[l] = true
			}
		}
		for _, l := range grouping {
			if !have[l] && !targetLabels[l] {
				t.Errorf("%s: groups or matches by %s, which no series below it has: %s", where, l, n)
			}
		}
		return nil
	})
}

// labelRef finds {{ $labels.name }} in an alert's annotations.
var labelRef = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)

// outputLabels returns the labels the series of expr carry, for the shapes
// alert rules take here (aggregations by labels, histogram_quantile over one,
// operations between those and numbers); ok is false for other shapes.
func outputLabels(expr parser.Expr) (labels map[string]bool, ok bool) {
	switch e := expr.(type) {
	case *parser.ParenExpr:
		return outputLabels(e.Expr)
	case *parser.AggregateExpr:
		if e.Without {
			return nil, false
		}
		out := map[string]bool{}
		for _, l := range e.Grouping {
			out[l] = true
		}
		return out, true
	case *parser.Call:
		if e.Func.Name != "histogram_quantile" || len(e.Args) != 2 {
			return nil, false
		}
		out, ok := outputLabels(e.Args[1])
		delete(out, "le")
		return out, ok
	case *parser.BinaryExpr:
		if e.LHS.Type() == parser.ValueTypeVector {
			return outputLabels(e.LHS)
		}
		return outputLabels(e.RHS)
	}
	return nil, false
}

// dashboardQuery is one PromQL query of the dashboard.
type dashboardQuery struct {
	where string
	expr  parser.Expr
}

// dashboardVariable is a template variable's label_values(metric, label).
type dashboardVariable struct{ name, metric string }

var dashboardVariables []dashboardVariable

// grafanaGlobals are Grafana's built-in variables the queries may use, with
// a value of their kind for parsing.
var grafanaGlobals = map[string]string{"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

var grafanaVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// loadDashboard reads dashboardFile: a Grafana dashboard whose every panel
// takes its data source from the datasource variable and whose queries are
// PromQL once Grafana's variables are given values; variables must be
// defined. It returns the queries, and records the template variables.
func loadDashboard(t *testing.T) []dashboardQuery {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr, RefID string
		Datasource  struct{ Type, UID string }
	}
	type panel struct {
		ID         int
		Type       string
		Title      string
		Datasource *struct{ Type, UID string }
		GridPos    struct{ H, W, X, Y int }
		Targets    []target
		Panels     []json.RawMessage
	}
	var dash struct {
		Title, UID    string
		SchemaVersion int
		Panels        []json.RawMessage
		Templating    struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion == 0 {
		t.Errorf("%s: no title, uid or schemaVersion", dashboardFile)
	}
	vars := map[string]bool{}
	dashboardVariables = nil
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*), *([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			var q string
			if json.Unmarshal(v.Query, &q) != nil || q != "prometheus" {
				t.Errorf("%s: variable %s: query %s, want prometheus", dashboardFile, v.Name, v.Query)
			}
		case "query":
			var q struct{ Query string }
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("%s: variable %s: %v", dashboardFile, v.Name, err)
			}
			m := labelValues.FindStringSubmatch(q.Query)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(metric, label)", dashboardFile, v.Name, q.Query)
				continue
			}
			if !targetLabels[m[2]] {
				t.Errorf("%s: variable %s: label %s is not a target label", dashboardFile, v.Name, m[2])
			}
			dashboardVariables = append(dashboardVariables, dashboardVariable{name: v.Name, metric: m[1]})
		default:
			t.Errorf("%s: variable %s of type %s", dashboardFile, v.Name, v.Type)
		}
	}
	if !vars["datasource"] {
		t.Fatalf("%s: no datasource variable", dashboardFile)
	}
	var out []dashboardQuery
	ids := map[int]bool{}
	var walk func(raw []json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: %v", dashboardFile, err)
			}
			if ids[p.ID] {
				t.Errorf("%s: panel id %d repeated", dashboardFile, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: panel %q: gridPos %+v", dashboardFile, p.Title, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
				t.Errorf("%s: panel %q: no targets, or a data source other than ${datasource}", dashboardFile, p.Title)
			}
			for _, tg := range p.Targets {
				where := fmt.Sprintf("dashboard panel %q query %s", p.Title, tg.RefID)
				text := grafanaVar.ReplaceAllStringFunc(tg.Expr, func(v string) string {
					name := grafanaVar.FindStringSubmatch(v)[1]
					if g, ok := grafanaGlobals[name]; ok {
						return g
					}
					if !vars[name] {
						t.Errorf("%s: variable $%s is not defined", where, name)
					}
					return ".*" // a multi-value variable in a regex matcher
				})
				expr, err := parser.NewParser(parser.Options{}).ParseExpr(text)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				out = append(out, dashboardQuery{where: where, expr: expr})
			}
		}
	}
	walk(dash.Panels)
	if len(out) < 10 {
		t.Errorf("%s: only %d queries", dashboardFile, len(out))
	}
	return out
}

// connectURL connects to url; the connection is closed at the end of the
// test.
func connectURL(t *testing.T, url string) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// execSQL runs sql (several statements) directly on dsn.
func execSQL(t *testing.T, dsn, sql string) {
	t.Helper()
	c := connectURL(t, dsn)
	if _, err := c.Exec(context.Background(), sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
