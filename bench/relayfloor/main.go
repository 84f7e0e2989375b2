// Command relayfloor is the cheapest PostgreSQL proxy a Go program can be: it
// relays bytes between each client and its own server connection and looks
// at none of them. scripts/bench.sh (scenario floor) measures its CPU time
// per transaction beside PgBouncer's and txlane's, to tell what the Go
// runtime costs per round trip from what txlane's own work costs.
//
// Usage: relayfloor -mode std|gnet|epoll|block|hybrid -listen HOST:PORT -server HOST:PORT
//
//   - std: the standard net package, a goroutine per direction (io.Copy),
//     as txlane does.
//   - gnet: the gnet event loop (epoll, no goroutine per connection): one
//     loop for clients, the client side of gnet for server connections;
//     bytes cross between the two loops with AsyncWrite.
//   - epoll: PgBouncer's shape, written against the system calls: one OS
//     thread and one level-triggered epoll set for every socket, a read only
//     of a socket epoll reports readable, the bytes written to the peer from
//     the same thread (epoll_linux.go).
//   - block: a thread per direction: each goroutine locked to its OS thread
//     reads its socket in blocking mode (block_linux.go).
//   - hybrid: clients read by a goroutine each (net), servers read on one
//     OS thread with one epoll set, which writes to the clients
//     (hybrid_linux.go).
//
// It is its own module so that txlane does not depend on gnet.
package main

import (
	"flag"
	"io"
	"log"
	"net"

	"github.com/panjf2000/gnet/v2"
)

func main() {
	mode := flag.String("mode", "std", "std, gnet, epoll, block, hybrid or seq")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	server := flag.String("server", "", "PostgreSQL server address")
	flag.Parse()
	switch *mode {
	case "std":
		log.Fatal(runStd(*listen, *server))
	case "gnet":
		log.Fatal(runGnet(*listen, *server))
	case "epoll":
		log.Fatal(runEpoll(*listen, *server))
	case "block":
		log.Fatal(runBlock(*listen, *server))
	case "hybrid":
		log.Fatal(runHybrid(*listen, *server))
	case "seq":
		log.Fatal(runSeq(*listen, *server))
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
}

// serveEach accepts clients on listen and runs handle for each on a
// goroutine of its own, until the listener fails.
func serveEach(listen string, handle func(c net.Conn)) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go handle(c)
	}
}

// serveRelayed accepts clients on listen and, for each, dials server and
// runs relay on the pair, closing both when it returns.
func serveRelayed(listen, server string, relay func(c, s net.Conn)) error {
	return serveEach(listen, func(c net.Conn) {
		defer c.Close()
		s, err := net.Dial("tcp", server)
		if err != nil {
			return
		}
		defer s.Close()
		relay(c, s)
	})
}

func runStd(listen, server string) error {
	return serveRelayed(listen, server, func(c, s net.Conn) {
		go func() {
			_, _ = io.Copy(c, s)
			c.Close()
		}()
		_, _ = io.Copy(s, c)
	})
}

// link is a connection's context: the connection at the other end.
type link struct{ peer gnet.Conn }

type gnetRelay struct {
	gnet.BuiltinEventEngine
	server  string
	servers *gnet.Client
}

func (r *gnetRelay) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if c.Context() != nil {
		return nil, gnet.None // a server connection: DialContext linked it
	}
	s, err := r.servers.DialContext("tcp", r.server, &link{peer: c})
	if err != nil {
		return nil, gnet.Close
	}
	c.SetContext(&link{peer: s})
	return nil, gnet.None
}

func (r *gnetRelay) OnTraffic(c gnet.Conn) gnet.Action {
	l, _ := c.Context().(*link)
	if l == nil {
		return gnet.Close
	}
	buf, _ := c.Next(-1)
	// The buffer is c's until OnTraffic returns; the peer's loop writes a copy.
	_ = l.peer.AsyncWrite(append([]byte(nil), buf...), nil)
	return gnet.None
}

func (r *gnetRelay) OnClose(c gnet.Conn, _ error) gnet.Action {
	if l, _ := c.Context().(*link); l != nil {
		_ = l.peer.Close()
	}
	return gnet.None
}

func runGnet(listen, server string) error {
	r := &gnetRelay{server: server}
	cli, err := gnet.NewClient(r, gnet.WithTCPNoDelay(gnet.TCPNoDelay))
	if err != nil {
		return err
	}
	if err := cli.Start(); err != nil {
		return err
	}
	r.servers = cli
	return gnet.Run(r, "tcp://"+listen, gnet.WithMulticore(false), gnet.WithTCPNoDelay(gnet.TCPNoDelay))
}
