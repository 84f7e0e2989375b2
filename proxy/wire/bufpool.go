package wire

import (
	"bufio"
	"io"
	"sync"
)

// clientReaders recycles the ClientReadBufSize-byte read buffers of client
// connections. A client that logs in, runs a transaction and leaves (a
// serverless function, PHP) would otherwise cost a fresh buffer each time,
// and the garbage collector the work of finding it again.
var clientReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, ClientReadBufSize) }}

// newClientReader returns a ClientReadBufSize-byte reader of r, from the pool.
func newClientReader(r io.Reader) *bufio.Reader {
	br := clientReaders.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// Release gives h.BR back for the next client's startup and sets it nil.
// The caller must be the only reader of h.BR (and of any Reader made over
// it) and must not read it again: another client's bytes would be read
// through it. Reset drops what h.BR held buffered, so nothing of this
// client can be read by the next one.
func (h *Hello) Release() {
	br := h.BR
	if br == nil {
		return
	}
	h.BR = nil
	br.Reset(nil)
	clientReaders.Put(br)
}
