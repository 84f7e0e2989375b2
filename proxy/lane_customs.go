package proxy

import (
	"strings"

	"github.com/txlane/txlane/policy"
)

// Custom settings on the vector lane. A read that calls current_setting
// with a custom (dotted) name answers on a lane connection as on the
// client's backend only when the client's session holds a value that is not
// empty, which the lane connection gets with set_config (applyPlan). What
// else current_setting answers is the backend session's own: NULL (with
// missing_ok) or an error for a name the session never set, '' for a
// placeholder, which PostgreSQL keeps once a custom setting existed in the
// session, after a RESET, RESET ALL, DISCARD ALL or the end of a SET LOCAL
// ("Customized Options"). The client's session and a lane connection that
// served other clients differ there (the lane's RESET of another client's
// value leaves a placeholder; a name the client set and reset has none on
// a lane connection that never had it), so such a read runs on the primary.

// laneHasCustoms reports whether the vector lane answers each custom setting
// stmts read (policy.Statement.CustomSettings) as the client's backend
// would: the client's snapshot holds a value for it that is not empty.
// Client goroutine (it reads s.snapshot).
func (s *session) laneHasCustoms(stmts []*policy.Statement) bool {
	ok := true
	for _, st := range stmts {
		eachPart(st, func(p *policy.Statement) {
			for _, name := range p.CustomSettings {
				ok = ok && s.customExact(name)
			}
		})
	}
	return ok
}

// customExact reports whether the client's snapshot holds a value for the
// custom setting name (lower case) that is not empty. Setting names are
// case-insensitive; the snapshot keeps them as the client named them.
func (s *session) customExact(name string) bool {
	for k, v := range s.snapshot.values {
		if strings.EqualFold(k, name) {
			return v != nil && *v != ""
		}
	}
	return false
}
