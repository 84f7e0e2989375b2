package difftest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Scenario is a parsed scenario file: a sequence of steps on named connections.
type Scenario struct {
	// Name is the file's base name without extension.
	Name  string
	Steps []*Step
}

// StepKind says which protocol flow a step uses.
type StepKind int

// Step kinds.
const (
	StepSimple        StepKind = iota // simple Query (pgconn Exec)
	StepExtended                      // unnamed statement (pgconn ExecParams)
	StepPrepare                       // Parse + Describe of a named statement (pgconn Prepare)
	StepExecPrepared                  // Bind/Execute of a named statement (pgconn ExecPrepared)
	StepDeallocate                    // Close of a named statement (pgconn Deallocate)
	StepCopyIn                        // COPY FROM STDIN with inline data (pgconn CopyFrom)
	StepCopyOut                       // COPY TO STDOUT (pgconn CopyTo)
	StepPipeline                      // several requests and Syncs (pgconn StartPipeline)
	StepSync                          // a Sync inside a pipeline
	StepFlush                         // a Flush inside a pipeline: results so far are read
	StepNotifications                 // wait for and record notifications
	StepClose                         // close the current connection
	StepSleep                         // pause the scenario
	StepRaw                           // protocol messages one by one (pgconn Frontend)
)

var kindNames = map[StepKind]string{
	StepSimple: "simple", StepExtended: "extended", StepPrepare: "prepare",
	StepExecPrepared: "exec", StepDeallocate: "deallocate", StepCopyIn: "copy in",
	StepCopyOut: "copy out", StepPipeline: "pipeline", StepSync: "sync",
	StepNotifications: "notifications", StepClose: "close", StepSleep: "sleep",
	StepFlush: "flush", StepRaw: "raw",
}

func (k StepKind) String() string { return kindNames[k] }

// Step is one action of a scenario.
type Step struct {
	Line int // line in the scenario file where the step starts
	Kind StepKind
	// Conn names the connection the step runs on; ConnParams are the key=value pairs of the
	// latest "-- conn" directive for it.
	Conn       string
	ConnParams map[string]string
	SQL        string
	Name       string    // prepared statement name
	Params     []*string // text parameters, nil entries are NULL
	ParamsText string    // the "-- params:" argument as written
	Binary     bool      // request binary results
	Timeout    time.Duration
	Data       string  // COPY FROM STDIN data
	Count      int     // notifications to wait for
	Items      []*Step // pipeline items
	Raw        []*RawMessage
}

// RawMessage is one line of a "-- raw" block: a frontend message, or a Flush or Sync after
// which the runner reads the responses.
type RawMessage struct {
	Line int
	Text string // the line as written
	// Type is parse, bind, describe, execute, close, flush, sync, query, copydata, copydone,
	// copyfail or fcall.
	Type    string
	Name    string    // parse: statement; bind, execute: portal; describe, close: target
	Stmt    string    // bind: statement
	Target  byte      // describe, close: 'S' (statement) or 'P' (portal)
	SQL     string    // parse, query; the line of copydata; the message of copyfail
	Params  []*string // bind, fcall
	MaxRows uint32    // execute (0: all rows)
	OID     uint32    // fcall: the function
}

// ParseFile reads and parses a scenario file.
func ParseFile(path string) (*Scenario, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	sc, err := Parse(name, string(src))
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	return sc, nil
}

var (
	directiveRE  = regexp.MustCompile(`^--\s*([a-z][a-z-]*)(?:\s*:\s*(.*?)|\s+(.*?)|)\s*$`)
	typoRE       = regexp.MustCompile(`^--\s*([a-z][a-z-]*)\s*:`)
	copyInRE     = regexp.MustCompile(`(?is)^\s*copy\b.*\bfrom\s+stdin\b`)
	copyOutRE    = regexp.MustCompile(`(?is)^\s*copy\b.*\bto\s+stdout\b`)
	connParamRE  = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_.]*)=(.*)$`)
	copyEndMark  = `\.`
	defaultConn  = "main"
	knownDirects = map[string]bool{
		"conn": true, "close": true, "mode": true, "params": true, "binary": true,
		"timeout": true, "prepare": true, "exec": true, "deallocate": true, "empty": true,
		"notifications": true, "pipeline": true, "sync": true, "end": true, "sleep": true,
		"flush": true, "raw": true,
	}
)

// parser holds the state of Parse. Directives that apply to the next statement are pending
// until a statement or exec consumes them.
type parser struct {
	lines []string
	i     int // index of the next line

	conn       string
	connParams map[string]map[string]string
	extended   bool // -- mode: extended

	params     []*string
	paramsText string
	hasParams  bool
	binary     bool
	timeout    time.Duration
	prepare    string
	pendingAt  int // line of the first pending directive, for error messages

	pipeline *Step // open pipeline, nil outside one
}

const rawHelp = "raw lines: parse NAME SQL | bind PORTAL STMT [params] | describe statement|portal NAME | " +
	"execute PORTAL [MAXROWS] | close statement|portal NAME | flush | sync | query SQL | copydata LINE | copydone | " +
	"copyfail MESSAGE | fcall OID [params] (NAME - is the unnamed one)"

// Parse parses scenario source. name is used in messages and as Scenario.Name.
func Parse(name, src string) (*Scenario, error) {
	p := &parser{
		lines:      strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n"),
		conn:       defaultConn,
		connParams: map[string]map[string]string{},
	}
	sc := &Scenario{Name: name}
	for p.i < len(p.lines) {
		lineNo := p.i + 1
		line := p.lines[p.i]
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			p.i++
		case strings.HasPrefix(trimmed, "--"):
			p.i++
			step, err := p.directive(lineNo, trimmed)
			if err != nil {
				return nil, fmt.Errorf("%d: %w", lineNo, err)
			}
			if step != nil {
				p.add(sc, step)
			}
		default:
			step, err := p.statement()
			if err != nil {
				return nil, fmt.Errorf("%d: %w", lineNo, err)
			}
			p.add(sc, step)
		}
	}
	if p.pipeline != nil {
		return nil, fmt.Errorf("%d: pipeline without -- end", p.pipeline.Line)
	}
	if p.hasParams || p.binary || p.prepare != "" || p.timeout != 0 {
		return nil, fmt.Errorf("%d: directive applies to no step", p.pendingAt)
	}
	return sc, nil
}

// add appends step to the open pipeline or to the scenario.
func (p *parser) add(sc *Scenario, step *Step) {
	if p.pipeline != nil && step != p.pipeline {
		p.pipeline.Items = append(p.pipeline.Items, step)
		return
	}
	sc.Steps = append(sc.Steps, step)
}

func (p *parser) newStep(line int, kind StepKind) *Step {
	return &Step{Line: line, Kind: kind, Conn: p.conn, ConnParams: p.connParams[p.conn]}
}

// takePending moves the pending per-step directives into s.
func (p *parser) takePending(s *Step) {
	s.Params, s.ParamsText, s.Binary, s.Timeout = p.params, p.paramsText, p.binary, p.timeout
	p.params, p.paramsText, p.hasParams, p.binary, p.timeout = nil, "", false, false, 0
}

func (p *parser) setPending(line int) {
	if !p.hasParams && !p.binary && p.prepare == "" && p.timeout == 0 {
		p.pendingAt = line
	}
}

// directive handles one "--" line outside a statement and returns the step it makes, if any.
func (p *parser) directive(line int, text string) (*Step, error) {
	m := directiveRE.FindStringSubmatch(text)
	if m == nil || !knownDirects[m[1]] {
		if t := typoRE.FindStringSubmatch(text); t != nil {
			return nil, fmt.Errorf("unknown directive %q", t[1])
		}
		return nil, nil // a comment
	}
	word, arg := m[1], m[2]+m[3]
	inPipeline := p.pipeline != nil
	needArg := func() error {
		if arg == "" {
			return fmt.Errorf("-- %s needs an argument", word)
		}
		return nil
	}
	switch word {
	case "close", "binary", "empty", "pipeline", "sync", "end", "flush", "raw":
		if arg != "" {
			return nil, fmt.Errorf("-- %s takes no argument (write comments as prose, not starting with a directive word)", word)
		}
	}
	switch word {
	case "conn", "close", "mode", "notifications", "pipeline", "empty", "timeout", "sleep", "raw":
		if inPipeline && word != "empty" {
			return nil, fmt.Errorf("-- %s inside a pipeline", word)
		}
	case "sync", "end", "flush":
		if !inPipeline {
			return nil, fmt.Errorf("-- %s outside a pipeline", word)
		}
	}
	switch word {
	case "conn":
		fields := strings.Fields(arg)
		if len(fields) == 0 {
			return nil, needArg()
		}
		p.conn = fields[0]
		if len(fields) > 1 {
			params := map[string]string{}
			for _, f := range fields[1:] {
				kv := connParamRE.FindStringSubmatch(f)
				if kv == nil {
					return nil, fmt.Errorf("-- conn: %q is not key=value", f)
				}
				params[kv[1]] = kv[2]
			}
			p.connParams[p.conn] = params
		}
		return nil, nil
	case "close":
		return p.newStep(line, StepClose), nil
	case "mode":
		switch arg {
		case "simple":
			p.extended = false
		case "extended":
			p.extended = true
		default:
			return nil, fmt.Errorf("-- mode: want simple or extended, got %q", arg)
		}
		return nil, nil
	case "params":
		params, err := parseParams(arg)
		if err != nil {
			return nil, err
		}
		p.setPending(line)
		p.params, p.paramsText, p.hasParams = params, arg, true
		return nil, nil
	case "binary":
		p.setPending(line)
		p.binary = true
		return nil, nil
	case "timeout", "sleep":
		// Both take a positive Go duration ("500ms").
		d, err := time.ParseDuration(arg)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("-- %s: bad duration %q", word, arg)
		}
		if word == "timeout" {
			p.setPending(line)
			p.timeout = d
			return nil, nil
		}
		s := p.newStep(line, StepSleep)
		s.Timeout = d
		return s, p.noPending("-- sleep")
	case "prepare":
		if err := needArg(); err != nil {
			return nil, err
		}
		p.setPending(line)
		p.prepare = arg
		return nil, nil
	case "exec":
		if err := needArg(); err != nil {
			return nil, err
		}
		if p.prepare != "" {
			return nil, errors.New("-- exec after -- prepare without a statement")
		}
		s := p.newStep(line, StepExecPrepared)
		s.Name = arg
		p.takePending(s)
		return s, nil
	case "deallocate":
		if err := needArg(); err != nil {
			return nil, err
		}
		s := p.newStep(line, StepDeallocate)
		s.Name = arg
		p.takeTimeout(s)
		return s, p.noPending("-- deallocate")
	case "empty":
		if p.prepare != "" {
			return nil, errors.New("-- empty after -- prepare")
		}
		kind := StepSimple
		if p.extended || p.hasParams || p.binary || inPipeline {
			kind = StepExtended
		}
		s := p.newStep(line, kind)
		p.takePending(s)
		return s, nil
	case "notifications":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-- notifications: want a count, got %q", arg)
		}
		s := p.newStep(line, StepNotifications)
		s.Count = n
		p.takeTimeout(s)
		return s, p.noPending("-- notifications")
	case "pipeline":
		s := p.newStep(line, StepPipeline)
		p.takeTimeout(s)
		if err := p.noPending("-- pipeline"); err != nil {
			return nil, err
		}
		p.pipeline = s
		return s, nil
	case "sync":
		if err := p.noPending("-- sync"); err != nil {
			return nil, err
		}
		return p.newStep(line, StepSync), nil
	case "flush":
		if err := p.noPending("-- flush"); err != nil {
			return nil, err
		}
		return p.newStep(line, StepFlush), nil
	case "raw":
		s := p.newStep(line, StepRaw)
		p.takeTimeout(s)
		if err := p.noPending("-- raw"); err != nil {
			return nil, err
		}
		return s, p.rawBlock(s)
	case "end":
		if err := p.noPending("-- end"); err != nil {
			return nil, err
		}
		pl := p.pipeline
		p.pipeline = nil
		if n := len(pl.Items); n == 0 || pl.Items[n-1].Kind != StepSync {
			return nil, errors.New("a pipeline must end with -- sync before -- end")
		}
		return nil, nil
	}
	return nil, fmt.Errorf("BUG: directive %q not handled", word)
}

func (p *parser) takeTimeout(s *Step) {
	s.Timeout, p.timeout = p.timeout, 0
}

// noPending reports directives that the step that follows them cannot use.
func (p *parser) noPending(what string) error {
	if p.hasParams || p.binary || p.prepare != "" || p.timeout != 0 {
		return fmt.Errorf("%s cannot use the directives pending since line %d", what, p.pendingAt)
	}
	return nil
}

// statement reads an SQL statement starting at the current line, and the COPY data that
// follows it, and returns its step.
func (p *parser) statement() (*Step, error) {
	start := p.i + 1
	var lx lexer
	var sql []string
	for p.i < len(p.lines) {
		line := p.lines[p.i]
		if lx.normal() && strings.TrimSpace(line) == "" {
			break
		}
		p.i++
		sql = append(sql, line)
		if lx.feed(line) {
			break
		}
	}
	if !lx.normal() {
		return nil, errors.New("statement ends inside a quoted string or comment")
	}
	text := strings.Join(sql, "\n")
	var s *Step
	switch {
	case p.prepare != "":
		s = p.newStep(start, StepPrepare)
		s.Name, p.prepare = p.prepare, ""
		p.takePending(s)
		if s.Params != nil || s.ParamsText != "" || s.Binary {
			return nil, errors.New("-- params and -- binary do not apply to -- prepare")
		}
	case copyInRE.MatchString(text):
		s = p.newStep(start, StepCopyIn)
		var data []string
		for {
			if p.i >= len(p.lines) {
				return nil, errors.New(`COPY FROM STDIN data without a closing line "\."`)
			}
			line := p.lines[p.i]
			p.i++
			if line == copyEndMark {
				break
			}
			data = append(data, line+"\n")
		}
		s.Data = strings.Join(data, "")
		p.takeTimeout(s)
	case copyOutRE.MatchString(text):
		s = p.newStep(start, StepCopyOut)
		p.takeTimeout(s)
	case p.extended || p.hasParams || p.binary || p.pipeline != nil:
		s = p.newStep(start, StepExtended)
		p.takePending(s)
	default:
		s = p.newStep(start, StepSimple)
		p.takePending(s)
	}
	if s.Kind == StepCopyIn || s.Kind == StepCopyOut {
		if p.pipeline != nil {
			return nil, errors.New("COPY inside a pipeline is not supported")
		}
		if err := p.noPending("COPY"); err != nil {
			return nil, err
		}
	}
	s.SQL = text
	return s, nil
}

// stringLiteral reads the SQL string literal that s starts with, in which a
// quote is written twice: its value, what follows it, and false when it is
// not closed.
func stringLiteral(s string) (val, rest string, ok bool) {
	var b strings.Builder
	s = s[1:]
	for {
		j := strings.IndexByte(s, '\'')
		if j < 0 {
			return "", "", false
		}
		b.WriteString(s[:j])
		s = s[j+1:]
		if !strings.HasPrefix(s, "'") {
			return b.String(), s, true
		}
		b.WriteByte('\'')
		s = s[1:]
	}
}

// parseParams parses the argument of "-- params:".
func parseParams(arg string) ([]*string, error) {
	out := []*string{}
	rest := strings.TrimSpace(arg)
	if rest == "" {
		return out, nil
	}
	for {
		rest = strings.TrimLeft(rest, " \t")
		var val *string
		if strings.HasPrefix(rest, "'") {
			s, after, ok := stringLiteral(rest)
			if !ok {
				return nil, fmt.Errorf("-- params: unterminated string in %q", arg)
			}
			val = &s
			rest = strings.TrimLeft(after, " \t")
			if rest != "" && rest[0] != ',' {
				return nil, fmt.Errorf("-- params: expected , after a string in %q", arg)
			}
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			tok := strings.TrimSpace(rest[:end])
			if tok == "" {
				return nil, fmt.Errorf("-- params: empty value in %q", arg)
			}
			if !strings.EqualFold(tok, "null") {
				val = &tok
			}
			rest = rest[end:]
		}
		out = append(out, val)
		if rest == "" {
			return out, nil
		}
		rest = rest[1:] // the comma
	}
}

// lexer follows SQL quoting across lines, to find the ";" that ends a statement.
type lexer struct {
	mode  lexMode
	tag   string // dollar-quote tag, "$tag$"
	depth int    // nesting of /* */ comments
}

type lexMode int

const (
	lexNormal  lexMode = iota
	lexString          // '...'
	lexEString         // E'...' (backslash escapes)
	lexIdent           // "..."
	lexDollar          // $tag$...$tag$
	lexComment         // /* ... */
)

func (l *lexer) normal() bool { return l.mode == lexNormal }

func isIdentChar(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

var dollarTagRE = regexp.MustCompile(`^\$([A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$`)

// feed consumes one line and reports whether it ends a statement: after it the lexer is
// outside quotes and the last significant character of the line is ";".
func (l *lexer) feed(line string) bool {
	last := byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch l.mode {
		case lexNormal:
			switch {
			case c == '-' && i+1 < len(line) && line[i+1] == '-':
				i = len(line) // line comment
				continue
			case c == '/' && i+1 < len(line) && line[i+1] == '*':
				l.mode, l.depth = lexComment, 1
				i++
				continue
			case c == '\'':
				l.mode = lexString
				if i > 0 && (line[i-1] == 'E' || line[i-1] == 'e') && (i == 1 || !isIdentChar(line[i-2])) {
					l.mode = lexEString
				}
			case c == '"':
				l.mode = lexIdent
			case c == '$' && (i == 0 || !isIdentChar(line[i-1])):
				if tag := dollarTagRE.FindString(line[i:]); tag != "" {
					l.mode, l.tag = lexDollar, tag
					i += len(tag) - 1
				}
			}
			if c != ' ' && c != '\t' {
				last = c
			}
		case lexString, lexEString:
			switch {
			case c == '\\' && l.mode == lexEString:
				i++
			case c == '\'' && i+1 < len(line) && line[i+1] == '\'':
				i++
			case c == '\'':
				l.mode = lexNormal
				last = c
			}
		case lexIdent:
			if c == '"' {
				if i+1 < len(line) && line[i+1] == '"' {
					i++
				} else {
					l.mode = lexNormal
					last = c
				}
			}
		case lexDollar:
			if c == '$' && strings.HasPrefix(line[i:], l.tag) {
				i += len(l.tag) - 1
				l.mode = lexNormal
				last = '$'
			}
		case lexComment:
			switch {
			case c == '/' && i+1 < len(line) && line[i+1] == '*':
				l.depth++
				i++
			case c == '*' && i+1 < len(line) && line[i+1] == '/':
				l.depth--
				i++
				if l.depth == 0 {
					l.mode = lexNormal
				}
			}
		}
	}
	return l.mode == lexNormal && last == ';'
}

var rawRE = regexp.MustCompile(`^(\S+)(?:\s+(.*?))?\s*$`)

// rawBlock reads the lines of a "-- raw" block up to "-- end".
func (p *parser) rawBlock(s *Step) error {
	for p.i < len(p.lines) {
		lineNo := p.i + 1
		text := strings.TrimSpace(p.lines[p.i])
		p.i++
		if text == "" {
			continue
		}
		if strings.HasPrefix(text, "--") {
			if m := directiveRE.FindStringSubmatch(text); m != nil && m[1] == "end" && m[2]+m[3] == "" {
				switch n := len(s.Raw); {
				case n == 0:
					return fmt.Errorf("%d: empty raw block", lineNo)
				case !strings.Contains(" sync query copydone copyfail fcall ", " "+s.Raw[n-1].Type+" "):
					return fmt.Errorf("%d: a raw block must end with sync, query, copydone, copyfail or fcall before -- end", lineNo)
				}
				return nil
			}
			continue
		}
		m, err := parseRaw(text)
		if err != nil {
			return fmt.Errorf("%d: %w (%s)", lineNo, err, rawHelp)
		}
		m.Line = lineNo
		s.Raw = append(s.Raw, m)
	}
	return fmt.Errorf("%d: raw block without -- end", s.Line)
}

func rawName(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// parseRaw parses one line of a raw block.
func parseRaw(text string) (*RawMessage, error) {
	m := &RawMessage{Text: text}
	parts := rawRE.FindStringSubmatch(text)
	m.Type = parts[1]
	rest := parts[2]
	word := func() string {
		f := strings.Fields(rest)
		if len(f) == 0 {
			return ""
		}
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), f[0]))
		return f[0]
	}
	switch m.Type {
	case "parse":
		if m.Name = word(); m.Name == "" {
			return nil, errors.New("parse needs a statement name")
		}
		m.Name, m.SQL = rawName(m.Name), rest
	case "bind":
		portal, stmt := word(), word()
		if stmt == "" {
			return nil, errors.New("bind needs a portal and a statement name")
		}
		m.Name, m.Stmt = rawName(portal), rawName(stmt)
		params, err := parseParams(rest)
		if err != nil {
			return nil, err
		}
		m.Params = params
	case "describe", "close":
		switch word() {
		case "statement":
			m.Target = 'S'
		case "portal":
			m.Target = 'P'
		default:
			return nil, fmt.Errorf("%s statement|portal NAME", m.Type)
		}
		if m.Name = word(); m.Name == "" || rest != "" {
			return nil, fmt.Errorf("%s needs one name", m.Type)
		}
		m.Name = rawName(m.Name)
	case "execute":
		if m.Name = word(); m.Name == "" {
			return nil, errors.New("execute needs a portal name")
		}
		m.Name = rawName(m.Name)
		if n := word(); n != "" {
			v, err := strconv.ParseUint(n, 10, 32)
			if err != nil || rest != "" {
				return nil, fmt.Errorf("execute: bad row limit %q", n)
			}
			m.MaxRows = uint32(v)
		}
	case "flush", "sync":
		if rest != "" {
			return nil, fmt.Errorf("%s takes no argument", m.Type)
		}
	case "query", "copydata", "copyfail":
		m.SQL = rest
	case "fcall":
		oid, err := strconv.ParseUint(word(), 10, 32)
		if err != nil {
			return nil, errors.New("fcall needs a function OID")
		}
		m.OID = uint32(oid)
		params, err := parseParams(rest)
		if err != nil {
			return nil, err
		}
		m.Params = params
	case "copydone":
		if rest != "" {
			return nil, errors.New("copydone takes no argument")
		}
	default:
		return nil, fmt.Errorf("unknown message %q", m.Type)
	}
	return m, nil
}
