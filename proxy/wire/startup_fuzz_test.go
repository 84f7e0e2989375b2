package wire

import (
	"bytes"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fuzzConn is a client socket that reads data and discards what is written.
type fuzzConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func (c *fuzzConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *fuzzConn) Close() error                { return nil }

// FuzzStartupPacket feeds arbitrary bytes to the startup phase (SSLRequest,
// GSSENCRequest, CancelRequest, StartupMessage, length checks): it must end
// in a hello or an error, never a panic, and a hello is well-formed.
func FuzzStartupPacket(f *testing.F) {
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "u", "database": "d"}}).Encode(nil)
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	gss, _ := (&pgproto3.GSSEncRequest{}).Encode(nil)
	cancel, _ := (&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	f.Add(startup)
	f.Add(append(ssl, startup...))
	f.Add(gss)
	f.Add(cancel)
	f.Add(EncodeCancel(1<<21|7, make([]byte, 32), true))
	f.Add([]byte{0, 0, 0, 8, 0, 3, 0, 0})
	f.Add([]byte{0, 0, 0, 9, 0, 3, 0, 0, 'u'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadHello(&fuzzConn{r: bytes.NewReader(data)}, nil)
		if err != nil {
			return
		}
		switch {
		case h.Cancel == nil && h.Startup == nil:
			t.Fatal("a hello with neither a startup message nor a cancel request")
		case h.Startup != nil && h.Startup.Parameters["user"] == "":
			t.Fatal("a startup message without a user")
		}
	})
}

// TestCancelRequests: EncodeCancel's packets read back as the CancelRequest
// they carry, a forwarded one marked as such; PostgreSQL's own encoding
// (pgproto3's) reads the same; a forwarded request of a wrong size is refused.
func TestCancelRequests(t *testing.T) {
	read := func(b []byte) (*Hello, error) { return ReadHello(&fuzzConn{r: bytes.NewReader(b)}, nil) }
	pg, _ := (&pgproto3.CancelRequest{ProcessID: 42, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	if !bytes.Equal(pg, EncodeCancel(42, []byte{1, 2, 3, 4}, false)) {
		t.Fatalf("EncodeCancel differs from pgproto3: % x", EncodeCancel(42, []byte{1, 2, 3, 4}, false))
	}
	for _, secret := range [][]byte{{1, 2, 3, 4}, bytes.Repeat([]byte{9}, 32), bytes.Repeat([]byte{7}, 256)} {
		for _, fwd := range []bool{false, true} {
			h, err := read(EncodeCancel(3<<21|5, secret, fwd))
			if err != nil || h.Cancel == nil || h.Cancel.ProcessID != 3<<21|5 || !bytes.Equal(h.Cancel.SecretKey, secret) || h.Forwarded != fwd {
				t.Fatalf("secret %d bytes, forwarded %v: %+v, %v", len(secret), fwd, h, err)
			}
		}
	}
	if _, err := read(EncodeCancel(1, []byte{1, 2, 3}, true)); err == nil {
		t.Error("a forwarded cancel with a 3-byte secret was accepted")
	}
	if _, err := read(EncodeCancel(1, make([]byte, 257), true)); err == nil {
		t.Error("a forwarded cancel with a 257-byte secret was accepted")
	}
}
