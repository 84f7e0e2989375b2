package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/txlane/txlane/router"
)

// AdminDatabase is the virtual database of the admin console: a client that
// logs in to it talks to txlane itself, not to PostgreSQL.
const AdminDatabase = "txlane"

// adminServerVersion is the server_version the admin console reports. NOTE:
// clients parse it (libpq, psql); a PostgreSQL-like number keeps them calm.
const adminServerVersion = "15.0 (txlane admin console)"

// CodeConfigFile is PostgreSQL's config_file_error: RELOAD found a bad file.
const CodeConfigFile = "F0000"

// Other SQLSTATEs of the admin console.
const (
	codeSyntaxError       = "42601"
	codeInvalidStatement  = "26000" // invalid_sql_statement_name
	codeInvalidCursorName = "34000"
)

// isAdminStartup reports whether a client asks for the admin console. As in
// PostgreSQL, a missing database defaults to the user name.
func isAdminStartup(m *pgproto3.StartupMessage) bool {
	db := m.Parameters["database"]
	if db == "" {
		db = m.Parameters["user"]
	}
	return db == AdminDatabase
}

// adminConn is one admin console connection. It is owned by one goroutine;
// the server only closes its socket (graceful stop).
type adminConn struct {
	srv  *Server
	id   uint64
	conn net.Conn
	log  *zap.Logger
	r    *msgReader
	w    *bufio.Writer
	user string

	// The extended protocol: statement and portal names → command text.
	stmts   map[string]string
	portals map[string]string
	// skipping: an error occurred in an extended batch; messages are
	// ignored up to the next Sync.
	skipping bool
}

// serveAdmin runs the admin console for a client past its startup message.
func (s *Server) serveAdmin(hello *clientHello, id uint64, log *zap.Logger) {
	user := hello.startup.Parameters["user"]
	log = log.With(zap.String("user", user), zap.String("database", AdminDatabase))
	a := &adminConn{srv: s, id: id, conn: hello.conn, log: log,
		r: newMsgReader(hello.br, s.live().MaxMessageSize), w: bufio.NewWriterSize(hello.conn, writeBufSize),
		user: user, stmts: map[string]string{}, portals: map[string]string{}}
	if pe := s.authorizeAdmin(hello, user); pe != nil {
		log.Warn("admin console: login refused", zap.String("reason", pe.Message), zap.String("detail", pe.Detail))
		writeError(a.w, pe)
		a.w.Flush()
		return
	}
	if !s.addAdmin(a) {
		writeError(a.w, shutdownError())
		a.w.Flush()
		return
	}
	defer s.removeAdmin(a)
	hello.conn.SetDeadline(time.Time{})
	log.Info("admin console: login")

	var key [8]byte
	rand.Read(key[:])
	writeMsg(a.w, &pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{
		{"server_version", adminServerVersion},
		{"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO"},
		{"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"},
		{"application_name", hello.startup.Parameters["application_name"]},
	} {
		writeMsg(a.w, &pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	// NOTE: the key is not registered: a cancel request for the console is
	// ignored, as any unknown key is.
	writeMsg(a.w, &pgproto3.BackendKeyData{ProcessID: binary.BigEndian.Uint32(key[:4]) & 0x7fffffff, SecretKey: key[4:]})
	writeMsg(a.w, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := a.w.Flush(); err != nil {
		return
	}
	if err := a.loop(); err != nil && !isClosedConn(err) {
		log.Debug("admin console: connection ended", zap.Error(err))
	}
}

// authorizeAdmin decides whether user may use the admin console. With
// admin.users set, exactly those names are accepted (no password). Without,
// only a client on this host whose socket belongs to the OS user running
// txlane.
func (s *Server) authorizeAdmin(hello *clientHello, user string) *pgError {
	if users := s.live().AdminUsers; len(users) > 0 {
		if slices.Contains(users, user) {
			return nil
		}
		return &pgError{Severity: "FATAL", Code: CodeInvalidAuthorization,
			Message: fmt.Sprintf("user %q may not use the txlane admin console", user),
			Hint:    "List the user in admin.users in txlane's configuration."}
	}
	refuse := func(detail string) *pgError {
		return &pgError{Severity: "FATAL", Code: CodeInvalidAuthorization,
			Message: "the txlane admin console accepts only local connections from the operating-system user running txlane",
			Detail:  detail,
			Hint:    "Connect from the same host as the same OS user, or list admin users in admin.users."}
	}
	uid, err := peerUID(hello.conn.LocalAddr(), hello.conn.RemoteAddr())
	if err != nil {
		return refuse(err.Error())
	}
	if uid != os.Getuid() {
		return refuse(fmt.Sprintf("The client's socket belongs to uid %d; txlane runs as uid %d.", uid, os.Getuid()))
	}
	return nil
}

// addAdmin registers a console connection; false when txlane is stopping.
func (s *Server) addAdmin(a *adminConn) bool {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	if s.ops.gate.Load().stopping {
		return false
	}
	s.ops.mu.admins[a] = struct{}{}
	return true
}

func (s *Server) removeAdmin(a *adminConn) {
	s.ops.mu.Lock()
	delete(s.ops.mu.admins, a)
	s.ops.mu.Unlock()
}

// closeAdmins closes every console connection. NOTE: the error is written
// without the console's own writer, which its goroutine may be using; a
// console is idle between commands nearly always, and is closed right after.
func (s *Server) closeAdmins(pe *pgError) {
	s.ops.mu.Lock()
	admins := make([]*adminConn, 0, len(s.ops.mu.admins))
	for a := range s.ops.mu.admins {
		admins = append(admins, a)
	}
	s.ops.mu.Unlock()
	for _, a := range admins {
		a.conn.SetWriteDeadline(time.Now().Add(time.Second))
		w := bufio.NewWriter(a.conn)
		writeError(w, pe)
		w.Flush()
		a.conn.Close()
	}
}

// loop reads and answers messages until the client leaves.
func (a *adminConn) loop() error {
	for {
		typ, _, err := a.r.next()
		if err != nil {
			var tooLong *errMessageTooLong
			if errors.As(err, &tooLong) {
				writeError(a.w, &pgError{Severity: "FATAL", Code: CodeProtocolViolation, Message: "message too long", Detail: tooLong.Error()})
				a.w.Flush()
			}
			return err
		}
		body, err := a.r.body()
		if err != nil {
			return err
		}
		if typ == msgTerminate {
			return nil
		}
		if err := a.message(typ, body); err != nil {
			return err
		}
		if !a.r.buffered() {
			if err := a.w.Flush(); err != nil {
				return err
			}
		}
	}
}

// message handles one client message. body is valid until the next read.
func (a *adminConn) message(typ byte, body []byte) error {
	if a.skipping && typ != msgSync && typ != msgQuery {
		return nil
	}
	switch typ {
	case msgQuery:
		a.skipping = false
		q := strings.TrimSuffix(string(body), "\x00")
		a.simpleQuery(q)
	case msgParse:
		var m pgproto3.Parse
		if err := m.Decode(body); err != nil {
			return a.protocolError(err)
		}
		if _, pe := parseAdminCommand(m.Query); pe != nil && !emptyCommand(m.Query) {
			a.extendedError(pe)
			return nil
		}
		a.stmts[m.Name] = m.Query
		writeMsg(a.w, &pgproto3.ParseComplete{})
	case msgBind:
		var m pgproto3.Bind
		if err := m.Decode(body); err != nil {
			return a.protocolError(err)
		}
		q, ok := a.stmts[m.PreparedStatement]
		if !ok {
			a.extendedError(&pgError{Severity: "ERROR", Code: codeInvalidStatement,
				Message: fmt.Sprintf("prepared statement %q does not exist", m.PreparedStatement)})
			return nil
		}
		a.portals[m.DestinationPortal] = q
		writeMsg(a.w, &pgproto3.BindComplete{})
	case msgDescribe:
		var m pgproto3.Describe
		if err := m.Decode(body); err != nil {
			return a.protocolError(err)
		}
		names := a.portals
		if m.ObjectType == 'S' {
			names = a.stmts
		}
		q, ok := names[m.Name]
		if !ok {
			code, what := codeInvalidCursorName, "portal"
			if m.ObjectType == 'S' {
				code, what = codeInvalidStatement, "prepared statement"
			}
			a.extendedError(&pgError{Severity: "ERROR", Code: code, Message: fmt.Sprintf("%s %q does not exist", what, m.Name)})
			return nil
		}
		if m.ObjectType == 'S' {
			writeMsg(a.w, &pgproto3.ParameterDescription{})
		}
		cmd, _ := parseAdminCommand(q)
		if cmd == nil || cmd.columns == nil {
			writeMsg(a.w, &pgproto3.NoData{})
		} else {
			writeMsg(a.w, rowDescription(cmd.columns))
		}
	case msgExecute:
		var m pgproto3.Execute
		if err := m.Decode(body); err != nil {
			return a.protocolError(err)
		}
		q, ok := a.portals[m.Portal]
		if !ok {
			a.extendedError(&pgError{Severity: "ERROR", Code: codeInvalidCursorName, Message: fmt.Sprintf("portal %q does not exist", m.Portal)})
			return nil
		}
		if emptyCommand(q) {
			writeMsg(a.w, &pgproto3.EmptyQueryResponse{})
			return nil
		}
		cmd, pe := parseAdminCommand(q)
		if pe == nil {
			var res *adminResult
			if res, pe = a.run(cmd); pe == nil {
				a.writeResult(res, false)
				return nil
			}
		}
		a.extendedError(pe)
	case msgClose:
		var m pgproto3.Close
		if err := m.Decode(body); err != nil {
			return a.protocolError(err)
		}
		if m.ObjectType == 'S' {
			delete(a.stmts, m.Name)
		} else {
			delete(a.portals, m.Name)
		}
		writeMsg(a.w, &pgproto3.CloseComplete{})
	case msgSync:
		a.skipping = false
		delete(a.portals, "")
		writeMsg(a.w, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	case msgFlush:
		return a.w.Flush()
	default:
		return a.protocolError(fmt.Errorf("message type %q is not supported by the admin console", typ))
	}
	return nil
}

// protocolError ends the connection with FATAL 08P01.
func (a *adminConn) protocolError(err error) error {
	writeError(a.w, &pgError{Severity: "FATAL", Code: CodeProtocolViolation, Message: "protocol violation", Detail: err.Error()})
	a.w.Flush()
	return err
}

// extendedError reports an error inside an extended batch and skips the
// rest of it, up to Sync.
func (a *adminConn) extendedError(pe *pgError) {
	writeError(a.w, pe)
	a.skipping = true
}

// simpleQuery answers a Query message: each ';'-separated command in turn
// (EXPLAIN takes the whole rest of the text), stopping at the first error.
func (a *adminConn) simpleQuery(q string) {
	cmds := splitAdminCommands(q)
	if len(cmds) == 0 {
		writeMsg(a.w, &pgproto3.EmptyQueryResponse{})
	}
	for _, text := range cmds {
		cmd, pe := parseAdminCommand(text)
		var res *adminResult
		if pe == nil {
			res, pe = a.run(cmd)
		}
		if pe != nil {
			writeError(a.w, pe)
			break
		}
		a.writeResult(res, true)
	}
	writeMsg(a.w, &pgproto3.ReadyForQuery{TxStatus: 'I'})
}

// writeResult writes a command's notices, rows and completion tag; the row
// description too when desc is set (simple protocol).
func (a *adminConn) writeResult(res *adminResult, desc bool) {
	for _, n := range res.notices {
		writeMsg(a.w, &pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000", Message: n})
	}
	if res.columns != nil {
		if desc {
			writeMsg(a.w, rowDescription(res.columns))
		}
		for _, row := range res.rows {
			values := make([][]byte, len(row))
			for i, v := range row {
				values[i] = []byte(v)
			}
			writeMsg(a.w, &pgproto3.DataRow{Values: values})
		}
	}
	writeMsg(a.w, &pgproto3.CommandComplete{CommandTag: []byte(res.tag)})
}

// rowDescription describes text columns.
func rowDescription(cols []string) *pgproto3.RowDescription {
	rd := &pgproto3.RowDescription{Fields: make([]pgproto3.FieldDescription, len(cols))}
	for i, c := range cols {
		rd.Fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	return rd
}

// adminCommand is one parsed admin console command.
type adminCommand struct {
	verb    string // SHOW, RELOAD, PAUSE, RESUME, EXPLAIN, SET
	what    string // SHOW's item, upper case
	sql     string // EXPLAIN's statement
	columns []string
	tag     string
}

// adminResult is a command's answer.
type adminResult struct {
	columns []string // nil: no result set
	rows    [][]string
	tag     string
	notices []string
}

// showColumns are the columns of each SHOW item.
var showColumns = map[string][]string{
	"CLIENTS": {"id", "addr", "user", "database", "application_name", "state", "activity", "connected_since", "units"},
	"POOLS":   {"database", "vector_total", "vector_idle", "vector_acquired", "vector_waiting", "vector_max", "primary_conns", "primary_active"},
	"STATS":   {"lane", "reason", "units"},
	"POLICY":  {"key", "value", "source"},
	"UNITS":   {"unit", "client_id", "addr", "user", "database", "application_name", "since", "failed"},
	"HELP":    {"command", "description"},
}

// adminHelp lists the console's commands.
var adminHelp = [][]string{
	{"SHOW CLIENTS", "logged-in clients: address, user, database, application_name, transaction state (I/T/E), activity (idle/active/held), units held"},
	{"SHOW POOLS", "per database: vector-lane pool connections (total, idle, acquired, waiting, max) and primary connections"},
	{"SHOW STATS", "request units routed, by lane and reason"},
	{"SHOW POLICY", "the configuration and routing rules in force, vector tables (configured and discovered)"},
	{"SHOW UNITS", "units of work held and the clients holding them"},
	{"SHOW HELP", "this list"},
	{"RELOAD", "read the configuration file again and apply it"},
	{"PAUSE", "hold new requests at a transaction boundary; waits for requests in flight and open transactions"},
	{"RESUME", "release the requests PAUSE holds"},
	{"EXPLAIN <sql>", "how txlane classifies and routes <sql> under the configured rules, outside a transaction"},
}

// splitAdminCommands splits a Query's text into commands. EXPLAIN's SQL may
// contain anything, so an EXPLAIN takes the rest of the text.
func splitAdminCommands(q string) []string {
	var out []string
	for {
		q = skipBlank(q)
		if q == "" {
			return out
		}
		if w, _ := firstWord(q); strings.EqualFold(w, "EXPLAIN") {
			return append(out, q)
		}
		q = stripComments(q)
		i := strings.IndexByte(q, ';')
		if i < 0 {
			return append(out, strings.TrimSpace(q))
		}
		out = append(out, strings.TrimSpace(q[:i]))
		q = q[i+1:]
	}
}

// emptyCommand reports whether q holds nothing but blanks, semicolons and
// comments (pgx pings with "-- ping").
func emptyCommand(q string) bool { return skipBlank(q) == "" }

// skipBlank drops leading white space, semicolons and comments.
func skipBlank(q string) string {
	for {
		q = strings.TrimLeft(q, " \t\r\n;")
		switch {
		case strings.HasPrefix(q, "--"):
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*"):
			q = q[commentEnd(q):]
		default:
			return q
		}
	}
}

// commentEnd returns the index just past the block comment that starts q,
// nested comments included (as PostgreSQL reads them), or len(q).
func commentEnd(q string) int {
	depth := 0
	for i := 0; i+1 < len(q); i++ {
		switch q[i : i+2] {
		case "/*":
			depth++
			i++
		case "*/":
			depth--
			i++
			if depth == 0 {
				return i + 1
			}
		}
	}
	return len(q)
}

// stripComments replaces the comments of an admin command's text with a
// space. NOTE: admin commands other than EXPLAIN (whose text is left alone)
// hold no quoted strings that could contain "--" or "/*", except SET's
// value, which is ignored.
func stripComments(q string) string {
	var b strings.Builder
	for q != "" {
		i := strings.IndexAny(q, "-/")
		if i < 0 || i+1 >= len(q) {
			b.WriteString(q)
			break
		}
		switch q[i : i+2] {
		case "--":
			b.WriteString(q[:i])
			b.WriteByte(' ')
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				return b.String()
			}
			q = q[i+j:]
		case "/*":
			b.WriteString(q[:i])
			b.WriteByte(' ')
			q = q[i+commentEnd(q[i:]):]
		default:
			b.WriteString(q[:i+1])
			q = q[i+1:]
		}
	}
	return b.String()
}

// firstWord splits s into its first word and the rest.
func firstWord(s string) (word, rest string) {
	s = strings.TrimLeft(s, " \t\r\n")
	i := strings.IndexAny(s, " \t\r\n;")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// parseAdminCommand parses one command's text.
func parseAdminCommand(text string) (*adminCommand, *pgError) {
	text = skipBlank(text)
	if w, _ := firstWord(text); !strings.EqualFold(w, "EXPLAIN") {
		text = strings.TrimSpace(stripComments(text))
	}
	word, rest := firstWord(text)
	verb := strings.ToUpper(word)
	noArgs := func() *pgError {
		if r := strings.TrimSpace(strings.TrimRight(rest, "; \t\r\n")); r != "" {
			return &pgError{Severity: "ERROR", Code: codeSyntaxError,
				Message: fmt.Sprintf("%s takes no arguments, got %q", verb, r)}
		}
		return nil
	}
	switch verb {
	case "SHOW":
		item, more := firstWord(rest)
		item = strings.ToUpper(item)
		if item == "" {
			return nil, &pgError{Severity: "ERROR", Code: codeSyntaxError, Message: "SHOW needs an item",
				Hint: "SHOW CLIENTS, POOLS, STATS, POLICY, UNITS or HELP."}
		}
		cols, ok := showColumns[item]
		if !ok {
			return nil, &pgError{Severity: "ERROR", Code: CodeFeatureNotSupported,
				Message: fmt.Sprintf("unknown SHOW item %q on the txlane admin console", item),
				Hint:    "SHOW CLIENTS, POOLS, STATS, POLICY, UNITS or HELP."}
		}
		if m := strings.TrimSpace(strings.TrimRight(more, "; \t\r\n")); m != "" {
			return nil, &pgError{Severity: "ERROR", Code: codeSyntaxError,
				Message: fmt.Sprintf("SHOW %s takes no arguments, got %q", item, m)}
		}
		return &adminCommand{verb: verb, what: item, columns: cols, tag: "SHOW"}, nil
	case "RELOAD", "PAUSE", "RESUME":
		if pe := noArgs(); pe != nil {
			if verb != "RELOAD" {
				pe.Code = CodeFeatureNotSupported
				pe.Message = verb + " applies to every database; it takes no arguments"
			}
			return nil, pe
		}
		return &adminCommand{verb: verb, tag: verb}, nil
	case "EXPLAIN":
		sql := strings.TrimSpace(rest)
		if sql == "" {
			return nil, &pgError{Severity: "ERROR", Code: codeSyntaxError, Message: "EXPLAIN needs a statement",
				Hint: "EXPLAIN SELECT * FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5"}
		}
		return &adminCommand{verb: verb, sql: sql, columns: []string{"key", "value"}, tag: "EXPLAIN"}, nil
	case "SET":
		// Some drivers set parameters on connect; the console ignores them.
		return &adminCommand{verb: verb, tag: "SET"}, nil
	}
	return nil, &pgError{Severity: "ERROR", Code: CodeFeatureNotSupported,
		Message: fmt.Sprintf("unsupported command %q on the txlane admin console", word),
		Detail:  "The database \"txlane\" is txlane's admin console, not PostgreSQL.",
		Hint:    "SHOW HELP lists the commands."}
}

// run executes a command.
func (a *adminConn) run(cmd *adminCommand) (*adminResult, *pgError) {
	s := a.srv
	res := &adminResult{columns: cmd.columns, tag: cmd.tag}
	switch cmd.verb {
	case "SHOW":
		res.rows = s.showRows(cmd.what)
	case "RELOAD":
		reload := s.live().OnReload
		if reload == nil {
			return nil, &pgError{Severity: "ERROR", Code: CodeFeatureNotSupported,
				Message: "RELOAD is not available: txlane was not started from a configuration file"}
		}
		a.log.Info("admin console: RELOAD")
		if err := reload(); err != nil {
			return nil, &pgError{Severity: "ERROR", Code: CodeConfigFile,
				Message: "configuration reload failed; the last good configuration stays in force",
				Detail:  err.Error()}
		}
	case "PAUSE":
		a.log.Info("admin console: PAUSE")
		wait := s.live().QueryWaitTimeout
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err := s.Pause(ctx)
		cancel()
		if errors.Is(err, errStopping) {
			return nil, shutdownError()
		}
		if err != nil {
			res.notices = append(res.notices, fmt.Sprintf(
				"txlane is paused, but after %s (query_wait_timeout) clients are still inside transactions or running requests", wait))
		}
	case "RESUME":
		a.log.Info("admin console: RESUME")
		s.Resume()
	case "EXPLAIN":
		rt := s.configuredRouting()
		e := router.Explain(rt.classifier, cmd.sql, nil, rt.rules, nil)
		res.rows = explainRows(e)
	case "SET":
	}
	return res, nil
}

// showRows returns the rows of SHOW item.
func (s *Server) showRows(item string) [][]string {
	var rows [][]string
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z") }
	switch item {
	case "CLIENTS":
		for _, c := range s.ClientList() {
			activity := "idle"
			switch {
			case c.Held:
				activity = "held"
			case c.Active:
				activity = "active"
			}
			rows = append(rows, []string{strconv.FormatUint(c.ID, 10), c.Addr, c.User, c.Database,
				c.ApplicationName, string(rune(c.State)), activity, ts(c.Since), strconv.Itoa(c.Units)})
		}
	case "POOLS":
		for _, p := range s.Pools() {
			v := p.Vector
			rows = append(rows, []string{p.Database, strconv.Itoa(v.Total), strconv.Itoa(v.Idle), strconv.Itoa(v.Acquired),
				strconv.Itoa(v.Waiting), strconv.Itoa(v.Max), strconv.Itoa(p.PrimaryConns), strconv.Itoa(p.PrimaryActive)})
		}
	case "STATS":
		for _, r := range s.metrics.Routes() {
			rows = append(rows, []string{r.Lane, r.Reason, strconv.FormatFloat(r.Units, 'f', -1, 64)})
		}
	case "POLICY":
		pi := s.Policy()
		for _, st := range pi.Settings {
			rows = append(rows, []string{st.Name, st.Value, "config"})
		}
		rows = append(rows,
			[]string{"rules.after_write", pi.Rules.AfterWrite().String(), "in force"},
			[]string{"rules.on_unavailable", pi.Rules.OnUnavailable().String(), "in force"})
		for _, f := range pi.Rules.WritingFunctions() {
			rows = append(rows, []string{"rules.writing_function", f.String(), "in force"})
		}
		for _, f := range pi.Rules.ReadOnlyFunctions() {
			rows = append(rows, []string{"rules.read_only_function", f.String(), "in force"})
		}
		for _, t := range pi.Rules.VectorTables() {
			name := t.String()
			if t.Schema == "" {
				name += " (any schema)"
			}
			rows = append(rows, []string{"vector_table", name, "config"})
		}
		dbs := make([]string, 0, len(pi.Discovered))
		for db := range pi.Discovered {
			dbs = append(dbs, db)
		}
		slices.Sort(dbs)
		for _, db := range dbs {
			for _, t := range pi.Discovered[db] {
				rows = append(rows, []string{"vector_table", t.String(), "discovered in database " + db})
			}
		}
		rows = append(rows, []string{"paused", strconv.FormatBool(s.Paused()), "admin console"})
	case "UNITS":
		for _, u := range s.Units() {
			rows = append(rows, []string{u.Unit, strconv.FormatUint(u.ClientID, 10), u.ClientAddr, u.User, u.Database,
				u.ApplicationName, ts(u.Since), strconv.FormatBool(u.Failed)})
		}
	case "HELP":
		rows = adminHelp
	}
	return rows
}

// explainRows flattens an explanation into key/value rows, as `txlane
// explain` prints it.
func explainRows(e router.Explanation) [][]string {
	var rows [][]string
	for _, kv := range e.Lines() {
		rows = append(rows, []string{kv[0], kv[1]})
	}
	return rows
}
