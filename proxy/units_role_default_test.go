package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// TestUnitsRoleDefault: a unit set as a role's or database's default
// (ALTER ROLE ... SET txlane.unit, ALTER ROLE ... IN DATABASE ... SET) is
// the session's unit: its holder holds it and its untagged writes carry it,
// across instances and in transaction mode; RESET txlane.unit returns to it.
func TestUnitsRoleDefault(t *testing.T) {
	role, role2 := uniqueName("ru"), uniqueName("rd")
	unit, unit2 := role+"-unit", role2+"-unit"
	pgtest.Exec(t, fmt.Sprintf("CREATE ROLE %[1]s LOGIN; ALTER ROLE %[1]s SET txlane.unit = '%[2]s'", role, unit))
	pgtest.Exec(t, fmt.Sprintf("CREATE ROLE %[1]s LOGIN; ALTER ROLE %[1]s IN DATABASE txlane_test SET txlane.unit = '%[2]s'", role2, unit2))
	t.Cleanup(func() { pgtest.Exec(t, "DROP ROLE IF EXISTS "+role+"; DROP ROLE IF EXISTS "+role2) })
	bed := startInstances(t, 3, "reject", transactionPoolOnUsers(t, 3, 2, role, role2))
	pgtest.Exec(t, fmt.Sprintf("GRANT ALL ON SEQUENCE %s_id_seq TO PUBLIC", bed.table))
	as := func(id int, user string) *pgconn.PgConn {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgconn.Connect(ctx, bed.inst[id-1].DSN(t, user)+"&application_name="+user)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	untagged := func(u string) string {
		return fmt.Sprintf("INSERT INTO %s (unit, who) VALUES ('%s', 'untagged')", bed.table, u)
	}
	for _, c := range []struct{ user, unit string }{{role, unit}, {role2, unit2}} {
		for _, wid := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("writer %s on %d", c.user, wid), func(t *testing.T) {
				holder := bed.connect(t, 1, "holder")
				exec(t, holder, "BEGIN")
				exec(t, holder, "SELECT 1 /*unit='"+c.unit+"'*/")
				w := as(wid, c.user)
				if wid == 1 {
					if err := execErr(w, untagged(c.unit)); err == nil {
						t.Fatal("untagged write of the role's unit let through past its holder")
					}
				} else {
					wantHeldElsewhereCode(t, execErr(w, untagged(c.unit)))
				}
				// RESET returns to the role's default.
				exec(t, w, "SET txlane.unit = 'other'")
				exec(t, w, "RESET txlane.unit")
				if err := execErr(w, untagged(c.unit)); err == nil {
					t.Fatal("untagged write after RESET txlane.unit let through past its holder")
				}
				exec(t, holder, "ROLLBACK")
				if got := bed.count(t, "unit = '"+c.unit+"'"); got != "0" {
					t.Fatalf("%s rows after the holder rolled back", got)
				}
			})
			t.Run(fmt.Sprintf("holder %s on %d", c.user, wid), func(t *testing.T) {
				h := as(wid, c.user)
				exec(t, h, "BEGIN")
				exec(t, h, "SELECT 1")
				writer := bed.connect(t, 1+wid%3, "writer")
				wantHeldElsewhereCode(t, execErr(writer, bed.insert(c.unit, "escape")))
				exec(t, h, "ROLLBACK")
				if got := bed.count(t, "unit = '"+c.unit+"'"); got != "0" {
					t.Fatalf("%s rows after the holder rolled back", got)
				}
			})
		}
	}
}

// transactionPoolOnUsers is transactionPoolOn whose logins may also be
// those of users.
func transactionPoolOnUsers(t *testing.T, id, size int, users ...string) func(int, *proxy.Options) {
	cfg, err := pgconn.ParseConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	return func(i int, o *proxy.Options) {
		if i == id {
			o.Pool = proxy.PoolOptions{Mode: proxy.PoolTransaction, Size: size}
			o.Auth = trustAuthUsers(t, append([]string{cfg.User}, users...)...)
		}
	}
}
