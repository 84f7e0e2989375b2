package proxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/proxy"
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
			if pin := clientPins(t, p); pin != "" {
				t.Fatalf("x pinned by %s before its move", pin)
			}
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

// TestVectorLaneNonUTF8Client: a LATIN1, WIN1252 or GB18030 client with a
// custom setting and a search_path of non-ASCII values reads them on the
// vector lane as on its own backend, one after the other on one lane
// connection (max_conns 1) that a UTF-8 client uses in between, and the
// UTF-8 client finds none of them there. Its read of app.tenant, which it
// never set, runs on the primary and gives NULL, as its own session does
// (the lane connection keeps a placeholder of the other client's).
func TestVectorLaneNonUTF8Client(t *testing.T) {
	bed := startVectorProxy(t, func(o *proxy.Options) { o.ReadPool.MaxConns = 1 })
	const values = "current_setting('app.tenant', true), current_setting('search_path'), current_setting('client_encoding')"
	probe := "SELECT pg_backend_pid()::text, " + values + " FROM " + bed.table + " LIMIT 1"
	otherProbe := "SELECT pg_backend_pid()::text, current_setting('search_path'), current_setting('client_encoding') FROM " + bed.table + " LIMIT 1"
	tenant := "SELECT pg_backend_pid()::text, coalesce(current_setting('app.tenant', true), 'NULL') FROM " + bed.table + " LIMIT 1"
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
			other := row(t, u, otherProbe)
			if other[0] == lu.primary {
				t.Errorf("%s: the UTF-8 client's read ran on the primary", tc.enc)
			}
			if want := []string{`"$user", public`, "UTF8"}; strings.Join(other[1:], "|") != strings.Join(want, "|") {
				t.Errorf("%s: the UTF-8 client finds %q on the lane, want %q", tc.enc, other[1:], want)
			}
			if got := row(t, u, tenant); got[0] != lu.primary || got[1] != "NULL" {
				t.Errorf("%s: the UTF-8 client's read of app.tenant: %q on backend %s (its primary: %s), want NULL there", tc.enc, got[1], got[0], lu.primary)
			}
		}
	}
}

// TestUnitsNonUTF8Client: a LATIN1 client that sets txlane.unit with a bind
// parameter in its own encoding ('caf\xe9') names the unit a UTF-8 client
// holds as 'café': its write is refused (25L01). Before, txlane took the
// parameter's bytes for the unit, another unit than café, and let the
// write escape the holder's transaction.
func TestUnitsNonUTF8Client(t *testing.T) {
	bed := startUnitProxy(t, "reject", nil)
	holder, other := bed.connect(t), bed.connect(t)
	exec(t, holder, "BEGIN; SET LOCAL txlane.unit = 'café'")
	exec(t, holder, "INSERT INTO "+bed.table+" (unit, who) VALUES ('café', 'holder')")
	exec(t, other, "SET client_encoding = 'LATIN1'")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := other.ExecParams(ctx, "SELECT set_config('txlane.unit', $1, false)", [][]byte{[]byte("caf\xe9")}, nil, nil, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if got := scalar(t, other, "SELECT current_setting('txlane.unit')"); got != "caf\xe9" {
		t.Fatalf("the LATIN1 client's unit reads %q", got)
	}
	err := execErr(other, "INSERT INTO "+bed.table+" (unit, who) VALUES ('x', 'other')")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeEscapedWrite {
		t.Fatalf("the LATIN1 client's write of the held unit: %v, want SQLSTATE %s", err, proxy.CodeEscapedWrite)
	}
	exec(t, holder, "ROLLBACK")
}

// TestTxPoolNonUTF8NamePins: a custom setting whose name is not ASCII, set
// by a LATIN1 client, is a name txlane cannot carry exactly (it reads the
// text as Latin-1, the server in the client's encoding): the client keeps
// its backend (pin set_config) rather than leave the setting to the next
// client, until RESET ALL clears it.
func TestTxPoolNonUTF8NamePins(t *testing.T) {
	p := startTxPool(t, 2)
	x := p.connect(t)
	exec(t, x, "SET client_encoding = 'LATIN1'")
	exec(t, x, "SET \"app.t\xe9\" = 'x'")
	if got := row(t, x, "SELECT current_setting('app.t\xe9')")[0]; got != "x" {
		t.Fatalf("x reads %q", got)
	}
	if pin := clientPins(t, p); pin != "set_config" {
		t.Fatalf("pinned by %q, want set_config", pin)
	}
	exec(t, x, "RESET ALL")
	exec(t, x, "SELECT 1")
	if pin := clientPins(t, p); pin != "" {
		t.Fatalf("still pinned after RESET ALL: %q", pin)
	}
}
