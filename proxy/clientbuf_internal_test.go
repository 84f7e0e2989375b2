package proxy

import (
	"bytes"
	"testing"

	"github.com/txlane/txlane/proxy/wire"
)

// TestRetiredClientWriter: a client's write buffer goes back to the pool
// holding nothing of the client (bytes written but not flushed are
// dropped), and the clientWriter it leaves behind writes nowhere: a relay
// that flushes it late reaches neither the old client's socket nor the
// socket of the client that gets the buffer next.
func TestRetiredClientWriter(t *testing.T) {
	var old, next bytes.Buffer
	w := &clientWriter{w: newClientWriter(&old)}
	bw := w.w
	wire.WriteRaw(w.w, wire.ReadyForQuery, []byte{'I'}) // not flushed
	w.retire()
	if n := bw.Buffered(); n != 0 {
		t.Fatalf("the retired buffer holds %d bytes of its client", n)
	}
	// The next client gets the buffer (as newClientWriter does).
	bw.Reset(&next)
	// A late write to the old client, as relay's flush after its owner left.
	w.mu.Lock()
	wire.WriteRaw(w.w, wire.ReadyForQuery, []byte{'T'})
	if err := w.w.Flush(); err != nil {
		t.Fatal(err)
	}
	w.mu.Unlock()
	wire.WriteRaw(bw, wire.ReadyForQuery, []byte{'E'})
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if old.Len() != 0 {
		t.Fatalf("the old client's socket got %q after it left", old.Bytes())
	}
	if want := "Z\x00\x00\x00\x05E"; next.String() != want {
		t.Fatalf("the next client's socket got %q, want only its own %q", next.Bytes(), want)
	}
}
