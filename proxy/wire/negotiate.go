package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Protocol versions txlane speaks with clients, as PostgreSQL encodes them:
// major<<16 | minor.
//
// Protocol 3.2 (PostgreSQL 18) differs from 3.0 only in BackendKeyData and
// CancelRequest, whose secret key may be 4 to 256 bytes long instead of
// exactly 4; txlane issues its own keys of the server's length (cancel.go) and
// forwards cancels of any length, so it understands 3.0 to 3.2. A client may
// ask for any 3.x: it is granted at most what both txlane and the server
// speak, through NegotiateProtocolVersion.
const (
	protocolEarliest = 3 << 16
	protocolLatest   = 3<<16 | 2

	// pqOptionPrefix marks a startup parameter as a protocol option rather
	// than a run-time setting. txlane recognises none (nor does PostgreSQL up
	// to 18): each one a client sends is reported back as unrecognised.
	pqOptionPrefix = "_pq_."
)

func protocolString(v uint32) string { return fmt.Sprintf("%d.%d", v>>16, v&0xffff) }

// errOldProtocol refuses a client that asked for a protocol major version
// below 3 (other than the version word 0). PostgreSQL answers such a client in the old protocol's error format
// (the type byte 'E', then "FATAL:  message\n" and a NUL, no length word), so
// that clients of that age can show it; txlane answers the same bytes.
type OldProtocolError struct{ msg string }

func (e *OldProtocolError) Error() string { return e.msg }

// encode returns the message as the old protocol frames an error.
func (e *OldProtocolError) encode() []byte {
	return append([]byte("EFATAL:  "+e.msg+"\n"), 0)
}

// checkProtocolMajor refuses a startup packet whose major version is not 3,
// with PostgreSQL's message and SQLSTATE 0A000 (feature_not_supported). The
// range in the message is txlane's own (3.0 to 3.2): txlane answers before it
// has contacted a server.
func checkProtocolMajor(version uint32) error {
	if version>>16 == 3 {
		return nil
	}
	msg := fmt.Sprintf("unsupported frontend protocol %d.%d: server supports %s to %s",
		version>>16, version&0xffff, protocolString(protocolEarliest), protocolString(protocolLatest))
	// NOTE: PostgreSQL takes a version word of 0 for "not set yet" and
	// answers it in the current format.
	if version>>16 < 3 && version != 0 {
		return &OldProtocolError{msg: msg}
	}
	return &Error{Severity: "FATAL", Code: CodeFeatureNotSupported, Message: msg}
}

// parseStartupMessage decodes a protocol-3 StartupMessage body (version word
// included) as PostgreSQL's ProcessStartupPacket reads it: name/value pairs of
// NUL-terminated strings up to an empty name, which must be the packet's last
// byte. As PostgreSQL, it accepts a packet whose final pair lacks its value
// (the dangling name is ignored) and any minor version.
//
// Parameters named _pq_.* are protocol options: they are returned in options,
// in packet order and with repeats (as PostgreSQL lists them back), and left
// out of the message's Parameters, so they never reach the server. Of other
// repeated names the last wins.
//
// A layout error is FATAL 08P01 "invalid startup packet layout: expected
// terminator as last byte", as PostgreSQL reports it.
func parseStartupMessage(body []byte) (msg *pgproto3.StartupMessage, options []string, err error) {
	if len(body) < 4 {
		return nil, nil, handshakeErr("invalid length of startup packet: %d", len(body)+4)
	}
	msg = &pgproto3.StartupMessage{
		ProtocolVersion: uint32(body[0])<<24 | uint32(body[1])<<16 | uint32(body[2])<<8 | uint32(body[3]),
		Parameters:      map[string]string{},
	}
	// cstring reads the string starting at i. PostgreSQL reads the packet
	// into a buffer one byte longer than the packet, that byte zero: a
	// string that runs to the end is cut there.
	CString := func(i int) string {
		if end := bytes.IndexByte(body[i:], 0); end >= 0 {
			return string(body[i : i+end])
		}
		return string(body[i:])
	}
	n, off := len(body), 4
	for off < n {
		name := CString(off)
		if name == "" {
			break // the terminator
		}
		valOff := off + len(name) + 1
		if valOff >= n {
			break // a name without value: the layout check below decides
		}
		value := CString(valOff)
		if strings.HasPrefix(name, pqOptionPrefix) {
			options = append(options, name)
		} else {
			msg.Parameters[name] = value
		}
		off = valOff + len(value) + 1
	}
	if off != n-1 {
		return nil, nil, &Error{Severity: "FATAL", Code: CodeProtocolViolation,
			Message: "invalid startup packet layout: expected terminator as last byte"}
	}
	return msg, options, nil
}

// negotiation is the protocol version and options of one client's login: what
// the client asked for, what txlane asked of the server on its behalf, and
// what the client is told.
//
// The client is told, in one NegotiateProtocolVersion before any other
// message of the login, exactly what PostgreSQL would tell it: the newest
// version it can have (the lowest of what it asked for, what txlane speaks and
// what the server granted) and every _pq_ option it sent, in its order. No
// message is sent when the client gets the version it asked for and sent no
// options. The server never sees the client's _pq_ options and is asked for
// at most protocolLatest, so it cannot turn on a protocol feature txlane does
// not understand.
type Negotiation struct {
	requested uint32   // the client's version (3.x)
	options   []string // the client's _pq_ option names
	asked     uint32   // what txlane asks of the server: min(requested, protocolLatest)
	granted   uint32   // the version in force; lowered by the server's NegotiateProtocolVersion
	told      bool     // the client's NegotiateProtocolVersion is written (or was not needed)
}

func NewNegotiation(requested uint32, options []string) *Negotiation {
	asked := min(requested, protocolLatest)
	return &Negotiation{requested: requested, options: options, asked: asked, granted: asked}
}

// ServerVersion is the protocol version txlane asks of the server for the
// client: at most the newest txlane speaks.
func (n *Negotiation) ServerVersion() uint32 { return n.asked }

// Cap lowers what txlane asks of the server, and grants the client, to at
// most v: the version the server granted an earlier login. It is for a login
// whose client is told its version before txlane has a server connection
// (auth_type other than server: txlane authenticates the client first); call
// it before Tell. A v outside 3.0 to what is asked changes nothing.
func (n *Negotiation) Cap(v uint32) {
	if v >= protocolEarliest && v < n.asked {
		n.asked = v
		n.granted = min(n.granted, v)
	}
}

// ServerAnswer records the server's NegotiateProtocolVersion. It must be the
// server's first message (PostgreSQL sends it right after reading the startup
// packet) and may only lower the version.
func (n *Negotiation) ServerAnswer(body []byte) error {
	if n.told {
		return errors.New("NegotiateProtocolVersion from the server after other login messages")
	}
	var msg pgproto3.NegotiateProtocolVersion
	if err := msg.Decode(body); err != nil {
		return fmt.Errorf("NegotiateProtocolVersion from the server: %w", err)
	}
	// PostgreSQL sends the whole version word (3<<16 | minor); the protocol
	// documentation speaks of the minor alone. Both read the same here.
	v := n.asked&0xffff0000 | msg.NewestMinorProtocol&0xffff
	if v > n.asked {
		return fmt.Errorf("server offers protocol %s, more than the %s asked for", protocolString(v), protocolString(n.asked))
	}
	if len(msg.UnrecognizedOptions) > 0 {
		// txlane sends the server no protocol option.
		return fmt.Errorf("server reports unrecognised protocol options %q that txlane did not send", msg.UnrecognizedOptions)
	}
	n.granted = v
	return nil
}

// Tell writes the client's NegotiateProtocolVersion to w, once, if the client
// needs one. Call it before writing any other login message to the client.
func (n *Negotiation) Tell(w *bufio.Writer) error {
	if n.told {
		return nil
	}
	n.told = true
	if n.granted == n.requested && len(n.options) == 0 {
		return nil
	}
	return WriteMsg(w, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: n.granted, UnrecognizedOptions: n.options})
}

// writeOldProtocolError answers a pre-3.0 client as PostgreSQL does.
func WriteOldProtocolError(c net.Conn, e *OldProtocolError) error {
	_, err := c.Write(e.encode())
	return err
}
