package proxy

import (
	"testing"
	"time"
)

// BenchmarkLaneUse measures what SHOW SERVERS' and SHOW POOLS' bookkeeping
// adds to each vector-lane acquire and release (laneuse.go): the wait
// recorded and removed, the connection marked acquired, linked and
// released; in parallel, as sessions acquire from one pool. "before" is
// what acquire did around puddle's Acquire without it (two clock reads,
// for txlane_pool_wait_seconds), on the same machine in the same run.
//
//	go test -run '^$' -bench BenchmarkLaneUse -cpu 1,2 -count 5 ./proxy
func BenchmarkLaneUse(b *testing.B) {
	b.Run("before", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var d time.Duration
			for pb.Next() {
				start := time.Now()
				d += time.Since(start)
			}
			_ = d
		})
	})
	b.Run("now", func(b *testing.B) {
		var l laneConns
		b.RunParallel(func(pb *testing.PB) {
			var c laneConn
			var d time.Duration
			for pb.Next() {
				w := l.waitStart()
				end := l.waitEnd(w)
				d += end.Sub(w.start)
				c.use.acquired(end)
				c.use.linkTo(1)
				c.use.released()
			}
			_ = d
		})
	})
}
