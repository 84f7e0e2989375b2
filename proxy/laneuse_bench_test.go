package proxy

import (
	"testing"
	"time"
)

// BenchmarkLaneUse measures what SHOW SERVERS' and SHOW POOLS' bookkeeping
// (laneuse.go) adds to a vector-lane acquire and release, in parallel as
// sessions acquire from one pool:
//
//	idle        an idle connection taken (TryAcquire) for a client's read:
//	            marked acquired, linked with the read's start (a time the
//	            read takes anyway), released; before it, nothing
//	wait        an acquire that waits: the wait recorded and removed (for
//	            cl_waiting and maxwait), marked, linked, released
//	wait_before what that acquire did without it (two clock reads, for
//	            txlane_pool_wait_seconds), on the same machine in the same run
//
//	go test -run '^$' -bench BenchmarkLaneUse -cpu 1,2 -count 5 ./proxy
func BenchmarkLaneUse(b *testing.B) {
	b.Run("idle", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var c laneConn
			start := time.Now()
			for pb.Next() {
				c.use.acquired()
				c.use.serve(1, start)
				c.use.released()
			}
		})
	})
	b.Run("wait", func(b *testing.B) {
		var l laneConns
		b.RunParallel(func(pb *testing.PB) {
			var c laneConn
			var d time.Duration
			for pb.Next() {
				w := l.waitStart()
				end := l.waitEnd(w)
				d += end.Sub(w.start)
				c.use.acquired()
				c.use.serve(1, end)
				c.use.released()
			}
			_ = d
		})
	})
	b.Run("wait_before", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var d time.Duration
			for pb.Next() {
				start := time.Now()
				d += time.Since(start)
			}
			_ = d
		})
	})
}
