package proxy

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

// Buffer sizes for the two directions of a connection. A response is coalesced
// into one write of up to writeBufSize bytes; larger results stream through.
const (
	readBufSize  = 32 * 1024
	writeBufSize = 64 * 1024
)

// errMessageTooLong reports a message whose declared body length exceeds the
// configured cap. The connection cannot be resynchronised after it.
type errMessageTooLong struct {
	typ    byte
	n, max int
}

func (e *errMessageTooLong) Error() string {
	return fmt.Sprintf("message %q of %d bytes exceeds the maximum of %d", e.typ, e.n, e.max)
}

// errBadLength reports a message length below the 4 bytes of the length itself.
var errBadLength = errors.New("invalid message length")

// msgReader frames the regular (post-startup) message stream of one socket.
//
// It decodes nothing: callers look at the type byte and either forward the
// message untouched (forward) or read its body to decode the few messages that
// routing needs (body). A msgReader is owned by the goroutine that reads its
// socket and is not safe for concurrent use.
type msgReader struct {
	br      *bufio.Reader
	maxBody int // 0: no cap (server side; the server is trusted)

	// typ and n describe the current message after next; pending is true
	// until its body has been consumed by body, forward or skip.
	typ     byte
	n       int
	pending bool
	scratch []byte
}

func newMsgReader(r io.Reader, maxBody int) *msgReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, readBufSize)
	}
	return &msgReader{br: br, maxBody: maxBody}
}

// next reads the header of the next message. The previous message must have
// been consumed.
func (r *msgReader) next() (typ byte, n int, err error) {
	if r.pending {
		panic("BUG: msgReader.next with an unconsumed body")
	}
	hdr, err := r.br.Peek(5)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	typ = hdr[0]
	l := int32(binary.BigEndian.Uint32(hdr[1:]))
	if l < 4 {
		return 0, 0, errBadLength
	}
	n = int(l) - 4
	if r.maxBody > 0 && n > r.maxBody {
		return 0, 0, &errMessageTooLong{typ: typ, n: n, max: r.maxBody}
	}
	r.br.Discard(5)
	r.typ, r.n, r.pending = typ, n, true
	return typ, n, nil
}

// body returns the current message's body. The slice is valid until the next
// call on r (flyweight, like pgproto3's messages): copy it to keep it.
func (r *msgReader) body() ([]byte, error) {
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

// withSQLState returns an ErrorResponse or NoticeResponse body that has a
// SQLSTATE field: body itself, or, for a server message without one (which
// the protocol does not allow, and clients may mishandle), a copy with code
// XX000 (internal_error) added. See the protocol's "Error and Notice Message
// Fields": the C field is always present.
func withSQLState(body []byte) []byte {
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

// errBadReadyForQuery reports a ReadyForQuery whose body is not one byte.
var errBadReadyForQuery = errors.New("malformed ReadyForQuery from server")

// status reads the body of the current message, a ReadyForQuery, and
// returns its transaction status byte.
func (r *msgReader) status() (byte, error) {
	body, err := r.body()
	if err != nil {
		return 0, err
	}
	if len(body) != 1 {
		return 0, errBadReadyForQuery
	}
	return body[0], nil
}

// forward copies the current message, header and body, to w without decoding it.
func (r *msgReader) forward(w *bufio.Writer) error {
	r.pending = false
	writeHeader(w, r.typ, r.n)
	if _, err := io.CopyN(w, r.br, int64(r.n)); err != nil {
		return &errPartial{unexpected(err)}
	}
	return nil
}

// errPartial reports a forward that failed after part of the message may
// have been written: the receiving stream cannot take another message.
type errPartial struct{ err error }

func (e *errPartial) Error() string { return "message forwarded in part: " + e.err.Error() }
func (e *errPartial) Unwrap() error { return e.err }

// skip discards the current message's body.
func (r *msgReader) skip() error {
	r.pending = false
	_, err := r.br.Discard(r.n)
	return unexpected(err)
}

// buffered reports whether more input is already buffered: a writer flushes
// only when the reader would block, which coalesces a response into one write.
func (r *msgReader) buffered() bool { return r.br.Buffered() > 0 }

func writeHeader(w *bufio.Writer, typ byte, n int) {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(n+4))
	w.Write(hdr[:])
}

// writeRaw writes a message whose body is already encoded.
func writeRaw(w *bufio.Writer, typ byte, body []byte) {
	writeHeader(w, typ, len(body))
	w.Write(body)
}

// writeMsg encodes msg into w's buffer.
func writeMsg(w *bufio.Writer, msg interface{ Encode([]byte) ([]byte, error) }) error {
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

// Message type bytes used by the proxy (see the protocol's message formats).
const (
	msgQuery            = 'Q'
	msgParse            = 'P'
	msgBind             = 'B'
	msgDescribe         = 'D'
	msgExecute          = 'E'
	msgClose            = 'C'
	msgSync             = 'S'
	msgFlush            = 'H'
	msgTerminate        = 'X'
	msgFunctionCall     = 'F'
	msgCopyData         = 'd'
	msgCopyDone         = 'c'
	msgCopyFail         = 'f'
	msgReadyForQuery    = 'Z'
	msgErrorResponse    = 'E'
	msgParameterStatus  = 'S'
	msgBackendKeyData   = 'K'
	msgAuthentication   = 'R'
	msgNegotiateVersion = 'v'
	msgNoticeResponse   = 'N'
)
