package proxy_test

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hiddenSeed returns the seed of a randomized test: TXLANE_HIDDEN_SEED when
// set (to replay a failure), else the clock. It is logged either way.
func hiddenSeed(t *testing.T) int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("TXLANE_HIDDEN_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("TXLANE_HIDDEN_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with TXLANE_HIDDEN_SEED=%d)", seed, seed)
	return seed
}

// hiddenBudget bounds a randomized test's running time.
func hiddenBudget() time.Duration {
	if testing.Short() {
		return time.Second
	}
	return 4 * time.Second
}

// randomTx runs transactions of statements drawn from pool (each a format
// with one %d, filled with a small random number) between BEGIN and
// ROLLBACK, directly and through txlane, until the budget is spent: the
// outcomes must match and the database must be unchanged after each.
// Sometimes the whole transaction is one query text.
func randomTx(t *testing.T, b *hiddenBed, pool []string, maxLen int) {
	seed := hiddenSeed(t)
	rng := rand.New(rand.NewSource(seed))
	direct, lane := b.connectDirect(t), b.connectLane(t)
	before := b.fingerprint(t)
	deadline := time.Now().Add(hiddenBudget())
	n := 0
	for ; time.Now().Before(deadline) && !t.Failed(); n++ {
		k := 1 + rng.Intn(maxLen)
		stmts := make([]string, 0, k+2)
		stmts = append(stmts, "BEGIN")
		for i := 0; i < k; i++ {
			stmts = append(stmts, fmt.Sprintf(pool[rng.Intn(len(pool))], rng.Intn(4)))
		}
		stmts = append(stmts, "ROLLBACK")
		if rng.Intn(8) == 0 {
			// One text: BEGIN ... ROLLBACK as a single simple Query.
			stmts = []string{strings.Join(stmts, "; ")}
		}
		want := runAll(direct, stmts)
		got := runAll(lane, stmts)
		for i := range stmts {
			if got[i] != want[i] {
				t.Errorf("transaction %d (seed %d), statement %d: %s\n  through txlane: %q\n  directly:      %q\n  transaction: %s",
					n, seed, i, stmts[i], got[i], want[i], strings.Join(stmts, "; "))
			}
		}
		if after := b.fingerprint(t); after != before {
			t.Fatalf("transaction %d (seed %d) left the database changed:\n  %s\nbefore %s\nafter  %s",
				n, seed, strings.Join(stmts, "; "), before, after)
		}
	}
	t.Logf("%d transactions", n)
	m := b.Server.Metrics()
	if m.Routed("vector", "vector_read_in_tx")+m.Routed("vector", "vector_read_idle") == 0 {
		t.Error("no read was offloaded: the run did not exercise the vector lane")
	}
}

// TestHiddenRandomReadsThatWrite runs transactions that read through views,
// operators, aggregates, window functions, casts and row-level-security
// protected vector tables whose functions write, mixed with plain vector
// reads and writes, and rolls them back: nothing may remain.
func TestHiddenRandomReadsThatWrite(t *testing.T) {
	b := startHiddenBed(t, "CREATE AGGREGATE wsum(int) (SFUNC = sfn, STYPE = int)")
	randomTx(t, b, []string{
		"SELECT id, l FROM v_items WHERE id > %d ORDER BY id",
		"SELECT id FROM v_outer WHERE id <> %d ORDER BY id",
		"SELECT id FROM items WHERE id === %d",
		"SELECT wsum(id) + %d FROM items",
		"SELECT id, wsum(id) OVER (ORDER BY id) + %d FROM items ORDER BY id",
		"SELECT id FROM sec_items ORDER BY embedding <-> '[%d,1,1]', id",
		"SELECT id, ('x'::text)::mytype FROM items WHERE id > %d ORDER BY id",
		// Plain vector reads: the lane serves these.
		"SELECT id FROM items ORDER BY embedding <-> '[%d,2,3]', id LIMIT 2",
		"SELECT count(*) + %d FROM v_plain",
		// Writes, so that read-your-writes is exercised too.
		"INSERT INTO items VALUES (10 + %d, '[1,1,1]')",
		"UPDATE items SET embedding = '[0,0,1]' WHERE id = %d",
	}, 6)
}

// TestHiddenRandomReachedWrites runs transactions that write through
// triggers, cascading foreign keys, rules, writable views, INSTEAD OF
// triggers and partitions, and read the tables those writes reach: every
// read must show what PostgreSQL shows.
func TestHiddenRandomReachedWrites(t *testing.T) {
	b := startHiddenBed(t)
	randomTx(t, b, []string{
		"INSERT INTO other VALUES (%d)",
		"DELETE FROM par WHERE id = %d",
		"INSERT INTO ruled VALUES (%d)",
		"INSERT INTO w_items VALUES (20 + %d, '[1,2,3]')",
		"INSERT INTO v_ins VALUES (30 + %d)",
		"INSERT INTO meas VALUES (%d, '[1,1,1]')",
		"INSERT INTO meas_1 VALUES (%d, '[2,2,2]')",
		"SELECT count(*) + %d FROM items",
		"SELECT id FROM items ORDER BY embedding <-> '[1,0,%d]', id LIMIT 3",
		"SELECT count(*) FROM chi WHERE id > %d",
		"SELECT count(*) FROM grand WHERE chi_id IS NULL OR chi_id = %d",
		"SELECT count(*) FROM meas WHERE id >= %d",
		"SELECT count(*) FROM meas_1 WHERE id >= %d",
		"SELECT count(*) FROM v_plain WHERE id > %d",
	}, 8)
}
