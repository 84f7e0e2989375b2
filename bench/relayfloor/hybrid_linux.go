package main

import (
	"net"
	"runtime"
	"sync"
	"syscall"
)

// runHybrid keeps a goroutine per client for the client's side (the
// standard net package, as txlane reads its clients), but reads every
// server connection on one OS thread with one epoll set, writing the
// server's bytes to the client from that thread: what moving only the
// server side of a proxy onto an event loop would save.
func runHybrid(listen, server string) error {
	ep, err := syscall.EpollCreate1(0)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	clients := map[int]net.Conn{}
	go func() {
		runtime.LockOSThread()
		events := make([]syscall.EpollEvent, 128)
		buf := make([]byte, 64<<10)
		for {
			n, err := syscall.EpollWait(ep, events, -1)
			if err != nil {
				continue
			}
			for _, ev := range events[:n] {
				fd := int(ev.Fd)
				mu.Lock()
				c := clients[fd]
				mu.Unlock()
				if c == nil {
					continue
				}
				m, err := syscall.Read(fd, buf)
				if err == syscall.EAGAIN {
					continue
				}
				if err != nil || m == 0 {
					mu.Lock()
					delete(clients, fd)
					mu.Unlock()
					_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, fd, nil)
					syscall.Close(fd)
					c.Close()
					continue
				}
				if _, err := c.Write(buf[:m]); err != nil {
					c.Close()
				}
			}
		}
	}()
	saddr, err := net.ResolveTCPAddr("tcp", server)
	if err != nil {
		return err
	}
	var ssa syscall.SockaddrInet4
	copy(ssa.Addr[:], saddr.IP.To4())
	ssa.Port = saddr.Port
	return serveEach(listen, func(c net.Conn) {
		sfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err == nil {
			err = syscall.Connect(sfd, &ssa)
		}
		if err != nil {
			c.Close()
			return
		}
		_ = syscall.SetsockoptInt(sfd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		_ = syscall.SetNonblock(sfd, true)
		mu.Lock()
		clients[sfd] = c
		mu.Unlock()
		if syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, sfd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(sfd)}) != nil {
			c.Close()
			return
		}
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				// The epoll thread closes sfd when the server ends.
				_ = syscall.Shutdown(sfd, syscall.SHUT_WR)
				return
			}
			if writeAll(sfd, buf[:n]) != nil {
				return
			}
		}
	})
}
