//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// peerUID is only implemented on Linux: elsewhere admin.users must be set.
func peerUID(conn net.Conn) (int, error) {
	return 0, errors.New("the owner of a client socket can only be found on Linux; set admin.users")
}
