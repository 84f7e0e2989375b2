package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy"
)

// rawDial opens a plain TCP connection to the proxy.
func rawDial(t *testing.T, p *testProxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// expectClosed asserts that the proxy closes c without sending anything more
// than an optional ErrorResponse, and returns that response's SQLSTATE ("" if none).
func expectClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	data, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("expected the proxy to close the connection, got %v", err)
	}
	if len(data) == 0 {
		return ""
	}
	if data[0] != 'E' || len(data) < 5 {
		t.Fatalf("expected an ErrorResponse or nothing before close, got %q", data)
	}
	var msg pgproto3.ErrorResponse
	if err := msg.Decode(data[5:]); err != nil {
		t.Fatal(err)
	}
	return msg.Code
}

// assertHealthy checks that an ordinary client still works through p.
func assertHealthy(t *testing.T, p *testProxy) {
	t.Helper()
	c := p.connect(t)
	if got := scalar(t, c, "SELECT 40 + 2"); got != "42" {
		t.Fatalf("healthy client got %q", got)
	}
}

func startupPacket(params map[string]string) []byte {
	b, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params}).Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

func TestStartupPacketLimits(t *testing.T) {
	p := startProxy(t, nil)
	cases := []struct {
		name   string
		packet []byte
	}{
		{"length below 4", []byte{0, 0, 0, 3, 0, 3, 0, 0}},
		{"negative length", []byte{0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0}},
		{"length over 10000", func() []byte {
			b := make([]byte, 8)
			binary.BigEndian.PutUint32(b, 10_001)
			binary.BigEndian.PutUint32(b[4:], pgproto3.ProtocolVersion30)
			return b
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, p)
			c.Write(tc.packet)
			if code := expectClosed(t, c); code != "" {
				t.Fatalf("got ErrorResponse %s, want a silent close", code)
			}
			assertHealthy(t, p)
		})
	}
	t.Run("10000 bytes is accepted", func(t *testing.T) {
		params := map[string]string{"user": "postgres", "database": "postgres", "application_name": ""}
		base := len(startupPacket(params))
		params["application_name"] = strings.Repeat("a", 10_000-base)
		pkt := startupPacket(params)
		if len(pkt) != 10_000 {
			t.Fatalf("packet is %d bytes", len(pkt))
		}
		c := rawDial(t, p)
		c.Write(pkt)
		typ := make([]byte, 1)
		if _, err := io.ReadFull(c, typ); err != nil {
			t.Fatal(err)
		}
		if typ[0] != 'R' {
			t.Fatalf("got message %q, want an authentication message", typ[0])
		}
	})
	t.Run("unsupported protocol version", func(t *testing.T) {
		c := rawDial(t, p)
		pkt := make([]byte, 8)
		binary.BigEndian.PutUint32(pkt, 8)
		binary.BigEndian.PutUint32(pkt[4:], 4<<16) // 2.0 is answered in the old format: protocol_test.go
		c.Write(pkt)
		if code := expectClosed(t, c); code != proxy.CodeFeatureNotSupported {
			t.Fatalf("got SQLSTATE %q, want %s", code, proxy.CodeFeatureNotSupported)
		}
	})
}

func sslRequest() []byte {
	b, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	return b
}

func TestSSLRequestWithoutTLS(t *testing.T) {
	p := startProxy(t, nil)
	t.Run("answers N and continues in plaintext", func(t *testing.T) {
		c := rawDial(t, p)
		c.Write(sslRequest())
		resp := make([]byte, 1)
		if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 'N' {
			t.Fatalf("got %q, %v; want N", resp, err)
		}
		c.Write(startupPacket(map[string]string{"user": "postgres", "database": "postgres"}))
		if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 'R' {
			t.Fatalf("got %q, %v; want an authentication message", resp, err)
		}
	})
	t.Run("GSSENCRequest answers N", func(t *testing.T) {
		c := rawDial(t, p)
		b, _ := (&pgproto3.GSSEncRequest{}).Encode(nil)
		c.Write(b)
		resp := make([]byte, 1)
		if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 'N' {
			t.Fatalf("got %q, %v; want N", resp, err)
		}
	})
	t.Run("plaintext bytes after SSLRequest close the client", func(t *testing.T) {
		c := rawDial(t, p)
		pkt := append(sslRequest(), startupPacket(map[string]string{"user": "postgres"})...)
		c.Write(pkt)
		if code := expectClosed(t, c); code != "" {
			t.Fatalf("got ErrorResponse %s, want a silent close", code)
		}
		assertHealthy(t, p)
	})
	t.Run("psql-style sslmode=prefer falls back to plaintext", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgconn.Connect(ctx, strings.Replace(p.DSN(t, ""), "sslmode=disable", "sslmode=prefer", 1))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if got := scalar(t, conn, "SELECT 1"); got != "1" {
			t.Fatal(got)
		}
	})
}

// selfSigned returns a TLS config with a fresh self-signed certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "txlane test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestTLS(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) { o.TLS = selfSigned(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("sslmode=require", func(t *testing.T) {
		conn, err := pgconn.Connect(ctx, strings.Replace(p.DSN(t, ""), "sslmode=disable", "sslmode=require", 1))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, ok := conn.Conn().(*tls.Conn); !ok {
			t.Fatalf("connection is %T, want *tls.Conn", conn.Conn())
		}
		if got := scalar(t, conn, "SELECT 'over tls'"); got != "over tls" {
			t.Fatal(got)
		}
	})
	t.Run("SCRAM over TLS without channel binding", func(t *testing.T) {
		dsn := strings.Replace(p.DSN(t, "txlane_scram"), "sslmode=disable", "sslmode=require", 1)
		conn, err := pgconn.Connect(ctx, dsn+"&password=scrampass")
		if err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		// A client that insists on channel binding must be refused: txlane's
		// TLS session is not the server's, so it never offers SCRAM-SHA-256-PLUS.
		_, err = pgconn.Connect(ctx, dsn+"&password=scrampass&channel_binding=require")
		if err == nil {
			t.Fatal("channel_binding=require succeeded through the proxy")
		}
	})
	t.Run("second SSLRequest inside TLS closes the client", func(t *testing.T) {
		c := rawDial(t, p)
		c.Write(sslRequest())
		resp := make([]byte, 1)
		if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 'S' {
			t.Fatalf("got %q, %v; want S", resp, err)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		tc.Write(sslRequest())
		data, _ := io.ReadAll(tc)
		if len(data) != 0 {
			t.Fatalf("got %q after a second SSLRequest, want a silent close", data)
		}
		assertHealthy(t, p)
	})
}

func TestAuthenticationRelay(t *testing.T) {
	p := startProxy(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct{ user, password string }{
		{"txlane_app", ""}, // trust
		{"txlane_password", "plainpass"},
		{"txlane_md5", "md5pass"},
		{"txlane_scram", "scrampass"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			dsn := p.DSN(t, tc.user)
			conn, err := pgconn.Connect(ctx, dsn+"&password="+tc.password)
			if err != nil {
				t.Fatalf("login with the right password: %v", err)
			}
			if got := scalar(t, conn, "SELECT current_user"); got != tc.user {
				t.Fatalf("current_user = %q", got)
			}
			conn.Close(ctx)
			if tc.password == "" {
				return
			}
			_, err = pgconn.Connect(ctx, dsn+"&password=wrong")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Fatalf("login with a wrong password: got %v, want SQLSTATE 28P01", err)
			}
		})
	}
}

func TestMaxClientConn(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) { o.MaxClientConn = 2 })
	a, b := p.connect(t), p.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := pgconn.Connect(ctx, p.DSN(t, ""))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeTooManyConnections {
		t.Fatalf("third client: got %v, want SQLSTATE %s", err, proxy.CodeTooManyConnections)
	}
	if scalar(t, a, "SELECT 1") != "1" || scalar(t, b, "SELECT 2") != "2" {
		t.Fatal("existing clients broken")
	}
	b.Close(ctx)
	// The slot is free again once the session is gone.
	deadline := time.Now().Add(5 * time.Second)
	for p.Clients() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c, err := pgconn.Connect(ctx, p.DSN(t, ""))
	if err != nil {
		t.Fatalf("after a client left: %v", err)
	}
	c.Close(ctx)
}

func TestClientLoginTimeout(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) { o.ClientLoginTimeout = 200 * time.Millisecond })
	c := rawDial(t, p)
	start := time.Now()
	// Send half a startup packet and stall.
	c.Write(startupPacket(map[string]string{"user": "postgres"})[:6])
	expectClosed(t, c)
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("closed after %v", waited)
	}
	assertHealthy(t, p)
}

func TestMaxMessageSize(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) { o.MaxMessageSize = 1024 })
	conn := p.connect(t)
	other := p.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, "SELECT '"+strings.Repeat("x", 2000)+"'").ReadAll()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != proxy.CodeProtocolViolation {
		t.Fatalf("oversized query: got %v, want SQLSTATE %s", err, proxy.CodeProtocolViolation)
	}
	if got := scalar(t, other, "SELECT '"+strings.Repeat("y", 900)+"' IS NOT NULL"); got != "t" {
		t.Fatalf("other client: %q", got)
	}
}
