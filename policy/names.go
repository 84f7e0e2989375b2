package policy

import (
	"fmt"
	"slices"
)

// nameOf returns names[v], the name of enum value v; for a value past the
// table (no constant of its type) it formats unknown, which holds one %d.
func nameOf[T ~uint8](names []string, v T, unknown string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf(unknown, v)
}

// parseName is the inverse of nameOf: the value whose name is s, and
// whether there is one.
func parseName[T ~uint8](names []string, s string) (T, bool) {
	i := slices.Index(names, s)
	if i < 0 {
		return 0, false
	}
	return T(i), true
}
