package proxy

import (
	"os"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestREADMEListsEveryReason: every routing reason that labels
// txlane_requests_total is in the README's table of reasons.
func TestREADMEListsEveryReason(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "| reason | lane | why |")
	if i < 0 {
		t.Fatal("README has no table of reasons")
	}
	table := readme[i:]
	if end := strings.Index(table, "\n\n"); end >= 0 {
		table = table[:end]
	}
	var names []string
	for _, r := range policy.AllReasons() {
		names = append(names, r.String())
	}
	for _, n := range names {
		if !strings.Contains(table, "`"+n+"`") {
			t.Errorf("reason %s is missing from the README's table of reasons", n)
		}
	}
}
