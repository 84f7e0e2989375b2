package proxy

import (
	"slices"
	"strings"
)

// newPins returns the reasons of now (what pins a client after a check) that
// old (the comma-separated reasons before it; nil or "" for none) lacks:
// txlane_pins_total counts a client becoming pinned for a reason, once, not
// each check that finds it still pinned or pinned for one more reason.
func newPins(old *string, now []string) []string {
	if old == nil || *old == "" {
		return now
	}
	had := strings.Split(*old, ",")
	var out []string
	for _, r := range now {
		if !slices.Contains(had, r) {
			out = append(out, r)
		}
	}
	return out
}
