package proxy_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy"
)

// scriptServer is a fake PostgreSQL for what a real server cannot produce:
// after reading a startup packet it writes login, then answers each simple
// Query with what answer returns for its text (and hangs up after it when
// answer says so). It returns the server's address.
func scriptServer(t testing.TB, login []byte, answer func(query string) (reply []byte, hangUp bool)) string {
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
				c.Write(login)
				for {
					typ, err := r.ReadByte()
					if err != nil {
						return
					}
					if _, err := io.ReadFull(r, n[:]); err != nil {
						return
					}
					body := make([]byte, int(binary.BigEndian.Uint32(n[:]))-4)
					if _, err := io.ReadFull(r, body); err != nil {
						return
					}
					if typ == 'Q' {
						reply, hangUp := answer(strings.TrimSuffix(string(body), "\x00"))
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

// trustLogin logs anyone in.
var trustLogin = encodeAll(&pgproto3.AuthenticationOk{},
	&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"},
	&pgproto3.BackendKeyData{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}, &pgproto3.ReadyForQuery{TxStatus: 'I'})

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
			p := proxyTo(t, scriptServer(t, trustLogin, func(string) ([]byte, bool) { return tc.reply, tc.hangUp }))
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
