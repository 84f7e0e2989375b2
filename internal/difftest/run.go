package difftest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Limits that keep transcripts readable. What is beyond them is still compared, as a count
// and a hash.
const (
	maxShownRows  = 200 // rows (and COPY lines) printed per result
	maxShownValue = 512 // longer values are printed as their length and hash
)

// bareAnswers maps each reply without content that a raw step prints by name
// to the raw message type it completes ("" where it completes none by itself:
// CopyOutResponse and CopyDone come before the CommandComplete that does).
var bareAnswers = map[string]string{
	"ParseComplete":      "parse",
	"BindComplete":       "bind",
	"CloseComplete":      "close",
	"NoData":             "describe",
	"EmptyQueryResponse": "execute",
	"CopyOutResponse":    "",
	"CopyDone":           "",
}

// Timeouts of the runner's own waits.
const (
	defaultStepTimeout = 30 * time.Second
	connectTimeout     = 10 * time.Second
	// cancelGrace is how long a client waits for the server's answer after it sent a
	// CancelRequest before it gives up on the connection.
	cancelGrace = 5 * time.Second
	// notificationWait bounds "-- notifications: N".
	notificationWait = 5 * time.Second
)

// idToken is the placeholder for the per-execution unique token.
const idToken = "{{id}}"

// trackedParams are the ParameterStatus values recorded when a connection opens and
// whenever they change. server_version is left out: a proxy may report its own.
var trackedParams = []string{
	"application_name", "client_encoding", "DateStyle", "default_transaction_read_only",
	"in_hot_standby", "integer_datetimes", "IntervalStyle", "is_superuser", "search_path",
	"server_encoding", "session_authorization", "standard_conforming_strings", "TimeZone",
}

// Transcript is what one execution of a scenario produced.
type Transcript struct {
	// Text is the transcript proper, one fact per line.
	Text string
	// ClientErrors lists, with their steps, errors that did not come from the server as an
	// ErrorResponse: failed connections, broken protocol, timeouts that the server never
	// answered. Against PostgreSQL itself a sound scenario has none.
	ClientErrors []string
}

// Execute runs sc against the server at dsn and returns its transcript. The error is
// reserved for failures of the runner itself (an unparsable DSN); everything the server or
// the connection does is recorded in the transcript.
func Execute(ctx context.Context, sc *Scenario, dsn string) (*Transcript, error) {
	base, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("difftest: %w", err)
	}
	var id [5]byte
	rand.Read(id[:])
	r := &runner{
		base:  base,
		id:    "r" + hex.EncodeToString(id[:]),
		conns: map[string]*clientConn{},
		types: map[typeKey]string{},
	}
	defer r.closeAll()
	fmt.Fprintf(&r.out, "scenario %s\n", sc.Name)
	for i, s := range sc.Steps {
		if err := ctx.Err(); err != nil {
			r.clientError(s, err)
			break
		}
		r.step(ctx, i+1, s)
	}
	text := strings.ReplaceAll(r.out.String(), r.id, idToken)
	for i, e := range r.clientErrs {
		r.clientErrs[i] = strings.ReplaceAll(e, r.id, idToken)
	}
	return &Transcript{Text: text, ClientErrors: r.clientErrs}, nil
}

// runner executes one scenario on one DSN. It is used by one goroutine.
type runner struct {
	base       *pgconn.Config
	id         string // replaces {{id}}
	out        strings.Builder
	conns      map[string]*clientConn
	side       *pgconn.PgConn // looks up type names; nil until needed
	sideErr    error
	types      map[typeKey]string
	clientErrs []string
}

// clientConn is one named connection of a scenario and what it received between steps.
//
// NOTE: pgconn calls OnNotice and OnNotification on the goroutine that reads the
// connection, which is the runner's: no lock is needed.
type clientConn struct {
	pg            *pgconn.PgConn
	params        map[string]string // last recorded ParameterStatus values
	notices       []*pgconn.Notice
	notifications []*pgconn.Notification
}

type typeKey struct {
	oid    uint32
	typmod int32
}

func (r *runner) printf(format string, args ...any) {
	fmt.Fprintf(&r.out, format, args...)
	r.out.WriteByte('\n')
}

func (r *runner) subst(s string) string { return strings.ReplaceAll(s, idToken, r.id) }

func (r *runner) closeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range r.conns {
		c.pg.Close(ctx)
	}
	if r.side != nil {
		r.side.Close(ctx)
	}
}

// header describes a step (or pipeline item) in the transcript.
func header(s *Step) string {
	var b strings.Builder
	b.WriteString(s.Kind.String())
	if s.Name != "" {
		fmt.Fprintf(&b, " %s", s.Name)
	}
	if (s.Kind == StepSimple || s.Kind == StepExtended) && s.SQL == "" {
		b.WriteString(" (empty query string)")
	}
	if s.ParamsText != "" || s.Params != nil {
		fmt.Fprintf(&b, ", params: %s", s.ParamsText)
	}
	if s.Binary {
		b.WriteString(", binary results")
	}
	if s.Kind == StepSleep {
		fmt.Fprintf(&b, " %s", s.Timeout)
	} else if s.Timeout > 0 {
		fmt.Fprintf(&b, ", timeout %s", s.Timeout)
	}
	if s.Kind == StepNotifications {
		fmt.Fprintf(&b, " %d", s.Count)
	}
	return b.String()
}

func (r *runner) printSQL(indent, sql string) {
	for _, l := range strings.Split(sql, "\n") {
		r.printf("%s> %s", indent, l)
	}
}

func (r *runner) step(ctx context.Context, n int, s *Step) {
	r.printf("")
	r.printf("== %d (line %d) [%s] %s", n, s.Line, s.Conn, header(s))
	if s.Kind == StepSleep {
		select {
		case <-time.After(s.Timeout):
		case <-ctx.Done():
		}
		return
	}
	if s.Kind == StepClose {
		if c := r.conns[s.Conn]; c != nil {
			delete(r.conns, s.Conn)
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c.pg.Close(cctx)
			cancel()
			r.printf("closed")
		} else {
			r.printf("not open")
		}
		return
	}
	c := r.conn(ctx, s)
	if s.SQL != "" {
		r.printSQL("", s.SQL)
	}
	if s.Kind == StepCopyIn {
		r.printf("copy data: %d lines", strings.Count(s.Data, "\n"))
	}
	if c == nil {
		return
	}
	if c.pg.IsClosed() {
		// NOTE: not a client error: the server closed the connection, which the transcript
		// has recorded. "-- close" reopens it.
		r.printf("not run: connection closed")
		return
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = defaultStepTimeout
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch s.Kind {
	case StepSimple:
		r.simple(sctx, c, s)
	case StepExtended:
		r.result("", s, c.pg.ExecParams(sctx, r.subst(s.SQL), r.params(s), nil, nil, formats(s)))
	case StepPrepare:
		sd, err := c.pg.Prepare(sctx, r.subst(s.Name), r.subst(s.SQL), nil)
		r.description("", s, sd, err)
	case StepExecPrepared:
		r.result("", s, c.pg.ExecPrepared(sctx, r.subst(s.Name), r.params(s), nil, formats(s)))
	case StepDeallocate:
		if err := c.pg.Deallocate(sctx, r.subst(s.Name)); err != nil {
			r.error("", s, err)
		} else {
			r.printf("deallocated")
		}
	case StepCopyIn:
		tag, err := c.pg.CopyFrom(sctx, strings.NewReader(r.subst(s.Data)), r.subst(s.SQL))
		r.tagOrError("", s, tag, err)
	case StepCopyOut:
		var buf bytes.Buffer
		tag, err := c.pg.CopyTo(sctx, &buf, r.subst(s.SQL))
		r.copyData(buf.Bytes())
		r.tagOrError("", s, tag, err)
	case StepPipeline:
		r.pipeline(sctx, c, s)
	case StepNotifications:
		r.notifications(sctx, c, s)
	case StepRaw:
		r.raw(sctx, c, s)
	default:
		r.printf("BUG: step kind %v not runnable", s.Kind)
	}
	r.after(c)
}

// conn returns the step's connection, opening it if needed. On failure it records the
// error and returns nil.
func (r *runner) conn(ctx context.Context, s *Step) *clientConn {
	if c := r.conns[s.Conn]; c != nil {
		return c
	}
	cfg := r.base.Copy()
	for k, v := range s.ConnParams {
		v = r.subst(v)
		switch k {
		case "user":
			cfg.User = v
		case "password":
			cfg.Password = v
		case "database":
			cfg.Database = v
		default:
			cfg.RuntimeParams[k] = v
		}
	}
	c := &clientConn{params: map[string]string{}}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { c.notices = append(c.notices, n) }
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		c.notifications = append(c.notifications, n)
	}
	// Like libpq-based clients, answer a deadline with a CancelRequest and wait for the
	// server's ErrorResponse rather than dropping the connection.
	cfg.BuildContextWatcherHandler = func(pg *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pg, DeadlineDelay: cancelGrace}
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	pg, err := pgconn.ConnectConfig(cctx, cfg)
	if err != nil {
		r.printf("connect %s failed", s.Conn)
		r.error("", s, err)
		return nil
	}
	c.pg = pg
	r.conns[s.Conn] = c
	r.printf("connected %s", s.Conn)
	r.parameters(c)
	return c
}

// after records what a step left behind on c: notices, changed parameters and the
// transaction status.
func (r *runner) after(c *clientConn) {
	for _, n := range c.notices {
		r.pgError("", (*pgconn.PgError)(n))
	}
	c.notices = nil
	r.parameters(c)
	if c.pg.IsClosed() {
		r.printf("connection closed")
		return
	}
	r.printf("status %c", c.pg.TxStatus())
}

// parameters records the tracked ParameterStatus values that changed since the last call.
func (r *runner) parameters(c *clientConn) {
	for _, k := range trackedParams {
		v := c.pg.ParameterStatus(k)
		if old, ok := c.params[k]; ok && old == v || !ok && v == "" {
			continue
		}
		c.params[k] = v
		r.printf("parameter %s = %s", k, quoteIfNeeded(v))
	}
}

func (r *runner) params(s *Step) [][]byte {
	if s.Params == nil {
		return nil
	}
	out := make([][]byte, len(s.Params))
	for i, p := range s.Params {
		if p != nil {
			out[i] = []byte(r.subst(*p))
		}
	}
	return out
}

func formats(s *Step) []int16 {
	if s.Binary {
		return []int16{1}
	}
	return nil
}

// simple runs a simple Query, which may hold several statements.
func (r *runner) simple(ctx context.Context, c *clientConn, s *Step) {
	mrr := c.pg.Exec(ctx, r.subst(s.SQL))
	var rrErr error
	for mrr.NextResult() {
		if err := r.rows("", mrr.ResultReader()); err != nil && rrErr == nil {
			rrErr = err
		}
	}
	err := mrr.Close()
	if err == nil {
		err = rrErr
	}
	if err != nil {
		r.error("", s, err)
	}
}

// result reads an extended-protocol result and records it.
func (r *runner) result(indent string, s *Step, rr *pgconn.ResultReader) {
	if err := r.rows(indent, rr); err != nil {
		r.error(indent, s, err)
	}
}

// rows records one result: columns, rows and command tag. It returns the result's error
// without recording it.
func (r *runner) rows(indent string, rr *pgconn.ResultReader) error {
	fields := rr.FieldDescriptions()
	if len(fields) > 0 {
		r.printf("%scolumns: %s", indent, r.columns(fields))
	}
	n := 0
	var rest hash.Hash
	for rr.NextRow() {
		n++
		vals := rr.Values()
		if n <= maxShownRows {
			cells := make([]string, len(vals))
			for i, v := range vals {
				binary := i < len(fields) && fields[i].Format == 1
				cells[i] = formatValue(v, binary)
			}
			r.printf("%srow: %s", indent, strings.Join(cells, " | "))
			continue
		}
		if rest == nil {
			rest = sha256.New()
		}
		for _, v := range vals {
			if v == nil {
				rest.Write([]byte{0})
				continue
			}
			fmt.Fprintf(rest, "%d:", len(v))
			rest.Write(v)
		}
		rest.Write([]byte{'\n'})
	}
	if rest != nil {
		r.printf("%s... %d more rows, sha256 %x", indent, n-maxShownRows, rest.Sum(nil)[:8])
	}
	tag, err := rr.Close()
	if err != nil {
		return err
	}
	r.printTag(indent, tag)
	return nil
}

func (r *runner) printTag(indent string, tag pgconn.CommandTag) {
	if tag.String() == "" {
		r.printf("%stag: (empty query)", indent)
		return
	}
	r.printf("%stag: %s", indent, tag.String())
}

func (r *runner) tagOrError(indent string, s *Step, tag pgconn.CommandTag, err error) {
	if err != nil {
		r.error(indent, s, err)
		return
	}
	r.printTag(indent, tag)
}

// description records a prepared statement's parameter and column types.
func (r *runner) description(indent string, s *Step, sd *pgconn.StatementDescription, err error) {
	if err != nil {
		r.error(indent, s, err)
		return
	}
	types := make([]string, len(sd.ParamOIDs))
	for i, oid := range sd.ParamOIDs {
		types[i] = r.typeName(oid, -1)
	}
	r.printf("%sprepared: params (%s)", indent, strings.Join(types, ", "))
	if len(sd.Fields) > 0 {
		r.printf("%scolumns: %s", indent, r.columns(sd.Fields))
	} else {
		r.printf("%sno data", indent)
	}
}

func (r *runner) columns(fields []pgconn.FieldDescription) string {
	cols := make([]string, len(fields))
	for i, f := range fields {
		cols[i] = quoteIfNeeded(f.Name) + " " + r.typeName(f.DataTypeOID, f.TypeModifier)
		if f.Format == 1 {
			cols[i] += " (binary)"
		}
	}
	return strings.Join(cols, ", ")
}

// firstUserOID is FirstNormalObjectId: OIDs below it belong to built-in objects and are the
// same on every server; those above it differ from one database, or one run, to the next.
const firstUserOID = 16384

// typeName names a type as format_type does ("numeric(10,2)", "vector(3)"). The name comes
// from a side connection, so that a scenario's own connections see nothing they did not ask
// for. A type the side connection cannot see (created in an open transaction) is named by
// its OID when built in, else "user type".
func (r *runner) typeName(oid uint32, typmod int32) string {
	key := typeKey{oid, typmod}
	if name, ok := r.types[key]; ok {
		return name
	}
	name := ""
	if r.side == nil && r.sideErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		r.side, r.sideErr = pgconn.ConnectConfig(ctx, r.base.Copy())
		cancel()
	}
	if r.side != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res := r.side.ExecParams(ctx, "SELECT format_type($1::oid, $2::int4)",
			[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), []byte(strconv.Itoa(int(typmod)))},
			nil, nil, nil).Read()
		cancel()
		if res.Err == nil && len(res.Rows) == 1 && res.Rows[0][0] != nil && string(res.Rows[0][0]) != "???" {
			name = string(res.Rows[0][0])
		}
	}
	if name == "" {
		if oid < firstUserOID {
			name = fmt.Sprintf("oid %d", oid)
		} else {
			name = "user type"
		}
	}
	r.types[key] = name
	return name
}

// copyData records the data of a COPY TO STDOUT, line by line.
func (r *runner) copyData(data []byte) {
	if len(data) == 0 {
		return
	}
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		if i == maxShownRows {
			sum := sha256.Sum256([]byte(strings.Join(lines[i:], "")))
			r.printf("... %d more lines, sha256 %x", len(lines)-i, sum[:8])
			break
		}
		r.printf("data: %s", quoteIfNeeded(l))
	}
	r.printf("copy bytes: %d", len(data))
}

// notifications waits until s.Count notifications have arrived on c and records them.
func (r *runner) notifications(ctx context.Context, c *clientConn, s *Step) {
	wctx, cancel := context.WithTimeout(ctx, notificationWait)
	defer cancel()
	for len(c.notifications) < s.Count {
		if err := c.pg.WaitForNotification(wctx); err != nil {
			r.printf("received %d of %d notifications", len(c.notifications), s.Count)
			r.error("", s, err)
			break
		}
	}
	n := min(s.Count, len(c.notifications))
	for _, msg := range c.notifications[:n] {
		// NOTE: the sender's PID is left out: it differs between runs.
		r.printf("notification %s: %s", quoteIfNeeded(msg.Channel), quoteIfNeeded(msg.Payload))
	}
	c.notifications = c.notifications[n:]
}

// pipeline sends all items of a pipeline step, then reads their results in order.
func (r *runner) pipeline(ctx context.Context, c *clientConn, s *Step) {
	for i, it := range s.Items {
		r.printf("  [%d] (line %d) %s", i+1, it.Line, header(it))
		if it.SQL != "" {
			r.printSQL("  ", it.SQL)
		}
	}
	p := c.pg.StartPipeline(ctx)
	// NOTE: after an error the server skips every message up to the next Sync, and pgconn
	// skips those items too: GetResults returns the Sync's result next.
	next, failed := 0, false
	// read records the results of the items before end, and reports whether the pipeline
	// is still usable.
	read := func(end int) bool {
		for next < end {
			it := s.Items[next]
			ind := fmt.Sprintf("  [%d] ", next+1)
			if it.Kind == StepFlush {
				r.printf("%sflushed", ind)
				next++
				continue
			}
			if failed && it.Kind != StepSync {
				r.printf("%sskipped", ind)
				next++
				continue
			}
			res, err := p.GetResults()
			if err != nil {
				r.error(ind, it, err)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) {
					return false
				}
				if it.Kind == StepSync {
					// An error at Sync (say, a deferred constraint at the implicit commit)
					// still comes before the Sync's ReadyForQuery: read that next.
					continue
				}
				failed = true
				next++
				continue
			}
			switch res := res.(type) {
			case *pgconn.ResultReader:
				if err := r.rows(ind, res); err != nil {
					r.error(ind, it, err)
					failed = true
				}
			case *pgconn.StatementDescription:
				r.description(ind, it, res, nil)
			case *pgconn.CloseComplete:
				r.printf("%sdeallocated", ind)
			case *pgconn.PipelineSync:
				r.printf("%ssync, status %c", ind, c.pg.TxStatus())
				failed = false
			case nil:
				r.printf("%sno result", ind)
				r.clientError(it, errors.New("pipeline returned no result"))
				return false
			default:
				r.printf("%sunexpected result %T", ind, res)
			}
			next++
		}
		return true
	}
	ok := true
	for i, it := range s.Items {
		switch it.Kind {
		case StepExtended:
			p.SendQueryParams(r.subst(it.SQL), r.params(it), nil, nil, formats(it))
		case StepPrepare:
			p.SendPrepare(r.subst(it.Name), r.subst(it.SQL), nil)
		case StepExecPrepared:
			p.SendQueryPrepared(r.subst(it.Name), r.params(it), nil, formats(it))
		case StepDeallocate:
			p.SendDeallocate(r.subst(it.Name))
		case StepSync:
			p.SendPipelineSync()
		case StepFlush:
			// The client waits for the results so far before it sends anything more, as
			// libpq's PQsendFlushRequest users do: a proxy that holds them until Sync hangs.
			p.SendFlushRequest()
			if err := p.Flush(); err != nil {
				r.error("", s, err)
				ok = false
			} else {
				ok = read(i + 1)
			}
		}
		if !ok {
			break
		}
	}
	if ok {
		if err := p.Flush(); err != nil {
			r.error("", s, err)
		} else {
			read(len(s.Items))
		}
	}
	if err := p.Close(); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			r.error("", s, err)
		}
	}
}

// raw sends the messages of a raw block one by one and, at each flush, sync, query,
// copydone and copyfail, reads the responses to what was sent so far.
func (r *runner) raw(ctx context.Context, c *clientConn, s *Step) {
	for i, m := range s.Raw {
		r.printf("  [%d] (line %d) %s", i+1, m.Line, r.subst(m.Text))
	}
	fe := c.pg.Frontend()
	// next is the first message whose responses have not been read. failed: an error in
	// extended-query mode makes the server discard messages up to the next Sync. copyIn is
	// 'S' or 'E' while the server is in COPY FROM STDIN started by a Query or an Execute.
	next, failed, copyIn := 0, false, byte(0)
	// read records responses until the messages before end are answered. It reports
	// whether the connection is still in a known state.
	read := func(end int) bool {
		rows := 0
		for next < end {
			m := s.Raw[next]
			ind := fmt.Sprintf("  [%d] ", next+1)
			switch {
			case m.Type == "flush" || m.Type == "copydata":
				next++
				continue
			case failed && m.Type != "sync":
				r.printf("%sskipped", ind)
				next++
				continue
			case m.Type == "sync" && copyIn != 0:
				r.printf("%signored during COPY", ind)
				next++
				continue
			}
			msg, err := c.pg.ReceiveMessage(ctx)
			if err != nil {
				r.error(ind, s, err)
				return false
			}
			// endsAtRFQ: the message is answered by ReadyForQuery.
			endsAtRFQ := m.Type == "sync" || m.Type == "query" || m.Type == "fcall" ||
				(m.Type == "copydone" || m.Type == "copyfail") && copyIn == 'S'
			done := false
			switch msg := msg.(type) {
			case *pgproto3.ParameterStatus, *pgproto3.NoticeResponse, *pgproto3.NotificationResponse:
				continue // recorded by the connection's callbacks
			case *pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.CloseComplete, *pgproto3.NoData,
				*pgproto3.EmptyQueryResponse, *pgproto3.CopyOutResponse, *pgproto3.CopyDone:
				name := strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
				r.printf("%s%s", ind, name)
				done = m.Type == bareAnswers[name]
			case *pgproto3.ParameterDescription:
				types := make([]string, len(msg.ParameterOIDs))
				for i, oid := range msg.ParameterOIDs {
					types[i] = r.typeName(oid, -1)
				}
				r.printf("%sParameterDescription (%s)", ind, strings.Join(types, ", "))
			case *pgproto3.RowDescription:
				fields := make([]pgconn.FieldDescription, len(msg.Fields))
				for i, f := range msg.Fields {
					fields[i] = pgconn.FieldDescription{Name: string(f.Name), DataTypeOID: f.DataTypeOID,
						TypeModifier: f.TypeModifier, Format: f.Format}
				}
				r.printf("%sRowDescription: %s", ind, r.columns(fields))
				done = m.Type == "describe"
			case *pgproto3.DataRow:
				rows++
				if rows <= maxShownRows {
					cells := make([]string, len(msg.Values))
					for i, v := range msg.Values {
						cells[i] = formatValue(v, false)
					}
					r.printf("%sDataRow: %s", ind, strings.Join(cells, " | "))
				}
			case *pgproto3.CommandComplete:
				r.rawRowsBeyond(ind, rows)
				rows = 0
				r.printf("%sCommandComplete: %s", ind, msg.CommandTag)
				done = m.Type == "execute"
				if m.Type == "copydone" && copyIn == 'E' {
					// NOTE: in simple mode the COPY ends at ReadyForQuery, in extended
					// mode here.
					done, copyIn = true, 0
				}
			case *pgproto3.PortalSuspended:
				r.rawRowsBeyond(ind, rows)
				rows = 0
				r.printf("%sPortalSuspended", ind)
				done = m.Type == "execute"
			case *pgproto3.CopyInResponse:
				r.printf("%sCopyInResponse", ind)
				switch m.Type {
				case "execute":
					copyIn, done = 'E', true
				case "query":
					copyIn, done = 'S', true
				}
			case *pgproto3.CopyData:
				r.printf("%sCopyData: %s", ind, formatValue(msg.Data, false))
			case *pgproto3.FunctionCallResponse:
				r.printf("%sFunctionCallResponse: %s", ind, formatValue(msg.Result, false))
			case *pgproto3.ErrorResponse:
				r.rawRowsBeyond(ind, rows)
				rows = 0
				r.pgError(ind, pgconn.ErrorResponseToPgError(msg))
				if !endsAtRFQ {
					// An extended-mode error (a COPY started by Execute included): the
					// server skips to the next Sync.
					failed, done, copyIn = true, true, 0
				}
			case *pgproto3.ReadyForQuery:
				r.printf("%sReadyForQuery %c", ind, msg.TxStatus)
				if !endsAtRFQ {
					r.clientError(s, fmt.Errorf("line %d: ReadyForQuery before the answer to %s", m.Line, m.Type))
					return false
				}
				failed, done, copyIn = false, true, 0
			default:
				r.printf("%sunexpected %T", ind, msg)
				r.clientError(s, fmt.Errorf("line %d: unexpected %T", m.Line, msg))
				return false
			}
			if done {
				next++
			}
		}
		return true
	}
	for i, m := range s.Raw {
		var msg pgproto3.FrontendMessage
		switch m.Type {
		case "parse":
			msg = &pgproto3.Parse{Name: r.subst(m.Name), Query: r.subst(m.SQL)}
		case "bind":
			msg = &pgproto3.Bind{DestinationPortal: r.subst(m.Name), PreparedStatement: r.subst(m.Stmt),
				Parameters: r.params(&Step{Params: m.Params})}
		case "describe":
			msg = &pgproto3.Describe{ObjectType: m.Target, Name: r.subst(m.Name)}
		case "execute":
			msg = &pgproto3.Execute{Portal: r.subst(m.Name), MaxRows: m.MaxRows}
		case "close":
			msg = &pgproto3.Close{ObjectType: m.Target, Name: r.subst(m.Name)}
		case "flush":
			msg = &pgproto3.Flush{}
		case "sync":
			msg = &pgproto3.Sync{}
		case "query":
			msg = &pgproto3.Query{String: r.subst(m.SQL)}
		case "copydata":
			msg = &pgproto3.CopyData{Data: []byte(r.subst(m.SQL) + "\n")}
		case "copydone":
			msg = &pgproto3.CopyDone{}
		case "copyfail":
			msg = &pgproto3.CopyFail{Message: r.subst(m.SQL)}
		case "fcall":
			msg = &pgproto3.FunctionCall{Function: m.OID, Arguments: r.params(&Step{Params: m.Params})}
		}
		fe.Send(msg)
		// NOTE: in extended mode the server answers CopyDone and CopyFail into its buffer,
		// sent at the next Flush or Sync: read then.
		trigger := m.Type == "flush" || m.Type == "sync" || m.Type == "query" || m.Type == "fcall" ||
			(m.Type == "copydone" || m.Type == "copyfail") && copyIn != 'E'
		if trigger {
			if err := fe.Flush(); err != nil {
				r.error("", s, err)
				return
			}
			if !read(i + 1) {
				return
			}
		}
	}
}

func (r *runner) rawRowsBeyond(ind string, rows int) {
	if rows > maxShownRows {
		r.printf("%s... %d more DataRows", ind, rows-maxShownRows)
	}
}

// error records err: a server error as SQLSTATE and fields, anything else as a client
// error.
func (r *runner) error(indent string, s *Step, err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		r.pgError(indent, pgErr)
		return
	}
	r.printf("%sclient error: %s", indent, normalize(err.Error()))
	r.clientError(s, err)
}

func (r *runner) clientError(s *Step, err error) {
	r.clientErrs = append(r.clientErrs, fmt.Sprintf("line %d: %s", s.Line, normalize(err.Error())))
}

// pgError records an ErrorResponse or NoticeResponse.
func (r *runner) pgError(indent string, e *pgconn.PgError) {
	r.printf("%s%s %s: %s", indent, e.Severity, e.Code, normalize(e.Message))
	field := func(name, v string) {
		if v != "" {
			r.printf("%s  %s: %s", indent, name, normalize(v))
		}
	}
	field("detail", e.Detail)
	field("hint", e.Hint)
	if e.Position != 0 {
		field("position", strconv.Itoa(int(e.Position)))
	}
	field("internal query", e.InternalQuery)
	if e.InternalPosition != 0 {
		field("internal position", strconv.Itoa(int(e.InternalPosition)))
	}
	field("where", e.Where)
	field("schema", e.SchemaName)
	field("table", e.TableName)
	field("column", e.ColumnName)
	field("data type", e.DataTypeName)
	field("constraint", e.ConstraintName)
}

// normalizers remove facts that differ between connections or runs from server and client
// messages.
var normalizers = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\bpg_(toast_)?temp_\d+\b`), "pg_${1}temp_N"},
	{regexp.MustCompile(`(?i)\b(process|pid) \d+`), "$1 N"},
	{regexp.MustCompile(`\b(OID|oid) \d+`), "$1 N"},
	{regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}:\d+\b`), "ADDR"},
	{regexp.MustCompile(`\[[0-9a-fA-F:]+\]:\d+`), "ADDR"},
	{regexp.MustCompile(`\blocalhost:\d+\b`), "ADDR"},
	{regexp.MustCompile(`/[^ ]*\.s\.PGSQL\.\d+`), "SOCKET"},
}

func normalize(s string) string {
	for _, n := range normalizers {
		s = n.re.ReplaceAllString(s, n.repl)
	}
	return s
}

// formatValue renders one column value: NULL, text as it is (quoted when it could be
// misread), binary in hex, and long values as their length and hash.
func formatValue(v []byte, binary bool) string {
	switch {
	case v == nil:
		return "NULL"
	case len(v) > maxShownValue:
		sum := sha256.Sum256(v)
		return fmt.Sprintf("<%d bytes, sha256 %x>", len(v), sum[:8])
	case binary:
		return `\x` + hex.EncodeToString(v)
	}
	return quoteIfNeeded(string(v))
}

// quoteIfNeeded returns s, or s Go-quoted when it is empty, reads as NULL or as a summary,
// holds the cell separator, control characters or invalid UTF-8, or has edge spaces.
func quoteIfNeeded(s string) string {
	needs := s == "" || s == "NULL" || !utf8.ValidString(s) ||
		strings.HasPrefix(s, `"`) || strings.HasPrefix(s, "<") ||
		strings.Contains(s, " | ") || strings.TrimSpace(s) != s ||
		strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0
	if needs {
		return strconv.Quote(s)
	}
	return s
}
