package wire

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// CancelTarget is what a CancelRequest for a backend needs.
type CancelTarget struct {
	// Dial, Network and Addr reach the server the backend runs on.
	Dial    pgconn.DialFunc
	Network string
	Addr    string
	// PID and Secret are the server's BackendKeyData for the backend.
	PID    uint32
	Secret []byte
}

// Dial opens a network connection to the first reachable host of cfg
// and its fallbacks, negotiating TLS as the DSN's sslmode asks. It reuses
// pgconn's parsing of the DSN (hosts, ports, sslmode → TLS config, fallbacks
// such as sslmode=prefer's plaintext retry) so that txlane reaches the server
// exactly as a pgx client would.
//
// NOTE: authentication is not pgconn's here: a client's credentials are relayed
// message by message (RelayLogin), so txlane never needs the client's password.
func Dial(ctx context.Context, cfg *pgconn.Config) (net.Conn, CancelTarget, error) {
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
		return conn, CancelTarget{Dial: cfg.DialFunc, Network: network, Addr: addr}, nil
	}
	return nil, CancelTarget{}, errors.Join(errs...)
}

func startTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
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

// SendCancel asks the server to cancel whatever t's backend is running. As
// PostgreSQL's own cancel protocol, it is fire-and-forget: the server closes
// the connection without an answer.
func SendCancel(ctx context.Context, t CancelTarget) error {
	conn, err := t.Dial(ctx, t.Network, t.Addr)
	if err != nil {
		return err
	}
	return sendCancelOn(ctx, conn, EncodeCancel(t.PID, t.Secret, false))
}

// ForwardCancel sends a client's CancelRequest (pid, secret) to another
// txlane instance at addr (host:port, or the path of a Unix-domain socket),
// marked as forwarded so that the instance never forwards it again (see
// Hello.Forwarded). It returns once that instance has closed the
// connection, that is once it has dealt with the request.
func ForwardCancel(ctx context.Context, addr string, pid uint32, secret []byte) error {
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	return sendCancelOn(ctx, conn, EncodeCancel(pid, secret, true))
}

// EncodeCancel is a CancelRequest packet for (pid, secret) (the secret is
// 4 to 256 bytes); forwarded gives it txlane's own request code of a cancel
// forwarded between instances.
func EncodeCancel(pid uint32, secret []byte, forwarded bool) []byte {
	code := uint32(codeCancelRequest)
	if forwarded {
		code = codeForwardedCancel
	}
	buf := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	buf = binary.BigEndian.AppendUint32(buf, code)
	buf = binary.BigEndian.AppendUint32(buf, pid)
	return append(buf, secret...)
}

// sendCancelOn writes the cancel packet buf on conn and waits for the peer
// to close it, so that the cancel has been dealt with when it returns.
func sendCancelOn(ctx context.Context, conn net.Conn, buf []byte) error {
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(buf); err != nil {
		return err
	}
	io.Copy(io.Discard, conn)
	return nil
}
