package proxy

import (
	"bufio"
	"net"

	"github.com/txlane/txlane/proxy/wire"
)

// backend is one server connection as the proxy drives it after login: raw
// framing in both directions, nothing decoded unless routing needs it.
//
// A backend is not safe for concurrent use: one goroutine writes it (w) and one
// reads it (r). Cancel requests use a separate connection (see wire.CancelTarget).
type backend struct {
	conn   net.Conn
	r      *wire.Reader[wire.Backend]
	w      *bufio.Writer
	target wire.CancelTarget
}
