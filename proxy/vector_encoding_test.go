package proxy_test

import (
	"strings"
	"testing"

	"github.com/txlane/txlane/proxy"
)

// TestVectorLaneNonUTF8Client: a LATIN1, WIN1252 or GB18030 client with a
// custom setting and a search_path of non-ASCII values reads them on the
// vector lane as on its own backend, one after the other on one lane
// connection (max_conns 1) that a UTF-8 client uses in between, and the
// UTF-8 client finds none of them there.
func TestVectorLaneNonUTF8Client(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1 })
	const values = "current_setting('app.tenant', true), current_setting('search_path'), current_setting('client_encoding')"
	probe := "SELECT pg_backend_pid()::text, " + values + " FROM " + bed.table + " LIMIT 1"
	u := bed.connect(t)
	lu := newLanes(t, u)
	for _, tc := range encodingCases {
		c := bed.connect(t)
		lc := newLanes(t, c)
		exec(t, c, "SET client_encoding = '"+tc.enc+"'")
		exec(t, c, "SET app.tenant = '"+tc.value+"'")
		exec(t, c, "SET search_path = 'sch"+tc.value+"', public")
		own := row(t, c, "SELECT "+values)
		if own[0] != tc.value {
			t.Fatalf("%s: app.tenant reads %q on the primary", tc.enc, own[0])
		}
		for i := 0; i < 2; i++ {
			got := row(t, c, probe)
			if got[0] == lc.primary {
				t.Errorf("%s: the read ran on the primary", tc.enc)
			}
			if strings.Join(got[1:], "|") != strings.Join(own, "|") {
				t.Errorf("%s: on the lane %q, on its backend %q", tc.enc, got[1:], own)
			}
			other := row(t, u, probe)
			if other[0] == lu.primary {
				t.Errorf("%s: the UTF-8 client's read ran on the primary", tc.enc)
			}
			if want := []string{"", `"$user", public`, "UTF8"}; strings.Join(other[1:], "|") != strings.Join(want, "|") {
				t.Errorf("%s: the UTF-8 client finds %q on the lane, want %q", tc.enc, other[1:], want)
			}
		}
	}
}
