package proxy

import (
	"net"
	"sync"
	"sync/atomic"
)

// maxIdleConnWorkers is how many goroutines that ran a client wait for the
// next one (connWorkers); more exit. Each keeps the stack its last client
// grew (a few KiB).
const maxIdleConnWorkers = 64

// connWorkers runs accepted connections on goroutines that served a client
// before. A new goroutine starts with a small stack that each login grows,
// copying it several times; under connection churn (a login, one
// transaction, a logout) that copying was about 3% of txlane's CPU
// (pgbench -S -C). A goroutine kept from the last client has its stack
// already.
type connWorkers struct {
	// ch hands a connection to a waiting worker. Unbuffered: a send
	// succeeds only when a worker waits, else the accept loop starts one.
	ch   chan net.Conn
	idle atomic.Int32
	// stop, closed by Close, ends the waiting workers.
	stop     chan struct{}
	stopOnce sync.Once
}

func (w *connWorkers) init() {
	w.ch = make(chan net.Conn)
	w.stop = make(chan struct{})
}

// run serves conn, counted in s.wg by the caller, on a waiting worker or a
// new one.
func (s *Server) run(conn net.Conn) {
	select {
	case s.workers.ch <- conn:
	default:
		go s.connWorker(conn)
	}
}

// connWorker serves conn, then waits for the next connection while fewer
// than maxIdleConnWorkers others wait.
func (s *Server) connWorker(conn net.Conn) {
	w := &s.workers
	for {
		s.serveConn(conn)
		if w.idle.Add(1) > maxIdleConnWorkers {
			w.idle.Add(-1)
			return
		}
		select {
		case conn = <-w.ch:
			w.idle.Add(-1)
		case <-w.stop:
			w.idle.Add(-1)
			return
		}
	}
}

// serveConn runs one accepted connection to its end.
func (s *Server) serveConn(conn net.Conn) {
	defer s.wg.Done()
	defer s.untrack(conn)
	s.handle(conn)
}

// stopWaiting ends the workers waiting for a connection (Close).
func (w *connWorkers) stopWaiting() { w.stopOnce.Do(func() { close(w.stop) }) }
