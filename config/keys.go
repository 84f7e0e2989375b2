package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/txlane/txlane/policy"
)

// keyTable is every configuration key, in the order of the reference file
// examples/txlane.yaml. It is the one place that says, for each key, how it
// is decoded from YAML, its default, how it is checked, how SHOW POLICY
// prints it and whether a reload applies it. Decoding (the nesting of
// sections and "did you mean" suggestions included), Default, validation,
// Config.Rows and Reload are all driven by it; tests check that
// examples/txlane.yaml and README.md list exactly these keys, with these
// defaults and reload behaviours.
//
// Adding a key: a field in Config (or a nested struct), one entry here, the
// code that uses the value, and the two documents the tests name.
var keyTable = []Key{
	{Name: "listen", Reload: Restart,
		v: str(func(c *Config) *string { return &c.Listen }, "127.0.0.1:6432", address)},
	{Name: "listen_reuseport", Reload: Restart,
		v: boolean(func(c *Config) *bool { return &c.ListenReuseport }, false)},
	{Name: "primary", Reload: Restart, Required: "the connection string of the primary",
		v: dsn(func(c *Config) *string { return &c.Primary }, notEmpty)},

	{Name: "read_pool.dsn", Reload: Restart,
		v: dsn(func(c *Config) *string { return &c.ReadPool.DSN })},
	{Name: "read_pool.max_conns", Reload: Live,
		v: integer(func(c *Config) *int { return &c.ReadPool.MaxConns }, 8, atLeast(1))},
	{Name: "read_pool.min_idle", Reload: Live,
		v: integer(func(c *Config) *int { return &c.ReadPool.MinIdle }, 0, minIdle)},
	{Name: "read_pool.acquire_timeout", Reload: Live,
		v: duration(func(c *Config) *time.Duration { return &c.ReadPool.AcquireTimeout }, 2*time.Second, positive)},
	{Name: "read_pool.max_lifetime", Reload: Live,
		v: duration(func(c *Config) *time.Duration { return &c.ReadPool.MaxLifetime }, time.Hour, positive)},
	{Name: "read_pool.health_check_period", Reload: Live,
		v: duration(func(c *Config) *time.Duration { return &c.ReadPool.HealthCheckPeriod }, 30*time.Second, positive)},
	{Name: "read_pool.on_unavailable", Reload: Live,
		v: enum(func(c *Config) *OnUnavailable { return &c.ReadPool.OnUnavailable }, OnUnavailablePrimary, onUnavailableValues)},

	{Name: "policy.vector_tables", Reload: Live,
		v: list(func(c *Config) *[]string { return &c.Policy.VectorTables }, []string{"optimization_logs"}, each(tableName))},
	{Name: "policy.discover_vector_tables", Reload: Live,
		v: boolean(func(c *Config) *bool { return &c.Policy.DiscoverVectorTables }, true)},
	{Name: "policy.discover_interval", Reload: Live,
		v: duration(func(c *Config) *time.Duration { return &c.Policy.DiscoverInterval }, time.Minute, positive)},
	{Name: "policy.after_write", Reload: Live,
		v: enum(func(c *Config) *AfterWrite { return &c.Policy.AfterWrite }, AfterWriteTable, afterWriteValues)},
	{Name: "policy.escape", Reload: Live,
		v: enum(func(c *Config) *Escape { return &c.Policy.Escape }, EscapeReject, escapeValues)},
	{Name: "policy.escape_overrides", Reload: Live,
		v: overrides(func(c *Config) *[]EscapeOverride { return &c.Policy.EscapeOverrides })},
	{Name: "policy.unit_comment_keys", Reload: Live,
		v: list(func(c *Config) *[]string { return &c.Policy.UnitCommentKeys }, []string{"unit"}, each(commentKey))},
	{Name: "policy.reroute_wait_timeout", Reload: Live,
		v: duration(func(c *Config) *time.Duration { return &c.Policy.RerouteWaitTimeout }, 5*time.Second, positive)},
	{Name: "policy.shared_units", Reload: Restart,
		v: boolean(func(c *Config) *bool { return &c.Policy.SharedUnits }, false, needsInstanceID)},
	{Name: "policy.writing_functions", Reload: Live,
		v: list(func(c *Config) *[]string { return &c.Policy.WritingFunctions }, []string{}, each(funcName))},
	{Name: "policy.read_only_functions", Reload: Live,
		v: list(func(c *Config) *[]string { return &c.Policy.ReadOnlyFunctions }, []string{}, each(funcName), notAlsoWriting)},

	{Name: "admin.listen", Reload: Restart,
		v: str(func(c *Config) *string { return &c.Admin.Listen }, "127.0.0.1:9187", adminListen)},
	{Name: "admin.users", Reload: Live,
		v: list(func(c *Config) *[]string { return &c.Admin.Users }, []string{}, each(nonEmptyItem))},
	{Name: "admin.pprof", Reload: Live,
		v: boolean(func(c *Config) *bool { return &c.Admin.Pprof }, false)},

	{Name: "log.level", Reload: Live,
		v: enum(func(c *Config) *LogLevel { return &c.Log.Level }, LogInfo, logLevelValues)},
	{Name: "log.format", Reload: Restart,
		v: enum(func(c *Config) *LogFormat { return &c.Log.Format }, LogConsole, logFormatValues)},

	{Name: "tls.cert", Reload: Restart,
		v: str(func(c *Config) *string { return &c.TLS.Cert }, "", pairedWith("tls.key", func(c *Config) string { return c.TLS.Key }))},
	{Name: "tls.key", Reload: Restart,
		v: str(func(c *Config) *string { return &c.TLS.Key }, "", pairedWith("tls.cert", func(c *Config) string { return c.TLS.Cert }))},

	{Name: "auth_type", Reload: Restart,
		v: enum(func(c *Config) *AuthType { return &c.AuthType }, AuthServer, authTypeValues)},
	{Name: "auth_file", Reload: Live,
		v: str(func(c *Config) *string { return &c.AuthFile }, "", onlyWithAuthType)},
	{Name: "auth_user", Reload: Restart,
		v: str(func(c *Config) *string { return &c.AuthUser }, "", onlyWithAuthType, authSource)},
	{Name: "auth_query", Reload: Restart,
		v: str(func(c *Config) *string { return &c.AuthQuery }, DefaultAuthQuery, notEmpty)},
	{Name: "auth_dbname", Reload: Restart,
		v: str(func(c *Config) *string { return &c.AuthDBName }, "")},

	{Name: "unix_socket_dir", Reload: Restart,
		v: str(func(c *Config) *string { return &c.UnixSocketDir }, "")},
	{Name: "max_client_conn", Reload: Live,
		v: integer(func(c *Config) *int { return &c.MaxClientConn }, 1000, atLeast(1))},
	{Name: "max_message_size", Reload: Live,
		v: size(func(c *Config) *Size { return &c.MaxMessageSize }, 64*MiB, messageSize)},
	{Name: "client_login_timeout", Reload: Live,
		v: duration(func(c *Config) *time.Duration { return &c.ClientLoginTimeout }, 60*time.Second, positive)},
	{Name: "query_wait_timeout", Reload: Live,
		v: duration(func(c *Config) *time.Duration { return &c.QueryWaitTimeout }, 120*time.Second, positive)},
	{Name: "idle_in_transaction_timeout", Reload: Live,
		v: duration(func(c *Config) *time.Duration { return &c.IdleInTransactionTimeout }, 0, notNegativeDuration)},
	{Name: "shutdown_timeout", Reload: Live,
		v: duration(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, 30*time.Second, positive)},

	{Name: "pool_mode", Reload: Restart,
		v: enum(func(c *Config) *PoolMode { return &c.PoolMode }, PoolSession, poolModeValues)},
	{Name: "pool_size", Reload: Restart,
		v: integer(func(c *Config) *int { return &c.PoolSize }, 20, atLeast(1))},
	{Name: "max_db_connections", Reload: Restart,
		v: integer(func(c *Config) *int { return &c.MaxDBConnections }, 0, atLeast(0))},
	{Name: "max_user_connections", Reload: Restart,
		v: integer(func(c *Config) *int { return &c.MaxUserConnections }, 0, atLeast(0))},
	{Name: "ignore_startup_parameters", Reload: Restart,
		v: list(func(c *Config) *[]string { return &c.IgnoreStartupParameters }, []string{}, each(ignorableParameter))},
	{Name: "min_pool_size", Reload: Restart,
		v: integer(func(c *Config) *int { return &c.MinPoolSize }, 0, atLeast(0), notAbovePoolSize)},
	{Name: "server_reset_query", Reload: Restart,
		v: str(func(c *Config) *string { return &c.ServerResetQuery }, "DISCARD ALL", notEmpty)},
	{Name: "server_idle_timeout", Reload: Restart,
		v: duration(func(c *Config) *time.Duration { return &c.ServerIdleTimeout }, 10*time.Minute, positive)},
	{Name: "server_lifetime", Reload: Restart,
		v: duration(func(c *Config) *time.Duration { return &c.ServerLifetime }, time.Hour, positive)},
	{Name: "pool_overrides", Reload: Restart,
		v: poolOverrides(func(c *Config) *[]PoolOverride { return &c.PoolOverrides })},

	{Name: "instance_id", Reload: Restart,
		v: integer(func(c *Config) *int { return &c.InstanceID }, 0, instanceID)},
	{Name: "peers", Reload: Restart,
		v: peers(func(c *Config) *[]Peer { return &c.Peers })},
}

// Reload says what a reload does when a key's value changes.
type Reload uint8

const (
	// Live keys take their new value at a reload.
	Live Reload = iota
	// Restart keys keep the value txlane started with until it restarts;
	// a reload that changes one logs its name (see [Apply]).
	Restart
)

// String returns "live" or "restart", as README.md's key table says.
func (r Reload) String() string {
	if r == Restart {
		return "restart"
	}
	return "live"
}

// Source says where the value of a key came from, for SHOW POLICY.
type Source string

// The values of Source.
const (
	// SourceDefault: the file does not set the key.
	SourceDefault Source = "default"
	// SourceFile: the value is written in the file.
	SourceFile Source = "file"
	// SourceEnv: the value (or part of it, or an item of a list) came from
	// an environment variable the file references with ${NAME} or
	// ${NAME:-default}, NAME being set and, with a default, not empty.
	SourceEnv Source = "env"
)

// Sources maps key names (Key.Name) to where their values came from. A key
// it does not hold has its default.
type Sources map[string]Source

// Of returns the source of key's value: SourceDefault if s does not hold key.
func (s Sources) Of(key string) Source {
	if src, ok := s[key]; ok {
		return src
	}
	return SourceDefault
}

// Key describes one configuration key (see Keys).
type Key struct {
	// Name is the key's dotted path in the file: "listen",
	// "read_pool.max_conns". A prefix before a dot is a section (a YAML
	// mapping).
	Name string
	// Reload says whether a reload applies a change of the value.
	Reload Reload
	// Required, when not empty, makes the key mandatory and says what it
	// holds (for the "missing required key" problem). A required key has no
	// usable default.
	Required string

	v value
}

// Keys returns every configuration key, in the order of the reference file
// examples/txlane.yaml. The slice is a copy.
func Keys() []Key { return slices.Clone(keyTable) }

// Default returns the key's default as SHOW POLICY prints values: "" for an
// empty string, "required" for a required key.
func (k Key) Default() string {
	if k.Required != "" {
		return "required"
	}
	return k.v.text(Default())
}

// Value returns the key's value in c as SHOW POLICY prints it, with
// passwords in connection strings masked: durations as 1h, 1m30s, 500ms;
// sizes with the largest exact binary unit (64MiB); lists as [a, b]; escape
// overrides as [pattern: action, ...].
func (k Key) Value(c *Config) string { return k.v.text(c) }

// Row is one line of SHOW POLICY's configuration part.
type Row struct {
	Key    string // Key.Name
	Value  string // as Key.Value prints it (passwords masked)
	Source Source // where the value came from
}

// Rows returns a row for every key, in table order: its value in c and its
// source in src.
func (c *Config) Rows(src Sources) []Row {
	rows := make([]Row, len(keyTable))
	for i, k := range keyTable {
		rows[i] = Row{Key: k.Name, Value: k.v.text(c), Source: src.Of(k.Name)}
	}
	return rows
}

// Reloaded is the outcome of reading a configuration file while another is
// in force (see Apply).
type Reloaded struct {
	// Config is what is in force after the reload: the new file's values of
	// Live keys, the running values of Restart keys.
	Config *Config
	// Sources are the sources of Config's values.
	Sources Sources
	// Live lists the Live keys whose value changes, in table order.
	Live []string
	// Restart lists the Restart keys whose value in the new file differs
	// from the one in force, which stays until a restart, in table order.
	Restart []string
}

// Apply computes what a reload puts in force when next (with its sources)
// is read while running is in force. running and next are not modified.
func Apply(running *Config, runningSrc Sources, next *Config, nextSrc Sources) Reloaded {
	cfg := *next
	src := make(Sources, len(nextSrc))
	for k, s := range nextSrc {
		src[k] = s
	}
	r := Reloaded{Config: &cfg, Sources: src}
	for _, k := range keyTable {
		changed := !k.v.equal(running, next)
		if k.Reload == Restart {
			if changed {
				r.Restart = append(r.Restart, k.Name)
			}
			k.v.copy(&cfg, running)
			if s, ok := runningSrc[k.Name]; ok {
				src[k.Name] = s
			} else {
				delete(src, k.Name)
			}
			continue
		}
		if changed {
			r.Live = append(r.Live, k.Name)
		}
	}
	return r
}

// value is a key's typed behaviour, implemented by field.
type value interface {
	setDefault(c *Config)
	decode(d *decoder, p string, n *yaml.Node, c *Config)
	check(ck checker, p string, c *Config)
	text(c *Config) string
	equal(a, b *Config) bool
	copy(dst, src *Config)
}

// field is a key of type T stored at get(c).
type field[T any] struct {
	get    func(*Config) *T
	def    T
	clone  func(T) T // copies def for a fresh Config; nil for value types
	parse  func(d *decoder, p string, n *yaml.Node) (T, bool)
	format func(T) string
	equals func(a, b T) bool
	checks []check[T]
}

// check reports problems in a decoded value v at key path p; c is the whole
// configuration, for checks that involve other keys.
type check[T any] func(ck checker, p string, v T, c *Config)

func (f *field[T]) setDefault(c *Config) {
	v := f.def
	if f.clone != nil {
		v = f.clone(v)
	}
	*f.get(c) = v
}

func (f *field[T]) decode(d *decoder, p string, n *yaml.Node, c *Config) {
	if v, ok := f.parse(d, p, n); ok {
		*f.get(c) = v
	}
}

func (f *field[T]) check(ck checker, p string, c *Config) {
	if ck.d.bad[p] {
		return
	}
	for _, chk := range f.checks {
		chk(ck, p, *f.get(c), c)
	}
}

func (f *field[T]) text(c *Config) string   { return f.format(*f.get(c)) }
func (f *field[T]) equal(a, b *Config) bool { return f.equals(*f.get(a), *f.get(b)) }
func (f *field[T]) copy(dst, src *Config)   { *f.get(dst) = *f.get(src) }

// addr returns the field's address in c, for the test that every field of
// Config belongs to exactly one key.
func (f *field[T]) addr(c *Config) any { return f.get(c) }

func eq[T comparable](a, b T) bool { return a == b }

// The kinds of keys.

func str(get func(*Config) *string, def string, checks ...check[string]) value {
	return &field[string]{get: get, def: def, parse: (*decoder).str, format: identity, equals: eq[string], checks: checks}
}

// dsn is a libpq connection string: checked with pgconn, shown without its
// password. An empty value is not checked (notEmpty makes it an error).
func dsn(get func(*Config) *string, checks ...check[string]) value {
	return &field[string]{get: get, parse: (*decoder).str, format: maskDSN, equals: eq[string],
		checks: append(checks, connString)}
}

func integer(get func(*Config) *int, def int, checks ...check[int]) value {
	return &field[int]{get: get, def: def, parse: (*decoder).int, format: strconv.Itoa, equals: eq[int], checks: checks}
}

func boolean(get func(*Config) *bool, def bool, checks ...check[bool]) value {
	return &field[bool]{get: get, def: def, parse: (*decoder).bool, format: strconv.FormatBool, equals: eq[bool], checks: checks}
}

func duration(get func(*Config) *time.Duration, def time.Duration, checks ...check[time.Duration]) value {
	return &field[time.Duration]{get: get, def: def, parse: (*decoder).duration, format: formatDuration,
		equals: eq[time.Duration], checks: checks}
}

func size(get func(*Config) *Size, def Size, checks ...check[Size]) value {
	return &field[Size]{get: get, def: def, parse: (*decoder).size, format: Size.String, equals: eq[Size], checks: checks}
}

func enum[T ~string](get func(*Config) *T, def T, allowed []T) value {
	return &field[T]{get: get, def: def,
		parse:  func(d *decoder, p string, n *yaml.Node) (T, bool) { return parseEnum(d, p, n, allowed) },
		format: func(v T) string { return string(v) }, equals: eq[T]}
}

func list(get func(*Config) *[]string, def []string, checks ...check[[]string]) value {
	return &field[[]string]{get: get, def: def, clone: slices.Clone[[]string], parse: (*decoder).strs,
		format: formatList, equals: slices.Equal[[]string], checks: checks}
}

func overrides(get func(*Config) *[]EscapeOverride) value {
	return &field[[]EscapeOverride]{get: get, def: []EscapeOverride{}, clone: slices.Clone[[]EscapeOverride],
		parse: (*decoder).escapeOverrides, equals: slices.Equal[[]EscapeOverride], checks: []check[[]EscapeOverride]{overrideItems},
		format: func(os []EscapeOverride) string {
			items := make([]string, len(os))
			for i, o := range os {
				items[i] = o.Table + ": " + string(o.Escape)
			}
			return formatList(items)
		}}
}

func poolOverrides(get func(*Config) *[]PoolOverride) value {
	return &field[[]PoolOverride]{get: get, def: []PoolOverride{}, clone: slices.Clone[[]PoolOverride],
		parse: (*decoder).poolOverrides, equals: slices.Equal[[]PoolOverride], checks: []check[[]PoolOverride]{poolOverrideItems},
		format: func(os []PoolOverride) string {
			items := make([]string, len(os))
			for i, o := range os {
				var parts []string
				for _, kv := range [][2]string{{"database", o.Database}, {"user", o.User}, {"pool_mode", string(o.PoolMode)}} {
					if kv[1] != "" {
						parts = append(parts, kv[0]+": "+kv[1])
					}
				}
				if o.PoolSize > 0 {
					parts = append(parts, "pool_size: "+strconv.Itoa(o.PoolSize))
				}
				items[i] = "{" + strings.Join(parts, ", ") + "}"
			}
			return formatList(items)
		}}
}

func peers(get func(*Config) *[]Peer) value {
	return &field[[]Peer]{get: get, def: []Peer{}, clone: slices.Clone[[]Peer],
		parse: (*decoder).peers, equals: slices.Equal[[]Peer], checks: []check[[]Peer]{peerItems},
		format: func(ps []Peer) string {
			items := make([]string, len(ps))
			for i, p := range ps {
				items[i] = "{id: " + strconv.Itoa(p.ID) + ", addr: " + p.Addr + "}"
			}
			return formatList(items)
		}}
}

func identity(s string) string { return s }

func formatList(xs []string) string { return "[" + strings.Join(xs, ", ") + "]" }

// formatDuration prints d as the example file writes durations: 1h rather
// than 1h0m0s, 1m rather than 1m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// checker reports problems found in decoded values; see decoder.validate.
type checker struct{ d *decoder }

// problem records "p: message" at the value of key path p, unless p failed
// to decode (it was reported then). A key the file does not set is reported
// at the top of the file.
func (ck checker) problem(p string, format string, args ...any) {
	d := ck.d
	if d.bad[p] {
		return
	}
	msg := p + ": " + fmt.Sprintf(format, args...)
	if n := d.at[p]; n != nil {
		d.errorf(n, "%s", msg)
	} else if d.root != nil {
		d.errorf(d.root, "%s", msg)
	} else {
		d.errorAt(1, 1, msg)
	}
}

// The checks of the table.

func address(ck checker, p, v string, _ *Config) { ck.d.address(ck.problem, p, v) }

func adminListen(ck checker, p, v string, c *Config) {
	if v != "" && ck.d.address(ck.problem, p, v) && v == c.Listen {
		ck.problem(p, "same address as listen (%s)", c.Listen)
	}
}

// notAbovePoolSize refuses a min_pool_size a pool could never reach.
func notAbovePoolSize(ck checker, p string, v int, c *Config) {
	if v > c.PoolSize {
		ck.problem(p, "%d is more than pool_size (%d)", v, c.PoolSize)
	}
}

// onlyWithAuthType refuses a secret source that auth_type server would
// ignore (it relays logins and reads no secret).
func onlyWithAuthType(ck checker, p, v string, c *Config) {
	if v != "" && c.AuthType == AuthServer && !ck.d.bad["auth_type"] {
		ck.problem(p, "has no effect with auth_type server (txlane then relays logins and reads no secret)")
	}
}

// authSource requires a source of secrets when txlane checks passwords.
func authSource(ck checker, _, v string, c *Config) {
	if (c.AuthType == AuthSCRAM || c.AuthType == AuthMD5) && v == "" && c.AuthFile == "" && !ck.d.bad["auth_file"] {
		ck.problem("auth_type", "%s needs auth_file or auth_user (and auth_query) for the users' secrets", c.AuthType)
	}
}

func notEmpty(ck checker, p, v string, _ *Config) {
	if _, present := ck.d.at[p]; present && v == "" {
		ck.problem(p, "must not be empty")
	}
}

func connString(ck checker, p, v string, _ *Config) {
	if v != "" {
		ck.d.dsn(ck.problem, p, v)
	}
}

func pairedWith(other string, get func(*Config) string) check[string] {
	return func(ck checker, p, v string, c *Config) {
		if v != "" && get(c) == "" {
			ck.problem(p, "set without %s (TLS needs both)", other)
		}
	}
}

func atLeast(min int) check[int] {
	return func(ck checker, p string, v int, _ *Config) {
		if v < min {
			ck.problem(p, "must be at least %d, got %d", min, v)
		}
	}
}

func minIdle(ck checker, p string, v int, c *Config) {
	max := c.ReadPool.MaxConns
	switch {
	case v < 0:
		ck.problem(p, "must not be negative, got %d", v)
	case v > max && max >= 1 && !ck.d.bad["read_pool.max_conns"]:
		ck.problem(p, "must not exceed read_pool.max_conns (%d), got %d", max, v)
	}
}

func positive(ck checker, p string, v time.Duration, _ *Config) {
	if v <= 0 {
		ck.problem(p, "must be positive, got %s", v)
	}
}

func notNegativeDuration(ck checker, p string, v time.Duration, _ *Config) {
	if v < 0 {
		ck.problem(p, "must not be negative, got %s (0 disables it)", v)
	}
}

// Bounds of max_message_size. NOTE: the smallest is well above any message a
// client needs for login; the largest is what a message's int32 length field,
// which counts itself, can describe.
const (
	minMessageSize = 8 * KiB
	maxMessageSize = Size(1<<31 - 1 - 4)
)

func messageSize(ck checker, p string, m Size, _ *Config) {
	switch {
	case m < 0:
		ck.problem(p, "must not be negative, got %d", m)
	case m < minMessageSize:
		ck.problem(p, "must be at least %s (%d bytes), got %d", minMessageSize, int64(minMessageSize), m)
	case m > maxMessageSize:
		ck.problem(p, "must be at most %d bytes (the protocol's 32-bit length), got %d", int64(maxMessageSize), m)
	}
}

// each applies an item check to every item of a list, at the item's path.
func each(item func(ck checker, ip, s string)) check[[]string] {
	return func(ck checker, p string, v []string, _ *Config) {
		for i, s := range v {
			if ip := fmt.Sprintf("%s[%d]", p, i); !ck.d.bad[ip] {
				item(ck, ip, s)
			}
		}
	}
}

// tableName accepts exactly what the running policy accepts: policy.ParseTable
// is the one grammar for table names.
func tableName(ck checker, ip, s string) {
	if _, err := policy.ParseTable(s); err != nil {
		ck.problem(ip, "invalid table name %q (want table or schema.table; double-quote unusual names)", s)
	}
}

// funcName accepts exactly what the running policy accepts (policy.ParseFunc).
func funcName(ck checker, ip, s string) {
	if _, err := policy.ParseFunc(s); err != nil {
		ck.problem(ip, "invalid function name %q (want function or schema.function, without parentheses)", s)
	}
}

func commentKey(ck checker, ip, s string) {
	if !validCommentKey(s) {
		ck.problem(ip, "invalid sqlcommenter key %q (want letters, digits, _ . - %%)", s)
	}
}

// ignorableParameter refuses an empty name and the parameters a login
// cannot do without.
func ignorableParameter(ck checker, ip, s string) {
	switch strings.ToLower(s) {
	case "":
		ck.problem(ip, "must not be empty")
	case "user", "database":
		ck.problem(ip, "%q cannot be ignored", s)
	}
}

func nonEmptyItem(ck checker, ip, s string) {
	if s == "" {
		ck.problem(ip, "must not be empty")
	}
}

// notAlsoWriting refuses a function listed as both read-only and writing, as
// policy.NewRules does: names are compared as the policy folds them.
func notAlsoWriting(ck checker, p string, v []string, c *Config) {
	var writing []policy.Func
	for _, s := range c.Policy.WritingFunctions {
		if f, err := policy.ParseFunc(s); err == nil {
			writing = append(writing, f)
		}
	}
	for i, s := range v {
		if f, err := policy.ParseFunc(s); err == nil && slices.Contains(writing, f) {
			ck.problem(fmt.Sprintf("%s[%d]", p, i), "function %s is also listed in policy.writing_functions", f)
		}
	}
}

// items calls check for each item of the list at p that decoded, with its
// path and node.
func items[T any](ck checker, p string, v []T, check func(ip string, item *yaml.Node, o T)) {
	for i, o := range v {
		ip := fmt.Sprintf("%s[%d]", p, i)
		if !ck.d.bad[ip] {
			check(ip, ck.d.at[ip], o)
		}
	}
}

func poolOverrideItems(ck checker, p string, v []PoolOverride, _ *Config) {
	d := ck.d
	items(ck, p, v, func(ip string, item *yaml.Node, o PoolOverride) {
		if o.Database == "" && o.User == "" {
			d.errorf(item, "%s: needs \"database\" or \"user\"", ip)
		}
		if o.PoolMode == "" && o.PoolSize == 0 && !d.bad[ip+".pool_mode"] && !d.bad[ip+".pool_size"] {
			d.errorf(item, "%s: sets neither \"pool_mode\" nor \"pool_size\"", ip)
		}
		if _, ok := d.at[ip+".pool_size"]; ok && o.PoolSize < 1 {
			ck.problem(ip+".pool_size", "must be at least 1")
		}
	})
}

// instanceID keeps instance_id within what the process IDs of cancel keys
// can carry.
func instanceID(ck checker, p string, v int, _ *Config) {
	if v < 0 || v > MaxInstanceID {
		ck.problem(p, "must be from 0 (a standalone instance) to %d, got %d", MaxInstanceID, v)
	}
}

// needsInstanceID: shared units name a holder's instance by its ID.
func needsInstanceID(ck checker, p string, v bool, c *Config) {
	if v && c.InstanceID == 0 && !ck.d.bad["instance_id"] {
		ck.problem(p, "needs instance_id (1 to %d, each instance its own): a unit's holder is named by its instance", MaxInstanceID)
	}
}

func peerItems(ck checker, p string, v []Peer, c *Config) {
	d := ck.d
	if len(v) > 0 && c.InstanceID == 0 && !d.bad["instance_id"] {
		ck.problem(p, "needs instance_id: a CancelRequest is forwarded by the instance its key carries")
	}
	seen := map[int]string{}
	if c.InstanceID != 0 {
		seen[c.InstanceID] = "instance_id"
	}
	items(ck, p, v, func(ip string, item *yaml.Node, o Peer) {
		if _, ok := d.at[ip+".id"]; !ok {
			d.errorf(item, "%s: missing key \"id\"", ip)
		} else if o.ID < 1 || o.ID > MaxInstanceID {
			ck.problem(ip+".id", "must be from 1 to %d, got %d", MaxInstanceID, o.ID)
		} else if where, dup := seen[o.ID]; dup {
			ck.problem(ip+".id", "instance %d is %s already", o.ID, where)
		} else {
			seen[o.ID] = ip
		}
		if _, ok := d.at[ip+".addr"]; !ok {
			d.errorf(item, "%s: missing key \"addr\"", ip)
		} else if !strings.HasPrefix(o.Addr, "/") { // else a Unix-domain socket's path
			d.address(ck.problem, ip+".addr", o.Addr)
		}
	})
}

func overrideItems(ck checker, p string, v []EscapeOverride, _ *Config) {
	d := ck.d
	items(ck, p, v, func(ip string, item *yaml.Node, o EscapeOverride) {
		if _, ok := d.at[ip+".table"]; !ok {
			d.errorf(item, "%s: missing key \"table\"", ip)
		} else if err := policy.CheckTablePattern(o.Table); err != nil {
			ck.problem(ip+".table", "invalid pattern %q (want a glob on schema.table, such as public.* or *.embeddings)", o.Table)
		}
		if _, ok := d.at[ip+".escape"]; !ok {
			d.errorf(item, "%s: missing key \"escape\"", ip)
		}
	})
}
