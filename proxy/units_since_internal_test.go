package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/txlane/txlane/proxy/console"
)

// TestRemoteHolderSinceFormat: a holder on another instance is described
// with its transaction's start as SHOW UNITS writes it (console.Timestamp),
// not with nanoseconds.
func TestRemoteHolderSinceFormat(t *testing.T) {
	since := time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("x", 3600))
	text := UnitHolder{Instance: 2, BackendPID: 42, Since: since}.remoteText()
	if want := "open since " + console.Timestamp(since) + ")"; !strings.HasSuffix(text, want) || console.Timestamp(since) != "2026-03-04 04:06:07.891Z" {
		t.Fatalf("remote holder %q, want it to end %q", text, want)
	}
}
