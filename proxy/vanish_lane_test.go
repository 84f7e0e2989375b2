package proxy_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestVanishMidLaneResponse: a client that goes away while the vector lane
// streams it a large answer ends its session at once, in a transaction too:
// its primary backend is rolled back and freed (its row lock with it), the
// lane connection does not stay taken (the read pool has one, and the next
// client's read is served on the lane), and nothing of its transaction
// commits. Before, txlane kept reading the lane from inside a message it had
// forwarded in part, waited for bytes that never came, and held both
// connections, the transaction's locks, and the process's shutdown.
func TestVanishMidLaneResponse(t *testing.T) {
	user := pgtest.Config(t).User
	for _, tc := range []struct {
		name string
		mode proxy.PoolMode
	}{
		{"session", proxy.PoolSession},
		{"transaction", proxy.PoolTransaction},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bed := startVectorProxy(t, func(o *proxy.Options) {
				o.Pool = proxy.PoolOptions{Mode: tc.mode, Size: 2}
				o.Auth = trustAuth(t, user)
				o.ReadPool.MaxConns = 1
			})
			tbl := uniqueName("vanish_lane")
			pgtest.Exec(t, "CREATE TABLE "+tbl+" (x int PRIMARY KEY); INSERT INTO "+tbl+" VALUES (1); GRANT ALL ON "+tbl+" TO PUBLIC")
			t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+tbl) })
			// About 300 MB: far more than the socket buffers hold.
			big := "SELECT repeat('x', 1000) FROM " + bed.table + ", generate_series(1, 100000)"

			a := bed.connect(t)
			exec(t, a, "BEGIN; UPDATE "+tbl+" SET x = 2 WHERE x = 1")
			pid := scalar(t, a, "SELECT pg_backend_pid()")
			newLanes(t, a).wantLane("SELECT pg_backend_pid() FROM " + bed.table + ", generate_series(1, 2) LIMIT 1")
			hj, err := a.Hijack()
			if err != nil {
				t.Fatal(err)
			}
			writeMsgs(t, hj.Conn, &pgproto3.Query{String: big})
			readSome(t, hj.Conn, 256<<10)
			hj.Conn.Close()

			direct := directConn(t)
			waitFor(t, func() bool {
				res := exec(t, direct, "SELECT coalesce((SELECT state FROM pg_stat_activity WHERE pid = "+pid+"), 'gone')")
				s := string(res[0].Rows[0][0])
				return s == "idle" || s == "gone"
			}, "a's primary backend to leave its transaction")
			// The row lock went with the transaction, and its update with it.
			exec(t, direct, "SET lock_timeout = '2s'")
			if got := scalar(t, direct, "UPDATE "+tbl+" SET x = 3 WHERE x = 1 RETURNING x"); got != "3" {
				t.Fatalf("updating the row a had locked gave %q, want 3 (a's update rolled back)", got)
			}
			// The read pool's one connection serves the next client's read.
			c := bed.connect(t)
			var ok bool
			for i := 0; i < 20 && !ok; i++ {
				ok = newLanes(t, c).ranOnLane("SELECT pg_backend_pid() FROM " + bed.table + " LIMIT 1")
			}
			if !ok {
				t.Fatal("after a client vanished mid-answer on the vector lane, the next client's reads ran on the primary (the lane connection stayed taken)")
			}
		})
	}
}
