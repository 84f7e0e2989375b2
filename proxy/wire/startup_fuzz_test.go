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
