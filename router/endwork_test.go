package router

import (
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestEndWork: which statements queue work PostgreSQL runs at their
// transaction's end (deferred triggers, cursors WITH HOLD), and which run
// it, as classified against a catalog: t has no trigger, trg has one, wf is
// a volatile (writing) user function.
func TestEndWork(t *testing.T) {
	cat := NewCatalog(CatalogObjects{
		Functions: []CatalogFunc{
			{Schema: "public", Name: "wf", Volatility: Volatile},
			{Schema: "public", Name: "dtrg_fn", Volatility: Volatile},
		},
		Relations: []CatalogRelation{
			{Schema: "public", Name: "t", Kind: 'r'},
			{Schema: "public", Name: "trg", Kind: 'r', Triggers: []CatalogTrigger{
				{Name: "dtrg", Events: ParseEvents("iud"), Func: policy.Func{Schema: "public", Name: "dtrg_fn"}}}},
		},
		DeferrableTriggers: true, // dtrg is one
	})
	withCat := NewClassifier(Config{Catalog: cat})
	noCat := NewClassifier(Config{})
	const (
		none = policy.EndWork(0)
		trig = policy.EndDeferredTriggers
		hold = policy.EndHoldCursor
	)
	for _, c := range []struct {
		cl   *Classifier
		sql  string
		want policy.EndWork
	}{
		{withCat, "INSERT INTO t VALUES (1)", none}, // the catalog vouches: no trigger
		{withCat, "UPDATE t SET a = 1", none},
		{withCat, "SELECT a FROM t", none},                       // a read
		{withCat, "SELECT set_config('app.x', 'y', true)", none}, // a setting, no data
		{withCat, "INSERT INTO trg VALUES (1)", trig},            // a user trigger fires
		{withCat, "DELETE FROM trg", trig},
		{withCat, "SELECT wf(1)", trig},                               // writes tables it does not name
		{withCat, "INSERT INTO nosuch VALUES (1)", trig},              // unproven
		{noCat, "INSERT INTO t VALUES (1)", trig},                     // no catalog to vouch
		{withCat, "CREATE TABLE z (a int)", none},                     // DDL fires no user trigger
		{withCat, "DO $$BEGIN INSERT INTO t VALUES (1); END$$", trig}, // anything
		{withCat, "DECLARE h CURSOR WITH HOLD FOR SELECT wf(g) FROM generate_series(1,3) g", trig | hold},
		{withCat, "DECLARE h CURSOR WITH HOLD FOR SELECT a FROM t", none}, // holds rows, writes nothing
		{withCat, "DECLARE h CURSOR FOR SELECT a FROM t", none},
		{withCat, "COMMIT", none},
	} {
		st := c.cl.Classify(c.sql)
		if got := st.QueuesEndWork(); got != c.want {
			t.Errorf("%q: QueuesEndWork %b, want %b (flags %s, catalog checked %v)", c.sql, got, c.want, st.Flags, st.CatalogChecked)
		}
	}
	all := trig | hold
	for _, c := range []struct {
		sql  string
		want policy.EndWork
	}{
		{"COMMIT", all}, {"END", all}, {"COMMIT AND CHAIN", all}, {"commit /*unit='U'*/", all},
		{"PREPARE TRANSACTION 'x'", all},
		{"SET CONSTRAINTS ALL IMMEDIATE", trig}, {"SET CONSTRAINTS c1, c2 IMMEDIATE", trig},
		{"SET CONSTRAINTS ALL DEFERRED", none},
		{"RELEASE SAVEPOINT s", none}, {"ROLLBACK", none}, {"ROLLBACK TO SAVEPOINT s", none},
		{"COMMIT PREPARED 'x'", none}, {"ROLLBACK PREPARED 'x'", none}, {"SAVEPOINT s", none},
		{"SELECT 1", none},
	} {
		if got := withCat.Classify(c.sql).RunsEndWork(all); got != c.want {
			t.Errorf("%q: RunsEndWork %b, want %b", c.sql, got, c.want)
		}
		if got := withCat.Classify(c.sql).RunsEndWork(0); got != 0 {
			t.Errorf("%q with nothing pending: RunsEndWork %b", c.sql, got)
		}
	}
}
