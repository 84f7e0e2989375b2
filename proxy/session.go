package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

// TxStatus is a client's transaction status as the last ReadyForQuery it
// received reported it: 'I' idle, 'T' in a transaction block, 'E' in a failed
// transaction block.
type TxStatus byte

// Transaction status values, as ReadyForQuery carries them.
const (
	TxIdle   TxStatus = 'I'
	TxActive TxStatus = 'T'
	TxFailed TxStatus = 'E'
)

// session is one client connection and the backend that serves it.
//
// Goroutines: serve's goroutine reads the client and writes the backend
// (clientLoop); relay reads the backend and writes the client. Each socket
// direction has exactly one owner. The client writer cw belongs to the login
// code, then to relay, and after relay has returned to serve again (final
// errors). Shared state lives in mu.
type session struct {
	srv    *Server
	log    *zap.Logger
	client net.Conn
	cr     *msgReader
	cw     *bufio.Writer

	startup *pgproto3.StartupMessage
	primary *backend

	keyPID    uint32 // BackendKeyData txlane gave the client
	keySecret []byte

	stopping atomic.Bool // set when serve tears the session down: relay stays quiet

	mu struct {
		sync.Mutex
		// txStatus is the ground truth of the client's transaction state: it
		// changes only in observeReadyForQuery.
		txStatus TxStatus
		// inFlight counts requests (Query, Sync, FunctionCall) sent to the
		// backend and not yet answered by ReadyForQuery.
		inFlight int
		// params holds the server's ParameterStatus values as last reported.
		params map[string]string
	}
}

// TxStatus returns the client's transaction status.
func (s *session) TxStatus() TxStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.txStatus
}

// observeReadyForQuery records the status byte of a ReadyForQuery on its way
// to the client. It is the only writer of txStatus.
func (s *session) observeReadyForQuery(status byte) {
	s.mu.Lock()
	s.mu.txStatus = TxStatus(status)
	if s.mu.inFlight > 0 {
		s.mu.inFlight--
	}
	s.mu.Unlock()
}

// login relays the client's login to a new primary backend. On failure the
// client has been told why, either by the server or by txlane.
func (s *session) login(ctx context.Context) error {
	params := make(map[string]string, len(s.startup.Parameters)+len(s.srv.opts.Primary.RuntimeParams))
	// The DSN supplies defaults; what the client asked for wins.
	for k, v := range s.srv.opts.Primary.RuntimeParams {
		params[k] = v
	}
	for k, v := range s.startup.Parameters {
		params[k] = v
	}
	startup := &pgproto3.StartupMessage{ProtocolVersion: s.startup.ProtocolVersion, Parameters: params}

	conn, target, err := dialServer(ctx, s.srv.opts.Primary)
	if err != nil {
		s.log.Warn("cannot reach the primary", zap.Error(err))
		return s.fail(&pgError{Severity: "FATAL", Code: CodeCannotConnectNow,
			Message: "txlane cannot reach the PostgreSQL server", Hint: "Check that the server named by txlane's primary DSN is running."})
	}
	b := &backend{conn: conn, r: newMsgReader(conn, 0), w: bufio.NewWriterSize(conn, writeBufSize), target: target}
	s.primary = b
	res, err := relayLogin(b, startup, s.cr, s.cw, func(server *pgproto3.BackendKeyData) *pgproto3.BackendKeyData {
		// NOTE: the target is complete before the key is registered, so a
		// cancel request that finds the session finds a usable target.
		b.target.pid, b.target.secret = server.ProcessID, server.SecretKey
		s.keyPID, s.keySecret = s.srv.keys.register(s, len(server.SecretKey))
		return &pgproto3.BackendKeyData{ProcessID: s.keyPID, SecretKey: s.keySecret}
	})
	if err != nil {
		conn.Close()
		var sle *serverLoginError
		if errors.As(err, &sle) {
			s.log.Info("login refused by server", zap.Error(err))
			return err
		}
		var pe *pgError
		if errors.As(err, &pe) {
			return s.fail(pe)
		}
		s.log.Info("login failed", zap.Error(err))
		if !res.forwarded {
			return s.fail(fatalf(CodeCannotConnectNow, "login to the PostgreSQL server failed"))
		}
		return err
	}
	s.mu.Lock()
	s.mu.txStatus = TxStatus(res.txStatus)
	s.mu.params = res.params
	s.mu.Unlock()
	return nil
}

// fail reports e to the client and returns it.
func (s *session) fail(e *pgError) error {
	writeError(s.cw, e)
	s.cw.Flush()
	return e
}

// serve runs the session until the client leaves or a side fails, then
// releases everything: a client that vanishes leaves no transaction open.
func (s *session) serve() {
	relayDone := make(chan error, 1)
	go func() { relayDone <- s.relay() }()

	err := s.clientLoop()
	s.stopping.Store(true)

	s.mu.Lock()
	busy := s.mu.inFlight > 0
	s.mu.Unlock()
	if busy && !errors.Is(err, errClientTerminated) {
		// NOTE: closing the socket alone does not stop a running statement
		// (the server notices only when it next writes); cancel it so its
		// locks go now, not when it finishes.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if cerr := sendCancel(ctx, s.primary.target); cerr != nil {
			s.log.Debug("cancel on disconnect failed", zap.Error(cerr))
		}
		cancel()
	}
	s.primary.conn.Close()
	<-relayDone

	var pe *pgError
	if errors.As(err, &pe) {
		s.log.Info("closing client", zap.Error(err))
		writeError(s.cw, pe)
		s.cw.Flush()
	} else if err != nil && !errors.Is(err, errClientTerminated) && !isClosedConn(err) {
		s.log.Debug("client connection ended", zap.Error(err))
	}
	s.client.Close()
}

var errClientTerminated = errors.New("client sent Terminate")

// clientLoop forwards client messages to the backend until the client
// terminates, disconnects or breaks the protocol.
func (s *session) clientLoop() error {
	b := s.primary
	for {
		typ, _, err := s.cr.next()
		if err != nil {
			var tooLong *errMessageTooLong
			switch {
			case errors.As(err, &tooLong):
				return &pgError{Severity: "FATAL", Code: CodeProtocolViolation,
					Message: "message too long", Detail: tooLong.Error(),
					Hint: "Raise max_message_size in txlane's configuration if this message is legitimate."}
			case errors.Is(err, errBadLength):
				return &pgError{Severity: "FATAL", Code: CodeProtocolViolation, Message: "invalid message length"}
			}
			return err
		}
		switch typ {
		case msgQuery, msgSync, msgFunctionCall:
			s.mu.Lock()
			s.mu.inFlight++
			s.mu.Unlock()
		case msgTerminate:
			s.cr.skip()
			return errClientTerminated
		}
		if err := s.cr.forward(b.w); err != nil {
			return err
		}
		if !s.cr.buffered() {
			if err := b.w.Flush(); err != nil {
				return err
			}
		}
	}
}

// relay forwards backend messages to the client, observing ReadyForQuery and
// ParameterStatus on the way. It flushes only when the backend has nothing more
// buffered, so a response goes out in as few writes as possible.
func (s *session) relay() error {
	b := s.primary
	fatal := false
	for {
		if !b.r.buffered() {
			if err := s.cw.Flush(); err != nil {
				return s.relayStop(err, fatal)
			}
		}
		typ, _, err := b.r.next()
		if err != nil {
			return s.relayStop(err, fatal)
		}
		switch typ {
		case msgReadyForQuery:
			body, err := b.r.body()
			if err != nil {
				return s.relayStop(err, fatal)
			}
			if len(body) != 1 {
				return s.relayStop(errors.New("malformed ReadyForQuery from server"), fatal)
			}
			s.observeReadyForQuery(body[0])
			writeRaw(s.cw, typ, body)
		case msgParameterStatus:
			body, err := b.r.body()
			if err != nil {
				return s.relayStop(err, fatal)
			}
			var ps pgproto3.ParameterStatus
			if ps.Decode(body) == nil {
				s.mu.Lock()
				s.mu.params[ps.Name] = ps.Value
				s.mu.Unlock()
			}
			writeRaw(s.cw, typ, body)
		case msgErrorResponse:
			body, err := b.r.body()
			if err != nil {
				return s.relayStop(err, fatal)
			}
			// A FATAL error is the server explaining its own exit: nothing to
			// add after it.
			fatal = fatal || isFatal(body)
			writeRaw(s.cw, typ, body)
		default:
			if err := b.r.forward(s.cw); err != nil {
				return s.relayStop(err, fatal)
			}
		}
	}
}

// isFatal reports whether an ErrorResponse body has severity FATAL or PANIC.
func isFatal(body []byte) bool {
	for len(body) > 1 {
		field := body[0]
		end := bytes.IndexByte(body[1:], 0)
		if end < 0 {
			return false
		}
		if field == 'V' || field == 'S' {
			v := string(body[1 : 1+end])
			return v == "FATAL" || v == "PANIC"
		}
		body = body[2+end:]
	}
	return false
}

// relayStop ends relay. If the backend failed while the session was live, the
// client gets an error and is closed; if serve is tearing the session down,
// relay just returns.
func (s *session) relayStop(err error, quiet bool) error {
	if s.stopping.Load() {
		return err
	}
	// What was already received still reaches the client. If that fails, the
	// error was the client's, not the backend's.
	clientOK := s.cw.Flush() == nil
	if clientOK && !quiet && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnError(err)) {
		s.log.Warn("backend connection lost", zap.Error(err))
		writeError(s.cw, &pgError{Severity: "FATAL", Code: CodeConnectionFailure,
			Message: "server connection lost", Detail: "The PostgreSQL backend serving this session closed its connection."})
		s.cw.Flush()
	}
	s.client.Close() // unblocks clientLoop
	return err
}

func isClosedConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}

func isConnError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed)
}
