package proxy

import (
	"bytes"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzClientMessages feeds arbitrary bytes to the client-side framing and the
// decoding routing does (batch.add): malformed input must end in an error,
// never a panic or an unbounded allocation.
func FuzzClientMessages(f *testing.F) {
	seed := func(msgs ...pgproto3.FrontendMessage) []byte {
		var out []byte
		for _, m := range msgs {
			out, _ = m.Encode(out)
		}
		return out
	}
	f.Add(seed(&pgproto3.Query{String: "SELECT 1"}))
	f.Add(seed(&pgproto3.Parse{Name: "s", Query: "SELECT $1", ParameterOIDs: []uint32{23}},
		&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("1")}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{}))
	f.Add([]byte{'B', 0, 0, 0, 5, 0})
	f.Add([]byte{'P', 0, 0, 0, 4})
	f.Add([]byte{'D', 0, 0, 0, 5, 'S'})
	f.Add([]byte{'Q', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newMsgReader(bytes.NewReader(data), 1<<16)
		var b batch
		for i := 0; i < 64; i++ {
			typ, _, err := r.next()
			if err != nil {
				return
			}
			if err := b.add(typ, r); err != nil {
				return
			}
			if b.synced {
				b.reset()
			}
		}
	})
}

// FuzzReplyTracker checks that any sequence of replies leaves the tracker
// consistent: it never panics and never moves past what was sent.
func FuzzReplyTracker(f *testing.F) {
	f.Add([]byte("PBDESH"), []byte("12tTDCZ"))
	f.Add([]byte("PBES"), []byte("1EZ"))
	f.Add([]byte("Q"), []byte("TDCNZ"))
	f.Fuzz(func(t *testing.T, sent, replies []byte) {
		var tr replyTracker
		for _, c := range sent {
			tr.add(sentMsg{typ: c, kind: 'S', hidden: c%2 == 0})
		}
		for _, c := range replies {
			tr.reply(c)
			if tr.pos > len(tr.sent) {
				t.Fatalf("tracker moved past what was sent: %d > %d", tr.pos, len(tr.sent))
			}
		}
	})
}

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
		h, err := readHello(&fuzzConn{r: bytes.NewReader(data)}, nil)
		if err != nil {
			return
		}
		switch {
		case h.cancel == nil && h.startup == nil:
			t.Fatal("a hello with neither a startup message nor a cancel request")
		case h.startup != nil && h.startup.Parameters["user"] == "":
			t.Fatal("a startup message without a user")
		}
	})
}
