//go:build linux

package proxy

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// peerUID returns the uid of the client at the other end of conn (a client
// connection as txlane accepted it, TLS-wrapped or not): for a Unix-domain
// socket the uid the kernel recorded when the client connected
// (SO_PEERCRED, unix(7); PgBouncer and PostgreSQL's peer authentication use
// the same), for TCP the owner of the client's socket (tcpPeerUID).
func peerUID(conn net.Conn) (int, error) {
	if u, ok := socketConn(conn).(*net.UnixConn); ok {
		return unixPeerUID(u)
	}
	return tcpPeerUID(conn.LocalAddr(), conn.RemoteAddr())
}

// unixPeerUID returns the uid of the process that connected to c, from
// SO_PEERCRED.
func unixPeerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	return int(cred.Uid), nil
}

// tcpPeerUID returns the uid owning the client end of a TCP connection whose
// local and remote addresses (as txlane sees them) are given.
//
// It looks the client's socket up in /proc/net/tcp and /proc/net/tcp6: the
// entry whose local address is txlane's remote address and whose remote
// address is txlane's local address. Only a socket of this host (and
// network namespace) can be found, so a remote client is never identified.
func tcpPeerUID(local, remote net.Addr) (int, error) {
	l, ok1 := local.(*net.TCPAddr)
	r, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("not a TCP connection (%s)", remote.Network())
	}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		uid, err := findSocketUID(file, r, l)
		if err == nil {
			return uid, nil
		}
		if !errors.Is(err, errSocketNotFound) && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("the client's socket %s is not one of this host's", r)
}

var errSocketNotFound = errors.New("socket not found")

// findSocketUID scans a /proc/net/tcp{,6} table for the socket with local
// address sockLocal and remote address sockRemote and returns its uid.
func findSocketUID(file string, sockLocal, sockRemote *net.TCPAddr) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		la, err1 := parseProcAddr(fields[1])
		ra, err2 := parseProcAddr(fields[2])
		if err1 != nil || err2 != nil {
			continue
		}
		if sameAddr(la, sockLocal) && sameAddr(ra, sockRemote) {
			uid, err := strconv.Atoi(fields[7])
			if err != nil {
				return 0, fmt.Errorf("%s: bad uid %q", file, fields[7])
			}
			return uid, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errSocketNotFound
}

// parseProcAddr parses an address of /proc/net/tcp: the IP as 32-bit words
// printed in hex in host byte order, a colon, the port in hex.
func parseProcAddr(s string) (*net.TCPAddr, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return nil, errors.New("no port")
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return nil, errors.New("bad address")
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return nil, err
	}
	return &net.TCPAddr{IP: ip, Port: int(port)}, nil
}

// sameAddr compares addresses, an IPv4 address equal to its IPv4-mapped
// IPv6 form.
func sameAddr(a, b *net.TCPAddr) bool {
	return a.Port == b.Port && a.IP.Equal(b.IP)
}
