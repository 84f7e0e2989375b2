package proxy

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy/wire"
)

// BenchmarkLaneCheck measures what the check behind each vector-lane read
// (laneCheckSQL) costs the server, against the advisory-lock cleanup it
// replaced, and what applying a client's settings costs, before (a simple
// Query) and now (laneApplyStmt), on a lane connection that holds a client's settings (all
// tracked ones applied, one custom) and 0, 32 or 256 prepared statements. It
// reports server-µs/op: the CPU time of the lane's backend process
// (/proc/PID/schedstat, so the server must run on this machine), which other
// load on the machine does not inflate as it does wall time. Each operation
// is an Execute and Sync of its own, pipelined 100 at a time.
//
//	go test -run '^$' -bench BenchmarkLaneCheck -benchtime 3000x ./proxy
func BenchmarkLaneCheck(b *testing.B) {
	ctx := context.Background()
	for _, stmts := range []int{0, 32, 256} {
		cfg := pgtest.Config(b)
		cfg.RuntimeParams[readOnlyLaneParam] = "on"
		c, err := dialLane(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", c.pid)); err != nil {
			c.close()
			b.Skipf("the server's process is not on this machine: %v", err)
		}
		// A client's settings: every tracked one as the server has it, and a
		// custom one.
		want := map[string]*string{}
		for n, v := range c.base {
			if v != nil && !laneFixed[n] && contains(trackedSettings, n) {
				s := *v
				want[n] = &s
			}
		}
		tz, custom, role := "Asia/Tokyo", "42", c.login
		want["TimeZone"], want["app.tenant"], want[settingRole] = &tz, &custom, &role
		names, values := applyPlan(c.settings, want)
		if err := c.apply(names, values); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < stmts; i++ {
			k := makeStmtKey(fmt.Sprintf("SELECT id, note FROM t%d WHERE id = $1", i), nil)
			wire.WriteMsg(c.w, &pgproto3.Parse{Name: string(k), Query: fmt.Sprintf("SELECT %d::int AS id, 'n'::text AS note WHERE $1::int > 0", i)})
			c.stmts.addKeep(k)
		}
		wire.WriteMsg(c.w, &pgproto3.Sync{})
		c.w.Flush()
		if err := c.readAnswer(nil); err != nil {
			b.Fatal(err)
		}
		prefix := fmt.Sprintf("stmts=%d/", stmts)
		if stmts == 0 {
			wire.WriteMsg(c.w, &pgproto3.Parse{Name: "old_cleanup", Query: "SELECT pg_catalog.pg_advisory_unlock_all()"})
			wire.WriteMsg(c.w, &pgproto3.Sync{})
			c.w.Flush()
			if err := c.readAnswer(nil); err != nil {
				b.Fatal(err)
			}
			b.Run("cleanup_before", func(b *testing.B) {
				measure(b, c, func() {
					wire.WriteMsg(c.w, &pgproto3.Bind{PreparedStatement: "old_cleanup"})
					wire.WriteMsg(c.w, &pgproto3.Execute{})
					wire.WriteMsg(c.w, &pgproto3.Sync{})
				}, func() error { return c.readAnswer(nil) })
			})
			// Applying a client's settings when they differ (two: the
			// TimeZone and the role), before as a simple Query, now with
			// laneApplyStmt.
			zones := []string{"Asia/Tokyo", "Europe/Paris"}
			i := 0
			b.Run("apply_before", func(b *testing.B) {
				measure(b, c, func() {
					i++
					wire.WriteMsg(c.w, &pgproto3.Query{String: "SELECT set_config('TimeZone', '" + zones[i%2] + "', false), set_config('role', '" + c.login + "', false)"})
				}, func() error { return c.readAnswer(nil) })
			})
			b.Run("apply", func(b *testing.B) {
				measure(b, c, func() {
					i++
					wire.WriteMsg(c.w, &pgproto3.Bind{PreparedStatement: laneApplyStmt,
						Parameters: [][]byte{textArray(hexed([]string{"TimeZone", settingRole})), textArray(hexed([]string{zones[i%2], c.login}))}})
					wire.WriteMsg(c.w, &pgproto3.Execute{})
					wire.WriteMsg(c.w, &pgproto3.Sync{})
				}, func() error { return c.readAnswer(nil) })
			})
			c.settings["TimeZone"] = zones[i%2]
			c.check = nil
			wire.WriteMsg(c.w, &pgproto3.Close{ObjectType: wire.ObjectStatement, Name: "old_cleanup"})
			wire.WriteMsg(c.w, &pgproto3.Sync{})
			c.w.Flush()
			if err := c.readAnswer(nil); err != nil {
				b.Fatal(err)
			}
		}
		for _, simple := range []bool{false, true} {
			name := prefix + "check"
			if simple {
				name += "_reparsed" // behind a read sent as a simple Query
			}
			var expect *checkExpect
			b.Run(name, func(b *testing.B) {
				measure(b, c, func() { expect = c.writeCheck(simple) }, func() error {
					if reason, detail := c.verify(expect); reason != "" {
						return fmt.Errorf("check: %s %s", reason, detail)
					}
					return nil
				})
			})
		}
		c.close()
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// measure runs write and read b.N times, pipelined 100 at a time, and
// reports the server's CPU time per operation.
func measure(b *testing.B, c *laneConn, write func(), read func() error) {
	cpu := func() int64 {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", c.pid))
		if err != nil {
			b.Fatal(err)
		}
		var ns int64
		fmt.Sscan(string(raw), &ns)
		return ns
	}
	b.ResetTimer()
	start, wall := cpu(), time.Now()
	for done := 0; done < b.N; {
		n := min(100, b.N-done)
		for i := 0; i < n; i++ {
			write()
		}
		if err := c.w.Flush(); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := read(); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	b.ReportMetric(float64(cpu()-start)/1e3/float64(b.N), "server-µs/op")
	b.ReportMetric(float64(time.Since(wall).Nanoseconds())/1e3/float64(b.N), "wall-µs/op")
}
