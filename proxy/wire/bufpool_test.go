package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestReleasedReaderKeepsNothing: a client's read buffer goes back to the
// pool holding nothing of the client (bytes it pipelined after its startup
// message included), and the next client's startup reads only its own bytes.
func TestReleasedReaderKeepsNothing(t *testing.T) {
	startup := func(user string) []byte {
		b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
			Parameters: map[string]string{"user": user, "database": "d"}}).Encode(nil)
		return b
	}
	// The first client pipelines a query behind its startup message.
	first := append(startup("first"), []byte("Q\x00\x00\x00\x0dSELECT 1\x00")...)
	h, err := ReadHello(&fuzzConn{r: bytes.NewReader(first)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.BR.Buffered() == 0 {
		t.Fatal("the pipelined query is not buffered: the test proves nothing")
	}
	br := h.BR
	h.Release()
	if h.BR != nil {
		t.Fatal("Release left Hello.BR set")
	}
	if n := br.Buffered(); n != 0 {
		t.Fatalf("the released reader holds %d bytes of its client", n)
	}
	for i := 0; i < 3; i++ { // the pool may hand out another reader: try a few
		h2, err := ReadHello(&fuzzConn{r: bytes.NewReader(startup("next"))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := h2.Startup.Parameters["user"]; got != "next" {
			t.Fatalf("the next client's startup read user %q", got)
		}
		if b, err := h2.BR.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("the next client read %q (%v) past its startup message: the previous client's bytes", b, err)
		}
		h2.Release()
	}
}
