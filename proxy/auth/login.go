package auth

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy/wire"
)

// Authentication request codes ("AuthenticationXXX" messages of the
// Frontend/Backend Protocol chapter).
const (
	authOK          = 0
	authKerberosV5  = 2
	authCleartext   = 3
	authMD5Request  = 5
	authGSS         = 7
	authSSPI        = 9
	authSASL        = 10
	authSASLCont    = 11
	authSASLFinal   = 12
	clientNonceSize = 18 // random bytes of txlane's SCRAM nonce, as libpq's
)

// CredentialsError is a server's authentication request that the
// credentials txlane holds for the user cannot answer: a password request
// without the password, SCRAM-SHA-256 with only an md5 hash, or with keys
// for another salt or iteration count than the server's (an auth file
// verifier that is not the server's secret), GSSAPI or SSPI.
type CredentialsError struct {
	User   string
	Reason string
}

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("cannot log in to the server as %q: %s", e.User, e.Reason)
}

// Login logs in to the server over conn as startup's user, answering the
// server's authentication request with creds, and reads the server's login
// up to its first ReadyForQuery, as wire.RelayLogin reads a relayed one: the
// result has the server's ParameterStatus values, its BackendKeyData, the
// status of its ReadyForQuery and the protocol version it granted (its
// NegotiateProtocolVersion, or the version startup asked for). r and w read
// and write conn; the caller goes on using them. Nothing reaches a client.
//
// The server may ask for nothing (trust), a cleartext password or md5
// (creds.Password; md5 also with creds.MD5) or SCRAM-SHA-256 (creds.Password,
// or creds.Keys when their salt and iteration count are the server's). Over
// TLS, SCRAM-SHA-256-PLUS is used when the server offers it, bound to the
// server's certificate (tls-server-end-point), and the server's final
// signature is always checked: a server that does not hold the user's
// verifier cannot complete the login. A request creds cannot answer is a
// *CredentialsError; a refusal by the server (wrong password, no such
// database, too many connections) a *wire.ServerLoginError holding the
// server's ErrorResponse. ctx bounds the whole login.
func Login(ctx context.Context, conn net.Conn, r *wire.Reader[wire.Backend], w *bufio.Writer, startup *pgproto3.StartupMessage, creds *Credentials) (*wire.LoginResult, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if creds == nil {
		creds = &Credentials{User: startup.Parameters["user"]}
	}
	l := &login{conn: conn, r: r, w: w, creds: creds}
	res, err := l.run(startup)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return res, err
}

type login struct {
	conn  net.Conn
	r     *wire.Reader[wire.Backend]
	w     *bufio.Writer
	creds *Credentials
}

func (l *login) run(startup *pgproto3.StartupMessage) (*wire.LoginResult, error) {
	res := &wire.LoginResult{Params: map[string]string{}, Protocol: startup.ProtocolVersion}
	if err := send(l.w, startup); err != nil {
		return res, err
	}
	first, ok := true, false
	for {
		typ, _, err := l.r.Next()
		if err != nil {
			return res, fmt.Errorf("reading from server during login: %w", err)
		}
		body, err := l.r.Body()
		if err != nil {
			return res, err
		}
		if typ != wire.NegotiateProtocolVersion && typ != wire.NoticeResponse {
			if typ == wire.Authentication && ok || typ != wire.Authentication && typ != wire.ErrorResponse && !ok {
				return res, fmt.Errorf("invalid login sequence from the server: message %q", byte(typ))
			}
		}
		switch typ {
		case wire.NegotiateProtocolVersion:
			var msg pgproto3.NegotiateProtocolVersion
			if err := msg.Decode(body); err != nil || !first {
				return res, fmt.Errorf("bad NegotiateProtocolVersion from the server (first message: %v): %v", first, err)
			}
			if v := startup.ProtocolVersion&0xffff0000 | msg.NewestMinorProtocol&0xffff; v < res.Protocol {
				res.Protocol = v
			}
		case wire.Authentication:
			if len(body) < 4 {
				return res, errors.New("short authentication message from the server")
			}
			code := binary.BigEndian.Uint32(body)
			if code == authOK {
				ok = true
			} else if err := l.answer(code, body); err != nil {
				return res, err
			}
		case wire.ErrorResponse:
			return res, refusal(body)
		case wire.ParameterStatus:
			msg := &pgproto3.ParameterStatus{}
			if err := msg.Decode(body); err != nil {
				return res, err
			}
			res.Params[msg.Name] = msg.Value
		case wire.BackendKeyData:
			msg := &pgproto3.BackendKeyData{}
			if err := msg.Decode(body); err != nil {
				return res, err
			}
			msg.SecretKey = slices.Clone(msg.SecretKey)
			res.Key = msg
		case wire.ReadyForQuery:
			if len(body) != 1 {
				return res, wire.ErrBadReadyForQuery
			}
			res.TxStatus = body[0]
			return res, nil
		case wire.NoticeResponse:
			// Nobody to show it to.
		default:
			return res, fmt.Errorf("unexpected message %q from the server during login", byte(typ))
		}
		first = false
	}
}

// answer answers one authentication request (code, with body) other than
// AuthenticationOk; SASL runs the whole exchange.
func (l *login) answer(code uint32, body []byte) error {
	c := l.creds
	switch code {
	case authCleartext:
		if c.Password == "" {
			return &CredentialsError{User: c.User, Reason: "the server asks for a cleartext password and txlane has " + c.String()}
		}
		return send(l.w, &pgproto3.PasswordMessage{Password: c.Password})
	case authMD5Request:
		var msg pgproto3.AuthenticationMD5Password
		if err := msg.Decode(body); err != nil {
			return err
		}
		secret := c.MD5
		if c.Password != "" {
			secret = md5Secret(c.Password, c.User)
		}
		if secret == "" {
			return &CredentialsError{User: c.User, Reason: "the server asks for md5 and txlane has " + c.String()}
		}
		return send(l.w, &pgproto3.PasswordMessage{Password: md5Response(secret, msg.Salt)})
	case authSASL:
		var msg pgproto3.AuthenticationSASL
		if err := msg.Decode(body); err != nil {
			return err
		}
		return l.scram(msg.AuthMechanisms)
	case authSASLCont, authSASLFinal:
		return errors.New("invalid login sequence from the server: a SASL message outside a SASL exchange")
	case authKerberosV5, authGSS, authSSPI:
		return &CredentialsError{User: c.User, Reason: "the server asks for GSSAPI or SSPI, which txlane does not speak"}
	}
	return &CredentialsError{User: c.User, Reason: fmt.Sprintf("the server asks for authentication method %d, which txlane does not speak", code)}
}

// scram runs a SCRAM-SHA-256 exchange with the server (RFC 5802 section
// 5, as the client), over mechanisms the server offered.
func (l *login) scram(mechs []string) error {
	c := l.creds
	if !slices.Contains(mechs, scramMechanism) {
		return &CredentialsError{User: c.User, Reason: fmt.Sprintf("the server offers SASL mechanisms %q, not SCRAM-SHA-256", mechs)}
	}
	if c.Password == "" && c.Keys == nil {
		return &CredentialsError{User: c.User, Reason: "the server asks for SCRAM-SHA-256 and txlane has " + c.String()}
	}
	mech, gs2, cbData := scramMechanism, "n,,", []byte(nil)
	if tc, ok := l.conn.(*tls.Conn); ok {
		gs2 = "y,,"
		// NOTE: a server that offers -PLUS takes "y" as a downgrade
		// attack; when its certificate has no tls-server-end-point hash,
		// "n" (no channel binding support) is the honest answer.
		if slices.Contains(mechs, scramPlusMechanism) {
			gs2 = "n,,"
			if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
				if h, err := endpointHash(certs[0]); err == nil {
					mech, gs2, cbData = scramPlusMechanism, "p=tls-server-end-point,,", h
				}
			}
		}
	}
	nonce := make([]byte, clientNonceSize)
	rand.Read(nonce)
	clientFirstBare := "n=,r=" + base64.StdEncoding.EncodeToString(nonce)
	if err := send(l.w, &pgproto3.SASLInitialResponse{AuthMechanism: mech, Data: []byte(gs2 + clientFirstBare)}); err != nil {
		return err
	}
	serverFirst, err := l.saslReply(authSASLCont)
	if err != nil {
		return err
	}
	combined, salt, iter, err := parseServerFirst(serverFirst, clientFirstBare[len("n=,r="):])
	if err != nil {
		return err
	}
	keys := c.Keys
	if c.Password != "" {
		if keys, err = NewKeys(c.Password, salt, iter); err != nil {
			return err
		}
	} else if keys.Iterations != iter || !hmac.Equal(keys.Salt, salt) {
		return &CredentialsError{User: c.User, Reason: "the server's SCRAM secret has another salt or iteration count than txlane's verifier (the verifier txlane checked the client with is not the server's)"}
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(append([]byte(gs2), cbData...)) + ",r=" + combined
	authMessage := clientFirstBare + "," + serverFirst + "," + withoutProof
	proof := base64.StdEncoding.EncodeToString(clientProof(keys.ClientKey, authMessage))
	if err := send(l.w, &pgproto3.SASLResponse{Data: []byte(withoutProof + ",p=" + proof)}); err != nil {
		return err
	}
	serverFinal, err := l.saslReply(authSASLFinal)
	if err != nil {
		return err
	}
	sig, ok := strings.CutPrefix(serverFinal, "v=")
	got, err := base64.StdEncoding.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(got, serverSignature(keys.ServerKey, authMessage)) {
		return errors.New("invalid SCRAM server signature: the server does not hold the user's verifier")
	}
	return nil
}

// saslReply reads the server's next message, which must be the
// authentication request code (SASLContinue or SASLFinal), and returns its
// data. A server refusal is a *wire.ServerLoginError.
func (l *login) saslReply(code uint32) (string, error) {
	for {
		typ, _, err := l.r.Next()
		if err != nil {
			return "", fmt.Errorf("reading from server during login: %w", err)
		}
		body, err := l.r.Body()
		if err != nil {
			return "", err
		}
		switch typ {
		case wire.NoticeResponse:
			continue
		case wire.ErrorResponse:
			return "", refusal(body)
		case wire.Authentication:
			if len(body) >= 4 && binary.BigEndian.Uint32(body) == code {
				return string(body[4:]), nil
			}
		}
		return "", fmt.Errorf("invalid SASL exchange from the server: message %q where authentication request %d was due", byte(typ), code)
	}
}

// refusal is the server's ErrorResponse (body) during login.
func refusal(body []byte) *wire.ServerLoginError {
	body = slices.Clone(wire.WithSQLState(body))
	msg := &pgproto3.ErrorResponse{}
	msg.Decode(body)
	return &wire.ServerLoginError{Code: msg.Code, Message: msg.Message, Body: body}
}

// parseServerFirst reads a server-first-message: r=<nonce>,s=<salt>,i=<n>.
// The nonce must extend clientNonce.
func parseServerFirst(msg, clientNonce string) (nonce string, salt []byte, iter int, err error) {
	attrs := strings.Split(msg, ",")
	if len(attrs) < 3 || !strings.HasPrefix(attrs[0], "r=") || !strings.HasPrefix(attrs[1], "s=") || !strings.HasPrefix(attrs[2], "i=") {
		return "", nil, 0, fmt.Errorf("malformed SCRAM server-first-message %q", msg)
	}
	nonce = attrs[0][2:]
	if !strings.HasPrefix(nonce, clientNonce) || len(nonce) == len(clientNonce) {
		return "", nil, 0, errors.New("invalid SCRAM nonce from the server")
	}
	if salt, err = base64.StdEncoding.DecodeString(attrs[1][2:]); err != nil {
		return "", nil, 0, fmt.Errorf("invalid SCRAM salt from the server: %w", err)
	}
	if iter, err = strconv.Atoi(attrs[2][2:]); err != nil || iter < 1 || iter > maxIterations {
		return "", nil, 0, fmt.Errorf("SCRAM iteration count %q from the server out of range (1 to %d)", attrs[2][2:], maxIterations)
	}
	return nonce, salt, iter, nil
}
