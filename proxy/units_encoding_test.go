package proxy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/proxy"
)

// TestUnitsNonUTF8Client: a LATIN1 client that sets txlane.unit with a bind
// parameter in its own encoding ('caf\xe9') names the unit a UTF-8 client
// holds as 'café': its write is refused (25L01). Before, txlane took the
// parameter's bytes for the unit, another unit than café, and let the
// write escape the holder's transaction.
func TestUnitsNonUTF8Client(t *testing.T) {
	bed := startUnitProxy(t, "reject", nil)
	holder, other := bed.connect(t), bed.connect(t)
	exec(t, holder, "BEGIN; SET LOCAL txlane.unit = 'café'")
	exec(t, holder, "INSERT INTO "+bed.table+" (unit, who) VALUES ('café', 'holder')")
	exec(t, other, "SET client_encoding = 'LATIN1'")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := other.ExecParams(ctx, "SELECT set_config('txlane.unit', $1, false)", [][]byte{[]byte("caf\xe9")}, nil, nil, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if got := scalar(t, other, "SELECT current_setting('txlane.unit')"); got != "caf\xe9" {
		t.Fatalf("the LATIN1 client's unit reads %q", got)
	}
	err := execErr(other, "INSERT INTO "+bed.table+" (unit, who) VALUES ('x', 'other')")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeEscapedWrite {
		t.Fatalf("the LATIN1 client's write of the held unit: %v, want SQLSTATE %s", err, proxy.CodeEscapedWrite)
	}
	exec(t, holder, "ROLLBACK")
}
