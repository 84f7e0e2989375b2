package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy"
	"github.com/txlane/txlane/proxy/auth"
)

// BenchmarkChurnLogin is one client's whole visit through txlane as
// pgbench -S -C makes it (a new connection per transaction): connect, a
// login txlane checks itself (auth_type trust, an auth file, as
// scripts/bench.sh's churn scenario sets it), one simple Query, Terminate,
// close; per pool mode. The server is a fake that answers every query at
// once (scriptServer), so no PostgreSQL is needed and what is measured is
// txlane's login, request and logout path (session mode: a pooled backend
// taken at login and reset with server_reset_query after the client left)
// plus this benchmark's client, which writes prepared bytes and reads into
// one buffer. allocs/op and B/op are txlane's and the client's together.
func BenchmarkChurnLogin(b *testing.B) {
	answer := encodeAll(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("0")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	discarded := encodeAll(&pgproto3.CommandComplete{CommandTag: []byte("DISCARD ALL")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	server := scriptServer(b, trustLogin, func(q string) ([]byte, bool) {
		if q == "DISCARD ALL" {
			return discarded, false
		}
		return answer, false
	})
	users, err := auth.ParseFile("users.txt", []byte(`"bench" "unused: auth_type trust"`+"\n"))
	if err != nil {
		b.Fatal(err)
	}
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "bench", "database": "bench", "application_name": "pgbench"}}).Encode(nil)
	query, _ := (&pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 1"}).Encode(nil)
	terminate, _ := (&pgproto3.Terminate{}).Encode(nil)
	for _, mode := range []proxy.PoolMode{proxy.PoolSession, proxy.PoolTransaction} {
		b.Run(string(mode), func(b *testing.B) {
			p := startProxyOn(b, fmt.Sprintf("postgres://bench@%s/bench?sslmode=disable", server), func(o *proxy.Options) {
				o.Auth = proxy.AuthOptions{Type: auth.MethodTrust, File: users}
				o.Pool = proxy.PoolOptions{Mode: mode, Size: 8}
			})
			br := bufio.NewReaderSize(nil, 4096)
			visit := func() {
				c, err := net.Dial("tcp", p.Addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				br.Reset(c)
				if _, err := c.Write(startup); err != nil {
					b.Fatal(err)
				}
				readToReady(b, br)
				if _, err := c.Write(query); err != nil {
					b.Fatal(err)
				}
				readToReady(b, br)
				if _, err := c.Write(terminate); err != nil {
					b.Fatal(err)
				}
				// txlane closes the connection once it is done with the client.
				if _, err := br.ReadByte(); err != io.EOF {
					b.Fatalf("after Terminate: %v, want the connection closed", err)
				}
			}
			visit() // the pool's first backend
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				visit()
			}
		})
	}
}

// readToReady reads messages up to a ReadyForQuery; an ErrorResponse fails
// the benchmark.
func readToReady(b *testing.B, br *bufio.Reader) {
	b.Helper()
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			b.Fatal(err)
		}
		n := int(hdr[1])<<24 | int(hdr[2])<<16 | int(hdr[3])<<8 | int(hdr[4])
		if hdr[0] == 'E' {
			body := make([]byte, n-4)
			io.ReadFull(br, body)
			b.Fatalf("ErrorResponse: %q", body)
		}
		if _, err := br.Discard(n - 4); err != nil {
			b.Fatal(err)
		}
		if hdr[0] == 'Z' {
			return
		}
	}
}
