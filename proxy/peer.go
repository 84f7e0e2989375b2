package proxy

import (
	"crypto/tls"
	"net"
)

// unixAddr is how a client on a Unix-domain socket appears in SHOW CLIENTS,
// SHOW UNITS, escape details and logs: PgBouncer's addr for such clients.
// (A Unix client's own address is unnamed: Go prints it as "@".)
const unixAddr = "unix"

// clientAddr is the address txlane shows for client connection c: host:port
// for TCP, unixAddr for a Unix-domain socket (also under TLS).
func clientAddr(c net.Conn) string {
	if _, ok := socketConn(c).(*net.UnixConn); ok {
		return unixAddr
	}
	return c.RemoteAddr().String()
}

// clientAddrOf formats clientAddr(c) when it is printed (a log field).
type clientAddrOf struct{ c net.Conn }

func (a clientAddrOf) String() string { return clientAddr(a.c) }

// socketConn returns the socket under c: c itself, or the connection a TLS
// session runs over.
func socketConn(c net.Conn) net.Conn {
	if t, ok := c.(*tls.Conn); ok {
		return t.NetConn()
	}
	return c
}
