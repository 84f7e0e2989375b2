package proxy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// transcript sends msgs as one request and returns what came back up to its
// ReadyForQuery, in short: a data row's values, an error's SQLSTATE, the
// status.
func transcript(t *testing.T, c *pgconn.PgConn, msgs ...pgproto3.FrontendMessage) string {
	t.Helper()
	var out []string
	rawExchange(t, c, func(msg pgproto3.BackendMessage) {
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			vals := make([]string, len(m.Values))
			for i, v := range m.Values {
				vals[i] = string(v)
			}
			out = append(out, "D:"+strings.Join(vals, ","))
		case *pgproto3.ErrorResponse:
			out = append(out, "E:"+m.Code)
		case *pgproto3.ReadyForQuery:
			out = append(out, "Z:"+string(m.TxStatus))
		}
	}, msgs...)
	return strings.Join(out, " ")
}

// TestUnnamedStatementAfterOwnQueries: txlane's own queries on a client's
// backend (the read-back of txlane.unit after RESET ALL here; pin checks
// and state reads alike) go through the server's unnamed statement. The
// client's unnamed statement must still be its own afterwards, also when
// its ParseComplete is read after txlane's query was sent; a client that
// has none must get the server's 26000, not txlane's statement. Both pool
// modes, each request compared with PostgreSQL directly.
func TestUnnamedStatementAfterOwnQueries(t *testing.T) {
	scenarios := []struct {
		name     string
		requests [][]pgproto3.FrontendMessage
	}{
		{"parsed in the request that resets", [][]pgproto3.FrontendMessage{
			{&pgproto3.Query{String: "BEGIN"}},
			{&pgproto3.Parse{Query: "SELECT 'C' || $1::text"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("x")}}, &pgproto3.Execute{},
				&pgproto3.Parse{Name: "txl_reset", Query: "RESET ALL"}, &pgproto3.Bind{PreparedStatement: "txl_reset"}, &pgproto3.Execute{},
				&pgproto3.Sync{}},
			{&pgproto3.Bind{Parameters: [][]byte{[]byte("y")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Query{String: "COMMIT"}},
		}},
		{"parsed before, reset outside a block", [][]pgproto3.FrontendMessage{
			{&pgproto3.Parse{Query: "SELECT 'C' || $1::text"}, &pgproto3.Sync{}},
			{&pgproto3.Parse{Name: "txl_reset", Query: "RESET ALL"}, &pgproto3.Bind{PreparedStatement: "txl_reset"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{Parameters: [][]byte{[]byte("y")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		}},
		{"none of the client's: 26000", [][]pgproto3.FrontendMessage{
			{&pgproto3.Query{String: "RESET ALL"}},
			{&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		}},
	}
	for _, mode := range []proxy.PoolMode{proxy.PoolSession, proxy.PoolTransaction} {
		p := startProxy(t, func(o *proxy.Options) { o.Pool = proxy.PoolOptions{Mode: mode, Size: 1} })
		for _, sc := range scenarios {
			t.Run(fmt.Sprintf("%s/%s", mode, sc.name), func(t *testing.T) {
				direct := connectDSN(t, pgtest.DSN(t))
				through := p.connect(t)
				for i, req := range sc.requests {
					want := transcript(t, direct, req...)
					if got := transcript(t, through, req...); got != want {
						t.Errorf("request %d: through txlane %q, PostgreSQL %q", i, got, want)
					}
				}
			})
		}
	}
}
