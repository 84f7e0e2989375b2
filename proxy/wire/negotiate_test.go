package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func startupBytes(version uint32, tail string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, version), tail...)
}

// TestParseStartupMessage pins the layout rules PostgreSQL applies (checked
// against a server in TestProtocolNegotiationMatchesPostgres and
// TestStartupRefusalsMatchPostgres).
func TestParseStartupMessage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    []byte
		params  map[string]string
		options []string
		bad     bool
	}{
		{"plain", startupBytes(3<<16, "user\x00u\x00database\x00d\x00\x00"), map[string]string{"user": "u", "database": "d"}, nil, false},
		{"any minor", startupBytes(3<<16|9999, "user\x00u\x00\x00"), map[string]string{"user": "u"}, nil, false},
		{"options in order with repeats", startupBytes(3<<16, "_pq_.b\x00\x00user\x00u\x00_pq_.a\x00x\x00_pq_.b\x00y\x00\x00"),
			map[string]string{"user": "u"}, []string{"_pq_.b", "_pq_.a", "_pq_.b"}, false},
		{"last value wins", startupBytes(3<<16, "user\x00a\x00user\x00b\x00\x00"), map[string]string{"user": "b"}, nil, false},
		{"no parameters", startupBytes(3<<16, "\x00"), map[string]string{}, nil, false},
		{"dangling final name ignored", startupBytes(3<<16, "user\x00u\x00X"), map[string]string{"user": "u"}, nil, false},
		{"version word only", startupBytes(3<<16, ""), nil, nil, true},
		{"no terminator", startupBytes(3<<16, "user\x00u\x00"), nil, nil, true},
		{"value runs to the end", startupBytes(3<<16, "user\x00u"), nil, nil, true},
		{"bytes after the terminator", startupBytes(3<<16, "user\x00u\x00\x00\x00"), nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, options, err := parseStartupMessage(tc.body)
			if tc.bad {
				var pe *Error
				if !errors.As(err, &pe) || pe.Code != CodeProtocolViolation || pe.Message != "invalid startup packet layout: expected terminator as last byte" {
					t.Fatalf("got %v, want FATAL 08P01 invalid startup packet layout", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(msg.Parameters, tc.params) || !slices.Equal(options, tc.options) {
				t.Fatalf("got %v %q, want %v %q", msg.Parameters, options, tc.params, tc.options)
			}
			if msg.ProtocolVersion != binary.BigEndian.Uint32(tc.body) {
				t.Fatalf("version %#x", msg.ProtocolVersion)
			}
		})
	}
}

// TestNegotiation covers what the client is told for each combination of
// request, txlane's range and the server's answer.
func TestNegotiation(t *testing.T) {
	npv := func(v uint32, options ...string) []byte {
		b, _ := (&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: v, UnrecognizedOptions: options}).Encode(nil)
		return b
	}
	for _, tc := range []struct {
		name      string
		requested uint32
		options   []string
		server    []byte // the server's NegotiateProtocolVersion, nil for none
		asked     uint32
		told      []byte
		bad       bool
	}{
		{"3.0 granted", 3 << 16, nil, nil, 3 << 16, nil, false},
		{"3.2 granted", 3<<16 | 2, nil, nil, 3<<16 | 2, nil, false},
		{"3.2 lowered by the server", 3<<16 | 2, nil, npv(3 << 16), 3<<16 | 2, npv(3 << 16), false},
		{"newer than txlane, server speaks 3.2", 3<<16 | 9999, nil, nil, 3<<16 | 2, npv(3<<16 | 2), false},
		{"newer than txlane, server speaks 3.0", 3<<16 | 9999, []string{"_pq_.x"}, npv(3 << 16), 3<<16 | 2, npv(3<<16, "_pq_.x"), false},
		{"server sends the minor alone", 3<<16 | 2, nil, npv(0), 3<<16 | 2, npv(3 << 16), false},
		{"options only", 3 << 16, []string{"_pq_.a", "_pq_.b"}, nil, 3 << 16, npv(3<<16, "_pq_.a", "_pq_.b"), false},
		{"server offers more than asked", 3 << 16, nil, npv(3<<16 | 2), 3 << 16, nil, true},
		{"server lists options txlane never sent", 3<<16 | 2, nil, npv(3<<16, "_pq_.z"), 3<<16 | 2, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NewNegotiation(tc.requested, tc.options)
			if n.asked != tc.asked {
				t.Fatalf("asks the server for %#x, want %#x", n.asked, tc.asked)
			}
			if tc.server != nil {
				err := n.ServerAnswer(tc.server[5:])
				if tc.bad {
					if err == nil {
						t.Fatal("accepted")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			if err := n.Tell(w); err != nil {
				t.Fatal(err)
			}
			n.Tell(w) // once only
			w.Flush()
			if !bytes.Equal(out.Bytes(), tc.told) {
				t.Fatalf("told %q, want %q", out.Bytes(), tc.told)
			}
			if err := n.ServerAnswer(npv(3 << 16)[5:]); err == nil {
				t.Fatal("a NegotiateProtocolVersion after the client was told was accepted")
			}
		})
	}
}

// FuzzStartupMessage: any packet body either fails with an error or parses
// into parameters that txlane re-encodes for the server and that parse back
// to the same thing; protocol options never reach the parameters.
func FuzzStartupMessage(f *testing.F) {
	f.Add(startupBytes(3<<16, "user\x00u\x00database\x00d\x00\x00"))
	f.Add(startupBytes(3<<16|9999, "_pq_.test_protocol_negotiation\x00\x00user\x00u\x00\x00"))
	f.Add(startupBytes(3<<16, "user\x00u\x00X"))
	f.Add(startupBytes(3<<16, "\x00"))
	f.Add([]byte{0, 3})
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, options, err := parseStartupMessage(body)
		if err != nil {
			return
		}
		for _, o := range options {
			if len(o) < len(pqOptionPrefix) || o[:len(pqOptionPrefix)] != pqOptionPrefix {
				t.Fatalf("option %q", o)
			}
		}
		for k := range msg.Parameters {
			if k == "" || bytes.HasPrefix([]byte(k), []byte(pqOptionPrefix)) {
				t.Fatalf("parameter %q", k)
			}
		}
		enc, err := msg.Encode(nil)
		if err != nil {
			t.Fatalf("re-encoding %v: %v", msg.Parameters, err)
		}
		again, opts2, err := parseStartupMessage(enc[4:])
		if err != nil || len(opts2) != 0 || !maps.Equal(again.Parameters, msg.Parameters) || again.ProtocolVersion != msg.ProtocolVersion {
			t.Fatalf("round trip of %q: %v %q %v", body, again, opts2, err)
		}
	})
}
