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
			holder := bed.connect(t, 1, "holder")
			exec(t, holder, "BEGIN")
			exec(t, holder, "SELECT 1 /*unit='"+unit+"'*/")
			writer := bed.connect(t, wid, "writer")
			exec(t, writer, "BEGIN")
			exec(t, writer, "SELECT 1 /*unit='"+unit+"'*/")
			errs := pipelineResults(t, writer, "SELECT 2", bed.insert(unit, "pipelined"))
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
			wantHeldElsewhereCode(t, errs[1])
			execErr(writer, "COMMIT")
			exec(t, holder, "ROLLBACK")
			if got := bed.count(t, "unit = '"+unit+"'"); got != "0" {
				t.Fatalf("%s rows of %s after the holder rolled back", got, unit)
			}
			// Both in one pipeline after BEGIN: the read takes the lock, the
			// write behind it is not checked.
			exec(t, holder, "BEGIN")
			exec(t, holder, "SELECT 1 /*unit='"+unit+"'*/")
			exec(t, writer, "BEGIN")
			errs = pipelineResults(t, writer, "SELECT 1 /*unit='"+unit+"'*/", bed.insert(unit, "pipelined"))
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
			wantHeldElsewhereCode(t, errs[1])
			execErr(writer, "COMMIT")
			exec(t, holder, "ROLLBACK")
			if got := bed.count(t, "unit = '"+unit+"'"); got != "0" {
				t.Fatalf("%s rows of %s after the holder rolled back", got, unit)
			}
			// One request, a Flush between its read and its write (as
			// psycopg's pipeline sends them): the write is refused too.
			exec(t, holder, "BEGIN")
			exec(t, holder, "SELECT 1 /*unit='"+unit+"'*/")
			exec(t, writer, "BEGIN")
			wantHeldElsewhereCode(t, rawRequest(writer, &pgproto3.Parse{Query: "SELECT 1 /*unit='" + unit + "'*/"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{},
				&pgproto3.Parse{Query: bed.insert(unit, "flushed")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}))
			execErr(writer, "COMMIT")
			exec(t, holder, "ROLLBACK")
			if got := bed.count(t, "unit = '"+unit+"'"); got != "0" {
				t.Fatalf("%s rows of %s after the holder rolled back", got, unit)
			}
			// Alone in its transaction, the pipelined write runs.
			exec(t, writer, "BEGIN")
			exec(t, writer, "SELECT 1 /*unit='"+unit+"'*/")
			errs = pipelineResults(t, writer, "SELECT 2", bed.insert(unit, "alone"))
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
