package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestLaneCustomPlaceholder: after SET myapp.x = '1' and DISCARD ALL (or
// RESET ALL, RESET, the end of a SET LOCAL) PostgreSQL keeps myapp.x as a
// placeholder: current_setting('myapp.x', true) gives an empty string and SHOW answers.
// txlane gives the same in both pool modes, a read of a vector table
// included: it ran on the vector lane, whose connection never had myapp.x,
// and gave NULL. A read of a custom setting the client holds a value of
// still runs on the lane. And a client that never set a custom setting
// reads NULL, as its own session gives, where the lane connection had
// reset another client's value of it (a placeholder, empty).
func TestLaneCustomPlaceholder(t *testing.T) {
	vec := uniqueName("lcvec")
	pgtest.Exec(t, fmt.Sprintf("CREATE TABLE %[1]s (id int PRIMARY KEY, embedding vector(3)); INSERT INTO %[1]s VALUES (1, '[1,0,0]'); GRANT ALL ON %[1]s TO PUBLIC", vec))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+vec) })
	run := func(c *pgconn.PgConn, sql string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return execText(ctx, c, sql)
	}
	vecRead := func(name string) string {
		return fmt.Sprintf("SELECT coalesce(current_setting('%s', true), 'NULL'), id FROM %s", name, vec)
	}
	probes := []string{vecRead("myapp.x"), vecRead("MyApp.X"), "SHOW myapp.x", "SELECT coalesce(current_setting('myapp.x', true), 'NULL')"}
	for _, mode := range []proxy.PoolMode{proxy.PoolSession, proxy.PoolTransaction} {
		p := startProxy(t, func(o *proxy.Options) {
			o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: 2 * time.Second}
			o.Rules.VectorTables = []string{vec}
			o.Pool = proxy.PoolOptions{Mode: mode, Size: 4}
		})
		for _, seq := range [][]string{
			{"SET myapp.x = '1'", "DISCARD ALL"},
			{"SELECT set_config('myapp.x', '1', false)", "RESET ALL"},
			{"SET myapp.x = '1'", "RESET myapp.x"},
			{"BEGIN", "SET LOCAL myapp.x = '1'", "COMMIT"},
			{"SET myapp.x = ''"},
			{},
		} {
			if len(seq) == 0 && mode == proxy.PoolTransaction {
				// A backend of the pool has other clients' placeholders
				// (README: "A custom setting another client set and reset
				// reads as ''").
				continue
			}
			t.Run(fmt.Sprintf("%s/%s", mode, strings.Join(seq, ", ")), func(t *testing.T) {
				d, th := directConn(t), p.connect(t)
				for _, s := range seq {
					if a, b := run(d, s), run(th, s); a != b {
						t.Fatalf("%q: direct %s, through txlane %s", s, a, b)
					}
				}
				for _, probe := range probes {
					if a, b := run(d, probe), run(th, probe); a != b {
						t.Errorf("%q:\n direct:  %s\n through: %s", probe, a, b)
					}
				}
			})
		}
		t.Run(fmt.Sprintf("%s/a value the client holds runs on the lane", mode), func(t *testing.T) {
			th := p.connect(t)
			exec(t, th, "SET myapp.x = '7'")
			before := p.Server.Metrics().Routed("vector", "vector_read_idle")
			if got := run(th, vecRead("myapp.x")); got != "SELECT 1 [7|1]" {
				t.Fatalf("got %s", got)
			}
			if p.Server.Metrics().Routed("vector", "vector_read_idle") == before {
				t.Fatal("the read of a custom setting the client holds a value of did not run on the vector lane")
			}
		})
	}
	// Session mode: a client that never set myapp.y, after the lane
	// connection (there is one) had another client's value of it.
	p := startProxy(t, func(o *proxy.Options) {
		o.ReadPool = proxy.ReadPoolOptions{Config: pgtest.Config(t), MaxConns: 1, AcquireTimeout: 2 * time.Second}
		o.Rules.VectorTables = []string{vec}
	})
	a, b := p.connect(t), p.connect(t)
	exec(t, a, "SET myapp.y = 'a'")
	if got := run(a, vecRead("myapp.y")); got != "SELECT 1 [a|1]" {
		t.Fatalf("the client that set myapp.y: %s", got)
	}
	if got, want := run(b, vecRead("myapp.y")), run(directConn(t), vecRead("myapp.y")); got != want {
		t.Fatalf("a client that never set myapp.y: %s through txlane, %s from PostgreSQL", got, want)
	}
}
