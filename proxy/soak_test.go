package proxy_test

import (
	"context"
	"fmt"
	"math/rand"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestTxPoolSoak: many clients over a small transaction-mode pool, each
// running a random mix of transactions that commit or roll back, session
// settings, custom settings and prepared statements, checking after every
// step that it sees its own settings and its own rows only; at the end the
// table holds exactly what the clients' models say committed. Clients:
// TXLANE_TEST_SOAK_CLIENTS (default 500), over pool_size 8, each for
// TXLANE_TEST_SOAK_ROUNDS rounds (default 6).
func TestTxPoolSoak(t *testing.T) {
	clients, rounds := envInt(t, "TXLANE_TEST_SOAK_CLIENTS", 500), envInt(t, "TXLANE_TEST_SOAK_ROUNDS", 6)
	p := startProxy(t, func(o *proxy.Options) {
		o.Auth = trustAuth(t, pgtest.AppRole)
		o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 8}
		o.MaxClientConn = clients + 10
		o.QueryWaitTimeout = 2 * time.Minute
	})
	table := uniqueName("soak")
	pgtest.Exec(t, "CREATE TABLE "+table+" (client int, n int); GRANT ALL ON "+table+" TO "+pgtest.AppRole)
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+table) })
	u, _ := url.Parse(p.DSN(t, pgtest.AppRole))
	app := uniqueName("soak")
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	dsn := u.String()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	committed := make([]int, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for id := 0; id < clients; id++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			c, err := pgconn.Connect(ctx, dsn)
			if err != nil {
				t.Errorf("client %d: %v", id, err)
				return
			}
			defer c.Close(context.Background())
			rng := rand.New(rand.NewSource(int64(id)))
			check := func(what string, got, want string) bool {
				if got != want {
					t.Errorf("client %d: %s = %q, want %q", id, what, got, want)
					return false
				}
				return true
			}
			one := func(sql string) (string, error) {
				rs, err := c.Exec(ctx, sql).ReadAll()
				if err != nil {
					return "", err
				}
				last := rs[len(rs)-1]
				if len(last.Rows) == 0 {
					return "", nil
				}
				return string(last.Rows[0][0]), nil
			}
			timeout := "0"
			mine := ""
			prepared := false
			n := 0
			for r := 0; r < rounds && ctx.Err() == nil; r++ {
				switch rng.Intn(5) {
				case 0: // a session setting of its own, or none
					if rng.Intn(3) == 0 {
						timeout = "0"
						_, err = one("RESET statement_timeout")
					} else {
						timeout = strconv.Itoa(100000+id) + "ms"
						_, err = one("SET statement_timeout = '" + timeout + "'")
					}
				case 1: // a custom setting of its own
					mine = strconv.Itoa(id)
					_, err = one("SET soak.me = '" + mine + "'")
				case 2: // a transaction that commits or rolls back
					n++
					var got string
					got, err = one(fmt.Sprintf("BEGIN; INSERT INTO %s VALUES (%d, %d); SELECT count(*) FROM %s WHERE client = %d", table, id, n, table, id))
					if err == nil {
						check("rows inside its transaction", got, strconv.Itoa(committed[id]+1))
						if rng.Intn(2) == 0 {
							_, err = one("COMMIT")
							committed[id]++
						} else {
							_, err = one("ROLLBACK")
						}
					}
				case 3: // a named prepared statement, made once, used often
					if !prepared {
						_, err = c.Prepare(ctx, "mine", "SELECT $1::int + count(*)::int FROM "+table+" WHERE client = $1::int", nil)
						prepared = err == nil
					}
					if prepared {
						res := c.ExecPrepared(ctx, "mine", [][]byte{[]byte(strconv.Itoa(id))}, nil, nil).Read()
						err = res.Err
						if err == nil {
							check("prepared statement", string(res.Rows[0][0]), strconv.Itoa(id+committed[id]))
						}
					}
				case 4: // an unnamed extended-protocol read
					res := c.ExecParams(ctx, "SELECT count(*) FROM "+table+" WHERE client = $1", [][]byte{[]byte(strconv.Itoa(id))}, nil, nil, nil).Read()
					err = res.Err
					if err == nil {
						check("rows", string(res.Rows[0][0]), strconv.Itoa(committed[id]))
					}
				}
				if err != nil {
					t.Errorf("client %d round %d: %v", id, r, err)
					return
				}
				var got string
				if got, err = one("SELECT current_setting('statement_timeout') || '|' || coalesce(current_setting('soak.me', true), '')"); err != nil {
					t.Errorf("client %d: %v", id, err)
					return
				}
				want := timeout + "|" + mine
				if timeout != "0" {
					want = strconv.Itoa((100000+id)/1000) + "s|" + mine
					if (100000+id)%1000 != 0 {
						want = timeout + "|" + mine
					}
				}
				if !check("its settings", got, want) {
					return
				}
			}
		}(id)
	}
	wg.Wait()
	t.Logf("%d clients × %d rounds over pool_size 8 in %v", clients, rounds, time.Since(start).Round(time.Millisecond))
	direct := directConn(t)
	res := exec(t, direct, "SELECT client, count(*) FROM "+table+" GROUP BY client")
	got := map[int]int{}
	for _, row := range res[0].Rows {
		cl, _ := strconv.Atoi(string(row[0]))
		n, _ := strconv.Atoi(string(row[1]))
		got[cl] = n
	}
	for id, want := range committed {
		if got[id] != want {
			t.Errorf("client %d: %d rows committed, want %d", id, got[id], want)
		}
	}
	// What served them: at most pool_size backends of txlane_app.
	if n, _ := strconv.Atoi(backendCount(t, app)); n > 8 || n == 0 {
		t.Fatalf("%d backends served the clients, want at most pool_size 8", n)
	}
}

func envInt(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}
