package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// sink stands for a client's socket: like a *net.TCPConn it implements
// io.ReaderFrom, which bufio.Writer hands a whole copy to when its buffer is
// empty. It counts the writes that reach it.
type sink struct {
	writes int
	bytes.Buffer
}

func (s *sink) Write(p []byte) (int, error) {
	s.writes++
	return s.Buffer.Write(p)
}

func (s *sink) ReadFrom(r io.Reader) (int64, error) {
	s.writes++ // a TCPConn's ReadFrom writes to the socket as it reads
	return s.Buffer.ReadFrom(r)
}

// pgbenchSelectAnswer is a server's answer to pgbench -S's statement: the
// messages relay forwards for each request.
func pgbenchSelectAnswer(t testing.TB) []byte {
	var out []byte
	for _, m := range []pgproto3.BackendMessage{
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("0")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	} {
		var err error
		if out, err = m.Encode(out); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// relayAnswer forwards one answer, up to its ReadyForQuery, from r to w as
// the session's relay does: ReadyForQuery read and written again, everything
// else forwarded, and a flush whenever r has nothing more buffered.
func relayAnswer(r *Reader[Backend], w *bufio.Writer) error {
	for {
		typ, _, err := r.Next()
		if err != nil {
			return err
		}
		if typ == ReadyForQuery {
			status, err := r.Status()
			if err != nil {
				return err
			}
			WriteRaw(w, typ, []byte{status})
		} else if err := r.Forward(w); err != nil {
			return err
		}
		if !r.Buffered() {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if typ == ReadyForQuery {
			return nil
		}
	}
}

// segments reads data one answer at a time, as a server's answers arrive
// (one TCP segment each), over and over.
type segments struct {
	data []byte
	size int // of one answer
	off  int
}

func (c *segments) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:c.off+c.size])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// TestForwardCoalesces: an answer forwarded into an empty write buffer goes
// to the client in one write, at the flush: no message of it reaches the
// socket on its own (as one would if Forward let bufio.Writer.ReadFrom hand
// the copy to the socket's ReadFrom).
func TestForwardCoalesces(t *testing.T) {
	answer := pgbenchSelectAnswer(t)
	r := NewReader[Backend](&segments{data: answer, size: len(answer)}, 0)
	var s sink
	w := bufio.NewWriterSize(&s, WriteBufSize)
	for i := 1; i <= 3; i++ {
		if err := relayAnswer(r, w); err != nil {
			t.Fatal(err)
		}
		if s.writes != i {
			t.Fatalf("after %d answers the client had %d writes, want %d", i, s.writes, i)
		}
	}
	if !bytes.Equal(s.Bytes(), bytes.Repeat(answer, 3)) {
		t.Fatalf("forwarded bytes differ:\n got %x\nwant %x", s.Bytes(), bytes.Repeat(answer, 3))
	}
}

// TestForwardLargeAndShort: a message larger than the read buffer streams
// through whole; one cut short is a PartialError.
func TestForwardLargeAndShort(t *testing.T) {
	big, err := (&pgproto3.DataRow{Values: [][]byte{bytes.Repeat([]byte("x"), 3*ReadBufSize+17)}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	w := bufio.NewWriterSize(&s, WriteBufSize)
	r := NewReader[Backend](bytes.NewReader(big), 0)
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := r.Forward(w); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if !bytes.Equal(s.Bytes(), big) {
		t.Fatalf("forwarded %d bytes, want the %d of the message", s.Len(), len(big))
	}

	r = NewReader[Backend](bytes.NewReader(big[:len(big)-5]), 0)
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	var partial *PartialError
	if err := r.Forward(bufio.NewWriter(io.Discard)); !errorsAs(err, &partial) || !errorsIs(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short message: %v, want a PartialError of io.ErrUnexpectedEOF", err)
	}
}

// TestRelayAnswerAllocatesNothing: framing an answer (Next, Forward, Status,
// WriteRaw) allocates nothing per message.
func TestRelayAnswerAllocatesNothing(t *testing.T) {
	answer := pgbenchSelectAnswer(t)
	r := NewReader[Backend](&segments{data: answer, size: len(answer)}, 0)
	w := bufio.NewWriterSize(io.Discard, WriteBufSize)
	if n := testing.AllocsPerRun(1000, func() {
		if err := relayAnswer(r, w); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per answer, want 0", n)
	}
}

// BenchmarkRelayAnswer frames the answers to pgbench -S's statement as
// relay does (Next, Forward or Status, coalesced flush) into a client socket
// that implements io.ReaderFrom, as a TCP connection does; writes/op are
// the writes that reach the socket per answer.
func BenchmarkRelayAnswer(b *testing.B) {
	answer := pgbenchSelectAnswer(b)
	r := NewReader[Backend](&segments{data: answer, size: len(answer)}, 0)
	var s sink
	w := bufio.NewWriterSize(&s, WriteBufSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(answer)))
	for b.Loop() {
		if err := relayAnswer(r, w); err != nil {
			b.Fatal(err)
		}
		if s.Len() > 1<<20 {
			s.Reset()
		}
	}
	b.ReportMetric(float64(s.writes)/float64(b.N), "writes/op")
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
func errorsIs(err, target error) bool     { return errors.Is(err, target) }
