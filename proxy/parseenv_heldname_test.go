package proxy_test

import (
	"context"
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
