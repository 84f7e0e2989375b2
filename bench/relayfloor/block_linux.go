package main

import (
	"net"
	"os"
	"runtime"
	"syscall"
)

// runBlock is a thread per direction: each goroutine is locked to its OS
// thread and reads its socket in blocking mode, so the kernel wakes that
// thread when bytes arrive; the netpoller takes no part.
func runBlock(listen, server string) error {
	return serveEach(listen, func(c net.Conn) {
		s, err := net.Dial("tcp", server)
		if err != nil {
			c.Close()
			return
		}
		cf, err1 := c.(*net.TCPConn).File()
		sf, err2 := s.(*net.TCPConn).File()
		c.Close()
		s.Close()
		if err1 != nil || err2 != nil {
			return
		}
		cfd, sfd := int(cf.Fd()), int(sf.Fd()) // Fd puts them in blocking mode
		go pump(sfd, cfd, sf, cf)
		pump(cfd, sfd, cf, sf)
	})
}

// pump copies from fd src to fd dst with blocking system calls until either
// end closes.
func pump(src, dst int, fs, fd *os.File) {
	runtime.LockOSThread()
	buf := make([]byte, 64<<10)
	defer func() { fs.Close(); fd.Close() }()
	for {
		n, err := syscall.Read(src, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		for b := buf[:n]; len(b) > 0; {
			m, err := syscall.Write(dst, b)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return
			}
			b = b[m:]
		}
	}
}
