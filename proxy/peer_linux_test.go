//go:build linux

package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestParseProcAddr(t *testing.T) {
	// /proc/net/tcp prints each 32-bit word of the address in host byte
	// order; the expected values hold on little-endian machines.
	if !littleEndian() {
		t.Skip("expectations written for little-endian hosts")
	}
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"0100007F:1F90", "127.0.0.1:8080"},
		{"0000000000000000FFFF00000100007F:0050", "127.0.0.1:80"},
		{"00000000000000000000000001000000:0016", "[::1]:22"},
	} {
		a, err := parseProcAddr(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		want, _ := net.ResolveTCPAddr("tcp", tc.want)
		if !sameAddr(a, want) {
			t.Errorf("%s = %s, want %s", tc.in, a, tc.want)
		}
	}
}

func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

// TestPeerUID finds the owner of a loopback connection's client socket.
func TestPeerUID(t *testing.T) {
	server := acceptedConn(t, "tcp", "127.0.0.1:0")
	uid, err := peerUID(server)
	if err != nil {
		t.Fatal(err)
	}
	if uid != os.Getuid() {
		t.Fatalf("uid %d, want %d", uid, os.Getuid())
	}
	if _, err := tcpPeerUID(server.LocalAddr(), &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}); err == nil {
		t.Fatal("found a socket for an address that is not connected")
	}
}

// TestPeerUIDUnix finds the uid of the process at the other end of a Unix
// socket (SO_PEERCRED), plain and under TLS, and shows such a client as
// "unix". (A client of another uid is refused end to end: testUnixSocket in
// cmd/txlane.)
func TestPeerUIDUnix(t *testing.T) {
	server := acceptedConn(t, "unix", filepath.Join(t.TempDir(), "s"))
	for _, c := range []net.Conn{server, tls.Server(server, &tls.Config{})} {
		uid, err := peerUID(c)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if uid != os.Getuid() {
			t.Fatalf("%T: uid %d, want %d", c, uid, os.Getuid())
		}
		if a := clientAddr(c); a != "unix" {
			t.Errorf("%T: addr %q, want unix", c, a)
		}
	}
}

// acceptedConn listens on network and address, connects to it and returns
// the accepted (server) end; everything is closed after the test.
func acceptedConn(t *testing.T, network, address string) net.Conn {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	client, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server
}
