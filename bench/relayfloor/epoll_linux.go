package main

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
	"unsafe"
)

// runEpoll is PgBouncer's shape in Go: one OS thread, one epoll set,
// every socket non-blocking, a read only when epoll says a socket is
// readable (no read that returns EAGAIN on the way), and the bytes written
// to the peer at once from the same thread. No goroutine is parked or woken
// per message: the Go scheduler and netpoller take no part. A write that
// would block (the peer's buffer full) is retried blocking: pgbench's
// answers are small, so this never happens in the benchmark.
func runEpoll(listen, server string) error {
	runtime.LockOSThread()
	addr, err := net.ResolveTCPAddr("tcp", listen)
	if err != nil {
		return err
	}
	saddr, err := net.ResolveTCPAddr("tcp", server)
	if err != nil {
		return err
	}
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	_ = syscall.SetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	var sa syscall.SockaddrInet4
	copy(sa.Addr[:], addr.IP.To4())
	sa.Port = addr.Port
	if err := syscall.Bind(lfd, &sa); err != nil {
		return err
	}
	if err := syscall.Listen(lfd, 1024); err != nil {
		return err
	}
	ep, err := syscall.EpollCreate1(0)
	if err != nil {
		return err
	}
	add := func(fd int) error {
		return syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
	}
	if err := add(lfd); err != nil {
		return err
	}
	var ssa syscall.SockaddrInet4
	copy(ssa.Addr[:], saddr.IP.To4())
	ssa.Port = saddr.Port
	peer := map[int]int{}
	closePair := func(fd int) {
		p := peer[fd]
		delete(peer, fd)
		delete(peer, p)
		syscall.Close(fd)
		syscall.Close(p)
	}
	events := make([]syscall.EpollEvent, 128)
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.EpollWait(ep, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				cfd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK)
				if err != nil {
					continue
				}
				// The server connection is made blocking, then non-blocking.
				sfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
				if err == nil {
					err = syscall.Connect(sfd, &ssa)
				}
				if err != nil {
					syscall.Close(cfd)
					continue
				}
				for _, x := range []int{cfd, sfd} {
					_ = syscall.SetNonblock(x, true)
					_ = syscall.SetsockoptInt(x, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
				}
				peer[cfd], peer[sfd] = sfd, cfd
				if add(cfd) != nil || add(sfd) != nil {
					closePair(cfd)
				}
				continue
			}
			p, ok := peer[fd]
			if !ok {
				continue
			}
			m, err := syscall.Read(fd, buf)
			if err == syscall.EAGAIN {
				continue
			}
			if err != nil || m == 0 {
				closePair(fd)
				continue
			}
			if writeAll(p, buf[:m]) != nil {
				closePair(fd)
			}
		}
	}
}

// writeAll writes b to the non-blocking fd, waiting (poll) while its buffer
// is full.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EAGAIN {
			fds := []pollFd{{fd: int32(fd), events: 4 /* POLLOUT */}}
			if _, _, e := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&fds[0])), 1, 1000); e != 0 {
				return e
			}
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return fmt.Errorf("short write")
		}
		b = b[n:]
	}
	return nil
}

type pollFd struct {
	fd              int32
	events, revents int16
}
