package console

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// Database is the virtual database of the admin console: a client that logs
// in to it talks to txlane itself, not to PostgreSQL.
const Database = "txlane"

// ServerVersion is the server_version the console reports. NOTE: clients
// parse it (libpq, psql); a PostgreSQL-like number keeps them calm.
const ServerVersion = "15.0 (txlane admin console)"

// Config configures one console connection.
type Config struct {
	// Log receives the console's log lines (default: none).
	Log *zap.Logger
	// MaxMessageSize caps the body of one client message in bytes; a longer
	// one ends the connection with FATAL 08P01. 0: no cap.
	MaxMessageSize int
	// ApplicationName is reported back in the ParameterStatus of the same
	// name, as PostgreSQL does with the startup parameter.
	ApplicationName string
}

// Serve runs the console for a client that has been let in and has not yet
// received AuthenticationOk. It sends AuthenticationOk, the console's
// parameters (server_version ServerVersion, UTF8, ISO dates), a
// BackendKeyData and ReadyForQuery, then answers the client's messages
// until it sends Terminate (nil) or the connection fails (that error).
//
// r reads the client's messages, and may already hold some; w writes to the
// client. Output is flushed at each ReadyForQuery, at Flush and before a
// FATAL, as PostgreSQL does.
func Serve(p Proxy, r io.Reader, w io.Writer, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	s := &session{call: call{p: p, log: cfg.Log}, be: pgproto3.NewBackend(r, w),
		stmts: map[string]string{}, portals: map[string]string{}}
	if cfg.MaxMessageSize > 0 {
		s.be.SetMaxBodyLen(cfg.MaxMessageSize)
	}
	s.be.Send(&pgproto3.AuthenticationOk{})
	for _, kv := range [][2]string{
		{"server_version", ServerVersion},
		{"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO"},
		{"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"},
		{"application_name", cfg.ApplicationName},
	} {
		s.be.Send(&pgproto3.ParameterStatus{Name: kv[0], Value: kv[1]})
	}
	// NOTE: the key is not registered anywhere: a cancel request for the
	// console is ignored, as one with any unknown key is.
	var key [8]byte
	rand.Read(key[:])
	s.be.Send(&pgproto3.BackendKeyData{ProcessID: binary.BigEndian.Uint32(key[:4]) & 0x7fffffff, SecretKey: key[4:]})
	s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := s.be.Flush(); err != nil {
		return err
	}
	return s.loop()
}

// session is one console connection, owned by one goroutine.
type session struct {
	call
	be *pgproto3.Backend
	// The extended protocol: statement and portal names → command text.
	stmts   map[string]string
	portals map[string]string
	// skipping: an error occurred in an extended batch; messages are
	// ignored up to the next Sync.
	skipping bool
}

// loop reads and answers messages until the client leaves.
func (s *session) loop() error {
	for {
		msg, err := s.be.Receive()
		if err != nil {
			if isConnError(err) {
				return err
			}
			var tooLong *pgproto3.ExceededMaxBodyLenErr
			if errors.As(err, &tooLong) {
				return s.fatal(&Error{Severity: "FATAL", Code: CodeProtocolViolation, Message: "message too long", Detail: err.Error()}, err)
			}
			return s.protocolError(err)
		}
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return nil
		}
		if err := s.message(msg); err != nil {
			return err
		}
	}
}

// isConnError reports whether err comes from the connection rather than
// from what the client sent.
func isConnError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// message handles one client message. Messages of an extended batch that
// failed are skipped up to its Sync.
func (s *session) message(msg pgproto3.FrontendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.Query:
		s.skipping = false
		if e := s.simpleQuery(m.String); e != nil {
			return s.fatal(e, e)
		}
		return s.be.Flush()
	case *pgproto3.Sync:
		s.skipping = false
		delete(s.portals, "")
		s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		return s.be.Flush()
	case *pgproto3.Flush:
		return s.be.Flush()
	}
	if s.skipping {
		return nil
	}
	switch m := msg.(type) {
	case *pgproto3.Parse:
		if _, _, e := parse(m.Query); e != nil && !emptyCommand(m.Query) {
			s.extendedError(e)
			return nil
		}
		s.stmts[m.Name] = m.Query
		s.be.Send(&pgproto3.ParseComplete{})
	case *pgproto3.Bind:
		q, ok := s.stmts[m.PreparedStatement]
		if !ok {
			s.extendedError(errorf(codeInvalidStatement, "prepared statement %q does not exist", m.PreparedStatement))
			return nil
		}
		s.portals[m.DestinationPortal] = q
		s.be.Send(&pgproto3.BindComplete{})
	case *pgproto3.Describe:
		names, code, what := s.portals, codeInvalidCursorName, "portal"
		if m.ObjectType == 'S' {
			names, code, what = s.stmts, codeInvalidStatement, "prepared statement"
		}
		q, ok := names[m.Name]
		if !ok {
			s.extendedError(errorf(code, "%s %q does not exist", what, m.Name))
			return nil
		}
		if m.ObjectType == 'S' {
			s.be.Send(&pgproto3.ParameterDescription{})
		}
		if cmd, _, _ := parse(q); cmd == nil || cmd.columns == nil {
			s.be.Send(&pgproto3.NoData{})
		} else {
			s.be.Send(rowDescription(cmd.columns))
		}
	case *pgproto3.Execute:
		q, ok := s.portals[m.Portal]
		if !ok {
			s.extendedError(errorf(codeInvalidCursorName, "portal %q does not exist", m.Portal))
			return nil
		}
		if emptyCommand(q) {
			s.be.Send(&pgproto3.EmptyQueryResponse{})
			return nil
		}
		cmd, res, e := s.run(q)
		if e != nil && e.Severity == "FATAL" {
			return s.fatal(e, e)
		}
		if e != nil {
			s.extendedError(e)
			return nil
		}
		s.writeResult(cmd, res, false)
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			delete(s.stmts, m.Name)
		} else {
			delete(s.portals, m.Name)
		}
		s.be.Send(&pgproto3.CloseComplete{})
	default:
		return s.protocolError(fmt.Errorf("message type %T is not supported by the admin console", msg))
	}
	return nil
}

// run parses and executes one command's text.
func (s *session) run(text string) (*command, *result, *Error) {
	cmd, arg, e := parse(text)
	if e != nil {
		return nil, nil, e
	}
	res, e := cmd.run(&s.call, arg)
	return cmd, res, e
}

// fatal reports e, flushes, and returns err: the connection ends, as after
// a FATAL error from PostgreSQL.
func (s *session) fatal(e *Error, err error) error {
	s.sendError(e)
	s.be.Flush()
	return err
}

// protocolError ends the connection with FATAL 08P01.
func (s *session) protocolError(err error) error {
	return s.fatal(&Error{Severity: "FATAL", Code: CodeProtocolViolation, Message: "protocol violation", Detail: err.Error()}, err)
}

// extendedError reports an error inside an extended batch and skips the
// rest of it, up to Sync.
func (s *session) extendedError(e *Error) {
	s.sendError(e)
	s.skipping = true
}

func (s *session) sendError(e *Error) {
	s.be.Send(&pgproto3.ErrorResponse{Severity: e.Severity, SeverityUnlocalized: e.Severity, Code: e.Code,
		Message: e.Message, Detail: e.Detail, Hint: e.Hint})
}

// simpleQuery answers a Query message: each command in turn (see
// splitCommands), stopping at the first error, then ReadyForQuery. A FATAL
// error is returned instead: it ends the connection.
func (s *session) simpleQuery(q string) *Error {
	texts := splitCommands(q)
	if len(texts) == 0 {
		s.be.Send(&pgproto3.EmptyQueryResponse{})
	}
	for _, text := range texts {
		cmd, res, e := s.run(text)
		if e != nil && e.Severity == "FATAL" {
			return e
		}
		if e != nil {
			s.sendError(e)
			break
		}
		s.writeResult(cmd, res, true)
	}
	s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return nil
}

// writeResult writes a command's warnings, rows and completion tag; the
// row description too when desc is set (the simple protocol; the extended
// one sent it at Describe).
func (s *session) writeResult(cmd *command, res *result, desc bool) {
	for _, n := range res.notices {
		s.be.Send(&pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000", Message: n})
	}
	if cmd.columns != nil {
		if desc {
			s.be.Send(rowDescription(cmd.columns))
		}
		for _, row := range res.rows {
			values := make([][]byte, len(row))
			for i, v := range row {
				values[i] = []byte(v)
			}
			s.be.Send(&pgproto3.DataRow{Values: values})
		}
	}
	s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(cmd.tag())})
}

// rowDescription describes text columns.
func rowDescription(cols []string) *pgproto3.RowDescription {
	rd := &pgproto3.RowDescription{Fields: make([]pgproto3.FieldDescription, len(cols))}
	for i, c := range cols {
		rd.Fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	return rd
}
