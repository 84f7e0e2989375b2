package proxy_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// encodingCases are client encodings other than UTF8 with a value in each:
// its bytes in that encoding. WIN1252's 0x80 (€) is no Latin-1 character,
// and GB18030's two bytes are one character (中).
var encodingCases = []struct{ enc, value string }{
	{"LATIN1", "acm\xe9"},
	{"WIN1252", "caf\xe9 \x80"},
	{"GB18030", "\xd6\xd0"},
}

// row returns the first row of the last result of sql, as strings.
func row(t *testing.T, c *pgconn.PgConn, sql string) []string {
	t.Helper()
	res := exec(t, c, sql)
	last := res[len(res)-1]
	if len(last.Rows) == 0 {
		t.Fatalf("%q returned no rows", sql)
	}
	out := make([]string, len(last.Rows[0]))
	for i, v := range last.Rows[0] {
		out[i] = string(v)
	}
	return out
}

// holdBackend makes a client of p hold the backend whose process ID is pid
// (pool_size 2), in a transaction, and returns it: the other client that
// took the other backend on the way gives it back.
func holdBackend(t *testing.T, p *testProxy, pid string) *pgconn.PgConn {
	t.Helper()
	d := p.connect(t)
	if row(t, d, "BEGIN; SELECT pg_backend_pid()::text")[0] == pid {
		return d
	}
	e := p.connect(t)
	if got := row(t, e, "BEGIN; SELECT pg_backend_pid()::text")[0]; got != pid {
		t.Fatalf("neither holder runs on %s (%s)", pid, got)
	}
	exec(t, d, "COMMIT")
	return e
}

// TestTxPoolNonUTF8SessionMoves: a client whose client_encoding is LATIN1,
// WIN1252 or GB18030 sets a custom setting, search_path and
// application_name to non-ASCII values and PREPAREs a statement with a
// non-ASCII literal; moved to the other backend (pool_size 2, a third
// client holding its first one) it reads each exactly as before, and the
// client that takes its first backend finds none of it; and again, moved
// back. Before, txlane read
// these values in the client's encoding as UTF-8: the custom setting was not
// seen at all (it stayed behind for the next client, and was lost for its
// owner), and the PREPARE was replayed with U+FFFD (22P05 under LATIN1,
// '��' instead of 中 under GB18030).
func TestTxPoolNonUTF8SessionMoves(t *testing.T) {
	for _, tc := range encodingCases {
		t.Run(tc.enc, func(t *testing.T) {
			p := startTxPool(t, 2)
			x := p.connect(t)
			lit := "'" + tc.value + "'"
			for _, sql := range []string{
				"SET client_encoding = '" + tc.enc + "'",
				"SET app.tenant = " + lit,
				"SET application_name = " + lit,
				"SET search_path = 'sch" + tc.value + "', public",
				"PREPARE pe AS SELECT " + lit + "::text",
			} {
				exec(t, x, sql)
			}
			const reads = "SELECT current_setting('app.tenant', true), current_setting('application_name'), current_setting('search_path'), pg_backend_pid()::text"
			before := row(t, x, reads)
			if before[0] != tc.value {
				t.Fatalf("app.tenant reads %q on its own backend, want %q", before[0], tc.value)
			}
			if got := row(t, x, "EXECUTE pe")[0]; got != tc.value {
				t.Fatalf("EXECUTE pe on its own backend: %q", got)
			}
			// Moved twice: the second time from what the first move made.
			pid := before[3]
			for move := 1; move <= 2; move++ {
				holder := holdBackend(t, p, pid)
				after := row(t, x, reads)
				if after[3] == pid {
					t.Fatalf("move %d: x still on backend %s (pinned?)", move, pid)
				}
				pid = after[3]
				if strings.Join(after[:3], "|") != strings.Join(before[:3], "|") {
					t.Errorf("move %d: x reads %q, before %q", move, after[:3], before[:3])
				}
				if got := row(t, x, "EXECUTE pe")[0]; got != tc.value {
					t.Errorf("move %d: EXECUTE pe: %q, want %q", move, got, tc.value)
				}
				left := row(t, holder, "SELECT coalesce(current_setting('app.tenant', true), ''), current_setting('search_path'), (SELECT count(*) FROM pg_prepared_statements)::text, current_setting('client_encoding')")
				if want := []string{"", `"$user", public`, "0", "UTF8"}; strings.Join(left, "|") != strings.Join(want, "|") {
					t.Errorf("move %d: the next client on x's backend finds %q, want %q", move, left, want)
				}
				exec(t, holder, "COMMIT")
			}
			if pin := clientPins(t, p); pin != "" {
				t.Errorf("pinned: %s", pin)
			}
		})
	}
}

// clientPins lists what pins p's clients ("" for none).
func clientPins(t *testing.T, p *testProxy) string {
	t.Helper()
	var pins []string
	for _, ci := range p.Server.ClientList() {
		if ci.Pinned != "" {
			pins = append(pins, ci.Pinned)
		}
	}
	return strings.Join(pins, ",")
}
