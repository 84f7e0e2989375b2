package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

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
	return Fatalf(CodeProtocolViolation, "invalid authentication sequence from the server: %s", what)
}

// check is called with every message type the server sends during login.
func (a *authSequence) check(typ Backend) error {
	switch typ {
	case BackendKeyData, ParameterStatus, ReadyForQuery:
		if !a.ok {
			return errAuthOrder(fmt.Sprintf("message %q before AuthenticationOk", typ))
		}
	case Authentication:
		if a.ok {
			return errAuthOrder("authentication request after AuthenticationOk")
		}
	}
	return nil
}

// step is called with the code of each authentication request.
func (a *authSequence) step(code uint32) error {
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

// LoginResult is what the server said during login that the session keeps.
type LoginResult struct {
	// Params are the server's ParameterStatus values.
	Params map[string]string
	// TxStatus is the status byte of the first ReadyForQuery.
	TxStatus byte
	// Forwarded: something reached the client (errors are then already
	// reported to it).
	Forwarded bool
	// Key is the server's BackendKeyData (nil if it sent none).
	Key *pgproto3.BackendKeyData
	// Protocol is the protocol version in force on the server connection:
	// the one asked for, or the lower one the server's
	// NegotiateProtocolVersion granted. Set by auth.Login only.
	Protocol uint32
}

// RelayLogin sends the client's startup message to the server and relays the
// authentication exchange between them until the server's first
// ReadyForQuery. Server messages are forwarded to the client except
// BackendKeyData, which is replaced by keyData (txlane's own key, so that
// cancel requests come to txlane), and the server's NegotiateProtocolVersion,
// which is folded into the one proto tells the client before anything else.
//
// Supported: trust, password, md5 and SCRAM-SHA-256. SCRAM-SHA-256-PLUS is
// never offered to the client: its TLS channel ends at txlane, so a binding to
// it could not be verified by the server.
func RelayLogin(sr *Reader[Backend], sw *bufio.Writer, startup *pgproto3.StartupMessage, proto *Negotiation, client *Reader[Frontend], cw *bufio.Writer, keyData func(server *pgproto3.BackendKeyData) *pgproto3.BackendKeyData) (*LoginResult, error) {
	return relayStartup(sr, sw, startup, proto, client, cw, keyData)
}

// RelayAuth relays only the authentication exchange of a login, as
// RelayLogin does, for a client that txlane itself will serve (the admin
// console, which negotiates the protocol itself): the server's
// NegotiateProtocolVersion, AuthenticationOk, ParameterStatus,
// BackendKeyData and ReadyForQuery are not forwarded. A nil error means the
// server sent ReadyForQuery: it accepted the password and let the user in
// (the role exists and may log in, the database exists and may be connected
// to, a connection slot was free); with trust, PostgreSQL sends
// AuthenticationOk before it checks the role, so AuthenticationOk alone
// proves nothing. A refusal reaches the client as the server's own
// ErrorResponse (*ServerLoginError), as with RelayLogin.
func RelayAuth(sr *Reader[Backend], sw *bufio.Writer, startup *pgproto3.StartupMessage, client *Reader[Frontend], cw *bufio.Writer) (*LoginResult, error) {
	return relayStartup(sr, sw, startup, nil, client, cw, nil)
}

// relayStartup is RelayLogin, or RelayAuth when keyData is nil (proto is
// then nil too).
func relayStartup(sr *Reader[Backend], sw *bufio.Writer, startup *pgproto3.StartupMessage, proto *Negotiation, client *Reader[Frontend], cw *bufio.Writer, keyData func(server *pgproto3.BackendKeyData) *pgproto3.BackendKeyData) (*LoginResult, error) {
	authOnly := keyData == nil
	res := &LoginResult{Params: map[string]string{}}
	if err := WriteMsg(sw, startup); err != nil {
		return res, err
	}
	if err := sw.Flush(); err != nil {
		return res, err
	}
	var auth authSequence
	for {
		typ, _, err := sr.Next()
		if err != nil {
			return res, fmt.Errorf("reading from server during login: %w", err)
		}
		if typ == NegotiateProtocolVersion {
			body, err := sr.Body()
			if err != nil {
				return res, err
			}
			if proto != nil {
				if err := proto.ServerAnswer(body); err != nil {
					return res, err
				}
			}
			continue
		}
		if proto != nil {
			if err := proto.Tell(cw); err != nil {
				return res, err
			}
		}
		if err := auth.check(typ); err != nil {
			return res, err
		}
		switch typ {
		case Authentication:
			body, err := sr.Body()
			if err != nil {
				return res, err
			}
			if len(body) < 4 {
				return res, errors.New("short authentication message from server")
			}
			code := binary.BigEndian.Uint32(body)
			if err := auth.step(code); err != nil {
				return res, err
			}
			switch code {
			case authOK, authSASLFinal:
				if code == authOK && authOnly {
					continue // the caller sends its own once the server has let the user in
				}
				WriteRaw(cw, typ, body)
				res.Forwarded = true
				continue
			case authCleartextPassword, authMD5Password, authSASLContinue:
				WriteRaw(cw, typ, body)
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
					return res, Fatalf(CodeInvalidAuthorization, "the server offers only SASL mechanisms with channel binding, which txlane cannot relay")
				}
				msg.AuthMechanisms = mechs
				if err := WriteMsg(cw, msg); err != nil {
					return res, err
				}
			default:
				return res, Fatalf(CodeInvalidAuthorization, "authentication method %d requested by the server cannot be relayed by txlane", code)
			}
			res.Forwarded = true
			if err := cw.Flush(); err != nil {
				return res, err
			}
			// The client answers with a PasswordMessage-family message ('p').
			ctyp, _, err := client.Next()
			if err != nil {
				return res, fmt.Errorf("reading authentication response from client: %w", err)
			}
			if ctyp != 'p' {
				client.Skip()
				return res, Fatalf(CodeProtocolViolation, "expected password response, got message type %q", ctyp)
			}
			if err := client.Forward(sw); err != nil {
				return res, err
			}
			if err := sw.Flush(); err != nil {
				return res, err
			}
		case BackendKeyData:
			body, err := sr.Body()
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
			msg.SecretKey = slices.Clone(msg.SecretKey)
			res.Key = msg
			if err := WriteMsg(cw, keyData(msg)); err != nil {
				return res, err
			}
		case ParameterStatus:
			body, err := sr.Body()
			if err != nil {
				return res, err
			}
			msg := &pgproto3.ParameterStatus{}
			if err := msg.Decode(body); err != nil {
				return res, err
			}
			res.Params[msg.Name] = msg.Value
			if !authOnly {
				WriteRaw(cw, typ, body)
			}
		case ReadyForQuery:
			status, err := sr.Status()
			if err != nil {
				return res, err
			}
			res.TxStatus = status
			if !authOnly {
				WriteRaw(cw, typ, []byte{status})
				res.Forwarded = true
			}
			return res, cw.Flush()
		case ErrorResponse:
			// Login refused (bad password, no such database, too many
			// connections...): the client gets the server's own error.
			body, err := sr.Body()
			if err != nil {
				return res, err
			}
			body = WithSQLState(body)
			WriteRaw(cw, typ, body)
			res.Forwarded = true
			cw.Flush()
			msg := &pgproto3.ErrorResponse{}
			msg.Decode(body)
			return res, &ServerLoginError{Code: msg.Code, Message: msg.Message}
		default: // NoticeResponse
			if err := sr.Forward(cw); err != nil {
				return res, err
			}
			res.Forwarded = true
		}
	}
}

// ServerLoginError is a login refused by the server: its SQLSTATE, message
// and whole ErrorResponse body (SQLSTATE ensured, see WithSQLState). A
// relayed login has already forwarded it to the client; a login txlane
// makes itself (auth.Login) leaves that to the caller.
type ServerLoginError struct {
	Code, Message string
	Body          []byte
}

func (e *ServerLoginError) Error() string {
	return fmt.Sprintf("server refused login: %s (SQLSTATE %s)", e.Message, e.Code)
}
