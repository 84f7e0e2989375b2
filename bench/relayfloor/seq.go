package main

import (
	"encoding/binary"
	"net"
	"strings"
)

// frames counts the messages of one direction of the protocol as their bytes
// go by, whatever the reads' boundaries:
// the state is the bytes still to skip of the current message and the header
// bytes seen of the next.
type frames struct {
	skip int
	hdr  [5]byte
	have int
}

// count returns how many messages whose type byte is in types begin in b.
func (f *frames) count(b []byte, types string) int {
	n := 0
	for len(b) > 0 {
		if f.skip > 0 {
			k := min(f.skip, len(b))
			f.skip -= k
			b = b[k:]
			continue
		}
		k := copy(f.hdr[f.have:], b)
		f.have += k
		b = b[k:]
		if f.have < 5 {
			return n
		}
		f.have = 0
		if strings.IndexByte(types, f.hdr[0]) >= 0 {
			n++
		}
		f.skip = int(binary.BigEndian.Uint32(f.hdr[1:])) - 4
	}
	return n
}

// runSeq is one goroutine per client that reads the client's request, writes
// it to the server and then reads the server's answer itself, up to the
// ReadyForQuery that ends it, before reading the client again: no second
// goroutine, no hand-off between goroutines per round trip. Only for
// clients that wait for each answer (pgbench does); a client that pipelines
// past a Sync would wait here until its earlier answers are read.
func runSeq(listen, server string) error {
	return serveRelayed(listen, server, relaySeq)
}

// relaySeq relays between client c and server s, one request and its
// answer at a time, until either ends.
func relaySeq(c, s net.Conn) {
	in := make([]byte, 16<<10)
	out := make([]byte, 64<<10)
	// The startup message has no type byte: read it whole and wait for
	// its ReadyForQuery.
	var lb [4]byte
	if _, err := readFull(c, lb[:]); err != nil {
		return
	}
	l := int(binary.BigEndian.Uint32(lb[:]))
	if l < 8 || l > len(in) {
		return
	}
	copy(in, lb[:])
	if _, err := readFull(c, in[4:l]); err != nil {
		return
	}
	if _, err := s.Write(in[:l]); err != nil {
		return
	}
	var cf, sf frames
	wait := 1
	for {
		for wait > 0 {
			n, err := s.Read(out)
			if err != nil {
				return
			}
			wait -= sf.count(out[:n], "Z")
			if _, err := c.Write(out[:n]); err != nil {
				return
			}
		}
		n, err := c.Read(in)
		if err != nil {
			return
		}
		// A Sync and a simple Query each end in a ReadyForQuery.
		wait += cf.count(in[:n], "SQ")
		if _, err := s.Write(in[:n]); err != nil {
			return
		}
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
