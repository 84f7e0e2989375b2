package proxy_test

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestPgbench runs the real pgbench (libpq) through an in-process proxy with a
// vector lane, with the mixed script of testdata/pgbench in each query mode:
// simple (Query), extended (unnamed Parse/Bind/Execute) and prepared (a Parse
// + Sync per statement on first use, then Bind/Execute of P_n, which the
// vector lane must prepare on demand). Every transaction must succeed, and the
// vector lane must have served reads both idle and inside transactions.
func TestPgbench(t *testing.T) {
	pgbench, err := osexec.LookPath("pgbench")
	if err != nil {
		t.Skip("pgbench is not on PATH (it comes with postgresql-client; scripts/pg.sh installs it)")
	}
	accounts, logs := uniqueName("pgb_accounts"), uniqueName("optimization_logs")
	pgtest.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO %[1]s SELECT i, 0 FROM generate_series(1, 100) i;
CREATE TABLE %[2]s (id int PRIMARY KEY, embedding vector(3) NOT NULL, score float8 NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO %[2]s (id, embedding, score)
  SELECT i, ('[' || random() || ',' || random() || ',' || random() || ']')::vector, random() FROM generate_series(1, 200) i;
GRANT ALL ON %[1]s, %[2]s TO PUBLIC`, accounts, logs))
	t.Cleanup(func() { pgtest.Exec(t, "DROP TABLE IF EXISTS "+accounts+", "+logs) })

	tmpl, err := os.ReadFile(filepath.Join("testdata", "pgbench", "mixed.sql"))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "mixed.sql")
	body := strings.NewReplacer("{{accounts}}", accounts, "{{logs}}", logs).Replace(string(tmpl))
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}

	// Fewer lane connections than clients: statements of different clients
	// meet on the same lane connection.
	bed := startVectorProxy(t, func(o *proxy.Options) {
		o.ReadPool.MaxConns = 2
		o.Rules.VectorTables = append(o.Rules.VectorTables, logs)
	})
	m := bed.Server.Metrics()
	failed := regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	for _, mode := range []string{"prepared", "extended", "simple"} {
		t.Run(mode, func(t *testing.T) {
			idle0, inTx0 := m.Routed("vector", "vector_read_idle"), m.Routed("vector", "vector_read_in_tx")
			unavailable0 := m.Routed("primary", "vector_unavailable")
			cmd := osexec.Command(pgbench, "-n", "-f", script, "-M", mode, "-c", "4", "-j", "2", "-T", "3", bed.DSN(t, ""))
			cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("pgbench -M %s: %v\n%s", mode, err, out)
			}
			f := failed.FindStringSubmatch(string(out))
			if f == nil || f[1] != "0" {
				t.Fatalf("pgbench -M %s: want \"number of failed transactions: 0\":\n%s", mode, out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "tps = ") || strings.HasPrefix(line, "number of transactions actually processed") {
					t.Logf("-M %s: %s", mode, line)
				}
			}
			idle, inTx := m.Routed("vector", "vector_read_idle")-idle0, m.Routed("vector", "vector_read_in_tx")-inTx0
			t.Logf("-M %s: vector lane units: %v idle, %v in a transaction; fallbacks to the primary: %v",
				mode, idle, inTx, m.Routed("primary", "vector_unavailable")-unavailable0)
			if idle <= 0 || inTx <= 0 {
				t.Fatalf("-M %s: vector-lane units idle %v, in a transaction %v; want both > 0\n%s", mode, idle, inTx, out)
			}
		})
	}
}

// TestPgbenchSelectOnly runs pgbench's built-in select-only script (-S)
// through txlane in each query mode: the foundation's throughput check, which
// must finish with no failed transaction. TPS is logged, not asserted
// (timing targets live in benchmarks).
func TestPgbenchSelectOnly(t *testing.T) {
	pgbench, err := osexec.LookPath("pgbench")
	if err != nil {
		t.Skip("pgbench not installed")
	}
	bed := startVectorProxy(t, nil)
	init := osexec.Command(pgbench, "-i", "-q", "-s", "1", "--foreign-keys", bed.Direct)
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	for _, mode := range []string{"simple", "extended", "prepared"} {
		out, err := osexec.Command(pgbench, "-n", "-S", "-M", mode, "-c", "4", "-j", "2", "-T", "2", bed.DSN(t, "")).CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench -S -M %s: %v\n%s", mode, err, out)
		}
		if !strings.Contains(string(out), "number of failed transactions: 0") {
			t.Fatalf("pgbench -S -M %s: want no failed transaction:\n%s", mode, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "tps") {
				t.Logf("-S -M %s: %s", mode, line)
			}
		}
	}
}
