package proxy_test

import (
	"encoding/json"
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
