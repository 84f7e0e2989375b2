package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Buffer sizes for the two directions of a connection, in bytes. A response
// is coalesced into one write of up to WriteBufSize bytes; larger results
// stream through.
const (
	ReadBufSize  = 32 * 1024
	WriteBufSize = 64 * 1024
)

// Buffer sizes of a client connection, in bytes: smaller, since a pooler
// keeps thousands of idle clients (a client's requests are small; a large
// answer streams through the write buffer in several writes).
const (
	ClientReadBufSize  = 8 * 1024
	ClientWriteBufSize = 16 * 1024
)

// MessageTooLongError reports a message whose declared body length (N bytes)
// exceeds the reader's cap (Max bytes). The stream cannot be resynchronised
// after it.
type MessageTooLongError struct {
	Kind   byte
	N, Max int
}

func (e *MessageTooLongError) Error() string {
	return fmt.Sprintf("message %q of %d bytes exceeds the maximum of %d", e.Kind, e.N, e.Max)
}

// ErrBadLength reports a message length below the 4 bytes of the length
// itself, or above 2^31-1 (a negative int32).
var ErrBadLength = errors.New("invalid message length")

// Reader frames the regular (post-startup) message stream of one socket: a
// client's (Reader[Frontend]) or a server's (Reader[Backend]).
//
// It decodes nothing: callers look at the message kind and either forward the
// message untouched (Forward) or read its body to decode the few messages
// that routing needs (Body). A Reader is owned by the goroutine that reads its
// socket and is not safe for concurrent use.
type Reader[K Kind] struct {
	br      *bufio.Reader
	maxBody int // 0: no cap (server side; the server is trusted)

	// typ and n describe the current message after next; pending is true
	// until its body has been consumed by body, forward or skip.
	typ     byte
	n       int
	pending bool
	scratch []byte
}

// NewReader returns a Reader of r (buffered with ReadBufSize bytes unless r
// is a *bufio.Reader already). maxBody caps message bodies, in bytes; 0 means
// no cap (a server's stream).
func NewReader[K Kind](r io.Reader, maxBody int) *Reader[K] {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, ReadBufSize)
	}
	return &Reader[K]{br: br, maxBody: maxBody}
}

// Next reads the header of the next message: its kind and body length in
// bytes. The previous message must have been consumed (Body, Status, Forward
// or Skip).
func (r *Reader[K]) Next() (kind K, n int, err error) {
	if r.pending {
		panic("BUG: Reader.Next with an unconsumed body")
	}
	hdr, err := r.br.Peek(5)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	typ := hdr[0]
	l := int32(binary.BigEndian.Uint32(hdr[1:]))
	if l < 4 {
		return 0, 0, ErrBadLength
	}
	n = int(l) - 4
	if r.maxBody > 0 && n > r.maxBody {
		return 0, 0, &MessageTooLongError{Kind: typ, N: n, Max: r.maxBody}
	}
	r.br.Discard(5)
	r.typ, r.n, r.pending = typ, n, true
	return K(typ), n, nil
}

// Body returns the current message's body. The slice is valid until the next
// call on r (flyweight, like pgproto3's messages): copy it to keep it.
func (r *Reader[K]) Body() ([]byte, error) {
	r.pending = false
	if r.n <= r.br.Size() {
		b, err := r.br.Peek(r.n)
		if err != nil {
			return nil, unexpected(err)
		}
		r.br.Discard(r.n)
		return b, nil
	}
	// NOTE: a large body grows as its bytes arrive, so that a peer claiming
	// a huge length (up to 2 GiB from a server, which is not capped) costs
	// only what it really sends.
	b := r.scratch[:0]
	for len(b) < r.n {
		chunk := min(r.n-len(b), bodyChunk)
		b = slices.Grow(b, chunk)
		n, err := io.ReadFull(r.br, b[len(b):len(b)+chunk])
		b = b[:len(b)+n]
		if err != nil {
			r.scratch = b[:0]
			return nil, unexpected(err)
		}
	}
	r.scratch = b[:0]
	return b, nil
}

// bodyChunk is how much of a large message body body reads at a time.
const bodyChunk = 1 << 20

// WithSQLState returns an ErrorResponse or NoticeResponse body that has a
// SQLSTATE field: body itself, or, for a server message without one (which
// the protocol does not allow, and clients may mishandle), a copy with code
// XX000 (internal_error) added. See the protocol's "Error and Notice Message
// Fields": the C field is always present.
func WithSQLState(body []byte) []byte {
	for rest := body; len(rest) > 1; {
		if rest[0] == 'C' {
			return body
		}
		end := bytes.IndexByte(rest[1:], 0)
		if end < 0 {
			break
		}
		rest = rest[2+end:]
	}
	if len(body) == 0 || body[len(body)-1] != 0 {
		// Not even terminated: a message of txlane's own replaces it.
		out, _ := (&pgproto3.ErrorResponse{Severity: "ERROR", Code: CodeInternalError,
			Message: "malformed error message from the server"}).Encode(nil)
		return out[5:]
	}
	out := make([]byte, 0, len(body)+7)
	out = append(out, body[:len(body)-1]...)
	out = append(out, 'C')
	out = append(out, CodeInternalError...)
	return append(out, 0, 0)
}

// ErrBadReadyForQuery reports a ReadyForQuery whose body is not one byte.
var ErrBadReadyForQuery = errors.New("malformed ReadyForQuery from server")

// Status reads the body of the current message, a ReadyForQuery, and
// returns its transaction status byte.
func (r *Reader[K]) Status() (byte, error) {
	body, err := r.Body()
	if err != nil {
		return 0, err
	}
	if len(body) != 1 {
		return 0, ErrBadReadyForQuery
	}
	return body[0], nil
}

// Forward copies the current message, header and body, to w without decoding it.
// The body goes from r's buffer to w's as it arrives, without allocating
// (io.CopyN would allocate a reader per message).
func (r *Reader[K]) Forward(w *bufio.Writer) error {
	r.pending = false
	WriteHeader(w, K(r.typ), r.n)
	for left := r.n; left > 0; {
		if r.br.Buffered() == 0 {
			if _, err := r.br.Peek(1); err != nil {
				return &PartialError{unexpected(err)}
			}
		}
		chunk, _ := r.br.Peek(min(left, r.br.Buffered()))
		if _, err := w.Write(chunk); err != nil {
			return &PartialError{err}
		}
		r.br.Discard(len(chunk))
		left -= len(chunk)
	}
	return nil
}

// PartialError reports a Forward that failed after part of the message may
// have been written: the receiving stream cannot take another message.
type PartialError struct{ err error }

func (e *PartialError) Error() string { return "message forwarded in part: " + e.err.Error() }
func (e *PartialError) Unwrap() error { return e.err }

// Skip discards the current message's body.
func (r *Reader[K]) Skip() error {
	r.pending = false
	_, err := r.br.Discard(r.n)
	return unexpected(err)
}

// Buffered reports whether more input is already buffered: a writer flushes
// only when the reader would block, which coalesces a response into one write.
func (r *Reader[K]) Buffered() bool { return r.br.Buffered() > 0 }

// WriteHeader writes a message header: its kind and the length of a body of
// n bytes.
func WriteHeader[K Kind](w *bufio.Writer, typ K, n int) {
	// NOTE: built in w's own buffer: a header array handed to w.Write would
	// escape to the heap, one allocation per message.
	hdr := append(w.AvailableBuffer(), byte(typ), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(hdr[len(hdr)-4:], uint32(n+4))
	w.Write(hdr)
}

// WriteRaw writes a message whose body is already encoded.
func WriteRaw[K Kind](w *bufio.Writer, typ K, body []byte) {
	WriteHeader(w, typ, len(body))
	// NOTE: body is copied into w's buffer, never handed to w.Write, so that
	// it does not escape: a caller's small body (a ReadyForQuery's status
	// byte) stays on its stack.
	for len(body) > 0 {
		if w.Available() == 0 && w.Flush() != nil {
			return // the error stays in w: its next Write or Flush reports it
		}
		n := min(len(body), w.Available())
		w.Write(append(w.AvailableBuffer(), body[:n]...))
		body = body[n:]
	}
}

// WriteMsg encodes msg (a pgproto3 message) into w's buffer.
func WriteMsg(w *bufio.Writer, msg interface{ Encode([]byte) ([]byte, error) }) error {
	buf, err := msg.Encode(w.AvailableBuffer())
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
