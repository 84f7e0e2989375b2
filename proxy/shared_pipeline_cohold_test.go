package proxy_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestSharedUnitsPipelinedCoHolder: a client that co-holds a unit another
// instance's client held first, and pipelines a write of it behind a request
// still in flight, is refused (the write cannot be checked, and its own lock
// proves nothing), in session and transaction mode.
func TestSharedUnitsPipelinedCoHolder(t *testing.T) {
	bed := startInstances(t, 3, "reject", transactionPoolOn(t, 3, 2))
	for _, wid := range []int{2, 3} {
		t.Run(fmt.Sprintf("writer on instance %d", wid), func(t *testing.T) {
			unit := fmt.Sprintf("cohold%d", wid)
			tag := " /*unit='" + unit + "'*/"
			holder := bed.connect(t, 1, "holder")
			writer := bed.connect(t, wid, "writer")
			// round: the holder holds the unit first; the writer, in a
			// transaction after begin, sends its write with write, which
			// must be refused; nothing of it survives.
			round := func(begin []string, write func() error) {
				t.Helper()
				exec(t, holder, "BEGIN")
				exec(t, holder, "SELECT 1"+tag)
				for _, sql := range begin {
					exec(t, writer, sql)
				}
				wantHeldElsewhereCode(t, write())
				execErr(writer, "COMMIT")
				exec(t, holder, "ROLLBACK")
				if got := bed.count(t, "unit = '"+unit+"'"); got != "0" {
					t.Fatalf("%s rows of %s after the holder rolled back", got, unit)
				}
			}
			pipelined := func(first string) func() error {
				return func() error {
					errs := pipelineResults(t, writer, first, bed.insert(unit, "pipelined"))
					if errs[0] != nil {
						t.Fatal(errs[0])
					}
					return errs[1]
				}
			}
			// Co-holding since an earlier request, then a pipeline.
			round([]string{"BEGIN", "SELECT 1" + tag}, pipelined("SELECT 2"))
			// Both in one pipeline after BEGIN: the read takes the lock, the
			// write behind it is not checked.
			round([]string{"BEGIN"}, pipelined("SELECT 1"+tag))
			// One request, a Flush between its read and its write (as
			// psycopg's pipeline sends them): the write is refused too.
			round([]string{"BEGIN"}, func() error {
				return rawRequest(writer, &pgproto3.Parse{Query: "SELECT 1" + tag}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{},
					&pgproto3.Parse{Query: bed.insert(unit, "flushed")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			})
			// Alone in its transaction, the pipelined write runs.
			exec(t, writer, "BEGIN")
			exec(t, writer, "SELECT 1"+tag)
			errs := pipelineResults(t, writer, "SELECT 2", bed.insert(unit, "alone"))
			if errs[1] != nil {
				t.Fatalf("pipelined write of a unit held alone: %v", errs[1])
			}
			exec(t, writer, "COMMIT")
			if got := bed.count(t, "unit = '"+unit+"'"); got != "1" {
				t.Fatalf("%s rows of %s, want 1", got, unit)
			}
		})
	}
}
