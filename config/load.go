package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"gopkg.in/yaml.v3"
)

// Error is one problem in a configuration file, at a 1-based line and column
// (counted in characters). NOTE: for YAML syntax errors the parser gives only
// the line, so Col is 1.
type Error struct {
	File string // the file name given to Load or Parse
	Line int    // 0 if the problem has no position
	Col  int    // 0 if only the line is known
	Msg  string // the problem, without position
}

// Error formats e as FILE:LINE:COL: message.
func (e Error) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
}

// Errors is every problem found in one configuration file, ordered by
// position. Load and Parse return a non-empty Errors when the file is invalid.
type Errors []Error

// Error formats every problem, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns each Error, for errors.As and errors.Is.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Load reads the configuration file at path, expands environment variable
// references, decodes and validates it. Problems in the file are returned as
// Errors naming path; a file that cannot be read yields the error of
// os.ReadFile. The returned Config must not be modified.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load for a file already read: file names it in errors, data is
// its content. Environment variables are read from the process environment.
//
// In scalar values (never in keys), ${NAME} is replaced by the value of the
// environment variable NAME, which must be set; ${NAME:-default} uses default
// when NAME is unset or empty; $${ gives a literal ${. A default cannot contain
// '}'. Expansion happens within one scalar and before its value is
// interpreted, so it can supply a number or a duration but not a list.
func Parse(file string, data []byte) (*Config, error) {
	return parse(file, data, os.LookupEnv)
}

// parse is Parse with the environment lookup as a parameter.
func parse(file string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	d := &decoder{
		file:   file,
		lookup: lookup,
		at:     make(map[string]*yaml.Node),
		bad:    make(map[string]bool),
	}
	c := Default()
	root, ok := d.document(data)
	if !ok {
		return nil, d.errs
	}
	d.root = root
	if root != nil {
		d.decodeConfig(root, c)
	}
	d.validate(c)
	if len(d.errs) > 0 {
		slices.SortStableFunc(d.errs, func(a, b Error) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Col - b.Col
		})
		return nil, d.errs
	}
	return c, nil
}

// decoder turns a YAML node tree into a Config, collecting problems.
type decoder struct {
	file   string
	lookup func(string) (string, bool)
	root   *yaml.Node // the document's top-level node; nil for an empty file
	errs   Errors

	// at holds the value node of every key path present in the file
	// ("read_pool.max_conns", "policy.vector_tables[2]"), so that validation
	// can point at it.
	at map[string]*yaml.Node
	// bad marks key paths whose value could not be decoded; validation skips
	// them (their field still holds the default) so each mistake is reported
	// once.
	bad map[string]bool
}

// errorf records a problem at node n.
func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errorAt(n.Line, n.Column, fmt.Sprintf(format, args...))
}

func (d *decoder) errorAt(line, col int, msg string) {
	d.errs = append(d.errs, Error{File: d.file, Line: line, Col: col, Msg: msg})
}

// yamlLine matches the position yaml.v3 gives its syntax errors: a line only.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data as exactly one YAML document and returns its top-level
// node, nil if the file is empty. ok is false after a syntax error.
func (d *decoder) document(data []byte) (root *yaml.Node, ok bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		d.syntaxError(err)
		return nil, false
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
		return nil, false
	default:
		d.errorf(&extra, "a second YAML document: the file must hold one")
		return nil, false
	}
	if len(doc.Content) == 0 {
		return nil, true
	}
	return doc.Content[0], true
}

// syntaxError records a YAML syntax error. NOTE: yaml.v3 reports a line but
// no column, so the column is given as 1.
func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.errorAt(line, 1, "invalid YAML: "+m[2])
		return
	}
	d.errorAt(1, 1, "invalid YAML: "+strings.TrimPrefix(msg, "yaml: "))
}

// field decodes the value of one key into a Config field.
type field struct {
	key    string
	decode func(path string, v *yaml.Node)
}

// decodeConfig decodes the top-level mapping into c.
func (d *decoder) decodeConfig(root *yaml.Node, c *Config) {
	d.mapping("", root, []field{
		{"listen", d.str(&c.Listen)},
		{"primary", d.str(&c.Primary)},
		{"read_pool", func(p string, v *yaml.Node) {
			r := &c.ReadPool
			d.mapping(p, v, []field{
				{"dsn", d.str(&r.DSN)},
				{"max_conns", d.int(&r.MaxConns)},
				{"min_idle", d.int(&r.MinIdle)},
				{"acquire_timeout", d.duration(&r.AcquireTimeout)},
				{"max_lifetime", d.duration(&r.MaxLifetime)},
				{"health_check_period", d.duration(&r.HealthCheckPeriod)},
				{"on_unavailable", enum(d, &r.OnUnavailable, onUnavailableValues)},
			})
		}},
		{"policy", func(p string, v *yaml.Node) {
			pol := &c.Policy
			d.mapping(p, v, []field{
				{"vector_tables", d.strs(&pol.VectorTables)},
				{"discover_vector_tables", d.bool(&pol.DiscoverVectorTables)},
				{"discover_interval", d.duration(&pol.DiscoverInterval)},
				{"after_write", enum(d, &pol.AfterWrite, afterWriteValues)},
				{"escape", enum(d, &pol.Escape, escapeValues)},
				{"escape_overrides", d.escapeOverrides(&pol.EscapeOverrides)},
				{"unit_comment_keys", d.strs(&pol.UnitCommentKeys)},
				{"reroute_wait_timeout", d.duration(&pol.RerouteWaitTimeout)},
				{"writing_functions", d.strs(&pol.WritingFunctions)},
				{"read_only_functions", d.strs(&pol.ReadOnlyFunctions)},
			})
		}},
		{"admin", func(p string, v *yaml.Node) {
			d.mapping(p, v, []field{
				{"listen", d.str(&c.Admin.Listen)},
				{"users", d.strs(&c.Admin.Users)},
			})
		}},
		{"log", func(p string, v *yaml.Node) {
			d.mapping(p, v, []field{
				{"level", enum(d, &c.Log.Level, logLevelValues)},
				{"format", enum(d, &c.Log.Format, logFormatValues)},
			})
		}},
		{"tls", func(p string, v *yaml.Node) {
			d.mapping(p, v, []field{
				{"cert", d.str(&c.TLS.Cert)},
				{"key", d.str(&c.TLS.Key)},
			})
		}},
		{"max_client_conn", d.int(&c.MaxClientConn)},
		{"max_message_size", d.size(&c.MaxMessageSize)},
		{"client_login_timeout", d.duration(&c.ClientLoginTimeout)},
		{"query_wait_timeout", d.duration(&c.QueryWaitTimeout)},
		{"idle_in_transaction_timeout", d.duration(&c.IdleInTransactionTimeout)},
		{"shutdown_timeout", d.duration(&c.ShutdownTimeout)},
	})
}

// mapping decodes the mapping n at key path p: each known key's value is
// handed to its field, and unknown and duplicate keys are reported. A null
// value (an empty section) leaves every field at its default.
func (d *decoder) mapping(p string, n *yaml.Node, fields []field) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(p, n, "a mapping")
		return
	}
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "expected a key, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, "duplicate key %q (first set at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		i := slices.IndexFunc(fields, func(f field) bool { return f.key == k.Value })
		if i < 0 {
			d.unknownKey(k, fields)
			continue
		}
		kp := join(p, k.Value)
		d.at[kp] = resolve(v)
		fields[i].decode(kp, v)
	}
}

// unknownKey reports key k, suggesting the closest known key within edit
// distance 2.
func (d *decoder) unknownKey(k *yaml.Node, fields []field) {
	best, bestDist := "", 3
	for _, f := range fields {
		if dist := editDistance(k.Value, f.key); dist < bestDist {
			best, bestDist = f.key, dist
		}
	}
	if best != "" {
		d.errorf(k, "unknown key %q (did you mean %q?)", k.Value, best)
		return
	}
	d.errorf(k, "unknown key %q", k.Value)
}

// typeError reports that the value n at key path p is not of the wanted kind.
func (d *decoder) typeError(p string, n *yaml.Node, want string) {
	d.bad[p] = true
	if p == "" {
		d.errorf(n, "expected %s of keys at the top level, got %s", want, describe(n))
		return
	}
	d.errorf(n, "%s: expected %s, got %s", p, want, describe(n))
}

// scalar returns the text of the scalar value n at key path p, with
// environment variables expanded. ok is false, after reporting the problem, if
// n is not a scalar or expansion failed.
func (d *decoder) scalar(p string, n *yaml.Node, want string) (s string, ok bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		d.typeError(p, n, want)
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	s, ok = d.expand(n)
	if !ok {
		d.bad[p] = true
	}
	return s, ok
}

// str decodes a string. Any scalar is accepted as its text; null is "".
func (d *decoder) str(dst *string) func(string, *yaml.Node) {
	return func(p string, n *yaml.Node) {
		if s, ok := d.scalar(p, n, "a string"); ok {
			*dst = s
		}
	}
}

// nonNull returns the expanded text of a scalar that must not be empty.
func (d *decoder) nonNull(p string, n *yaml.Node, want string) (string, bool) {
	if isNull(resolve(n)) {
		d.typeError(p, resolve(n), want)
		return "", false
	}
	return d.scalar(p, n, want)
}

// int decodes a decimal integer.
func (d *decoder) int(dst *int) func(string, *yaml.Node) {
	return func(p string, n *yaml.Node) {
		s, ok := d.nonNull(p, n, "an integer")
		if !ok {
			return
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			d.bad[p] = true
			d.errorf(resolve(n), "%s: expected an integer, got %q", p, s)
			return
		}
		*dst = v
	}
}

// bool decodes true or false.
func (d *decoder) bool(dst *bool) func(string, *yaml.Node) {
	return func(p string, n *yaml.Node) {
		s, ok := d.nonNull(p, n, "true or false")
		if !ok {
			return
		}
		switch lower(s) {
		case "true":
			*dst = true
		case "false":
			*dst = false
		default:
			d.bad[p] = true
			d.errorf(resolve(n), "%s: expected true or false, got %q", p, s)
		}
	}
}

// duration decodes a duration in time.ParseDuration syntax.
func (d *decoder) duration(dst *time.Duration) func(string, *yaml.Node) {
	return func(p string, n *yaml.Node) {
		s, ok := d.nonNull(p, n, "a duration")
		if !ok {
			return
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			d.bad[p] = true
			d.errorf(resolve(n), "%s: %s (use Go duration syntax such as 500ms, 30s, 1m30s, 1h)",
				p, strings.TrimPrefix(err.Error(), "time: "))
			return
		}
		*dst = v
	}
}

// size decodes a byte count (see ParseSize).
func (d *decoder) size(dst *Size) func(string, *yaml.Node) {
	return func(p string, n *yaml.Node) {
		s, ok := d.nonNull(p, n, "a size")
		if !ok {
			return
		}
		v, err := ParseSize(s)
		if err != nil {
			d.bad[p] = true
			d.errorf(resolve(n), "%s: %v", p, err)
			return
		}
		*dst = v
	}
}

// enum decodes one of the allowed values of a string enum.
func enum[T ~string](d *decoder, dst *T, allowed []T) func(string, *yaml.Node) {
	return func(p string, n *yaml.Node) {
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = string(a)
		}
		want := "one of " + strings.Join(names, ", ")
		s, ok := d.nonNull(p, n, want)
		if !ok {
			return
		}
		if !slices.Contains(names, s) {
			d.bad[p] = true
			d.errorf(resolve(n), "%s: invalid value %q (allowed: %s)", p, s, strings.Join(names, ", "))
			return
		}
		*dst = T(s)
	}
}

// strs decodes a list of strings. Null is the empty list.
func (d *decoder) strs(dst *[]string) func(string, *yaml.Node) {
	return func(p string, n *yaml.Node) {
		n = resolve(n)
		if isNull(n) {
			*dst = []string{}
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.typeError(p, n, "a list")
			return
		}
		out := make([]string, 0, len(n.Content))
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", p, i)
			d.at[ip] = resolve(item)
			if s, ok := d.scalar(ip, item, "a string"); ok {
				out = append(out, s)
			}
		}
		*dst = out
	}
}

// escapeOverrides decodes policy.escape_overrides: a list of {table, escape}.
func (d *decoder) escapeOverrides(dst *[]EscapeOverride) func(string, *yaml.Node) {
	return func(p string, n *yaml.Node) {
		n = resolve(n)
		if isNull(n) {
			*dst = []EscapeOverride{}
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.typeError(p, n, "a list")
			return
		}
		out := make([]EscapeOverride, 0, len(n.Content))
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", p, i)
			d.at[ip] = resolve(item)
			var o EscapeOverride
			d.mapping(ip, item, []field{
				{"table", d.str(&o.Table)},
				{"escape", enum(d, &o.Escape, escapeValues)},
			})
			out = append(out, o)
		}
		*dst = out
	}
}

// expand replaces ${NAME}, ${NAME:-default} and $${ in the value of scalar n.
// Problems are reported at the reference's own column when the scalar is
// written plainly or single-quoted on one line, else at the scalar.
func (d *decoder) expand(n *yaml.Node) (string, bool) {
	s := n.Value
	if !strings.Contains(s, "${") {
		return s, true
	}
	errorAt := func(off int, format string, args ...any) {
		col := n.Column
		exact := (n.Style == 0 || n.Style == yaml.TaggedStyle) ||
			(n.Style == yaml.SingleQuotedStyle && !strings.Contains(s, "'"))
		if exact && !strings.Contains(s, "\n") {
			col += utf8.RuneCountInString(s[:off])
			if n.Style == yaml.SingleQuotedStyle {
				col++
			}
		}
		d.errorAt(n.Line, col, fmt.Sprintf(format, args...))
	}
	var b strings.Builder
	ok := true
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				errorAt(i, "unterminated ${ (write $${ for a literal ${)")
				return "", false
			}
			ref := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(ref, ":-")
			v, set := "", false
			if validEnvName(name) {
				v, set = d.lookup(name)
			}
			switch {
			case !validEnvName(name):
				errorAt(i, "invalid variable reference ${%s} (want ${NAME} or ${NAME:-default})", ref)
				ok = false
			case set && (!hasDef || v != ""):
				b.WriteString(v)
			case hasDef:
				b.WriteString(def)
			default:
				errorAt(i, "environment variable %s is not set (write ${%s:-default} to give a default)", name, name)
				ok = false
			}
			i += 2 + end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), ok
}

// validEnvName reports whether s is a shell variable name.
func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validate reports problems in the values of c that decoding could not see:
// ranges, addresses, connection strings, names, and keys that go together.
// Positions come from the value nodes recorded while decoding; a field left
// at its default has none, but every default is valid on its own.
func (d *decoder) validate(c *Config) {
	// problem records msg at key path p, unless p failed to decode.
	problem := func(p string, format string, args ...any) {
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

	d.address(problem, "listen", c.Listen)
	switch _, present := d.at["primary"]; {
	case !present && d.root != nil:
		d.errorf(d.root, "missing required key \"primary\" (the connection string of the primary)")
	case !present:
		d.errorAt(1, 1, "missing required key \"primary\" (the connection string of the primary)")
	case c.Primary == "":
		problem("primary", "must not be empty")
	default:
		d.dsn(problem, "primary", c.Primary)
	}

	r := c.ReadPool
	if r.DSN != "" {
		d.dsn(problem, "read_pool.dsn", r.DSN)
	}
	if r.MaxConns < 1 {
		problem("read_pool.max_conns", "must be at least 1, got %d", r.MaxConns)
	}
	switch {
	case r.MinIdle < 0:
		problem("read_pool.min_idle", "must not be negative, got %d", r.MinIdle)
	case r.MinIdle > r.MaxConns && r.MaxConns >= 1 && !d.bad["read_pool.max_conns"]:
		problem("read_pool.min_idle", "must not exceed read_pool.max_conns (%d), got %d", r.MaxConns, r.MinIdle)
	}
	positive(problem, "read_pool.acquire_timeout", r.AcquireTimeout)
	positive(problem, "read_pool.max_lifetime", r.MaxLifetime)
	positive(problem, "read_pool.health_check_period", r.HealthCheckPeriod)

	pol := c.Policy
	for i, t := range pol.VectorTables {
		if !validName(t) {
			problem(fmt.Sprintf("policy.vector_tables[%d]", i), "invalid table name %q (want table or schema.table; double-quote unusual names)", t)
		}
	}
	positive(problem, "policy.discover_interval", pol.DiscoverInterval)
	for i, o := range pol.EscapeOverrides {
		ip := fmt.Sprintf("policy.escape_overrides[%d]", i)
		if d.bad[ip] {
			continue
		}
		item := d.at[ip]
		if _, ok := d.at[ip+".table"]; !ok {
			d.errorf(item, "%s: missing key \"table\"", ip)
		} else if _, err := path.Match(o.Table, ""); err != nil || o.Table == "" {
			problem(ip+".table", "invalid pattern %q (want a glob on schema.table, such as public.* or *.embeddings)", o.Table)
		}
		if _, ok := d.at[ip+".escape"]; !ok {
			d.errorf(item, "%s: missing key \"escape\"", ip)
		}
	}
	for i, k := range pol.UnitCommentKeys {
		if !validCommentKey(k) {
			problem(fmt.Sprintf("policy.unit_comment_keys[%d]", i), "invalid sqlcommenter key %q (want letters, digits, _ . - %%)", k)
		}
	}
	positive(problem, "policy.reroute_wait_timeout", pol.RerouteWaitTimeout)
	for i, f := range pol.WritingFunctions {
		if !validName(f) {
			problem(fmt.Sprintf("policy.writing_functions[%d]", i), "invalid function name %q (want function or schema.function, without parentheses)", f)
		}
	}
	for i, f := range pol.ReadOnlyFunctions {
		if !validName(f) {
			problem(fmt.Sprintf("policy.read_only_functions[%d]", i), "invalid function name %q (want function or schema.function, without parentheses)", f)
		}
	}

	if c.Admin.Listen != "" {
		if d.address(problem, "admin.listen", c.Admin.Listen) && c.Admin.Listen == c.Listen {
			problem("admin.listen", "same address as listen (%s)", c.Listen)
		}
	}
	for i, u := range c.Admin.Users {
		if u == "" {
			problem(fmt.Sprintf("admin.users[%d]", i), "must not be empty")
		}
	}

	switch {
	case c.TLS.Cert != "" && c.TLS.Key == "":
		problem("tls.cert", "set without tls.key (TLS needs both)")
	case c.TLS.Key != "" && c.TLS.Cert == "":
		problem("tls.key", "set without tls.cert (TLS needs both)")
	}

	if c.MaxClientConn < 1 {
		problem("max_client_conn", "must be at least 1, got %d", c.MaxClientConn)
	}
	switch m := c.MaxMessageSize; {
	case m < 0:
		problem("max_message_size", "must not be negative, got %d", m)
	case m < minMessageSize:
		problem("max_message_size", "must be at least %s (%d bytes), got %d", minMessageSize, int64(minMessageSize), m)
	case m > maxMessageSize:
		problem("max_message_size", "must be at most %d bytes (the protocol's 32-bit length), got %d", int64(maxMessageSize), m)
	}
	positive(problem, "client_login_timeout", c.ClientLoginTimeout)
	positive(problem, "query_wait_timeout", c.QueryWaitTimeout)
	if c.IdleInTransactionTimeout < 0 {
		problem("idle_in_transaction_timeout", "must not be negative, got %s (0 disables it)", c.IdleInTransactionTimeout)
	}
	positive(problem, "shutdown_timeout", c.ShutdownTimeout)
}

// Bounds of max_message_size. NOTE: the smallest is well above any message a
// client needs for login; the largest is what a message's int32 length field,
// which counts itself, can describe.
const (
	minMessageSize = 8 * KiB
	maxMessageSize = Size(1<<31 - 1 - 4)
)

// positive reports a duration that is not greater than zero.
func positive(problem func(string, string, ...any), p string, v time.Duration) {
	if v <= 0 {
		problem(p, "must be positive, got %s", v)
	}
}

// address reports whether s is a valid host:port, reporting it if not.
func (d *decoder) address(problem func(string, string, ...any), p, s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err)
		}
		problem(p, "invalid address %q: %v (want host:port, such as 127.0.0.1:6432)", s, err)
		return false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		problem(p, "invalid port %q in %q (want a number from 0 to 65535)", port, s)
		return false
	}
	return true
}

// dsn reports a connection string that pgconn cannot parse.
func (d *decoder) dsn(problem func(string, string, ...any), p, s string) {
	if _, err := pgconn.ParseConfig(s); err != nil {
		problem(p, "invalid connection string: %s", dsnReason(err))
	}
}

// dsnReason is pgconn's parse error without the connection string it quotes:
// the error points at the string already, and the string may carry a password
// that pgconn can only mask on a best-effort basis.
func dsnReason(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "cannot parse `"); ok {
		if i := strings.LastIndex(rest, "`: "); i >= 0 {
			return rest[i+len("`: "):]
		}
	}
	return msg
}

// validName reports whether s is a name or schema.name, each part either a
// plain SQL identifier or a double-quoted one.
func validName(s string) bool {
	for parts := 1; ; parts++ {
		if strings.HasPrefix(s, `"`) {
			// A quoted identifier ends at a '"' not followed by another.
			end := -1
			for i := 1; i < len(s) && end < 0; i++ {
				switch {
				case s[i] != '"':
				case i+1 < len(s) && s[i+1] == '"':
					i++
				default:
					end = i
				}
			}
			if end < 2 {
				return false
			}
			s = s[end+1:]
		} else {
			i := strings.IndexByte(s, '.')
			if i < 0 {
				i = len(s)
			}
			if !plainIdent(s[:i]) {
				return false
			}
			s = s[i:]
		}
		if s == "" {
			return true
		}
		if s[0] != '.' || parts == 2 {
			return false
		}
		s = s[1:]
	}
}

// plainIdent reports whether s is an unquoted SQL identifier.
func plainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) || i > 0 && (unicode.IsDigit(r) || r == '$')) {
			return false
		}
	}
	return true
}

// validCommentKey reports whether s can be a sqlcommenter key: keys are
// URL-encoded, so letters, digits, '_', '.', '-' and '%' suffice.
func validCommentKey(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r < utf8.RuneSelf && (r == '_' || r == '.' || r == '-' || r == '%' ||
			'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')) {
			return false
		}
	}
	return true
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an empty value (nothing, ~ or null).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names what node n holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "an empty value"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported YAML node"
}

// join appends key to the dotted key path p.
func join(p, key string) string {
	if p == "" {
		return key
	}
	return p + "." + key
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// characters each count 1.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
