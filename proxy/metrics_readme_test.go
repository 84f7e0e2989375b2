package proxy

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// descRecorder is a prometheus.Registerer that records the name and
// variable labels of every metric its collectors describe.
type descRecorder struct{ metrics map[string][]string }

var descString = regexp.MustCompile(`^Desc\{fqName: "([^"]+)".*variableLabels: \{([^}]*)\}\}$`)

func (d *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		m := descString.FindStringSubmatch(desc.String())
		if m == nil {
			panic("unexpected Desc form: " + desc.String())
		}
		var labels []string
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		slices.Sort(labels)
		d.metrics[m[1]] = labels
	}
	return nil
}

func (d *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (d *descRecorder) Unregister(prometheus.Collector) bool { return false }

// TestREADMEListsEveryMetric: the README's table of metrics lists every
// metric a Server registers, with its labels, and nothing else.
func TestREADMEListsEveryMetric(t *testing.T) {
	rec := &descRecorder{metrics: map[string][]string{}}
	if err := (&Server{metrics: NewMetrics()}).Register(rec); err != nil {
		t.Fatal(err)
	}
	table := readmeTable(t, "| metric | type | what |")
	row := regexp.MustCompile("(?m)^\\| `(txlane_[a-z_]+)(?:\\{([a-z_,]*)\\})?` \\|")
	listed := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		name := m[1]
		listed[name] = true
		labels, ok := rec.metrics[name]
		if !ok {
			t.Errorf("README lists %s, which txlane does not export", name)
			continue
		}
		var doc []string
		if m[2] != "" {
			doc = strings.Split(m[2], ",")
		}
		slices.Sort(doc)
		if !slices.Equal(doc, labels) {
			t.Errorf("README lists %s with labels %v, txlane exports %v", name, doc, labels)
		}
	}
	for name := range rec.metrics {
		if !listed[name] {
			t.Errorf("metric %s is missing from the README's table of metrics", name)
		}
	}
	if len(listed) < 20 {
		t.Errorf("only %d metrics found in the README's table", len(listed))
	}
}
