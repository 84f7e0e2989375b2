package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const examplePath = "../examples/txlane.yaml"

// env is a fixed environment for the tests, so that they do not depend on
// the process's.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

var testEnv = env(map[string]string{
	"DB_URL":  "postgres://app@db.internal:5432/app?sslmode=require",
	"CONNS":   "16",
	"EMPTY":   "",
	"TIMEOUT": "250ms",
})

func TestExampleIsDefaults(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	const primary = "postgres://app@127.0.0.1:5432/app?sslmode=disable"
	if c.Primary != primary {
		t.Errorf("Primary = %q, want %q", c.Primary, primary)
	}
	// Primary has no default; every other value in the example is the default.
	want := Default()
	want.Primary = primary
	if !reflect.DeepEqual(c, want) {
		t.Errorf("example differs from Default():\n got %+v\nwant %+v", c, want)
	}
}

// TestExampleHasEveryKey pins the key set: the example, which is the
// reference for people editing the file, must show every key.
func TestExampleHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(prefix, n.Content[i].Value)
			if v := n.Content[i+1]; v.Kind == yaml.MappingNode {
				walk(p, v)
			} else {
				got = append(got, p)
			}
		}
	}
	walk("", doc.Content[0])
	want := []string{
		"listen", "listen_reuseport", "primary",
		"read_pool.dsn", "read_pool.max_conns", "read_pool.min_idle", "read_pool.acquire_timeout",
		"read_pool.max_lifetime", "read_pool.health_check_period", "read_pool.on_unavailable",
		"policy.vector_tables", "policy.discover_vector_tables", "policy.discover_interval",
		"policy.after_write", "policy.escape", "policy.escape_overrides", "policy.unit_comment_keys",
		"policy.reroute_wait_timeout", "policy.shared_units", "policy.writing_functions", "policy.read_only_functions",
		"admin.listen", "admin.users", "admin.pprof",
		"log.level", "log.format",
		"tls.cert", "tls.key",
		"auth_type", "auth_file", "auth_user", "auth_query", "auth_dbname",
		"unix_socket_dir", "max_client_conn", "max_message_size", "client_login_timeout", "query_wait_timeout",
		"idle_in_transaction_timeout", "shutdown_timeout",
		"pool_mode", "pool_size", "max_db_connections", "max_user_connections", "ignore_startup_parameters", "min_pool_size", "server_reset_query", "server_idle_timeout", "server_lifetime", "pool_overrides",
		"instance_id", "peers",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("example keys:\n got %q\nwant %q", got, want)
	}

	// The Makefile's run substitutes the DSN with sed: one primary: line, and the
	// listen address written literally.
	var primaryLines int
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "primary:") {
			primaryLines++
		}
	}
	if primaryLines != 1 {
		t.Errorf("example has %d lines starting with primary:, want 1", primaryLines)
	}
	if !strings.Contains(string(data), "\nlisten: 127.0.0.1:6432\n") {
		t.Errorf("example lacks the line listen: 127.0.0.1:6432")
	}
	// It gives read_pool.dsn the lane's login (txlane_reader) on the one line `  dsn: ""`.
	if n := strings.Count(string(data), "\n  dsn: \"\"\n"); n != 1 {
		t.Errorf("example has %d lines `  dsn: \"\"`, want 1 (read_pool.dsn)", n)
	}
}

func TestParseValues(t *testing.T) {
	src := `
listen: "[::1]:7000"
primary: host=db port=5433 sslmode=disable
read_pool:
  dsn: postgres://reader@replica/app
  max_conns: 4
  min_idle: 2
  acquire_timeout: 500ms
  on_unavailable: error
policy:
  vector_tables:
    - public.items
    - '"Mixed"."Case"'
    - docs
  discover_vector_tables: false
  after_write: any
  escape: reroute
  escape_overrides:
    - {table: "audit.*", escape: allow}
    - table: public.embeddings
      escape: log
  unit_comment_keys: [unit, request_id]
  writing_functions: [app.bump_counter]
  read_only_functions: [random]
admin:
  listen: ""
  users: [ops]
log:
  level: debug
  format: json
tls:
  cert: /etc/txlane/cert.pem
  key: /etc/txlane/key.pem
max_client_conn: 50
max_message_size: 1GB
query_wait_timeout: &t 10s
shutdown_timeout: *t
idle_in_transaction_timeout: 1m
`
	c, err := parse("t.yaml", []byte(src), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Listen = "[::1]:7000"
	want.Primary = "host=db port=5433 sslmode=disable"
	want.ReadPool.DSN = "postgres://reader@replica/app"
	want.ReadPool.MaxConns = 4
	want.ReadPool.MinIdle = 2
	want.ReadPool.AcquireTimeout = 500 * time.Millisecond
	want.ReadPool.OnUnavailable = OnUnavailableError
	want.Policy.VectorTables = []string{"public.items", `"Mixed"."Case"`, "docs"}
	want.Policy.DiscoverVectorTables = false
	want.Policy.AfterWrite = AfterWriteAny
	want.Policy.Escape = EscapeReroute
	want.Policy.EscapeOverrides = []EscapeOverride{
		{Table: "audit.*", Escape: EscapeAllow},
		{Table: "public.embeddings", Escape: EscapeLog},
	}
	want.Policy.UnitCommentKeys = []string{"unit", "request_id"}
	want.Policy.WritingFunctions = []string{"app.bump_counter"}
	want.Policy.ReadOnlyFunctions = []string{"random"}
	want.Admin.Listen = ""
	want.Admin.Users = []string{"ops"}
	want.Log = Log{Level: LogDebug, Format: LogJSON}
	want.TLS = TLS{Cert: "/etc/txlane/cert.pem", Key: "/etc/txlane/key.pem"}
	want.MaxClientConn = 50
	want.MaxMessageSize = GiB
	want.QueryWaitTimeout = 10 * time.Second
	want.ShutdownTimeout = 10 * time.Second
	want.IdleInTransactionTimeout = time.Minute
	if !reflect.DeepEqual(c, want) {
		t.Errorf("\n got %+v\nwant %+v", c, want)
	}
}

func TestParseEmptySections(t *testing.T) {
	// Empty sections and lists keep the defaults or mean the empty list.
	src := "primary: postgres://h/db\nread_pool:\nlog: {}\npolicy:\n  vector_tables:\n"
	c, err := parse("t.yaml", []byte(src), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Primary = "postgres://h/db"
	want.Policy.VectorTables = []string{}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("\n got %+v\nwant %+v", c, want)
	}
}

func TestEnvExpansion(t *testing.T) {
	src := `listen: 127.0.0.1:${PORT:-7432}
primary: ${DB_URL}
read_pool:
  max_conns: ${CONNS:-4}
  acquire_timeout: "${TIMEOUT}"
  dsn: ${EMPTY}
admin:
  users: ["${EMPTY:-nobody}", 'lit$${X}', a$b]
`
	c, err := parse("t.yaml", []byte(src), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"listen (default)", c.Listen, "127.0.0.1:7432"},
		{"primary", c.Primary, "postgres://app@db.internal:5432/app?sslmode=require"},
		{"max_conns (set)", c.ReadPool.MaxConns, 16},
		{"acquire_timeout (quoted)", c.ReadPool.AcquireTimeout, 250 * time.Millisecond},
		{"dsn (set, empty)", c.ReadPool.DSN, ""},
		{"users", c.Admin.Users, []string{"nobody", "lit${X}", "a$b"}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Size
		wantErr string
	}{
		{"67108864", 64 * MiB, ""},
		{"0", 0, ""},
		{"64MB", 64 * MiB, ""},
		{"64MiB", 64 * MiB, ""},
		{"64 MiB", 64 * MiB, ""},
		{"64mb", 64 * MiB, ""},
		{"64M", 64 * MiB, ""},
		{"1GB", GiB, ""},
		{"1GiB", GiB, ""},
		{"512kB", 512 * KiB, ""},
		{"512KiB", 512 * KiB, ""},
		{"2TB", 2 * TiB, ""},
		{"100B", 100, ""},
		{"-1", -1, ""},
		{"-64MB", -64 * MiB, ""},
		{"", 0, `invalid size ""`},
		{"MB", 0, `invalid size "MB"`},
		{"1.5GB", 0, `unknown unit ".5GB"`},
		{"64XB", 0, `unknown unit "XB"`},
		{"64  MB", 0, `unknown unit " MB"`},
		{"9999999TB", 0, "out of range"},
	} {
		got, err := ParseSize(tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseSize(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("ParseSize(%q): %v", tc.in, err)
		case got != tc.want:
			t.Errorf("ParseSize(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   Size
		want string
	}{{64 * MiB, "64MiB"}, {GiB, "1GiB"}, {1536, "1536B"}, {0, "0B"}, {3 * KiB, "3KiB"}} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
	}
}

func TestMaxMessageSizeForms(t *testing.T) {
	for _, v := range []string{"67108864", "64MB", "64MiB", `"64 MiB"`, "${SIZE:-64MB}"} {
		c, err := parse("t.yaml", []byte("primary: postgres://h/db\nmax_message_size: "+v+"\n"), testEnv)
		if err != nil {
			t.Errorf("max_message_size: %s: %v", v, err)
			continue
		}
		if c.MaxMessageSize != 64*MiB {
			t.Errorf("max_message_size: %s = %d, want %d", v, c.MaxMessageSize, 64*MiB)
		}
	}
}

// TestErrors checks that each problem class is reported at its exact
// position, and that all problems in a file are reported, in order.
func TestErrors(t *testing.T) {
	const p = "primary: postgres://app@127.0.0.1:5432/app\n" // line 1 of most cases
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{"unknown key with suggestion", p + "max_client_con: 5\n", []string{
			`t.yaml:2:1: unknown key "max_client_con" (did you mean "max_client_conn"?)`,
		}},
		{"nested unknown key with suggestion", p + "read_pool:\n  max_con: 4\n", []string{
			`t.yaml:3:3: unknown key "max_con" (did you mean "max_conns"?)`,
		}},
		{"unknown key, transposition", p + "lsiten: 127.0.0.1:1\n", []string{
			`t.yaml:2:1: unknown key "lsiten" (did you mean "listen"?)`,
		}},
		{"unknown key without suggestion", p + "policy:\n  frobnicate: true\n", []string{
			`t.yaml:3:3: unknown key "frobnicate"`,
		}},
		{"list where a string is expected", p + "listen: [a, b]\n", []string{
			`t.yaml:2:9: listen: expected a string, got a list`,
		}},
		{"mapping where a list is expected", p + "policy:\n  vector_tables: {a: b}\n", []string{
			`t.yaml:3:18: policy.vector_tables: expected a list, got a mapping`,
		}},
		{"string where a mapping is expected", p + "log: debug\n", []string{
			`t.yaml:2:6: log: expected a mapping, got "debug"`,
		}},
		{"non-integer", p + "read_pool:\n  max_conns: eight\n", []string{
			`t.yaml:3:14: read_pool.max_conns: expected an integer, got "eight"`,
		}},
		{"float for an integer", p + "max_client_conn: 1.5\n", []string{
			`t.yaml:2:18: max_client_conn: expected an integer, got "1.5"`,
		}},
		{"empty integer", p + "max_client_conn:\n", []string{
			`t.yaml:2:17: max_client_conn: expected an integer, got an empty value`,
		}},
		{"bad boolean", p + "policy:\n  discover_vector_tables: yes\n", []string{
			`t.yaml:3:27: policy.discover_vector_tables: expected true or false, got "yes"`,
		}},
		{"list item of the wrong type", p + "admin:\n  users: [ops, [x]]\n", []string{
			`t.yaml:3:16: admin.users[1]: expected a string, got a list`,
		}},
		{"duration without unit", p + "shutdown_timeout: 30\n", []string{
			`t.yaml:2:19: shutdown_timeout: missing unit in duration "30" (use Go duration syntax such as 500ms, 30s, 1m30s, 1h)`,
		}},
		{"duration with unknown unit", p + "read_pool:\n  acquire_timeout: 2 secs\n", []string{
			`t.yaml:3:20: read_pool.acquire_timeout: unknown unit " secs" in duration "2 secs" (use Go duration syntax such as 500ms, 30s, 1m30s, 1h)`,
		}},
		{"zero duration", p + "query_wait_timeout: 0s\n", []string{
			`t.yaml:2:21: query_wait_timeout: must be positive, got 0s`,
		}},
		{"negative duration", p + "idle_in_transaction_timeout: -1s\n", []string{
			`t.yaml:2:30: idle_in_transaction_timeout: must not be negative, got -1s (0 disables it)`,
		}},
		{"bad DSN", "primary: host=db port=abc password=secret\n", []string{
			`t.yaml:1:10: primary: invalid connection string: invalid port`,
		}},
		{"bad URL", "primary: postgres://app:secret@db:badport/app\n", []string{
			`t.yaml:1:10: primary: invalid connection string: invalid port`,
		}},
		{"bad read pool DSN", p + "read_pool:\n  dsn: postgres://r@replica/app?sslmode=sometimes\n", []string{
			`t.yaml:3:8: read_pool.dsn: invalid connection string: failed to configure TLS (sslmode is invalid)`,
		}},
		{"missing primary", "listen: 127.0.0.1:6432\n", []string{
			`t.yaml:1:1: missing required key "primary" (the connection string of the primary)`,
		}},
		{"empty file", "", []string{
			`t.yaml:1:1: missing required key "primary" (the connection string of the primary)`,
		}},
		{"empty primary", "primary: \"\"\n", []string{
			`t.yaml:1:10: primary: must not be empty`,
		}},
		{"bad enum", p + "policy:\n  escape: rejct\n", []string{
			`t.yaml:3:11: policy.escape: invalid value "rejct" (allowed: reject, reroute, log, allow)`,
		}},
		{"bad enum in a nested list", p + "policy:\n  escape_overrides:\n    - {table: t, escape: drop}\n", []string{
			`t.yaml:4:26: policy.escape_overrides[0].escape: invalid value "drop" (allowed: reject, reroute, log, allow)`,
		}},
		{"log enums", p + "log:\n  level: verbose\n  format: text\n", []string{
			`t.yaml:3:10: log.level: invalid value "verbose" (allowed: debug, info, warn, error)`,
			`t.yaml:4:11: log.format: invalid value "text" (allowed: console, json)`,
		}},
		{"listen without port", p + "listen: \"6432\"\n", []string{
			`t.yaml:2:9: listen: invalid address "6432": missing port in address (want host:port, such as 127.0.0.1:6432)`,
		}},
		{"listen with bad port", p + "listen: localhost:pg\n", []string{
			`t.yaml:2:9: listen: invalid port "pg" in "localhost:pg" (want a number from 0 to 65535)`,
		}},
		{"admin listen too many colons", p + "admin:\n  listen: a:b:c\n", []string{
			`t.yaml:3:11: admin.listen: invalid address "a:b:c": too many colons in address (want host:port, such as 127.0.0.1:6432)`,
		}},
		{"admin listen same as listen", p + "listen: 0.0.0.0:7000\nadmin:\n  listen: 0.0.0.0:7000\n", []string{
			`t.yaml:4:11: admin.listen: same address as listen (0.0.0.0:7000)`,
		}},
		{"duplicate key", p + "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", []string{
			`t.yaml:3:1: duplicate key "listen" (first set at line 2)`,
		}},
		{"nested duplicate key", p + "tls:\n  cert: a\n  key: b\n  cert: c\n", []string{
			`t.yaml:5:3: duplicate key "cert" (first set at line 3)`,
		}},
		{"negative size", p + "max_message_size: -1\n", []string{
			`t.yaml:2:19: max_message_size: must not be negative, got -1`,
		}},
		{"negative size with unit", p + "max_message_size: -64MB\n", []string{
			`t.yaml:2:19: max_message_size: must not be negative, got -67108864`,
		}},
		{"tiny size", p + "max_message_size: 64\n", []string{
			`t.yaml:2:19: max_message_size: must be at least 8KiB (8192 bytes), got 64`,
		}},
		{"huge size", p + "max_message_size: 2GB\n", []string{
			`t.yaml:2:19: max_message_size: must be at most 2147483643 bytes (the protocol's 32-bit length), got 2147483648`,
		}},
		{"bad size unit", p + "max_message_size: 64 megs\n", []string{
			`t.yaml:2:19: max_message_size: invalid size "64 megs": unknown unit "megs" (want B, kB, MB, GB, TB or KiB, MiB, GiB, TiB)`,
		}},
		{"negative min_idle", p + "read_pool:\n  min_idle: -1\n", []string{
			`t.yaml:3:13: read_pool.min_idle: must not be negative, got -1`,
		}},
		{"min_idle above max_conns", p + "read_pool:\n  max_conns: 2\n  min_idle: 3\n", []string{
			`t.yaml:4:13: read_pool.min_idle: must not exceed read_pool.max_conns (2), got 3`,
		}},
		{"max_conns below 1", p + "read_pool:\n  max_conns: 0\n", []string{
			`t.yaml:3:14: read_pool.max_conns: must be at least 1, got 0`,
		}},
		{"max_client_conn below 1", p + "max_client_conn: -5\n", []string{
			`t.yaml:2:18: max_client_conn: must be at least 1, got -5`,
		}},
		{"cert without key", p + "tls:\n  cert: /etc/cert.pem\n", []string{
			`t.yaml:3:9: tls.cert: set without tls.key (TLS needs both)`,
		}},
		{"key without cert", p + "tls:\n  cert: \"\"\n  key: /etc/key.pem\n", []string{
			`t.yaml:4:8: tls.key: set without tls.cert (TLS needs both)`,
		}},
		{"scram without a source of secrets", p + "auth_type: scram-sha-256\n", []string{
			`t.yaml:2:12: auth_type: scram-sha-256 needs auth_file or auth_user (and auth_query) for the users' secrets`,
		}},
		{"auth_file with auth_type server", p + "auth_file: users.txt\nauth_user: a\n", []string{
			`t.yaml:2:12: auth_file: has no effect with auth_type server (txlane then relays logins and reads no secret)`,
			`t.yaml:3:12: auth_user: has no effect with auth_type server (txlane then relays logins and reads no secret)`,
		}},
		{"a misspelt auth_type says only that", p + "auth_type: scram\nauth_user: a\n", []string{
			`t.yaml:2:12: auth_type: invalid value "scram" (allowed: server, scram-sha-256, md5, trust)`,
		}},
		{"min_pool_size above pool_size", p + "pool_size: 5\nmin_pool_size: 50\n", []string{
			`t.yaml:3:16: min_pool_size: 50 is more than pool_size (5)`,
		}},
		{"ignore_startup_parameters naming what a login needs", p + "ignore_startup_parameters: [search_path, User, \"\"]\nmax_db_connections: -1\n", []string{
			`t.yaml:2:42: ignore_startup_parameters[1]: "User" cannot be ignored`,
			`t.yaml:2:48: ignore_startup_parameters[2]: must not be empty`,
			`t.yaml:3:21: max_db_connections: must be at least 0, got -1`,
		}},
		{"pool override with a misspelt mode", p + "pool_overrides: [{database: x, pool_mode: sesion}]\n", []string{
			`t.yaml:2:43: pool_overrides[0].pool_mode: invalid value "sesion" (allowed: session, transaction)`,
		}},
		{"pool override that sets nothing", p + "pool_overrides: [{database: x}]\n", []string{
			`t.yaml:2:18: pool_overrides[0]: sets neither "pool_mode" nor "pool_size"`,
		}},
		{"instance_id out of range", p + "instance_id: 1024\n", []string{
			`t.yaml:2:14: instance_id: must be from 0 (a standalone instance) to 1023, got 1024`,
		}},
		{"shared units without instance_id", p + "policy: {shared_units: true}\n", []string{
			`t.yaml:2:24: policy.shared_units: needs instance_id (1 to 1023, each instance its own): a unit's holder is named by its instance`,
		}},
		{"peers without instance_id", p + "peers: [{id: 2, addr: \"h:6432\"}]\n", []string{
			`t.yaml:2:8: peers: needs instance_id: a CancelRequest is forwarded by the instance its key carries`,
		}},
		{"bad peers", p + "instance_id: 1\npeers:\n  - {id: 1, addr: \"h:6432\"}\n  - {id: 2, addr: nohost}\n  - {id: 2, addr: \"h:1\"}\n  - {addr: \"h:2\"}\n  - {id: 0, addr: \"h:3\"}\n", []string{
			`t.yaml:4:10: peers[0].id: instance 1 is instance_id already`,
			`t.yaml:5:19: peers[1].addr: invalid address "nohost": missing port in address (want host:port, such as 127.0.0.1:6432)`,
			`t.yaml:6:10: peers[2].id: instance 2 is peers[1] already`,
			`t.yaml:7:5: peers[3]: missing key "id"`,
			`t.yaml:8:10: peers[4].id: must be from 1 to 1023, got 0`,
		}},
		{"empty auth_query", p + "auth_type: md5\nauth_file: u.txt\nauth_query: \"\"\n", []string{
			`t.yaml:4:13: auth_query: must not be empty`,
		}},
		{"unset variable", p + "listen: 127.0.0.1:${PORT}\n", []string{
			`t.yaml:2:19: environment variable PORT is not set (write ${PORT:-default} to give a default)`,
		}},
		{"unset variable, single-quoted", "primary: 'postgres://${DB_HOST}/app'\n", []string{
			`t.yaml:1:22: environment variable DB_HOST is not set (write ${DB_HOST:-default} to give a default)`,
		}},
		{"unset variable, double-quoted", "primary: \"${NOPE}\"\n", []string{
			`t.yaml:1:10: environment variable NOPE is not set (write ${NOPE:-default} to give a default)`,
		}},
		{"bad variable reference", p + "admin:\n  users:\n    - ${1X}\n    - x${A-b}\n", []string{
			`t.yaml:4:7: invalid variable reference ${1X} (want ${NAME} or ${NAME:-default})`,
			`t.yaml:5:8: invalid variable reference ${A-b} (want ${NAME} or ${NAME:-default})`,
		}},
		{"unterminated variable", p + "listen: ${PORT\n", []string{
			`t.yaml:2:9: unterminated ${ (write $${ for a literal ${)`,
		}},
		{"expanded value is validated", p + "read_pool:\n  max_conns: ${NCONNS:-zero}\n", []string{
			`t.yaml:3:14: read_pool.max_conns: expected an integer, got "zero"`,
		}},
		{"escape override problems", p + "policy:\n  escape_overrides:\n    - {table: \"[abc\", escape: allow}\n    - {table: \"public.*\"}\n    - {tabel: x, escape: log}\n    - not-a-mapping\n", []string{
			`t.yaml:4:15: policy.escape_overrides[0].table: invalid pattern "[abc" (want a glob on schema.table, such as public.* or *.embeddings)`,
			`t.yaml:5:7: policy.escape_overrides[1]: missing key "escape"`,
			`t.yaml:6:7: policy.escape_overrides[2]: missing key "table"`,
			`t.yaml:6:8: unknown key "tabel" (did you mean "table"?)`,
			`t.yaml:7:7: policy.escape_overrides[3]: expected a mapping, got "not-a-mapping"`,
		}},
		{"bad names", p + `policy:
  vector_tables:
    - a.b.c
    - ""
    - '"Q".ok'
    - x.
  writing_functions: [nextval()]
  unit_comment_keys: ["a key"]
`, []string{
			`t.yaml:4:7: policy.vector_tables[0]: invalid table name "a.b.c" (want table or schema.table; double-quote unusual names)`,
			`t.yaml:5:7: policy.vector_tables[1]: invalid table name "" (want table or schema.table; double-quote unusual names)`,
			`t.yaml:7:7: policy.vector_tables[3]: invalid table name "x." (want table or schema.table; double-quote unusual names)`,
			`t.yaml:8:23: policy.writing_functions[0]: invalid function name "nextval()" (want function or schema.function, without parentheses)`,
			`t.yaml:9:23: policy.unit_comment_keys[0]: invalid sqlcommenter key "a key" (want letters, digits, _ . - %)`,
		}},
		{"YAML syntax error", p + "read_pool:\n  max_conns: 1\n   min_idle: 2\n", []string{
			`t.yaml:4:1: invalid YAML: mapping values are not allowed in this context`,
		}},
		{"tab indentation", p + "read_pool:\n\tmax_conns: 1\n", []string{
			`t.yaml:3:1: invalid YAML: found character that cannot start any token`,
		}},
		{"scalar document", "hello\n", []string{
			`t.yaml:1:1: expected a mapping of keys at the top level, got "hello"`,
			`t.yaml:1:1: missing required key "primary" (the connection string of the primary)`,
		}},
		{"merge keys are not supported", p + "base: &b {listen: 127.0.0.1:1}\n<<: *b\n", []string{
			`t.yaml:2:1: unknown key "base"`,
			`t.yaml:3:1: unknown key "<<"`,
		}},
		{"two documents", p + "---\nlisten: x\n", []string{
			`t.yaml:2:1: a second YAML document: the file must hold one`,
		}},
		{"every problem, in file order", `listen: 6432
primary: ${DB}
read_pool:
  max_con: 4
  max_conns: 0
  acquire_timeout: soon
policy:
  escape: never
tls:
  key: k.pem
max_message_size: -1
listen: 127.0.0.1:6432
`, []string{
			`t.yaml:1:9: listen: invalid address "6432": missing port in address (want host:port, such as 127.0.0.1:6432)`,
			`t.yaml:2:10: environment variable DB is not set (write ${DB:-default} to give a default)`,
			`t.yaml:4:3: unknown key "max_con" (did you mean "max_conns"?)`,
			`t.yaml:5:14: read_pool.max_conns: must be at least 1, got 0`,
			`t.yaml:6:20: read_pool.acquire_timeout: invalid duration "soon" (use Go duration syntax such as 500ms, 30s, 1m30s, 1h)`,
			`t.yaml:8:11: policy.escape: invalid value "never" (allowed: reject, reroute, log, allow)`,
			`t.yaml:10:8: tls.key: set without tls.cert (TLS needs both)`,
			`t.yaml:11:19: max_message_size: must not be negative, got -1`,
			`t.yaml:12:1: duplicate key "listen" (first set at line 1)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse("t.yaml", []byte(tc.src), testEnv)
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Errorf("config returned with errors: %+v", c)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tc.want, "\n     "))
			}
			if len(errs) != len(got) {
				t.Errorf("len(Errors) = %d, but Error() has %d lines", len(errs), len(got))
			}
		})
	}
}

func TestSecretsStayOutOfMessages(t *testing.T) {
	for _, src := range []string{
		"primary: host=db port=abc password=hunter2\n",
		"primary: postgres://app:hunter2@db:badport/app\n",
		"primary: postgres://app:hunter2@db/app?sslmode=sometimes\n",
	} {
		_, err := parse("t.yaml", []byte(src), testEnv)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: error %v: want an error without the password", src, err)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Col: 7, Msg: "m"}, "a.yaml:3:7: m"},
		{Error{File: "a.yaml", Line: 3, Msg: "m"}, "a.yaml:3: m"},
		{Error{File: "a.yaml", Msg: "m"}, "a.yaml: m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%#v.Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
	var e Error
	if err := error(Errors{{File: "f", Line: 1, Col: 2, Msg: "x"}}); !errors.As(err, &e) || e.Col != 2 {
		t.Errorf("errors.As(Errors, *Error) = %v", e)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/bad.yaml"
	if err := os.WriteFile(path, []byte("primary: postgres://h/db\nmax_client_con: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := path + `:2:1: unknown key "max_client_con" (did you mean "max_client_conn"?)`
	if err == nil || err.Error() != want {
		t.Errorf("Load: %v, want %s", err, want)
	}

	t.Setenv("TXLANE_TEST_DSN", "postgres://h/db")
	good := dir + "/good.yaml"
	if err := os.WriteFile(good, []byte("primary: ${TXLANE_TEST_DSN}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil || c.Primary != "postgres://h/db" {
		t.Errorf("Load(good) = %+v, %v", c, err)
	}

	if _, err := Load(dir + "/missing.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want ErrNotExist", err)
	}
}

func TestDefaultIsFresh(t *testing.T) {
	a, b := Default(), Default()
	a.Policy.VectorTables[0] = "changed"
	if b.Policy.VectorTables[0] != "optimization_logs" {
		t.Error("Default() values share slices")
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"max_con", "max_conns", 2},
		{"lsiten", "listen", 1},
		{"", "abc", 3},
		{"dsn", "dns", 1},
		{"same", "same", 0},
		{"kitten", "sitting", 3},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// FuzzParse checks that any input yields a config or positioned problems,
// never a panic.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(examplePath); err == nil {
		f.Add(data)
	}
	f.Add([]byte("primary: ${DB_URL}\nread_pool: {max_conns: ${CONNS:-4}}\n"))
	f.Add([]byte("policy:\n  escape_overrides:\n    - {table: '[x', escape: log}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse("f.yaml", data, testEnv)
		if (c == nil) == (err == nil) {
			t.Fatalf("parse returned config %v and error %v", c, err)
		}
		var errs Errors
		if err != nil && !errors.As(err, &errs) {
			t.Fatalf("error %T is not Errors", err)
		}
		for _, e := range errs {
			if e.Line < 1 || e.Col < 1 || e.File != "f.yaml" {
				t.Errorf("problem without a position: %#v", e)
			}
		}
	})
}
