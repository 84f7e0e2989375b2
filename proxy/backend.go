package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// backend is one server connection as the proxy drives it after login: raw
// framing in both directions, nothing decoded unless routing needs it.
//
// A backend is not safe for concurrent use: one goroutine writes it (w) and one
// reads it (r). Cancel requests use a separate connection (see cancelTarget).
type backend struct {
	conn   net.Conn
	r      *msgReader
	w      *bufio.Writer
	target cancelTarget
}

// cancelTarget is what a CancelRequest for a backend needs.
type cancelTarget struct {
	dial    pgconn.DialFunc
	network string
	addr    string
	pid     uint32
	secret  []byte
}

// dialServer opens a network connection to the first reachable host of cfg
// and its fallbacks, negotiating TLS as the DSN's sslmode asks. It reuses
// pgconn's parsing of the DSN (hosts, ports, sslmode → TLS config, fallbacks
// such as sslmode=prefer's plaintext retry) so that txlane reaches the server
// exactly as a pgx client would.
//
// NOTE: authentication is not pgconn's here: a client's credentials are relayed
// message by message (relayLogin), so txlane never needs the client's password.
func dialServer(ctx context.Context, cfg *pgconn.Config) (net.Conn, cancelTarget, error) {
	if cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	}
	type attempt struct {
		host string
		port uint16
		tls  *tls.Config
	}
	attempts := []attempt{{cfg.Host, cfg.Port, cfg.TLSConfig}}
	for _, fb := range cfg.Fallbacks {
		attempts = append(attempts, attempt{fb.Host, fb.Port, fb.TLSConfig})
	}
	var errs []error
	for _, a := range attempts {
		network, addr := pgconn.NetworkAddress(a.host, a.port)
		conn, err := cfg.DialFunc(ctx, network, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if a.tls != nil {
			tc, err := startTLS(ctx, conn, a.tls)
			if err != nil {
				conn.Close()
				errs = append(errs, fmt.Errorf("%s: %w", addr, err))
				continue
			}
			conn = tc
		}
		return conn, cancelTarget{dial: cfg.DialFunc, network: network, addr: addr}, nil
	}
	return nil, cancelTarget{}, errors.Join(errs...)
}

func startTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(noDeadline)
	}
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:], 8)
	binary.BigEndian.PutUint32(req[4:], codeSSLRequest)
	if _, err := conn.Write(req[:]); err != nil {
		return nil, err
	}
	var resp [1]byte
	if _, err := io.ReadFull(conn, resp[:]); err != nil {
		return nil, err
	}
	if resp[0] != 'S' {
		return nil, errors.New("server refused TLS")
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// Authentication request codes (AuthenticationXXX messages).
const (
	authOK                = 0
	authCleartextPassword = 3
	authMD5Password       = 5
	authSASL              = 10
	authSASLContinue      = 11
	authSASLFinal         = 12
)

// authSequence checks that a server's login messages come in an order the
// protocol allows ("Message Flow: Start-up"): authentication requests, SASL
// continuations only after SASL and before its final message, exactly one
// AuthenticationOk, and nothing of the session (BackendKeyData,
// ParameterStatus, ReadyForQuery) before it. A server that breaks it is not
// relayed further: the client gets FATAL 08P01.
type authSequence struct {
	sasl, saslFinal, ok bool
}

func errAuthOrder(what string) error {
	return fatalf(CodeProtocolViolation, "invalid authentication sequence from the server: %s", what)
}

// check is called with every message type the server sends during login.
func (a *authSequence) check(typ byte) error {
	switch typ {
	case msgBackendKeyData, msgParameterStatus, msgReadyForQuery:
		if !a.ok {
			return errAuthOrder(fmt.Sprintf("message %q before AuthenticationOk", typ))
		}
	case msgAuthentication:
		if a.ok {
			return errAuthOrder("authentication request after AuthenticationOk")
		}
	}
	return nil
}

// next is called with the code of each authentication request.
func (a *authSequence) next(code uint32) error {
	switch code {
	case authOK:
		if a.sasl && !a.saslFinal {
			return errAuthOrder("AuthenticationOk before the SASL exchange ended")
		}
		a.ok = true
	case authSASL:
		if a.sasl {
			return errAuthOrder("a second AuthenticationSASL")
		}
		a.sasl = true
	case authSASLContinue, authSASLFinal:
		if !a.sasl || a.saslFinal {
			return errAuthOrder("a SASL message outside a SASL exchange")
		}
		a.saslFinal = code == authSASLFinal
	}
	return nil
}

// loginResult is what the server said during login that the session keeps.
type loginResult struct {
	params    map[string]string
	txStatus  byte
	forwarded bool // whether anything reached the client (then errors are already reported)
}

// relayLogin sends the client's startup message to the server and relays the
// authentication exchange between them until the server's first
// ReadyForQuery. Server messages are forwarded to the client except
// BackendKeyData, which is replaced by keyData (txlane's own key, so that
// cancel requests come to txlane), and the server's NegotiateProtocolVersion,
// which is folded into the one proto tells the client before anything else.
//
// Supported: trust, password, md5 and SCRAM-SHA-256. SCRAM-SHA-256-PLUS is
// never offered to the client: its TLS channel ends at txlane, so a binding to
// it could not be verified by the server.
func relayLogin(b *backend, startup *pgproto3.StartupMessage, proto *negotiation, client *msgReader, cw *bufio.Writer, keyData func(server *pgproto3.BackendKeyData) *pgproto3.BackendKeyData) (*loginResult, error) {
	return relayStartup(b, startup, proto, client, cw, keyData)
}

// relayAuth relays only the authentication exchange of a login, as
// relayLogin does, for a client that txlane itself will serve (the admin
// console, which negotiates the protocol itself): the server's
// NegotiateProtocolVersion, AuthenticationOk, ParameterStatus,
// BackendKeyData and ReadyForQuery are not forwarded. A nil error means the
// server sent ReadyForQuery: it accepted the password and let the user in
// (the role exists and may log in, the database exists and may be connected
// to, a connection slot was free); with trust, PostgreSQL sends
// AuthenticationOk before it checks the role, so AuthenticationOk alone
// proves nothing. A refusal reaches the client as the server's own
// ErrorResponse (*serverLoginError), as with relayLogin.
func relayAuth(b *backend, startup *pgproto3.StartupMessage, client *msgReader, cw *bufio.Writer) (*loginResult, error) {
	return relayStartup(b, startup, nil, client, cw, nil)
}

// relayStartup is relayLogin, or relayAuth when keyData is nil (proto is
// then nil too).
func relayStartup(b *backend, startup *pgproto3.StartupMessage, proto *negotiation, client *msgReader, cw *bufio.Writer, keyData func(server *pgproto3.BackendKeyData) *pgproto3.BackendKeyData) (*loginResult, error) {
	authOnly := keyData == nil
	res := &loginResult{params: map[string]string{}}
	if err := writeMsg(b.w, startup); err != nil {
		return res, err
	}
	if err := b.w.Flush(); err != nil {
		return res, err
	}
	var auth authSequence
	for {
		typ, _, err := b.r.next()
		if err != nil {
			return res, fmt.Errorf("reading from server during login: %w", err)
		}
		if typ == msgNegotiateVersion {
			body, err := b.r.body()
			if err != nil {
				return res, err
			}
			if proto != nil {
				if err := proto.serverAnswer(body); err != nil {
					return res, err
				}
			}
			continue
		}
		if proto != nil {
			if err := proto.tell(cw); err != nil {
				return res, err
			}
		}
		if err := auth.check(typ); err != nil {
			return res, err
		}
		switch typ {
		case msgAuthentication:
			body, err := b.r.body()
			if err != nil {
				return res, err
			}
			if len(body) < 4 {
				return res, errors.New("short authentication message from server")
			}
			code := binary.BigEndian.Uint32(body)
			if err := auth.next(code); err != nil {
				return res, err
			}
			switch code {
			case authOK, authSASLFinal:
				if code == authOK && authOnly {
					continue // the caller sends its own once the server has let the user in
				}
				writeRaw(cw, typ, body)
				res.forwarded = true
				continue
			case authCleartextPassword, authMD5Password, authSASLContinue:
				writeRaw(cw, typ, body)
			case authSASL:
				msg := &pgproto3.AuthenticationSASL{}
				if err := msg.Decode(body); err != nil {
					return res, err
				}
				var mechs []string
				for _, m := range msg.AuthMechanisms {
					if !strings.HasSuffix(m, "-PLUS") {
						mechs = append(mechs, m)
					}
				}
				if len(mechs) == 0 {
					return res, fatalf(CodeInvalidAuthorization, "the server offers only SASL mechanisms with channel binding, which txlane cannot relay")
				}
				msg.AuthMechanisms = mechs
				if err := writeMsg(cw, msg); err != nil {
					return res, err
				}
			default:
				return res, fatalf(CodeInvalidAuthorization, "authentication method %d requested by the server cannot be relayed by txlane", code)
			}
			res.forwarded = true
			if err := cw.Flush(); err != nil {
				return res, err
			}
			// The client answers with a PasswordMessage-family message ('p').
			ctyp, _, err := client.next()
			if err != nil {
				return res, fmt.Errorf("reading authentication response from client: %w", err)
			}
			if ctyp != 'p' {
				client.skip()
				return res, fatalf(CodeProtocolViolation, "expected password response, got message type %q", ctyp)
			}
			if err := client.forward(b.w); err != nil {
				return res, err
			}
			if err := b.w.Flush(); err != nil {
				return res, err
			}
		case msgBackendKeyData:
			body, err := b.r.body()
			if err != nil {
				return res, err
			}
			if authOnly {
				continue
			}
			msg := &pgproto3.BackendKeyData{}
			if err := msg.Decode(body); err != nil {
				return res, err
			}
			if err := writeMsg(cw, keyData(msg)); err != nil {
				return res, err
			}
		case msgParameterStatus:
			body, err := b.r.body()
			if err != nil {
				return res, err
			}
			msg := &pgproto3.ParameterStatus{}
			if err := msg.Decode(body); err != nil {
				return res, err
			}
			res.params[msg.Name] = msg.Value
			if !authOnly {
				writeRaw(cw, typ, body)
			}
		case msgReadyForQuery:
			status, err := b.r.status()
			if err != nil {
				return res, err
			}
			res.txStatus = status
			if !authOnly {
				writeRaw(cw, typ, []byte{status})
				res.forwarded = true
			}
			return res, cw.Flush()
		case msgErrorResponse:
			// Login refused (bad password, no such database, too many
			// connections...): the client gets the server's own error.
			body, err := b.r.body()
			if err != nil {
				return res, err
			}
			body = withSQLState(body)
			writeRaw(cw, typ, body)
			res.forwarded = true
			cw.Flush()
			msg := &pgproto3.ErrorResponse{}
			msg.Decode(body)
			return res, &serverLoginError{code: msg.Code, msg: msg.Message}
		default: // NoticeResponse
			if err := b.r.forward(cw); err != nil {
				return res, err
			}
			res.forwarded = true
		}
	}
}

// serverLoginError is a login refusal already forwarded to the client.
type serverLoginError struct{ code, msg string }

func (e *serverLoginError) Error() string {
	return fmt.Sprintf("server refused login: %s (SQLSTATE %s)", e.msg, e.code)
}

// sendCancel asks the server to cancel whatever t's backend is running. As
// PostgreSQL's own cancel protocol, it is fire-and-forget: the server closes
// the connection without an answer.
func sendCancel(ctx context.Context, t cancelTarget) error {
	conn, err := t.dial(ctx, t.network, t.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	buf, err := (&pgproto3.CancelRequest{ProcessID: t.pid, SecretKey: t.secret}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := conn.Write(buf); err != nil {
		return err
	}
	// Wait for the server to close, so the cancel has been processed when we return.
	io.Copy(io.Discard, conn)
	return nil
}
