package config

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/txlane/txlane/policy"
)

// keyNames lists the table's key names in order.
func keyNames() []string {
	var names []string
	for _, k := range Keys() {
		names = append(names, k.Name)
	}
	return names
}

// TestExampleListsTheKeyTable: examples/txlane.yaml, the reference people
// edit from, shows exactly the table's keys, in its order (that its values
// are the defaults is TestExampleIsDefaults).
func TestExampleListsTheKeyTable(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	restart := map[string]bool{} // keys whose comment says they need a restart
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := join(prefix, k.Value)
			if v := n.Content[i+1]; v.Kind == yaml.MappingNode {
				walk(p, v)
			} else {
				got = append(got, p)
				restart[p] = strings.Contains(k.HeadComment, "Needs a restart.")
			}
		}
	}
	walk("", doc.Content[0])
	if want := keyNames(); !reflect.DeepEqual(got, want) {
		t.Errorf("examples/txlane.yaml keys differ from the key table:\n got %q\nwant %q", got, want)
	}
	for _, k := range Keys() {
		if restart[k.Name] != (k.Reload == Restart) {
			t.Errorf("examples/txlane.yaml: the comment of %s says \"Needs a restart.\" = %v, but the key reloads %s",
				k.Name, restart[k.Name], k.Reload)
		}
	}
}

// TestREADMEListsTheKeyTable: README.md's configuration key table has one
// row per key, in table order, with the key's default and reload behaviour.
func TestREADMEListsTheKeyTable(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n### Configuration keys\n")
	if !ok {
		t.Fatal("README.md has no \"### Configuration keys\" section")
	}
	section, _, _ = strings.Cut(section, "\n#")
	var got [][3]string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) < 3 {
			t.Errorf("README row with fewer than 3 cells: %s", line)
			continue
		}
		unquote := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
		got = append(got, [3]string{unquote(cells[0]), unquote(cells[1]), strings.TrimSpace(cells[2])})
	}
	var want [][3]string
	for _, k := range Keys() {
		def := k.Default()
		if def == "" {
			def = `""`
		}
		want = append(want, [3]string{k.Name, def, k.Reload.String()})
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w [3]string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("README.md's key table (%d rows, the table has %d keys), first difference at row %d: got %q, want %q (key, default, reload)",
				len(got), len(want), i+1, g, w)
			break
		}
	}
}

// TestKeysCoverConfig: every field of Config is the value of exactly one key
// (no field without a key, no two keys writing one field), so a table entry
// that points at the wrong field fails here.
func TestKeysCoverConfig(t *testing.T) {
	c := &Config{}
	fields := map[any]string{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			f, name := v.Field(i), prefix+v.Type().Field(i).Name
			if f.Kind() == reflect.Struct {
				walk(name+".", f)
				continue
			}
			fields[f.Addr().Interface()] = name
		}
	}
	walk("", reflect.ValueOf(c).Elem())
	used := map[string]string{}
	for _, k := range Keys() {
		p := k.v.(interface{ addr(*Config) any }).addr(c)
		name, ok := fields[p]
		if !ok {
			t.Errorf("key %s: its value is not a field of Config", k.Name)
			continue
		}
		if other, dup := used[name]; dup {
			t.Errorf("keys %s and %s both set Config.%s", other, k.Name, name)
		}
		used[name] = k.Name
	}
	for _, name := range fields {
		if _, ok := used[name]; !ok {
			t.Errorf("Config.%s has no key in the table", name)
		}
	}
}

// TestEveryKeyDecodes sets every key to a value other than its default and
// reads it back through the table (Key.Value), with its source.
func TestEveryKeyDecodes(t *testing.T) {
	values := map[string][2]string{ // key: YAML value, Value text
		"listen":                        {"127.0.0.1:7000", "127.0.0.1:7000"},
		"primary":                       {"postgres://app:pw@db/app", "postgres://app:xxxxx@db/app"},
		"read_pool.dsn":                 {"host=replica password=pw", "host=replica password=xxxxx"},
		"read_pool.max_conns":           {"9", "9"},
		"read_pool.min_idle":            {"2", "2"},
		"read_pool.acquire_timeout":     {"3s", "3s"},
		"read_pool.max_lifetime":        {"90m", "1h30m"},
		"read_pool.health_check_period": {"45s", "45s"},
		"read_pool.on_unavailable":      {"error", "error"},
		"policy.vector_tables":          {"[a, s.b]", "[a, s.b]"},
		"policy.discover_vector_tables": {"false", "false"},
		"policy.discover_interval":      {"2m", "2m"},
		"policy.after_write":            {"any", "any"},
		"policy.escape":                 {"log", "log"},
		"policy.escape_overrides":       {"[{table: 'audit.*', escape: allow}]", "[audit.*: allow]"},
		"policy.unit_comment_keys":      {"[request_id]", "[request_id]"},
		"policy.reroute_wait_timeout":   {"1500ms", "1.5s"},
		"policy.writing_functions":      {"[app.bump]", "[app.bump]"},
		"policy.read_only_functions":    {"[random]", "[random]"},
		"admin.listen":                  {"127.0.0.1:9999", "127.0.0.1:9999"},
		"admin.users":                   {"[ops]", "[ops]"},
		"admin.pprof":                   {"true", "true"},
		"log.level":                     {"debug", "debug"},
		"log.format":                    {"json", "json"},
		"tls.cert":                      {"c.pem", "c.pem"},
		"tls.key":                       {"k.pem", "k.pem"},
		"auth_type":                     {"scram-sha-256", "scram-sha-256"},
		"auth_file":                     {"users.txt", "users.txt"},
		"auth_user":                     {"txlane_auth", "txlane_auth"},
		"auth_query":                    {"'SELECT u, p FROM f($1)'", "SELECT u, p FROM f($1)"},
		"auth_dbname":                   {"postgres", "postgres"},
		"unix_socket_dir":               {"/run/txlane", "/run/txlane"},
		"max_client_conn":               {"7", "7"},
		"max_message_size":              {"1MB", "1MiB"},
		"client_login_timeout":          {"61s", "1m1s"},
		"query_wait_timeout":            {"3m", "3m"},
		"idle_in_transaction_timeout":   {"10s", "10s"},
		"shutdown_timeout":              {"1h", "1h"},
		"pool_mode":                     {"transaction", "transaction"},
		"min_pool_size":                 {"2", "2"},
		"max_db_connections":            {"7", "7"},
		"max_user_connections":          {"6", "6"},
		"ignore_startup_parameters":     {"[extra_float_digits, search_path]", "[extra_float_digits, search_path]"},
		"server_reset_query":            {"RESET ALL", "RESET ALL"},
		"pool_size":                     {"5", "5"},
		"server_idle_timeout":           {"90s", "1m30s"},
		"server_lifetime":               {"2h", "2h"},
		"pool_overrides":                {"[{database: a, pool_mode: session}, {user: b, pool_size: 3}]", "[{database: a, pool_mode: session}, {user: b, pool_size: 3}]"},
		"listen_reuseport":              {"true", "true"},
		"policy.shared_units":           {"true", "true"},
		"instance_id":                   {"2", "2"},
		"peers":                         {"[{id: 1, addr: '10.0.0.1:6432'}, {id: 3, addr: 'txlane-3:6432'}, {id: 4, addr: /run/t4/.s.PGSQL.6432}]", "[{id: 1, addr: 10.0.0.1:6432}, {id: 3, addr: txlane-3:6432}, {id: 4, addr: /run/t4/.s.PGSQL.6432}]"},
	}
	var b strings.Builder
	section := ""
	for _, k := range Keys() {
		v, ok := values[k.Name]
		if !ok {
			t.Fatalf("no test value for key %s", k.Name)
		}
		if v[1] == k.Default() {
			t.Fatalf("the test value of %s is its default", k.Name)
		}
		head, leaf, nested := strings.Cut(k.Name, ".")
		if !nested {
			section = ""
			fmt.Fprintf(&b, "%s: %s\n", k.Name, v[0])
			continue
		}
		if head != section {
			section = head
			fmt.Fprintf(&b, "%s:\n", head)
		}
		fmt.Fprintf(&b, "  %s: %s\n", leaf, v[0])
	}
	c, src, err := parseSources("t.yaml", []byte(b.String()), testEnv)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	for _, row := range c.Rows(src) {
		if want := values[row.Key][1]; row.Value != want || row.Source != SourceFile {
			t.Errorf("%s = %q (%s), want %q (file)", row.Key, row.Value, row.Source, want)
		}
	}
}

// TestRows: SHOW POLICY's rows give every key, passwords masked, with its
// source: default when the file does not set it, env when an environment
// variable supplied it, file otherwise.
func TestRows(t *testing.T) {
	src := `primary: postgres://app:hunter2@db:5432/app?password=hunter3
read_pool:
  dsn: "host=replica user=r password='hunter 4'"
  max_conns: ${CONNS}
  acquire_timeout: ${UNSET:-3s}
policy:
  vector_tables: [a, "${EMPTY:-b}", "${DB_URL}"]
  escape_overrides: [{table: "audit.*", escape: allow}]
log: {}
`
	c, sources, err := parseSources("t.yaml", []byte(src), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	rows := c.Rows(sources)
	if len(rows) != len(Keys()) {
		t.Fatalf("%d rows for %d keys", len(rows), len(Keys()))
	}
	got := map[string]Row{}
	for i, r := range rows {
		if r.Key != Keys()[i].Name {
			t.Errorf("row %d is %s, want %s (table order)", i, r.Key, Keys()[i].Name)
		}
		if strings.Contains(r.Value, "hunter") {
			t.Errorf("row %s shows a password: %q", r.Key, r.Value)
		}
		got[r.Key] = r
	}
	for _, want := range []Row{
		{"primary", "postgres://app:xxxxx@db:5432/app?password=xxxxx", SourceFile},
		{"read_pool.dsn", "host=replica user=r password=xxxxx", SourceFile},
		{"read_pool.max_conns", "16", SourceEnv},
		{"read_pool.acquire_timeout", "3s", SourceFile}, // the default of ${UNSET:-3s} is written in the file
		{"policy.vector_tables", "[a, b, postgres://app@db.internal:5432/app?sslmode=require]", SourceEnv},
		{"policy.escape_overrides", "[audit.*: allow]", SourceFile},
		{"read_pool.max_lifetime", "1h", SourceDefault},
		{"listen", "127.0.0.1:6432", SourceDefault},
		{"log.level", "info", SourceDefault}, // an empty section sets nothing
		{"max_message_size", "64MiB", SourceDefault},
		{"tls.cert", "", SourceDefault},
	} {
		if got[want.Key] != want {
			t.Errorf("row %+v, want %+v", got[want.Key], want)
		}
	}
}

// TestApply: a reload takes the new values of Live keys and keeps the
// running values (and sources) of Restart keys, naming both.
func TestApply(t *testing.T) {
	running, runningSrc, err := parseSources("t.yaml", []byte("listen: 127.0.0.1:7000\nprimary: postgres://h/db\nlog: {level: info}\n"), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	next, nextSrc, err := parseSources("t.yaml", []byte(`listen: ${LISTEN:-127.0.0.1:7001}
primary: postgres://h/db
read_pool: {max_conns: 3, dsn: "postgres://other/db"}
log: {level: debug, format: json}
policy: {escape: allow}
`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	r := Apply(running, runningSrc, next, nextSrc)
	if want := []string{"listen", "read_pool.dsn", "log.format"}; !reflect.DeepEqual(r.Restart, want) {
		t.Errorf("Restart = %q, want %q", r.Restart, want)
	}
	if want := []string{"read_pool.max_conns", "policy.escape", "log.level"}; !reflect.DeepEqual(r.Live, want) {
		t.Errorf("Live = %q, want %q", r.Live, want)
	}
	c := r.Config
	if c.Listen != "127.0.0.1:7000" || c.ReadPool.DSN != "" || c.Log.Format != LogConsole {
		t.Errorf("restart keys changed: listen %s, dsn %q, format %s", c.Listen, c.ReadPool.DSN, c.Log.Format)
	}
	if c.ReadPool.MaxConns != 3 || c.Log.Level != LogDebug || c.Policy.Escape != EscapeAllow {
		t.Errorf("live keys not applied: %+v", c)
	}
	if r.Sources.Of("listen") != SourceFile || r.Sources.Of("read_pool.dsn") != SourceDefault ||
		r.Sources.Of("read_pool.max_conns") != SourceFile {
		t.Errorf("sources %v", r.Sources)
	}
	if next.Listen != "127.0.0.1:7001" || running.Log.Level != LogInfo {
		t.Error("Apply modified its arguments")
	}
	for _, k := range Keys() {
		if (k.Reload == Restart) != slices.Contains([]string{"listen", "primary", "read_pool.dsn", "admin.listen", "log.format", "tls.cert", "tls.key", "unix_socket_dir",
			"pool_mode", "pool_size", "max_db_connections", "max_user_connections", "ignore_startup_parameters", "min_pool_size", "server_reset_query", "server_idle_timeout", "server_lifetime", "pool_overrides",
			"auth_type", "auth_user", "auth_query", "auth_dbname", "listen_reuseport", "policy.shared_units", "instance_id", "peers"}, k.Name) {
			t.Errorf("key %s reloads %s", k.Name, k.Reload)
		}
	}
	if again := Apply(c, r.Sources, next, nextSrc); len(again.Live) != 0 || !reflect.DeepEqual(again.Restart, r.Restart) {
		t.Errorf("a second reload of the same file: live %q restart %q", again.Live, again.Restart)
	}
}

// TestNamesFollowPolicy: `txlane check` accepts exactly the names the
// running policy accepts, and reports the others at their position.
func TestNamesFollowPolicy(t *testing.T) {
	for _, tc := range []struct {
		name string
		want policy.Table // zero: invalid
	}{
		{"items", policy.Table{Name: "items"}},
		{"my-table", policy.Table{Name: "my-table"}},
		{"1abc", policy.Table{Name: "1abc"}},
		{"Public.Items", policy.Table{Schema: "public", Name: "items"}},
		{`"My Schema"."Vec"`, policy.Table{Schema: "My Schema", Name: "Vec"}},
		{`app."my.table"`, policy.Table{Schema: "app", Name: "my.table"}},
		{`"a""b"`, policy.Table{Name: `a"b`}},
		{"a.b.c", policy.Table{}},
		{"a b", policy.Table{}},
		{"x.", policy.Table{}},
		{`"unterminated`, policy.Table{}},
		{`a"b`, policy.Table{}},
		{`""`, policy.Table{}},
	} {
		quoted := "'" + strings.ReplaceAll(tc.name, "'", "''") + "'"
		src := "primary: postgres://h/db\npolicy:\n  vector_tables:\n    - " + quoted + "\n  writing_functions: [" + quoted + "]\n"
		c, err := parse("t.yaml", []byte(src), testEnv)
		_, policyErr := policy.NewRules(policy.RulesConfig{VectorTables: []string{tc.name}, WritingFunctions: []string{tc.name}})
		if (err == nil) != (policyErr == nil) {
			t.Errorf("%s: check says %v, the policy says %v", tc.name, err, policyErr)
		}
		if tc.want == (policy.Table{}) {
			want := fmt.Sprintf("t.yaml:4:7: policy.vector_tables[0]: invalid table name %q (want table or schema.table; double-quote unusual names)\n"+
				"t.yaml:5:23: policy.writing_functions[0]: invalid function name %q (want function or schema.function, without parentheses)", tc.name, tc.name)
			if err == nil || err.Error() != want {
				t.Errorf("%s: error\n%v\nwant\n%s", tc.name, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		rules, err := c.Rules()
		if err != nil {
			t.Fatal(err)
		}
		if got := rules.VectorTables(); !reflect.DeepEqual(got, []policy.Table{tc.want}) {
			t.Errorf("%s: vector tables %v, want %v", tc.name, got, tc.want)
		}
		if got := rules.WritingFunctions(); !reflect.DeepEqual(got, []policy.Func{policy.Func(tc.want)}) {
			t.Errorf("%s: writing functions %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestFunctionListConflict: a function both writing and read-only (as the
// policy folds names) is refused by check, as the policy refuses it.
func TestFunctionListConflict(t *testing.T) {
	src := "primary: postgres://h/db\npolicy:\n  writing_functions: [App.Bump, other]\n  read_only_functions: [random, app.bump]\n"
	_, err := parse("t.yaml", []byte(src), testEnv)
	want := `t.yaml:4:33: policy.read_only_functions[1]: function app.bump is also listed in policy.writing_functions`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	if _, err := policy.NewRules(policy.RulesConfig{WritingFunctions: []string{"App.Bump"}, ReadOnlyFunctions: []string{"app.bump"}}); err == nil {
		t.Error("the policy accepts what check refuses")
	}
}

// TestBadItemKeepsIndexes: a list item that cannot be decoded does not shift
// the items after it, so their problems are reported, at their own places.
func TestBadItemKeepsIndexes(t *testing.T) {
	src := "primary: postgres://h/db\npolicy:\n  vector_tables: [\"${NOPE}\", \"a b\"]\n"
	_, err := parse("t.yaml", []byte(src), testEnv)
	want := "t.yaml:3:19: environment variable NOPE is not set (write ${NOPE:-default} to give a default)\n" +
		`t.yaml:3:30: policy.vector_tables[1]: invalid table name "a b" (want table or schema.table; double-quote unusual names)`
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

// TestEnumsArePolicyValues: every value the file accepts for a policy enum
// is one the policy accepts, meaning the same.
func TestEnumsArePolicyValues(t *testing.T) {
	for _, v := range escapeValues {
		a, err := policy.ParseEscapeAction(string(v))
		if err != nil || a.String() != string(v) {
			t.Errorf("escape %s: %v, %v", v, a, err)
		}
	}
	for _, v := range afterWriteValues {
		c := Default()
		c.Policy.AfterWrite = v
		if r, err := c.Rules(); err != nil || r.AfterWrite().String() != string(v) {
			t.Errorf("after_write %s: %v", v, err)
		}
	}
	for _, v := range onUnavailableValues {
		c := Default()
		c.ReadPool.OnUnavailable = v
		if r, err := c.Rules(); err != nil || r.OnUnavailable().String() != string(v) {
			t.Errorf("on_unavailable %s: %v", v, err)
		}
	}
}

// fullPolicy sets every key that reaches the routing policy to a value
// other than its default.
const fullPolicy = `primary: postgres://h/db
read_pool: {on_unavailable: error}
policy:
  vector_tables: [docs.chunks, "My-Vec"]
  after_write: any
  escape: reroute
  escape_overrides: [{table: "audit.*", escape: allow}]
  unit_comment_keys: [request_id]
  writing_functions: [app.bump]
  read_only_functions: [app.pure]
`

// TestRulesConfigMapsEveryPolicyKey: Config.RulesConfig fills every field
// of policy.RulesConfig but Discovered, and every key that can change the
// policy does change it; a new field or key left out of the mapping fails.
func TestRulesConfigMapsEveryPolicyKey(t *testing.T) {
	c, err := parse("t.yaml", []byte(fullPolicy), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	rc := reflect.ValueOf(c.RulesConfig())
	for i := 0; i < rc.NumField(); i++ {
		name := rc.Type().Field(i).Name
		if name != "Discovered" && rc.Field(i).IsZero() {
			t.Errorf("RulesConfig.%s is not set from the configuration", name)
		}
	}
	want := policy.RulesConfig{
		VectorTables: []string{"docs.chunks", "My-Vec"}, AfterWrite: "any", OnUnavailable: "error",
		WritingFunctions: []string{"app.bump"}, ReadOnlyFunctions: []string{"app.pure"}, Escape: "reroute",
		EscapeOverrides: []policy.EscapeOverride{{Table: "audit.*", Escape: "allow"}}, UnitCommentKeys: []string{"request_id"},
	}
	if !reflect.DeepEqual(c.RulesConfig(), want) {
		t.Errorf("RulesConfig = %+v\nwant %+v", c.RulesConfig(), want)
	}

	// Keys of the policy section that are not routing rules: the proxy
	// takes them as options of its own.
	notRules := []string{"policy.discover_vector_tables", "policy.discover_interval", "policy.reroute_wait_timeout", "policy.shared_units"}
	def := Default().RulesConfig()
	full := c
	for _, k := range Keys() {
		if !strings.HasPrefix(k.Name, "policy.") && k.Name != "read_pool.on_unavailable" {
			continue
		}
		one := Default()
		k.v.copy(one, full)
		changes := !reflect.DeepEqual(one.RulesConfig(), def)
		if slices.Contains(notRules, k.Name) {
			if changes {
				t.Errorf("%s changes the rules but is listed as not a rule", k.Name)
			}
			continue
		}
		if !changes {
			t.Errorf("%s (set to %s) does not reach the routing rules", k.Name, k.Value(full))
		}
	}

	// The copies are the caller's.
	rc2 := c.RulesConfig()
	rc2.VectorTables[0] = "changed"
	if c.Policy.VectorTables[0] != "docs.chunks" {
		t.Error("RulesConfig shares the Config's slices")
	}
}

// TestCheckRunsThePolicy: a file the routing policy refuses is refused by
// check, even for a reason no key's own check knows; the hook is
// exercised by making a key check pass something the policy refuses.
func TestCheckRunsThePolicy(t *testing.T) {
	saved := keyTable
	defer func() { keyTable = saved }()
	keyTable = slices.Clone(saved)
	for i, k := range keyTable {
		if k.Name == "policy.vector_tables" {
			keyTable[i].v = list(func(c *Config) *[]string { return &c.Policy.VectorTables }, []string{"optimization_logs"})
		}
	}
	_, err := parse("t.yaml", []byte("primary: postgres://h/db\npolicy:\n  vector_tables: [a.b.c]\n"), testEnv)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Line != 3 ||
		!strings.Contains(errs[0].Msg, "policy: refused by the routing policy: vector_tables[0]") {
		t.Errorf("error %v, want one problem at the policy section", err)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", time.Minute: "1m", 90 * time.Minute: "1h30m", 61 * time.Second: "1m1s",
		0: "0s", 500 * time.Millisecond: "500ms", 2*time.Hour + 30*time.Second: "2h0m30s", 10 * time.Hour: "10h",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestFieldDocsGiveTheDefaults: the documentation of each Config field names
// its key and says "Default X." with the table's default, so godoc readers
// see the same defaults as the table.
func TestFieldDocsGiveTheDefaults(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{} // key name: field documentation, one line
	ast.Inspect(f, func(n ast.Node) bool {
		if field, ok := n.(*ast.Field); ok && field.Doc != nil {
			text := strings.Join(strings.Fields(field.Doc.Text()), " ")
			if m := regexp.MustCompile("\\(`([a-z_.]+)`\\)").FindStringSubmatch(text); m != nil {
				docs[m[1]] = text
			}
		}
		return true
	})
	def := regexp.MustCompile(`Default (.+?)\.(?:\s|$)`)
	for _, k := range Keys() {
		doc, ok := docs[k.Name]
		if !ok {
			t.Errorf("no Config field documents key %s", k.Name)
			continue
		}
		if k.Required != "" {
			if !strings.Contains(doc, "Required") {
				t.Errorf("%s: the field documentation does not say it is required: %s", k.Name, doc)
			}
			continue
		}
		m := def.FindStringSubmatch(doc)
		if m == nil {
			t.Errorf("%s: the field documentation gives no default: %s", k.Name, doc)
			continue
		}
		got, _, _ := strings.Cut(m[1], " (")
		if got == `""` {
			got = ""
		}
		want := k.Default()
		if gd, err1 := time.ParseDuration(got); err1 == nil {
			if wd, err2 := time.ParseDuration(want); err2 == nil && gd == wd {
				continue
			}
		}
		if got != want {
			t.Errorf("%s: the field documentation says Default %s, the table %q", k.Name, m[1], want)
		}
	}
}
