package router

import (
	"slices"
	"strings"
	"testing"

	"github.com/txlane/txlane/policy"
)

// TestReadFunctionBody: what a PL/pgSQL or SQL string body calls, reads and
// uses, from every place SQL sits in it (statements, PERFORM, conditions,
// assignments, declarations' defaults, cursor queries, RETURN), CTE names
// left out and SQL value functions counted as functions.
func TestReadFunctionBody(t *testing.T) {
	fn := func(schema, name string) policy.Func { return policy.Func{Schema: schema, Name: name} }
	for _, tc := range []struct {
		name, lang, args, result, src string
		calls                         []policy.Func
		reads                         []policy.Table
		ops                           []policy.Func
		casts, attrs                  []string
	}{{
		name: "harmless", lang: "plpgsql", args: "x integer", result: "integer",
		src: "BEGIN RETURN x * 2; END",
		ops: []policy.Func{fn("", "*")},
	}, {
		name: "perform set_config", lang: "plpgsql", args: "", result: "integer",
		src:   "BEGIN PERFORM set_config('app.x', 'v', false); RETURN 1; END",
		calls: []policy.Func{fn("", "set_config")},
	}, {
		name: "select into, condition, assignment, default, cursor", lang: "plpgsql", args: "x integer", result: "SETOF integer",
		src: `DECLARE y int := app.seed(); c CURSOR FOR SELECT b FROM s2.t2; r record;
BEGIN
  SELECT a INTO y FROM t1 WHERE b = x;
  IF lower(current_user) = 'x' THEN y := pg_advisory_lock(y); END IF;
  FOR r IN WITH w AS (SELECT 1 AS k) SELECT k FROM w LOOP RETURN NEXT r.k; END LOOP;
  RETURN QUERY SELECT y::text::int;
END`,
		calls: []policy.Func{fn("app", "seed"), fn("", "lower"), fn("pg_catalog", "current_user"), fn("", "pg_advisory_lock")},
		reads: []policy.Table{{Schema: "s2", Name: "t2"}, {Name: "t1"}},
		ops:   []policy.Func{fn("", "=")},
		casts: []string{"text", "int4"},
		attrs: []string{"k"},
	}, {
		name: "trigger", lang: "plpgsql", args: "", result: "trigger",
		src:   "BEGIN NEW.updated_at := now(); RETURN NEW; END",
		calls: []policy.Func{fn("", "now")},
	}, {
		name: "procedure", lang: "plpgsql", args: "IN a integer", result: "",
		src:   "BEGIN RAISE NOTICE '%', nextval('s'); END",
		calls: []policy.Func{fn("", "nextval")},
	}, {
		name: "sql", lang: "sql", args: "integer", result: "bigint",
		src:   "SELECT count(*) FROM items WHERE id = $1 AND session_user = 'x'",
		calls: []policy.Func{fn("", "count"), fn("pg_catalog", "session_user")},
		reads: []policy.Table{{Name: "items"}},
		ops:   []policy.Func{fn("", "=")},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ReadFunctionBody(tc.lang, tc.args, tc.result, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			sameSet(t, "calls", b.Calls, tc.calls)
			sameSet(t, "reads", b.Reads, tc.reads)
			sameSet(t, "operators", b.Operators, tc.ops)
			sameSet(t, "casts", b.Casts, tc.casts)
			sameSet(t, "attrs", b.Attrs, tc.attrs)
		})
	}
}

func sameSet[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %v, want %v", what, got, want)
		return
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: %v, want %v", what, got, want)
			return
		}
	}
}

// TestReadFunctionBodyOpaque: what keeps a body opaque (fail safe): dynamic
// SQL in each PL/pgSQL form, statements that are not plain reads, a parse
// failure, a backslash, a body too large, another language.
func TestReadFunctionBodyOpaque(t *testing.T) {
	for _, tc := range []struct {
		name, lang, result, src, why string
	}{
		{"execute", "plpgsql", "integer", "BEGIN EXECUTE 'SELECT set_config(''a.b'', ''1'', false)'; RETURN 1; END", "PL/pgSQL statement dynexecute"},
		{"execute format", "plpgsql", "integer", "BEGIN EXECUTE format('SELECT %L', 1); RETURN 1; END", "dynexecute"},
		{"for in execute", "plpgsql", "integer", "DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; RETURN 1; END", "dynfors"},
		{"return query execute", "plpgsql", "SETOF integer", "BEGIN RETURN QUERY EXECUTE 'SELECT 1'; END", "dynamic SQL"},
		{"open for execute", "plpgsql", "refcursor", "DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT 1'; RETURN c; END", "dynamic SQL"},
		{"insert", "plpgsql", "integer", "BEGIN INSERT INTO t VALUES (1); RETURN 1; END", "not a SELECT"},
		{"set", "plpgsql", "integer", "BEGIN SET search_path = x; RETURN 1; END", "not a SELECT"},
		{"call", "plpgsql", "integer", "BEGIN CALL p(); RETURN 1; END", "statement call"},
		{"for update", "plpgsql", "integer", "DECLARE y int; BEGIN SELECT a INTO y FROM t FOR UPDATE; RETURN y; END", "not a plain read"},
		{"modifying cte", "sql", "integer", "WITH d AS (DELETE FROM t RETURNING a) SELECT a FROM d", "not a plain read"},
		{"sql insert", "sql", "void", "INSERT INTO t VALUES (1)", "not a SELECT"},
		{"select into table", "sql", "void", "SELECT 1 INTO newt", "not a plain read"},
		{"parse error", "plpgsql", "integer", "BEGIN RETURN x * ; END", "syntax error"},
		{"unknown variable", "plpgsql", "integer", "BEGIN nosuch := 1; RETURN 1; END", "not a known variable"},
		{"backslash", "sql", "text", `SELECT 'a\'`, "backslash"},
		{"too large", "sql", "integer", "SELECT 1" + strings.Repeat(" ", MaxBodyBytes), "larger than"},
		{"plperl", "plperl", "integer", "return 1;", "language plperl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadFunctionBody(tc.lang, "", tc.result, tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("error %v, want one saying %q", err, tc.why)
			}
		})
	}
}

// TestBodyCatalog: a body read as text counts as a BEGIN ATOMIC body does:
// an IMMUTABLE PL/pgSQL function calling set_config may change the
// session, one reading a table reads it (and its views' functions run),
// one doing arithmetic costs nothing; an opaque IMMUTABLE body now counts
// as an opaque STABLE one (may read anything, may change the session).
func TestBodyCatalog(t *testing.T) {
	body := func(name, src string) CatalogFunc {
		return bodyFunc(t, name, Immutable, "x integer", "integer", src)
	}
	c := NewCatalog(CatalogObjects{
		Functions: []CatalogFunc{
			{Schema: "pg_catalog", Name: "int4mul", Volatility: Immutable},
			{Schema: "pg_catalog", Name: "set_config", Volatility: Volatile},
			{Schema: "public", Name: "logit", Volatility: Volatile},
			body("double", "BEGIN RETURN x * 2; END"),
			body("setter", "BEGIN PERFORM set_config('app.x', 'v', false); RETURN x; END"),
			body("locker", "BEGIN PERFORM pg_advisory_lock(x); RETURN x; END"),
			body("counter", "DECLARE n int; BEGIN SELECT count(*) INTO n FROM v_logged; RETURN n; END"),
			{Schema: "public", Name: "opaque_imm", Volatility: Immutable, OpaqueBody: true},
		},
		Relations: []CatalogRelation{
			{Schema: "public", Name: "items", Kind: 'r'},
			{Schema: "public", Name: "v_logged", Kind: 'v', Uses: []CatalogUse{{Via: "definition", Func: policy.Func{Schema: "public", Name: "logit"}}}},
		},
		Operators: []CatalogOperator{{Schema: "pg_catalog", Name: "*", Funcs: []policy.Func{{Schema: "pg_catalog", Name: "int4mul"}}}},
	})
	cl := NewClassifier(Config{Catalog: c})
	for _, tc := range []struct {
		sql       string
		want, not policy.Flags
	}{
		{"SELECT double(id) FROM items", 0, policy.FlagMayChangeSession | policy.FlagReadsUnknown | policy.FlagWritingFunction | policy.FlagUnproven},
		{"SELECT setter(id) FROM items", policy.FlagMayChangeSession, 0},
		{"SELECT locker(id) FROM items", policy.FlagWritingFunction, 0},
		{"SELECT counter(id) FROM items", policy.FlagWritingFunction | policy.FlagMayChangeSession, 0},
		{"SELECT opaque_imm(id) FROM items", policy.FlagReadsUnknown, 0},
	} {
		st := cl.Classify(tc.sql)
		if st.Flags&tc.want != tc.want || st.Flags&tc.not != 0 {
			t.Errorf("%s: flags %v hidden %q, want %v and none of %v", tc.sql, st.Flags, st.Hidden, tc.want, tc.not)
		}
		if tc.want != 0 && !st.RunsUnknownCode() && !st.Flags.Has(policy.FlagMayChangeSession) && !st.Flags.Has(policy.FlagWritingFunction) {
			t.Errorf("%s: nothing asks for a pin check", tc.sql)
		}
	}
	if st := cl.Classify("SELECT opaque_imm(id) FROM items"); !st.RunsUnknownCode() {
		t.Errorf("an IMMUTABLE function with an opaque body does not count as unknown code: %v", st.Flags)
	}
}

// TestBodyPolicyIdentity: a row-level security policy calling a function
// whose body (read as text) uses current_user, directly or through an
// operator's function, may depend on the session's identity: a read of its
// table is backend-dependent. One whose body compares with a constant is not.
func TestBodyPolicyIdentity(t *testing.T) {
	body := func(name, src string) CatalogFunc {
		return bodyFunc(t, name, Stable, "x text", "boolean", src)
	}
	guarded := func(fn string) CatalogRelation {
		return CatalogRelation{Schema: "public", Name: "t_" + fn, Kind: 'r',
			Uses: []CatalogUse{{Via: "row-level security policy p", Func: policy.Func{Schema: "public", Name: fn}}}}
	}
	c := NewCatalog(CatalogObjects{
		Functions: []CatalogFunc{
			{Schema: "pg_catalog", Name: "texteq", Volatility: Immutable},
			{Schema: "pg_catalog", Name: "current_user", Volatility: Stable},
			body("is_me", "BEGIN RETURN x = current_user; END"),
			body("is_me_op", "BEGIN RETURN x === 'a'; END"),
			body("is_a", "BEGIN RETURN x = 'a'; END"),
			body("user_eq", "BEGIN RETURN current_user = x; END"),
		},
		Relations: []CatalogRelation{guarded("is_me"), guarded("is_me_op"), guarded("is_a")},
		Operators: []CatalogOperator{
			{Schema: "pg_catalog", Name: "=", Funcs: []policy.Func{{Schema: "pg_catalog", Name: "texteq"}}},
			{Schema: "app", Name: "===", Funcs: []policy.Func{{Schema: "public", Name: "user_eq"}}},
		},
	})
	cl := NewClassifier(Config{Catalog: c})
	for table, want := range map[string]bool{"t_is_me": true, "t_is_me_op": true, "t_is_a": false} {
		st := cl.Classify("SELECT * FROM " + table)
		if got := st.Flags.Has(policy.FlagBackendDependent); got != want {
			t.Errorf("%s: backend_dependent %v, want %v (hidden %q)", table, got, want, st.Hidden)
		}
	}
}

// bodyFunc is public.name in PL/pgSQL with body src, read as the catalog
// reads it.
func bodyFunc(t *testing.T, name string, vol Volatility, args, result, src string) CatalogFunc {
	t.Helper()
	b, err := ReadFunctionBody("plpgsql", args, result, src)
	if err != nil {
		t.Fatal(err)
	}
	return CatalogFunc{Schema: "public", Name: name, Volatility: vol,
		Calls: b.Calls, Reads: b.Reads, Operators: b.Operators, Casts: b.Casts, Attrs: b.Attrs}
}
