package proxy

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/wire"
)

// oneAtATime reads data, one request, per Read and over again, as a
// client's requests arrive.
type oneAtATime struct{ data []byte }

func (o *oneAtATime) Read(p []byte) (int, error) { return copy(p, o.data), nil }

// BenchmarkPlanAndDecide is the client goroutine's work per request that
// needs no server: the request's messages read from the socket buffer into
// the batch (batch.add), resolved into its plan (planner.add: the
// classification, from the cache, and the units of work, from the
// comments), and the lane decided (policy.DecideBatch on the plan), idle,
// for pgbench's statement in each query mode and a vector read. "+tp" cases
// carry a sqlcommenter traceparent whose trace-id is new on every request.
// Needs no PostgreSQL: go test -run '^$' -bench PlanAndDecide -benchmem ./proxy
func BenchmarkPlanAndDecide(b *testing.B) {
	const (
		read   = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
		vector = "SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 5"
		tp     = " /*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/"
	)
	extended := func(sql string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{Parameters: [][]byte{[]byte("42")}},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}
	}
	for _, bc := range []struct {
		name string
		msgs []pgproto3.FrontendMessage
		lane policy.Lane
	}{
		{"simple", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 42"}}, policy.Primary},
		{"simple+tp", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 42" + tp}}, policy.Primary},
		{"extended", extended(read), policy.Primary},
		{"extended+tp", extended(read + tp), policy.Primary},
		{"prepared", []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "P_0", Parameters: [][]byte{[]byte("42")}},
			&pgproto3.Execute{}, &pgproto3.Sync{}}, policy.Primary},
		{"vector+tp", extended(vector + tp), policy.Vector},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var data []byte
			for _, m := range bc.msgs {
				var err error
				if data, err = m.Encode(data); err != nil {
					b.Fatal(err)
				}
			}
			// The trace-id, rewritten before each request.
			id := []byte(nil)
			if i := bytes.Index(data, []byte("traceparent='00-")); i >= 0 {
				id = data[i+len("traceparent='00-"):][:32]
			}
			reg := newRegistry()
			(&regChange{reg: reg, name: "P_0", client: true,
				stmt: &preparedStmt{sql: read, key: makeStmtKey(read, nil)}}).apply()
			p := newPlanner(reg, testRouting(b))
			r := wire.NewReader[wire.Frontend](&oneAtATime{data: data}, 0)
			var cur batch
			tx := policy.TxState{Status: policy.TxIdle}
			searchPath := []string{"$user", "public"}
			n := uint64(0)
			request := func() {
				n++
				for i, v := 0, n; i < len(id); i, v = i+1, v>>4 {
					id[len(id)-1-i] = "0123456789abcdef"[v&15]
				}
				cur.reset()
				p.begin(true, true)
				for range bc.msgs {
					planNext(b, p, &cur, r)
				}
				if !cur.synced {
					b.Fatal("the request did not end")
				}
				d := policy.DecideBatch(&tx, p.cur.stmts(0), p.rt.rules, searchPath)
				if d.Lane != bc.lane || id != nil && len(p.cur.units) != 1 {
					b.Fatalf("lane %v (%v), units %v", d.Lane, d.Reason, p.cur.units)
				}
			}
			request() // the classification is cached from here on
			b.ReportAllocs()
			for b.Loop() {
				request()
			}
		})
	}
}

// TestStmtKeyStable pins content-derived statement names: a name is a
// function of the text and parameter types only, the same in every txlane
// version that shares a lane connection's statements, and made with one
// allocation.
func TestStmtKeyStable(t *testing.T) {
	for _, c := range []struct {
		sql  string
		oids []uint32
		want stmtKey
	}{
		{"SELECT $1::int", []uint32{23}, "txlane_5033c1b6376df854bf8d10f634e575e4"},
		{"SELECT 1", nil, "txlane_ed2e304e27e18cdfb2dbd4796adeaae1"},
	} {
		if got := makeStmtKey(c.sql, c.oids); got != c.want {
			t.Errorf("makeStmtKey(%q, %v) = %s, want %s", c.sql, c.oids, got, c.want)
		}
		if n := testing.AllocsPerRun(100, func() { makeStmtKey(c.sql, c.oids) }); n > 1 {
			t.Errorf("makeStmtKey: %v allocations, want 1", n)
		}
	}
}
