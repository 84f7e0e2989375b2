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
	table := readmeTable(t, "| reason | lane | why |")
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

// readmeTable returns the README's table whose header row is header, up
// to the blank line after it.
func readmeTable(t *testing.T, header string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, header)
	if i < 0 {
		t.Fatalf("README has no table %q", header)
	}
	table := readme[i:]
	if end := strings.Index(table, "\n\n"); end >= 0 {
		table = table[:end]
	}
	return table
}
