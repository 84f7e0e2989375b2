package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
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
	c, _, err := LoadWithSources(path)
	return c, err
}

// LoadWithSources is Load that also says where each key's value came from
// (for SHOW POLICY, see Config.Rows).
func LoadWithSources(path string) (*Config, Sources, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return ParseWithSources(path, data)
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
	c, _, err := ParseWithSources(file, data)
	return c, err
}

// ParseWithSources is Parse that also says where each key's value came from.
func ParseWithSources(file string, data []byte) (*Config, Sources, error) {
	return parseSources(file, data, os.LookupEnv)
}

// parse is Parse with the environment lookup as a parameter.
func parse(file string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	c, _, err := parseSources(file, data, lookup)
	return c, err
}

// parseSources is ParseWithSources with the environment lookup as a
// parameter.
func parseSources(file string, data []byte, lookup func(string) (string, bool)) (*Config, Sources, error) {
	d := &decoder{
		file:   file,
		lookup: lookup,
		at:     make(map[string]*yaml.Node),
		bad:    make(map[string]bool),
		src:    make(Sources),
	}
	c := Default()
	root, ok := d.document(data)
	if !ok {
		return nil, nil, d.errs
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
		return nil, nil, d.errs
	}
	return c, d.src, nil
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
	// src records where the value of each key the file sets came from.
	src Sources
	// fromEnv is set by expand when an environment variable supplied text;
	// section resets it before decoding each key.
	fromEnv bool
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

// entry decodes the value of one key of a mapping.
type entry struct {
	key    string
	decode func(path string, v *yaml.Node)
}

// decodeConfig decodes the top-level mapping into c, as the key table
// describes it.
func (d *decoder) decodeConfig(root *yaml.Node, c *Config) {
	d.section("", root, c)
}

// section decodes the mapping n holding the keys of keyTable under prefix
// ("" for the top level, "read_pool" for its section): each key whose name
// has one more part is decoded by its value, and each section one level
// down by section again. Entries keep the table's order, so that "did you
// mean" suggestions prefer the key listed first.
func (d *decoder) section(prefix string, n *yaml.Node, c *Config) {
	var entries []entry
	seen := make(map[string]bool)
	for _, k := range keyTable {
		rest := k.Name
		if prefix != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(k.Name, prefix+"."); !ok {
				continue
			}
		}
		head, _, nested := strings.Cut(rest, ".")
		if seen[head] {
			continue
		}
		seen[head] = true
		if nested {
			entries = append(entries, entry{head, func(p string, v *yaml.Node) { d.section(p, v, c) }})
			continue
		}
		entries = append(entries, entry{head, func(p string, v *yaml.Node) {
			d.fromEnv = false
			k.v.decode(d, p, v, c)
			d.src[k.Name] = SourceFile
			if d.fromEnv {
				d.src[k.Name] = SourceEnv
			}
		}})
	}
	d.mapping(prefix, n, entries)
}

// mapping decodes the mapping n at key path p: each known key's value is
// handed to its field, and unknown and duplicate keys are reported. A null
// value (an empty section) leaves every field at its default.
func (d *decoder) mapping(p string, n *yaml.Node, fields []entry) {
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
		i := slices.IndexFunc(fields, func(f entry) bool { return f.key == k.Value })
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
func (d *decoder) unknownKey(k *yaml.Node, fields []entry) {
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
func (d *decoder) str(p string, n *yaml.Node) (string, bool) {
	return d.scalar(p, n, "a string")
}

// into returns a decode function that stores what parse decodes in dst.
func into[T any](d *decoder, dst *T, parse func(*decoder, string, *yaml.Node) (T, bool)) func(string, *yaml.Node) {
	return func(p string, n *yaml.Node) {
		if v, ok := parse(d, p, n); ok {
			*dst = v
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

// parsed decodes a scalar that must not be empty (want says what it must
// be) with parse. A value parse refuses is marked bad and reported as
// "p: " and parse's error.
func parsed[T any](d *decoder, p string, n *yaml.Node, want string, parse func(string) (T, error)) (T, bool) {
	var zero T
	s, ok := d.nonNull(p, n, want)
	if !ok {
		return zero, false
	}
	v, err := parse(s)
	if err != nil {
		d.bad[p] = true
		d.errorf(resolve(n), "%s: %v", p, err)
		return zero, false
	}
	return v, true
}

// int decodes a decimal integer.
func (d *decoder) int(p string, n *yaml.Node) (int, bool) {
	return parsed(d, p, n, "an integer", func(s string) (int, error) {
		v, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("expected an integer, got %q", s)
		}
		return v, nil
	})
}

// bool decodes true or false.
func (d *decoder) bool(p string, n *yaml.Node) (bool, bool) {
	return parsed(d, p, n, "true or false", func(s string) (bool, error) {
		switch lower(s) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return false, fmt.Errorf("expected true or false, got %q", s)
	})
}

// duration decodes a duration in time.ParseDuration syntax.
func (d *decoder) duration(p string, n *yaml.Node) (time.Duration, bool) {
	return parsed(d, p, n, "a duration", func(s string) (time.Duration, error) {
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%s (use Go duration syntax such as 500ms, 30s, 1m30s, 1h)",
				strings.TrimPrefix(err.Error(), "time: "))
		}
		return v, nil
	})
}

// size decodes a byte count (see ParseSize).
func (d *decoder) size(p string, n *yaml.Node) (Size, bool) {
	return parsed(d, p, n, "a size", ParseSize)
}

// parseEnum decodes one of the allowed values of a string enum.
func parseEnum[T ~string](d *decoder, p string, n *yaml.Node, allowed []T) (T, bool) {
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return parsed(d, p, n, "one of "+strings.Join(names, ", "), func(s string) (T, error) {
		if !slices.Contains(names, s) {
			return "", fmt.Errorf("invalid value %q (allowed: %s)", s, strings.Join(names, ", "))
		}
		return T(s), nil
	})
}

// listOf decodes a list whose items item decodes, each at path p[i]. Null is
// the empty list. An item that cannot be decoded is reported by item and kept
// as what item returns for it ("" for a string), so that the items after it
// keep their indexes in later problems.
func listOf[T any](d *decoder, p string, n *yaml.Node, item func(ip string, n *yaml.Node) T) ([]T, bool) {
	n = resolve(n)
	if isNull(n) {
		return []T{}, true
	}
	if n.Kind != yaml.SequenceNode {
		d.typeError(p, n, "a list")
		return nil, false
	}
	out := make([]T, 0, len(n.Content))
	for i, it := range n.Content {
		ip := fmt.Sprintf("%s[%d]", p, i)
		d.at[ip] = resolve(it)
		out = append(out, item(ip, it))
	}
	return out, true
}

// strs decodes a list of strings (see listOf).
func (d *decoder) strs(p string, n *yaml.Node) ([]string, bool) {
	return listOf(d, p, n, func(ip string, n *yaml.Node) string {
		s, _ := d.scalar(ip, n, "a string")
		return s
	})
}

// escapeOverrides decodes policy.escape_overrides: a list of {table, escape}.
func (d *decoder) escapeOverrides(p string, n *yaml.Node) ([]EscapeOverride, bool) {
	return listOf(d, p, n, func(ip string, n *yaml.Node) EscapeOverride {
		var o EscapeOverride
		d.mapping(ip, n, []entry{
			{"table", into(d, &o.Table, (*decoder).str)},
			{"escape", into(d, &o.Escape, func(d *decoder, p string, n *yaml.Node) (Escape, bool) {
				return parseEnum(d, p, n, escapeValues)
			})},
		})
		return o
	})
}

// poolOverrides decodes pool_overrides: a list of {database, user,
// pool_mode, pool_size}.
func (d *decoder) poolOverrides(p string, n *yaml.Node) ([]PoolOverride, bool) {
	return listOf(d, p, n, func(ip string, n *yaml.Node) PoolOverride {
		var o PoolOverride
		d.mapping(ip, n, []entry{
			{"database", into(d, &o.Database, (*decoder).str)},
			{"user", into(d, &o.User, (*decoder).str)},
			{"pool_mode", into(d, &o.PoolMode, func(d *decoder, p string, n *yaml.Node) (PoolMode, bool) {
				return parseEnum(d, p, n, poolModeValues)
			})},
			{"pool_size", into(d, &o.PoolSize, (*decoder).int)},
		})
		return o
	})
}

// peers decodes peers: a list of {id, addr}.
func (d *decoder) peers(p string, n *yaml.Node) ([]Peer, bool) {
	return listOf(d, p, n, func(ip string, n *yaml.Node) Peer {
		var o Peer
		d.mapping(ip, n, []entry{
			{"id", into(d, &o.ID, (*decoder).int)},
			{"addr", into(d, &o.Addr, (*decoder).str)},
		})
		return o
	})
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
				d.fromEnv = true
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
// missing required keys, ranges, addresses, connection strings, names, and
// keys that go together, as the key table's checks say. Positions come from
// the value nodes recorded while decoding; a field left at its default has
// none, but every default is valid on its own.
func (d *decoder) validate(c *Config) {
	ck := checker{d: d}
	for _, k := range keyTable {
		if _, present := d.at[k.Name]; k.Required != "" && !present {
			msg := fmt.Sprintf("missing required key %q (%s)", k.Name, k.Required)
			if d.root != nil {
				d.errorf(d.root, "%s", msg)
			} else {
				d.errorAt(1, 1, msg)
			}
			continue
		}
		k.v.check(ck, k.Name, c)
	}
	if len(d.errs) > 0 {
		return
	}
	// The checks above accept exactly what the policy accepts, name by name;
	// building the rules the server will run makes sure of it for the file as
	// a whole, so that `txlane check` never passes a file the server refuses.
	if _, err := c.Rules(); err != nil {
		ck.problem("policy", "refused by the routing policy: %v", err)
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
