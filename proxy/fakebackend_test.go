package proxy_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy"
)

// scriptedBackend is a fake PostgreSQL for what a real server cannot
// produce: it logs anyone in, then answers every Query with reply (and
// hangs up after it when hangUp is set).
func scriptedBackend(t *testing.T, reply []byte, hangUp bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				var n [4]byte
				if _, err := io.ReadFull(r, n[:]); err != nil {
					return
				}
				if _, err := r.Discard(int(binary.BigEndian.Uint32(n[:])) - 4); err != nil {
					return
				}
				var out []byte
				out, _ = (&pgproto3.AuthenticationOk{}).Encode(out)
				out, _ = (&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"}).Encode(out)
				out, _ = (&pgproto3.BackendKeyData{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}).Encode(out)
				out, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(out)
				c.Write(out)
				for {
					typ, err := r.ReadByte()
					if err != nil {
						return
					}
					if _, err := io.ReadFull(r, n[:]); err != nil {
						return
					}
					if _, err := r.Discard(int(binary.BigEndian.Uint32(n[:])) - 4); err != nil {
						return
					}
					if typ == 'Q' {
						c.Write(reply)
						if hangUp {
							return
						}
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

func TestMalformedServerReplies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reply  []byte
		hangUp bool
		code   string // "" when the client is closed without a word
	}{
		{"ReadyForQuery of two bytes", []byte{'Z', 0, 0, 0, 6, 'I', 'I'}, false, proxy.CodeProtocolViolation},
		{"length below four", []byte{'C', 0, 0, 0, 2}, false, proxy.CodeProtocolViolation},
		{"hang-up between messages", []byte{'I', 0, 0, 0, 4}, true, proxy.CodeConnectionFailure},
		// Part of a message already reached the client: nothing can follow.
		{"hang-up inside a message", []byte{'C', 0, 0, 0, 20, 'S', 'E'}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := scriptedBackend(t, tc.reply, tc.hangUp)
			p := startProxy(t, func(o *proxy.Options) {
				host, port, _ := net.SplitHostPort(addr)
				c := o.Primary.Copy()
				c.Host, c.Fallbacks = host, nil
				var pn int
				for _, ch := range port {
					pn = pn*10 + int(ch-'0')
				}
				c.Port = uint16(pn)
				o.Primary = c
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			victim, err := pgconn.Connect(ctx, p.DSN(t, ""))
			if err != nil {
				t.Fatal(err)
			}
			other, err := pgconn.Connect(ctx, p.DSN(t, ""))
			if err != nil {
				t.Fatal(err)
			}
			_, err = victim.Exec(ctx, "SELECT 1").ReadAll()
			var pgErr *pgconn.PgError
			switch {
			case tc.code != "" && (!errors.As(err, &pgErr) || pgErr.Code != tc.code):
				t.Fatalf("got %v, want SQLSTATE %s", err, tc.code)
			case tc.code == "" && (err == nil || errors.As(err, &pgErr)):
				t.Fatalf("got %v, want the connection closed without an ErrorResponse", err)
			}
			if !victim.IsClosed() {
				t.Fatal("the client's connection stays open")
			}
			// The other client's session is untouched.
			if other.IsClosed() {
				t.Fatal("another client was closed")
			}
		})
	}
}
