package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// listenUnix listens on dir/.s.PGSQL.PORT, PORT being tcp's port: the name
// libpq and every PostgreSQL client derive from a host that is a directory
// and a port (PostgreSQL manual, "Connection strings", host). A socket file
// left by a process that died is replaced; one that answers is in use, and
// an error. The socket is open to every local user (mode 0777, as
// PgBouncer's unix_socket_mode default): authentication decides, as over
// TCP.
func listenUnix(dir string, tcp net.Addr) (net.Listener, error) {
	ta, ok := tcp.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("unix_socket_dir: listen address %s has no port", tcp)
	}
	path := filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(ta.Port))
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("unix_socket_dir: %s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("unix_socket_dir: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("unix_socket_dir: %w", err)
	}
	// NOTE: net removes the file when the listener closes.
	if err := os.Chmod(path, 0o777); err != nil {
		ln.Close()
		return nil, fmt.Errorf("unix_socket_dir: %w", err)
	}
	return ln, nil
}
