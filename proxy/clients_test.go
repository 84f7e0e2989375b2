package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	osexec "os/exec"
	"testing"

	"github.com/txlane/txlane/proxy"
)

// clientModes are the pool modes the real clients run in: session, and
// transaction with pool_size 1, where the script's two clients share one
// primary backend (so "the primary's pid" still names one backend, and what
// each client set must move with it to that backend).
var clientModes = []struct {
	name string
	opts proxy.PoolOptions
}{
	{"session", proxy.PoolOptions{Mode: proxy.PoolSession}},
	{"transaction", proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: 1}},
}

// TestPsycopg runs a real psycopg 3 client (Debian's python3-psycopg, which
// scripts/test.sh installs) through txlane, in both pool modes: auto-prepared
// statements run on the vector lane, psycopg's DEALLOCATE ALL after DDL is
// honoured on both lanes, and a transaction that wrote the table reads its
// write. A second client, interleaved between the first's steps, prepares
// other queries under the same statement names and sets other values of the
// same settings: each client keeps its own (in transaction mode on the one
// backend they share).
func TestPsycopg(t *testing.T) {
	python := "/usr/bin/python3"
	if err := osexec.Command(python, "-c", "import psycopg").Run(); err != nil {
		t.Fatalf("psycopg 3 is not installed for %s (apt-get install python3-psycopg; scripts/test.sh does): %v", python, err)
	}
	for _, mode := range clientModes {
		t.Run(mode.name, func(t *testing.T) {
			bed := startVectorProxy(t, func(o *proxy.Options) { o.Pool = mode.opts })
			out, err := osexec.Command(python, "testdata/clients/psycopg_lanes.py", bed.DSN(t, ""), bed.table).CombinedOutput()
			if err != nil {
				t.Fatalf("psycopg script: %v\n%s", err, out)
			}
			var got struct {
				PrimaryPID         int      `json:"primary_pid"`
				Reads              [][2]int `json:"reads"`
				AfterDDLColumns    int      `json:"after_ddl_columns"`
				AfterDDLExtra      int      `json:"after_ddl_extra"`
				InTxPID            int      `json:"in_tx_pid"`
				InTxRead           [2]int   `json:"in_tx_read"`
				InTxCount          int      `json:"in_tx_count"`
				AfterRollbackCount int      `json:"after_rollback_count"`
				State              []any    `json:"state"`
				OtherState         []any    `json:"other_state"`
				OtherSum           int      `json:"other_sum"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for i, r := range got.Reads {
				if r[0] == got.PrimaryPID || r[1] != 1 {
					t.Errorf("read %d: backend %d (primary %d), id %d; want the vector lane and id 1", i, r[0], got.PrimaryPID, r[1])
				}
			}
			if got.AfterDDLColumns != 4 || got.AfterDDLExtra != 7 {
				t.Errorf("after DDL: %d columns, extra = %d; want 4 and 7", got.AfterDDLColumns, got.AfterDDLExtra)
			}
			if got.InTxPID != got.PrimaryPID || got.InTxRead[0] != got.PrimaryPID {
				t.Errorf("in the writing transaction: backend %d, its read on %d; want the primary %d", got.InTxPID, got.InTxRead[0], got.PrimaryPID)
			}
			if got.InTxCount != 4 || got.AfterRollbackCount != 3 {
				t.Errorf("counts in the transaction %d and after rollback %d, want 4 and 3", got.InTxCount, got.AfterRollbackCount)
			}
			wantClientState(t, mode.opts.Mode, got.PrimaryPID, got.State, got.OtherState,
				[]any{"Asia/Tokyo", `"$user", public`, "conn"}, []any{"UTC", "pg_catalog, public", "other"})
			if got.OtherSum != 42 {
				t.Errorf("the other client's prepared statement answered %d, want 42", got.OtherSum)
			}
			t.Logf("%s", out)
		})
	}
}

// wantClientState checks the session state two interleaved clients read at
// the end (the columns of the scripts' STATE query, the backend pid last):
// each must find its own values; in transaction mode both ran on the pool's
// one backend, primary, and in session mode on backends of their own.
func wantClientState(t *testing.T, mode proxy.PoolMode, primary int, state, other, want, wantOther []any) {
	t.Helper()
	if len(state) != len(want)+1 || len(other) != len(wantOther)+1 {
		t.Fatalf("state %v and %v, want %d columns each", state, other, len(want)+1)
	}
	if got := fmt.Sprint(state[:len(want)]); got != fmt.Sprint(want) {
		t.Errorf("the client's session state at the end is %s, want its own %s", got, fmt.Sprint(want))
	}
	if got := fmt.Sprint(other[:len(wantOther)]); got != fmt.Sprint(wantOther) {
		t.Errorf("the other client's session state at the end is %s, want its own %s", got, fmt.Sprint(wantOther))
	}
	pid, otherPID := fmt.Sprint(state[len(want)]), fmt.Sprint(other[len(wantOther)])
	if shared := pid == otherPID; shared != (mode == proxy.PoolTransaction) || pid != fmt.Sprint(primary) {
		t.Errorf("the clients ended on backends %s and %s (primary %d); want one shared backend in transaction mode, two in session mode", pid, otherPID, primary)
	}
}

// TestJDBC runs a real pgjdbc client (Debian's libpostgresql-jdbc-java, which
// scripts/test.sh installs) through txlane, in both pool modes: its unnamed
// statements, then the named S_n it switches to at prepareThreshold, run on
// the vector lane when idle; inside a transaction that wrote the table
// (BEGIN sent in the same batch) they run on the primary. A second
// connection, interleaved between the first's steps, runs statements of its
// own under the same S_n names and sets other values of the same settings:
// each keeps its own (in transaction mode on the one backend they share).
func TestJDBC(t *testing.T) {
	const jar = "/usr/share/java/postgresql.jar"
	java, err := osexec.LookPath("java")
	if err != nil {
		t.Fatal("java is not installed")
	}
	if _, err := os.Stat(jar); err != nil {
		t.Fatalf("pgjdbc is not installed (apt-get install libpostgresql-jdbc-java; scripts/test.sh does): %v", err)
	}
	for _, mode := range clientModes {
		t.Run(mode.name, func(t *testing.T) {
			bed := startVectorProxy(t, func(o *proxy.Options) { o.Pool = mode.opts })
			u, err := url.Parse(bed.DSN(t, ""))
			if err != nil {
				t.Fatal(err)
			}
			jdbc := fmt.Sprintf("jdbc:postgresql://%s%s?user=%s&sslmode=disable", u.Host, u.Path, u.User.Username())
			out, err := osexec.Command(java, "-cp", jar, "testdata/clients/JdbcLanes.java", jdbc, bed.table).CombinedOutput()
			if err != nil {
				t.Fatalf("JDBC client: %v\n%s", err, out)
			}
			var got struct {
				PrimaryPID int      `json:"primary_pid"`
				IdleReads  [][2]int `json:"idle_reads"`
				TxReads    [][2]int `json:"tx_reads"`
				After      [2]int   `json:"after"`
				State      []any    `json:"state"`
				OtherState []any    `json:"other_state"`
				OtherRuns  int      `json:"other_runs"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if len(got.IdleReads) != 8 || len(got.TxReads) != 3 || got.OtherRuns != 10 {
				t.Fatalf("unexpected output: %s", out)
			}
			for i, r := range got.IdleReads {
				if r[0] == got.PrimaryPID || r[1] != 2 {
					t.Errorf("idle read %d: backend %d (primary %d), id %d; want the vector lane and id 2", i+1, r[0], got.PrimaryPID, r[1])
				}
			}
			for i, r := range got.TxReads {
				if r[0] != got.PrimaryPID || r[1] != 2 {
					t.Errorf("read %d in the writing transaction: backend %d, id %d; want the primary %d and id 2", i+1, r[0], r[1], got.PrimaryPID)
				}
			}
			if got.After[0] == got.PrimaryPID {
				t.Errorf("read after the transaction ran on the primary")
			}
			wantClientState(t, mode.opts.Mode, got.PrimaryPID, got.State, got.OtherState,
				[]any{"Asia/Tokyo", `"$user", public`, "conn"}, []any{"UTC", "pg_catalog, public", "other"})
			t.Logf("%s", out)
		})
	}
}
