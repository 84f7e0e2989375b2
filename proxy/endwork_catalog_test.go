package proxy_test

import (
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestEndWorkDeferrableTriggersInTheCatalog: a write that fires a user
// trigger queues deferred trigger events (end work a COMMIT runs, checked
// as a write of its units) only when the database holds a deferrable
// trigger other than a foreign key's own check: with none, the catalog says
// so and such a write queues nothing. A DEFERRABLE foreign key alone (its
// checks write nothing) keeps it so; one deferrable constraint trigger
// anywhere makes every such write count again.
func TestEndWorkDeferrableTriggersInTheCatalog(t *testing.T) {
	objects := `CREATE TABLE t_trig (v text);
CREATE FUNCTION upper_v() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.v := upper(NEW.v); RETURN NEW; END$$;
CREATE TRIGGER tr BEFORE INSERT ON t_trig FOR EACH ROW EXECUTE FUNCTION upper_v();
CREATE TABLE t_parent (id int PRIMARY KEY);
CREATE TABLE t_child (pid int REFERENCES t_parent DEFERRABLE INITIALLY DEFERRED)`
	write := "INSERT INTO t_trig VALUES ('x')"

	dsn := builtinDB(t, objects)
	st := classifyIn(t, dsn, write)
	if !st.CatalogChecked || !st.Flags.Has(policy.FlagReachesUnknown) {
		t.Fatalf("the write was not checked against the catalog as firing a user trigger: %+v", st)
	}
	if w := st.QueuesEndWork(); w&policy.EndDeferredTriggers != 0 {
		t.Fatalf("without deferrable triggers in the database the write queues end work %v", w)
	}

	dsn = builtinDB(t, objects, `CREATE TABLE t_def (v text);
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE CONSTRAINT TRIGGER dt AFTER INSERT ON t_def DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION noop()`)
	if w := classifyIn(t, dsn, write).QueuesEndWork(); w&policy.EndDeferredTriggers == 0 {
		t.Fatal("with a deferrable constraint trigger in the database a write that fires a user trigger queues no end work")
	}
}
