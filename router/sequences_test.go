package router

import (
	"path/filepath"
	"testing"
)

// TestSequencesFromCatalog: a statement that calls nextval or setval, in
// its text or in code the catalog shows (a serial column's default), says
// so (policy.Statement.Sequences), and MaySetSequences counts it and what
// txlane cannot see into; reads and writes the catalog proves free of them
// do not.
func TestSequencesFromCatalog(t *testing.T) {
	var f catalogFile
	readJSON(t, filepath.Join("testdata", "catalog.json"), &f)
	objs := f.Catalog.objects(t)
	objs.Hazards, objs.Casts = nil, keepExplicit(objs.Casts) // what may run in any statement
	c := NewClassifier(Config{Catalog: NewCatalog(objs)})
	noCat := NewClassifier(Config{})
	for _, tc := range []struct {
		sql      string
		cl       *Classifier
		seq, may bool
	}{
		{"SELECT nextval('s')", c, true, true},
		{"SELECT setval('s', 42)", c, true, true},
		{"SELECT pg_catalog.nextval('s'::regclass)", noCat, true, true},
		{"INSERT INTO serial_t (v) VALUES (1)", c, true, true},    // serial default
		{"INSERT INTO defaulted (id) VALUES (1)", c, false, true}, // default calls an unknown function
		{"SELECT currval('s'), lastval()", c, false, false},       // reads the state, sets none
		{"SELECT * FROM items", c, false, false},
		{"SELECT * FROM items", noCat, false, true},                 // a view may hide nextval
		{"INSERT INTO serial_t (v) VALUES (1)", noCat, false, true}, // no catalog: a default may
		{"SELECT logit()", c, false, true},                          // a volatile user function
		{"BEGIN", c, false, false},
		{"SET search_path = a", c, false, false},
		{"DISCARD SEQUENCES", c, false, false},
		{"ALTER TABLE items ADD COLUMN n serial", c, false, true}, // fills rows from nextval
		{"DECLARE k CURSOR FOR SELECT nextval('s')", c, true, true},
		{"FETCH k", c, false, false},   // its DECLARE counted
		{"EXECUTE sp", c, false, true}, // unknown text
		{"SELECT 1; SELECT nextval('s')", c, true, true},
	} {
		st := tc.cl.Classify(tc.sql)
		if st.Sequences != tc.seq || st.MaySetSequences() != tc.may {
			t.Errorf("%s: Sequences %v, MaySetSequences %v; want %v, %v", tc.sql, st.Sequences, st.MaySetSequences(), tc.seq, tc.may)
		}
	}
}
