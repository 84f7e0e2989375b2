package proxy

import (
	"bufio"
	"io"
	"sync"

	"github.com/txlane/txlane/proxy/wire"
)

// clientWriters recycles the wire.ClientWriteBufSize-byte write buffers of
// client connections (the read side's are wire.Hello.Release's): under
// connection churn (a login, one transaction, a logout) a fresh 16 KiB
// buffer per client was 60% of the bytes txlane allocated (with the 8 KiB
// read buffer, 80%), and the garbage collection they caused about 8% of its
// CPU (pgbench -S -C).
var clientWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, wire.ClientWriteBufSize) }}

// newClientWriter returns a wire.ClientWriteBufSize-byte writer of w, from
// the pool.
func newClientWriter(w io.Writer) *bufio.Writer {
	bw := clientWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

// retiredBufSize is the buffer of the writer a retired clientWriter keeps:
// bufio's least.
const retiredBufSize = 16

// retire gives w's buffer back to the pool once its client is gone, and
// leaves w writing to nowhere. Every write after the login goes through
// w.w under w.mu (a backend's relay may still flush w after its client has
// left, until the backend's next message: see relay), so once the swap is
// done under w.mu no other client's bytes can reach this client's socket,
// nor this client's the next one's. Called by the client's own goroutine,
// the only one that writes w.w without w.mu (during the login), when the
// session has ended.
func (w *clientWriter) retire() {
	w.mu.Lock()
	bw := w.w
	w.w = bufio.NewWriterSize(io.Discard, retiredBufSize)
	w.mu.Unlock()
	if bw == nil || bw.Size() != wire.ClientWriteBufSize {
		return
	}
	bw.Reset(nil) // drops unflushed bytes and the socket
	clientWriters.Put(bw)
}
