package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestParseEnvParseOfAHeldName: in transaction mode a client parses again a
// statement name it holds, inside a transaction block that changed its
// parse settings (DateStyle), on a backend that lost its statement to
// another client. Its own backend answers the Parse with 42P05, or with the
// new text's own error when that fails first; txlane cannot prepare the
// held statement again there (its current settings are unread), and gave
// 0A000 instead (TxPoolDifferential, seed 1795997158683980211). After the
// rollback the client's statement runs its own parse.
func TestParseEnvParseOfAHeldName(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	direct := directConn(t)
	exec(t, a, "SET DateStyle = 'ISO, DMY'")
	prepare(t, a, "penv", "SELECT '01/02/2026'::date::text")
	prepare(t, direct, "penv", "SELECT '01/02/2026'::date::text")
	parseErr := func(c *pgconn.PgConn, sql string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err := c.Prepare(ctx, "penv", sql, nil)
		return sqlstate(err)
	}
	for _, c := range []struct{ name, text string }{
		{"a valid text", "SELECT 2"},
		{"a text that does not parse", "SELEC 2"},
		{"a text that does not analyse", "SELECT * FROM no_such_table_penv"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clobber(t, b, "penv")
			for _, conn := range []*pgconn.PgConn{a, direct} {
				execEach(t, conn, "BEGIN", "SET LOCAL DateStyle = 'ISO, MDY'")
			}
			want, got := parseErr(direct, c.text), parseErr(a, c.text)
			for _, conn := range []*pgconn.PgConn{a, direct} {
				exec(t, conn, "ROLLBACK")
			}
			if got != want {
				t.Fatalf("Parse of the held name: %s through txlane, %s from PostgreSQL", got, want)
			}
			if got := execPrepared(t, a, "penv"); got != "2026-02-01" {
				t.Fatalf("the held statement after the failed Parse: %q, want 2026-02-01 (its own parse)", got)
			}
		})
	}
}

// TestParseEnvReparseInABlock: in transaction mode a client runs its
// statement inside a transaction block that changed a parse setting (SET,
// SET LOCAL, RESET ALL, a DO block that may set any), on a backend that
// lost the statement to another client. txlane has not read the client's
// current values there, and answered 0A000 (the differential test's
// protocol-level Execute). Now the statement is prepared again under its
// own settings between a savepoint of txlane's and a rollback to it: it
// runs its own parse, as on the client's own backend, and the client's
// settings, ParameterStatus and savepoints are what they were.
func TestParseEnvReparseInABlock(t *testing.T) {
	p := startTxPool(t, 1)
	a, b := p.connect(t), p.connect(t)
	direct := directConn(t)
	for _, c := range []*pgconn.PgConn{a, direct} {
		exec(t, c, "SET DateStyle = 'ISO, DMY'")
		prepare(t, c, "penv", "SELECT to_char('01/02/2026'::date, 'YYYY-MM-DD')")
	}
	probe := "SELECT current_setting('DateStyle'), current_setting('TimeZone'), current_setting('work_mem')"
	for _, change := range []string{
		"SET DateStyle = 'ISO, MDY'",
		"SET LOCAL DateStyle = 'ISO, MDY'",
		"SET TIME ZONE 'Asia/Tokyo'; SET LOCAL work_mem = '7MB'",
		"RESET ALL",
		"DO $$BEGIN PERFORM set_config('DateStyle', 'SQL, MDY', true); END$$",
	} {
		t.Run(change, func(t *testing.T) {
			// After each case (a failure too: a's backend must go back to
			// the pool), both sessions are as the test began.
			t.Cleanup(func() {
				for _, c := range []*pgconn.PgConn{a, direct} {
					execErr(c, "ROLLBACK; RESET ALL; SET DateStyle = 'ISO, DMY'")
				}
			})
			clobber(t, b, "penv")
			var got [2][]string
			for i, c := range []*pgconn.PgConn{a, direct} {
				execEach(t, c, "BEGIN", "SAVEPOINT mine", change)
				got[i] = append(got[i], execPrepared(t, c, "penv"), scalarRow(t, c, probe), c.ParameterStatus("DateStyle"), c.ParameterStatus("TimeZone"))
				exec(t, c, "ROLLBACK TO SAVEPOINT mine")
				got[i] = append(got[i], scalarRow(t, c, probe), c.ParameterStatus("DateStyle"))
				exec(t, c, "COMMIT")
				got[i] = append(got[i], scalarRow(t, c, probe))
			}
			if got[0][0] != "2026-02-01" {
				t.Fatalf("the statement ran %q, want 2026-02-01 (its own parse)", got[0][0])
			}
			if strings.Join(got[0], " | ") != strings.Join(got[1], " | ") {
				t.Fatalf("through txlane: %q\nPostgreSQL:    %q", got[0], got[1])
			}
		})
	}
}

// scalarRow returns the first row of sql's result, its columns joined.
func scalarRow(t *testing.T, c *pgconn.PgConn, sql string) string {
	t.Helper()
	res := exec(t, c, sql)
	var vals []string
	for _, v := range res[len(res)-1].Rows[0] {
		vals = append(vals, string(v))
	}
	return strings.Join(vals, ",")
}
