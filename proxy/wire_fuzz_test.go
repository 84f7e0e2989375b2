package proxy

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy/wire"
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
		r := wire.NewReader[wire.Frontend](bytes.NewReader(data), 1<<16)
		var b batch
		for i := 0; i < 64; i++ {
			typ, _, err := r.Next()
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
			tr.add(sentMsg{typ: wire.Frontend(c), kind: 'S', hidden: c%2 == 0})
		}
		for _, c := range replies {
			tr.reply(wire.Backend(c))
			if tr.pos > len(tr.sent) {
				t.Fatalf("tracker moved past what was sent: %d > %d", tr.pos, len(tr.sent))
			}
		}
	})
}
