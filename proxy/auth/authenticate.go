package auth

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy/wire"
)

// Method is how txlane authenticates its clients: the configuration's
// auth_type.
type Method string

// The values of Method.
const (
	// MethodServer relays each client's login to the server, which decides
	// (the default): txlane knows no secret.
	MethodServer Method = "server"
	// MethodTrust lets every client in without a check: for tests and local
	// development only.
	MethodTrust Method = "trust"
	// MethodMD5 checks the client with md5, or with SCRAM-SHA-256 when the
	// user's secret is a SCRAM verifier (as PostgreSQL's md5 method does).
	MethodMD5 Method = "md5"
	// MethodSCRAM checks the client with SCRAM-SHA-256 (and
	// SCRAM-SHA-256-PLUS with channel binding on TLS).
	MethodSCRAM Method = "scram-sha-256"
)

// Terminates reports whether txlane authenticates clients itself with m
// (every method but MethodServer).
func (m Method) Terminates() bool { return m != MethodServer && m != "" }

// Client is the client end of a login that txlane authenticates.
type Client struct {
	R *wire.Reader[wire.Frontend]
	W *bufio.Writer
	// TLS says the client reached txlane over TLS.
	TLS bool
	// EndpointHash is the tls-server-end-point channel binding data of the
	// certificate txlane presented to the client (see EndpointHash). With
	// TLS and EndpointHash set, SCRAM-SHA-256-PLUS is offered next to
	// SCRAM-SHA-256, as PostgreSQL offers it on its TLS connections.
	EndpointHash []byte
}

// CodeInvalidPassword is SQLSTATE 28P01 (invalid_password): what PostgreSQL
// answers a wrong password, an unknown user and a user without a usable
// secret alike, so that a client cannot tell them apart.
const CodeInvalidPassword = "28P01"

// PasswordFailed returns PostgreSQL's error for a failed password
// authentication of user: FATAL 28P01 password authentication failed for
// user "user".
func PasswordFailed(user string) *wire.Error {
	return wire.Fatalf(CodeInvalidPassword, "password authentication failed for user %q", user)
}

// Authenticate runs method's exchange with the client logging in as user,
// whose secret is s (nil: the user is unknown or has no password), and
// returns the credentials txlane may log in to the server with as user (see
// Credentials). It sends no AuthenticationOk: the caller does, once it has
// a server connection for the client.
//
// As PostgreSQL does (auth.c, auth-scram.c):
//   - scram-sha-256 runs SCRAM-SHA-256 when s has a verifier; md5 runs
//     SCRAM-SHA-256 when s has a verifier but no md5 hash, md5 otherwise;
//   - an unknown user, a user without a password and a user whose secret
//     the method cannot use (an md5 hash under scram-sha-256) go through a
//     SCRAM exchange with a made-up salt that is the same for every attempt
//     at that user, and fail at its end: the client learns nothing of
//     which users exist;
//   - every failure of the password is FATAL 28P01 "password
//     authentication failed for user"; a channel binding that fails, or a
//     client that says it binds channels but saw no -PLUS offered where it
//     is, FATAL 28000; a malformed SCRAM message FATAL 08P01, a SCRAM
//     feature the server does not support FATAL 0A000.
//
// trust returns at once: nothing is checked, and the credentials are what s
// holds (a password or an md5 hash; a verifier alone logs in nowhere).
//
// Errors meant for the client are *wire.Error; the caller writes them. Any
// other error is the client's connection failing.
func Authenticate(c Client, method Method, user string, s *Secret) (*Credentials, error) {
	switch method {
	case MethodTrust:
		return credentialsOf(user, s), nil
	case MethodMD5:
		if s != nil && s.MD5 != "" {
			return md5Exchange(c, user, s)
		}
	case MethodSCRAM:
	default:
		return nil, fmt.Errorf("auth: method %q does not authenticate clients", method)
	}
	srv := &scramServer{user: user, mechs: []string{scramMechanism}, cbData: nil, tls: c.TLS}
	if c.TLS && c.EndpointHash != nil {
		srv.mechs = append(srv.mechs, scramPlusMechanism)
		srv.cbData = c.EndpointHash
	}
	if s != nil && s.SCRAM != nil {
		srv.v = s.SCRAM
	} else {
		srv.v, srv.mock = mockVerifier(user), true
	}
	keys, err := srv.run(c)
	if err != nil {
		return nil, err
	}
	creds := credentialsOf(user, s)
	creds.Keys = keys
	return creds, nil
}

// md5Exchange runs an md5 exchange ("AuthenticationMD5Password") against s.MD5.
func md5Exchange(c Client, user string, s *Secret) (*Credentials, error) {
	var salt [4]byte
	rand.Read(salt[:])
	body, err := ask(c, &pgproto3.AuthenticationMD5Password{Salt: salt})
	if err != nil {
		return nil, err
	}
	var msg pgproto3.PasswordMessage
	if err := msg.Decode(body); err != nil {
		return nil, wire.Fatalf(wire.CodeProtocolViolation, "invalid password packet: %v", err)
	}
	if !checkMD5(s.MD5, salt, msg.Password) {
		return nil, PasswordFailed(user)
	}
	return credentialsOf(user, s), nil
}

func send(w *bufio.Writer, msg interface{ Encode([]byte) ([]byte, error) }) error {
	if err := wire.WriteMsg(w, msg); err != nil {
		return err
	}
	return w.Flush()
}

// ask sends the client an authentication request and returns the body of
// its answer (see readResponse).
func ask(c Client, req interface{ Encode([]byte) ([]byte, error) }) ([]byte, error) {
	if err := send(c.W, req); err != nil {
		return nil, err
	}
	return readResponse(c.R)
}

// readResponse reads the client's next message, which must be of the
// PasswordMessage family ('p'), and returns its body.
func readResponse(r *wire.Reader[wire.Frontend]) ([]byte, error) {
	typ, _, err := r.Next()
	if err != nil {
		return nil, fmt.Errorf("reading authentication response from client: %w", err)
	}
	if typ != wire.PasswordMessage {
		r.Skip()
		return nil, wire.Fatalf(wire.CodeProtocolViolation, "expected password response, got message type %q", byte(typ))
	}
	return r.Body()
}

// mockKey makes the salt of mockVerifier differ between txlane processes:
// another process cannot tell from it that a user is unknown here.
var mockKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}()

// mockVerifier is the verifier of a user txlane has no usable secret for:
// its salt is the same at every attempt (so that it does not give the
// user's absence away, as PostgreSQL's scram_mock_salt) and no proof
// matches its StoredKey (an HMAC output nobody knows the preimage of).
func mockVerifier(user string) *Verifier {
	m := hmac.New(sha256.New, mockKey)
	m.Write([]byte(user))
	sum := m.Sum(nil)
	return &Verifier{Iterations: DefaultIterations, Salt: sum[:16], StoredKey: hmacSHA256(mockKey, "stored"+user), ServerKey: hmacSHA256(mockKey, "server"+user)}
}

// scramServer is txlane's side of one SCRAM-SHA-256 exchange with a client
// (RFC 5802 section 5; PostgreSQL's auth-scram.c for its checks).
type scramServer struct {
	user   string
	v      *Verifier
	mock   bool     // v is mockVerifier's: the exchange fails at its end
	mechs  []string // offered, in PostgreSQL's order
	cbData []byte   // tls-server-end-point data; nil: -PLUS not offered
	tls    bool

	serverNonce string // set by tests; random otherwise

	mech            string
	gs2Header       string // as the client sent it, e.g. "n,,"
	cbFlag          byte   // 'n', 'y' or 'p'
	clientFirstBare string
	serverFirst     string
	nonce           string // client nonce + server nonce
}

// run drives the exchange over the client connection and returns the
// client's keys once its proof is checked and the server signature sent.
func (s *scramServer) run(c Client) (*Keys, error) {
	body, err := ask(c, &pgproto3.AuthenticationSASL{AuthMechanisms: s.mechs})
	if err != nil {
		return nil, err
	}
	var initial pgproto3.SASLInitialResponse
	if err := initial.Decode(body); err != nil {
		return nil, wire.Fatalf(wire.CodeProtocolViolation, "malformed SASLInitialResponse: %v", err)
	}
	first, err := s.first(initial.AuthMechanism, initial.Data)
	if err != nil {
		return nil, err
	}
	if body, err = ask(c, &pgproto3.AuthenticationSASLContinue{Data: []byte(first)}); err != nil {
		return nil, err
	}
	final, keys, err := s.final(body)
	if err != nil {
		return nil, err
	}
	if err := send(c.W, &pgproto3.AuthenticationSASLFinal{Data: []byte(final)}); err != nil {
		return nil, err
	}
	return keys, nil
}

func malformed(detail string, args ...any) *wire.Error {
	return &wire.Error{Severity: "FATAL", Code: wire.CodeProtocolViolation, Message: "malformed SCRAM message",
		Detail: fmt.Sprintf(detail, args...)}
}

// first reads the client-first-message sent with mechanism mech and returns
// the server-first-message.
func (s *scramServer) first(mech string, data []byte) (string, error) {
	if !slices.Contains(s.mechs, mech) {
		return "", wire.Fatalf(wire.CodeProtocolViolation, "client selected an invalid SASL authentication mechanism")
	}
	s.mech = mech
	msg := string(data)
	plus := mech == scramPlusMechanism
	// gs2-header = gs2-cbind-flag "," [authzid] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return "", malformed("Comma expected, but found end of string.")
	}
	switch {
	case flag == "n":
		if plus {
			return "", malformed("The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.")
		}
	case flag == "y":
		if plus {
			return "", malformed("The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.")
		}
		// NOTE: a client that supports channel binding and was offered
		// none although this connection has it: something between removed
		// -PLUS from the offer (RFC 5802 section 6).
		if s.cbData != nil {
			return "", &wire.Error{Severity: "FATAL", Code: wire.CodeInvalidAuthorization, Message: "SCRAM channel binding negotiation error",
				Detail: "The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding."}
		}
	case strings.HasPrefix(flag, "p="):
		if !plus {
			return "", malformed("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.")
		}
		if flag[2:] != "tls-server-end-point" {
			return "", wire.Fatalf(wire.CodeProtocolViolation, "unsupported SCRAM channel-binding type %q", flag[2:])
		}
	default:
		return "", malformed("Unexpected channel-binding flag %q.", flag)
	}
	s.cbFlag = flag[0]
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return "", malformed("Comma expected, but found end of string.")
	}
	if authzid != "" {
		return "", wire.Fatalf(wire.CodeFeatureNotSupported, "client uses authorization identity, but it is not supported")
	}
	s.gs2Header = msg[:len(msg)-len(bare)]
	s.clientFirstBare = bare
	// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
	if strings.HasPrefix(bare, "m=") {
		return "", wire.Fatalf(wire.CodeFeatureNotSupported, "client requires an unsupported SCRAM extension")
	}
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return "", malformed("Expected attributes \"n\" and \"r\" in client-first-message.")
	}
	// NOTE: the user name in the message is ignored, as PostgreSQL ignores
	// it (libpq sends an empty one): the startup message's user counts.
	clientNonce := attrs[1][2:]
	if clientNonce == "" || !printable(clientNonce) {
		return "", malformed("Invalid nonce in client-first-message.")
	}
	if s.serverNonce == "" {
		b := make([]byte, 18)
		rand.Read(b)
		s.serverNonce = base64.StdEncoding.EncodeToString(b)
	}
	s.nonce = clientNonce + s.serverNonce
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.v.Salt) + ",i=" + strconv.Itoa(s.v.Iterations)
	return s.serverFirst, nil
}

// printable reports whether s holds only the characters RFC 5802 allows in
// a nonce: printable ASCII except ','.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

// final reads the client-final-message, checks its channel binding, nonce
// and proof, and returns the server-final-message and the client's keys.
func (s *scramServer) final(data []byte) (string, *Keys, error) {
	msg := string(data)
	withoutProof, proof64, ok := cutLast(msg, ",p=")
	if !ok {
		return "", nil, malformed("Could not find proof in client-final-message.")
	}
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return "", nil, malformed("Expected attributes \"c\" and \"r\" in client-final-message.")
	}
	cb, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil {
		return "", nil, malformed("Invalid channel binding in client-final-message.")
	}
	want := []byte(s.gs2Header)
	if s.cbFlag == 'p' {
		want = append(want, s.cbData...)
	}
	if !hmac.Equal(cb, want) {
		if s.cbFlag == 'p' {
			return "", nil, wire.Fatalf(wire.CodeInvalidAuthorization, "SCRAM channel binding check failed")
		}
		return "", nil, malformed("Unexpected SCRAM channel-binding attribute in client-final-message.")
	}
	if attrs[1][2:] != s.nonce {
		return "", nil, malformed("SCRAM nonce mismatch.")
	}
	proof, err := base64.StdEncoding.DecodeString(proof64)
	if err != nil || len(proof) != scramKeyLen {
		return "", nil, malformed("Malformed proof in client-final-message.")
	}
	authMessage := s.clientFirstBare + "," + s.serverFirst + "," + withoutProof
	clientKey, ok := recoverClientKey(s.v, proof, authMessage)
	if !ok || s.mock {
		return "", nil, PasswordFailed(s.user)
	}
	sig := serverSignature(s.v.ServerKey, authMessage)
	keys := &Keys{Iterations: s.v.Iterations, Salt: s.v.Salt, ClientKey: clientKey, ServerKey: s.v.ServerKey}
	return "v=" + base64.StdEncoding.EncodeToString(sig), keys, nil
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
