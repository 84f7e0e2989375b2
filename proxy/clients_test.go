package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	osexec "os/exec"
	"testing"
)

// TestPsycopg runs a real psycopg 3 client (Debian's python3-psycopg, which
// scripts/test.sh installs) through txlane: auto-prepared statements run on
// the vector lane, psycopg's DEALLOCATE ALL after DDL is honoured on both
// lanes, and a transaction that wrote the table reads its write.
func TestPsycopg(t *testing.T) {
	python := "/usr/bin/python3"
	if err := osexec.Command(python, "-c", "import psycopg").Run(); err != nil {
		t.Fatalf("psycopg 3 is not installed for %s (apt-get install python3-psycopg; scripts/test.sh does): %v", python, err)
	}
	bed := startVectorProxy(t, nil)
	out, err := osexec.Command(python, "testdata/clients/psycopg_lanes.py", bed.DSN(t, ""), bed.table).CombinedOutput()
	if err != nil {
		t.Fatalf("psycopg script: %v\n%s", err, out)
	}
	var got struct {
		PrimaryPID         int      `json:"primary_pid"`
		Reads              [][2]int `json:"reads"`
		AfterDDLColumns    int      `json:"after_ddl_columns"`
		AfterDDLExtra      int      `json:"after_ddl_extra"`
		InTxRead           [2]int   `json:"in_tx_read"`
		InTxCount          int      `json:"in_tx_count"`
		AfterRollbackCount int      `json:"after_rollback_count"`
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
	if got.InTxRead[0] != got.PrimaryPID {
		t.Errorf("read after writing the table in a transaction ran on backend %d, want the primary %d", got.InTxRead[0], got.PrimaryPID)
	}
	if got.InTxCount != 4 || got.AfterRollbackCount != 3 {
		t.Errorf("counts in the transaction %d and after rollback %d, want 4 and 3", got.InTxCount, got.AfterRollbackCount)
	}
	t.Logf("%s", out)
}

// TestJDBC runs a real pgjdbc client (Debian's libpostgresql-jdbc-java, which
// scripts/test.sh installs) through txlane: its unnamed statements, then the
// named S_n it switches to at prepareThreshold, run on the vector lane when
// idle; inside a transaction that wrote the table (BEGIN sent in the same
// batch) they run on the primary.
func TestJDBC(t *testing.T) {
	const jar = "/usr/share/java/postgresql.jar"
	java, err := osexec.LookPath("java")
	if err != nil {
		t.Fatal("java is not installed")
	}
	if _, err := os.Stat(jar); err != nil {
		t.Fatalf("pgjdbc is not installed (apt-get install libpostgresql-jdbc-java; scripts/test.sh does): %v", err)
	}
	bed := startVectorProxy(t, nil)
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
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got.IdleReads) != 8 || len(got.TxReads) != 3 {
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
	t.Logf("%s", out)
}
