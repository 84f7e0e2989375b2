package wire

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup packet limits, as PostgreSQL's postmaster enforces them.
const (
	maxStartupPacketLen = 10_000 // MAX_STARTUP_PACKET_LENGTH
	minStartupPacketLen = 8      // length + request code
)

// Request codes that take the place of a protocol version in a startup packet.
const (
	codeCancelRequest = 80877102
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	// codeForwardedCancel is txlane's own: a CancelRequest one txlane
	// instance forwards to the instance that issued the key (see
	// Hello.Forwarded). PostgreSQL defines no request code with this value
	// (1234 in the high 16 bits, as its own codes, and 6432 below).
	codeForwardedCancel = 1234<<16 | 6432
)

// errHandshake marks a client that broke the startup protocol. Such a client is
// closed without an ErrorResponse (it is not speaking the protocol) and logged.
type HandshakeError struct{ msg string }

func (e *HandshakeError) Error() string { return e.msg }

func handshakeErr(format string, args ...any) error {
	return &HandshakeError{msg: fmt.Sprintf(format, args...)}
}

// clientHello is the outcome of a client's startup phase.
type Hello struct {
	Conn    net.Conn      // the client socket, TLS-wrapped if negotiated
	BR      *bufio.Reader // reads Conn; may hold bytes the client pipelined after startup
	Startup *pgproto3.StartupMessage
	Cancel  *pgproto3.CancelRequest // set instead of Startup for a cancel request
	// Forwarded: Cancel came from another txlane instance, which forwarded
	// it here (EncodeCancel with forwarded): it is never forwarded again.
	Forwarded bool
	// Proto is the protocol version and _pq_ options the client asked for
	// (set with Startup, whose Parameters exclude the options).
	Proto *Negotiation
	TLS   bool
}

// readHello runs the client side of the startup phase up to (and including)
// the StartupMessage or CancelRequest: SSL and GSSAPI negotiation included.
// The caller sets the login deadline on raw.
func ReadHello(raw net.Conn, tlsConfig *tls.Config) (*Hello, error) {
	h := &Hello{Conn: raw, BR: newClientReader(raw)}
	for {
		code, body, err := readStartupPacket(h.BR)
		if err != nil {
			return nil, err
		}
		switch code {
		case codeSSLRequest, codeGSSENCRequest:
			name := "SSLRequest"
			if code == codeGSSENCRequest {
				name = "GSSENCRequest"
			}
			if h.TLS {
				return nil, handshakeErr("%s received inside an established TLS session", name)
			}
			// NOTE: bytes that arrived with the request would be read as if they
			// had come through the encrypted channel (CVE-2021-23214): refuse.
			if h.BR.Buffered() > 0 {
				return nil, handshakeErr("%d unencrypted bytes followed the %s", h.BR.Buffered(), name)
			}
			if code == codeGSSENCRequest || tlsConfig == nil {
				if _, err := raw.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := raw.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			tc := tls.Server(raw, tlsConfig)
			if err := tc.Handshake(); err != nil {
				return nil, handshakeErr("TLS handshake: %v", err)
			}
			h.Conn, h.TLS = tc, true
			h.BR.Reset(tc) // nothing is buffered (checked above)
		case codeCancelRequest:
			msg := &pgproto3.CancelRequest{}
			if err := msg.Decode(body); err != nil {
				return nil, handshakeErr("malformed CancelRequest: %v", err)
			}
			h.Cancel = msg
			return h, nil
		case codeForwardedCancel:
			// The same layout as a CancelRequest: process ID, then a secret
			// of 4 to 256 bytes.
			if len(body) < 12 || len(body) > 8+256 {
				return nil, handshakeErr("malformed forwarded CancelRequest: %d bytes", len(body))
			}
			h.Cancel = &pgproto3.CancelRequest{ProcessID: binary.BigEndian.Uint32(body[4:]), SecretKey: append([]byte(nil), body[8:]...)}
			h.Forwarded = true
			return h, nil
		default:
			if err := checkProtocolMajor(code); err != nil {
				return nil, err
			}
			msg, options, err := parseStartupMessage(body)
			if err != nil {
				return nil, err
			}
			if msg.Parameters["user"] == "" {
				return nil, &Error{Severity: "FATAL", Code: CodeInvalidAuthorization,
					Message: "no PostgreSQL user name specified in startup packet"}
			}
			h.Proto = NewNegotiation(msg.ProtocolVersion, options)
			h.Startup = msg
			return h, nil
		}
	}
}

// readStartupPacket reads one length-prefixed startup-phase packet and returns
// its request code and the whole body (code included), as pgproto3 decodes it.
func readStartupPacket(br *bufio.Reader) (code uint32, body []byte, err error) {
	hdr, err := br.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) == 0 {
			return 0, nil, io.EOF // connection probe: a port scan or health check
		}
		return 0, nil, handshakeErr("incomplete startup packet: %v", err)
	}
	n := int32(binary.BigEndian.Uint32(hdr))
	if n < minStartupPacketLen || n > maxStartupPacketLen {
		return 0, nil, handshakeErr("invalid length of startup packet: %d", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(br, buf); err != nil {
		return 0, nil, handshakeErr("incomplete startup packet: %v", err)
	}
	return binary.BigEndian.Uint32(buf[4:]), buf[4:], nil
}
