package proxy_test

import (
	"errors"
	"regexp"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestUnitsSinceOneFormat: the time a 25L01 detail gives for the holder's
// transaction ("open since") is written as SHOW UNITS writes its since
// column (UTC, milliseconds), and is the same time: the detail's text is
// found as written in the holder's row.
func TestUnitsSinceOneFormat(t *testing.T) {
	bed := startUnitProxy(t, "reject", func(o *proxy.Options) { o.AdminUsers = []string{pgtest.AppRole} })
	admin, err := adminConnect(t, bed.testProxy, pgtest.AppRole, "")
	if err != nil {
		t.Fatal(err)
	}
	holder, other := bed.connect(t), bed.connect(t)
	exec(t, holder, "BEGIN; "+bed.insert("u-since", "holder"))
	var pgErr *pgconn.PgError
	if err := execErr(other, bed.insert("u-since", "other")); !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeEscapedWrite {
		t.Fatalf("escaping write: %v, want 25L01", err)
	}
	m := regexp.MustCompile(`open since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z)\. `).FindStringSubmatch(pgErr.Detail)
	if m == nil {
		t.Fatalf("25L01 detail %q: no time in SHOW UNITS' format (2006-01-02 15:04:05.000Z)", pgErr.Detail)
	}
	row := clientRow(consoleShow(t, admin, "SHOW UNITS")[0], "unit", "u-since")
	if row == nil || row["since"] != m[1] {
		t.Fatalf("SHOW UNITS row %v, want since %s as the 25L01 detail says", row, m[1])
	}
	exec(t, holder, "COMMIT")
}
