package proxy_test

// End-to-end tests of texts the server reads otherwise than a naive reader
// would (comment terminators, standard_conforming_strings), and of reads of
// the backend session's own state: each runs against PostgreSQL, through
// txlane with the vector lane, catalog discovery and escape: reject.

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// TestEscapeCheckSeesWriteAfterCarriageReturn: PostgreSQL ends a -- comment
// at \r. After a read ending in a -- comment was classified (and cached),
// the same text with "--\r; INSERT ..." is a read and a write, and the write
// of u1 from another connection is refused.
func TestEscapeCheckSeesWriteAfterCarriageReturn(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	w := b.connect(t)
	exec(t, w, "/*unit='u1'*/ SELECT 1 -- warm the cache")
	err := escapeErr(w, "/*unit='u1'*/ SELECT 1 --\r; "+b.ins("u1", "other"))
	b.wantRejected(t, `"SELECT 1 --\r; INSERT ..." after "SELECT 1 -- ..."`, err)
	// The unit in a /* */ comment after "--\r" is read too.
	err = escapeErr(w, b.ins("u1", "other")+" --\r/*unit='u1'*/")
	b.wantRejected(t, `"INSERT ... --\r/*unit='u1'*/"`, err)
}

// TestEscapeCheckSeesWriteHiddenByNonStandardStrings: with
// standard_conforming_strings off the server reads '\' as an open string, so
// a text that is one SELECT of two constants to a reader with the setting on
// runs an INSERT. Set in the session (before the request, and in the same
// request, which the server reads whole with the old setting), at login, and
// pipelined in an extended batch.
func TestEscapeCheckSeesWriteHiddenByNonStandardStrings(t *testing.T) {
	b := startEscapeBed(t, nil)
	h := b.hold(t)
	defer exec(t, h, "ROLLBACK")
	// Read with the setting on, the text is one SELECT of two constants
	// (the INSERT's own constants are dollar-quoted, so they do not end the
	// second one).
	hidden := `SELECT '\' AS a, ' ; INSERT INTO ` + b.uow + ` (unit, who) VALUES ($$u1$$, $$other$$); --' AS b /*unit='u1'*/`
	// Sanity: directly, with the setting off, the text inserts.
	d := directConn(t)
	inserts := func(sql string) bool {
		exec(t, d, "BEGIN; SET LOCAL standard_conforming_strings = off")
		defer exec(t, d, "ROLLBACK")
		before := scalar(t, d, "SELECT count(*) FROM "+b.uow)
		exec(t, d, sql)
		return scalar(t, d, "SELECT count(*) FROM "+b.uow) != before
	}
	if !inserts(hidden) {
		t.Fatalf("the hidden INSERT did not run directly: %s", hidden)
	}

	w := b.connect(t)
	exec(t, w, "SET standard_conforming_strings = off")
	b.wantRejected(t, "a write hidden in a literal, standard_conforming_strings off", escapeErr(w, hidden))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(b.DSN(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["options"] = "-c standard_conforming_strings=off"
	w2, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close(context.Background())
	b.wantRejected(t, "the same, standard_conforming_strings off at login", escapeErr(w2, hidden))

	// One statement (a Parse takes no more): the write is a function call
	// that only the reading with the setting off sees.
	fn := uniqueName("lexw")
	pgtest.Exec(t, fmt.Sprintf(`CREATE FUNCTION %s(u text) RETURNS int VOLATILE LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO %s (unit, who) VALUES (u, 'other'); RETURN 1; END $f$`, fn, b.uow))
	t.Cleanup(func() { pgtest.Exec(t, "DROP FUNCTION IF EXISTS "+fn+"(text)") })
	one := `SELECT '\' AS a, ' AS b, ` + fn + `($$u1$$) AS c --' /*unit='u1'*/`
	if !inserts(one) {
		t.Fatalf("the hidden call did not run directly: %s", one)
	}
	w3 := newPrepConn(t, b.connect(t))
	r := w3.run(pParse("", "SET standard_conforming_strings = off"), pBind(""), pExecute(),
		pParse("", one), pBind(""), pExecute(), pSync())
	var perr error
	if len(r.errs) > 0 {
		code, msg, _ := strings.Cut(r.errs[0], ": ")
		perr = &pgconn.PgError{Code: code, Message: msg}
	}
	b.wantRejected(t, "a writing function hidden in a literal, after a SET in the same extended batch", perr)
}

// TestReadYourWritesAfterCarriageReturn: a write to the vector table behind
// "--\r" inside a transaction counts, so the transaction's next read of that
// table stays on the primary and sees the row.
func TestReadYourWritesAfterCarriageReturn(t *testing.T) {
	b := startEscapeBed(t, nil)
	c := b.connect(t)
	exec(t, c, "SELECT 1 -- warm")
	exec(t, c, "BEGIN")
	exec(t, c, "SELECT 1 --\r; INSERT INTO "+b.vec+" VALUES (50, '[1,1,1]', 'mine')")
	got := scalar(t, c, "SELECT count(*) FROM "+b.vec+" WHERE id = 50")
	exec(t, c, "ROLLBACK")
	if got != "1" {
		t.Errorf("the transaction does not see its own row (count %s): its read went to the vector lane", got)
	}
}

// TestLaneReadOfSessionStateStaysOnPrimary: a read of the vector table
// that also reads the backend session's own state (prepared statements,
// settings, cursors, current_setting of a setting the lane does not mirror)
// runs on the client's own backend, which shows the client's state, not a
// lane connection's (another client's statement texts, literals included).
func TestLaneReadOfSessionStateStaysOnPrimary(t *testing.T) {
	b := startEscapeBed(t, nil)
	a := newPrepConn(t, b.connect(t))
	secret := "alice@example.com-ssn-123-45-6789"
	r := a.run(pParse("", fmt.Sprintf("SELECT pg_backend_pid(), id FROM %s WHERE note <> '%s'", b.vec, secret)), pBind(""), pExecute(), pSync())
	if len(r.errs) > 0 {
		t.Fatal(r)
	}
	if pids := r.pids(); len(pids) == 0 || pids[0] == backendPID(t, a.conn) {
		t.Fatalf("client A's read did not run on the vector lane (%v): the test needs a statement there", pids)
	}
	c := b.connect(t)
	primary := backendPID(t, c)
	exec(t, c, "SET work_mem = '7MB'")
	for _, q := range []string{
		"SELECT pg_backend_pid(), name, statement FROM pg_catalog.pg_prepared_statements WHERE EXISTS (SELECT 1 FROM %s)",
		"SELECT pg_backend_pid(), name, setting FROM pg_settings, %s WHERE name = 'work_mem' AND id = 1",
		"SELECT pg_backend_pid(), current_setting('work_mem') FROM %s WHERE id = 1",
		"SELECT pg_backend_pid(), count(*) FROM pg_cursors, %s",
	} {
		sql := fmt.Sprintf(q, b.vec)
		res := exec(t, c, sql)
		for _, row := range res[len(res)-1].Rows {
			if string(row[0]) != primary {
				t.Errorf("%q ran on backend %s, not the client's %s", sql, row[0], primary)
			}
			for _, v := range row[1:] {
				if strings.Contains(string(v), secret) {
					t.Errorf("%q showed another client's statement: %q", sql, v)
				}
			}
		}
	}
	// A setting the lane mirrors, and a custom one the client set, still go
	// to the lane.
	exec(t, c, "SET hnsw.ef_search = 77")
	res := exec(t, c, fmt.Sprintf("SELECT pg_backend_pid(), current_setting('hnsw.ef_search'), current_setting('search_path') FROM %s WHERE id = 1", b.vec))
	row := res[len(res)-1].Rows[0]
	if string(row[0]) == primary || string(row[1]) != "77" {
		t.Errorf("current_setting of mirrored settings: backend %s (client's %s), ef_search %s; want the lane and 77", row[0], primary, row[1])
	}
}

// TestBackendDependentCatalogViews checks the classifier against the
// server's own catalog: every view of pg_catalog and information_schema
// whose definition calls a function the classifier takes for
// backend-dependent, or reads such a view, is itself backend-dependent when
// read (so that a new server version's views are noticed).
func TestBackendDependentCatalogViews(t *testing.T) {
	cl := router.NewClassifier(router.Config{})
	c := directConn(t)
	res := exec(t, c, `SELECT n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('pg_catalog', 'information_schema') AND c.relkind = 'v'`)
	calls := regexp.MustCompile(`([a-z_][a-z0-9_]*)\(`)
	reads := regexp.MustCompile(`(?:FROM|JOIN)\s+(?:(information_schema|pg_catalog)\.)?([a-z_][a-z0-9_]*)`)
	type view struct {
		name  string // schema.name
		reads []string
		bad   string // why it is backend-dependent
	}
	backendFunc := map[string]bool{}
	views := map[string]*view{}
	for _, row := range res[0].Rows {
		schema, name, def := string(row[0]), string(row[1]), string(row[2])
		v := &view{name: schema + "." + name}
		for _, m := range calls.FindAllStringSubmatch(def, -1) {
			f := m[1]
			if _, ok := backendFunc[f]; !ok {
				st := cl.Classify("SELECT pg_catalog." + f + "()")
				backendFunc[f] = st.Flags.Has(policy.FlagBackendDependent)
			}
			if backendFunc[f] && v.bad == "" {
				v.bad = "calls " + f + "()"
			}
		}
		for _, m := range reads.FindAllStringSubmatch(def, -1) {
			s := m[1]
			if s == "" {
				s = "pg_catalog"
				if schema == "information_schema" && !strings.HasPrefix(m[2], "pg_") {
					s = "information_schema"
				}
			}
			v.reads = append(v.reads, s+"."+m[2])
		}
		views[v.name] = v
	}
	for changed := true; changed; {
		changed = false
		for _, v := range views {
			if v.bad != "" {
				continue
			}
			for _, r := range v.reads {
				if u := views[r]; u != nil && u.bad != "" {
					v.bad, changed = "reads "+r, true
					break
				}
			}
		}
	}
	var found []string
	for _, v := range views {
		if v.bad == "" {
			continue
		}
		found = append(found, v.name)
		if st := cl.Classify("SELECT * FROM " + v.name); !st.Flags.Has(policy.FlagBackendDependent) {
			t.Errorf("%s %s, but reading it is not backend-dependent (%v)", v.name, v.bad, st.Flags.Names())
		}
	}
	sort.Strings(found)
	if len(found) < 10 {
		t.Errorf("only %d backend-dependent views found (%v): the test looks at too little", len(found), found)
	}
	t.Logf("backend-dependent views: %v", found)
}
