package proxy

import (
	"strings"
	"testing"
)

// TestResetFixUntilPinCheckSucceeds: the SQL that gives a client its own
// login values back after its reset of a movable parameter is sent with
// every pin check until one succeeds (resetsFixed): a pin check cancelled
// by the backend's statement_timeout (57014) is sent again, and must carry
// the fix again, or a pinned client would keep another client's value.
func TestResetFixUntilPinCheckSucceeds(t *testing.T) {
	p := newPrimaryConn(backend{}, nil)
	p.loggedIn('I', map[string]string{"application_name": "", "TimeZone": "Etc/UTC"})
	s := &session{own: map[string]string{"application_name": "mine", "TimeZone": "Etc/UTC"}}
	if sql, _ := s.resetFixSQL(p); sql != "" {
		t.Fatalf("no reset sent, fix %q", sql)
	}
	s.resets.Add(1)
	first, n := s.resetFixSQL(p)
	again, _ := s.resetFixSQL(p)
	if !strings.Contains(first, "'mine'") || strings.Contains(first, "Etc/UTC") || again != first {
		t.Fatalf("fix %q, then (its pin check not answered) %q: want the client's application_name both times, and nothing for TimeZone", first, again)
	}
	s.resetsFixed.Store(n) // the pin check succeeded
	if sql, _ := s.resetFixSQL(p); sql != "" {
		t.Fatalf("after the fix ran: %q, want none", sql)
	}
}
