package main

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenTCP listens on addr (listen), with SO_REUSEPORT when reuse is set
// (listen_reuseport): then several processes may listen on the same
// address and port, each a socket of its own, and the kernel spreads new
// connections over them (Linux socket(7), SO_REUSEPORT; only processes of
// the same user may share a port).
func listenTCP(addr string, reuse bool) (net.Listener, error) {
	var lc net.ListenConfig
	if reuse {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}
