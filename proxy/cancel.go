package proxy

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"sync"
)

// cancelKeys maps the BackendKeyData txlane hands to clients to their sessions.
// Clients never see a server's real process ID or secret: a CancelRequest must
// come through txlane, which forwards it to the backend running the client's
// request and to no other.
type cancelKeys struct {
	mu       sync.Mutex
	sessions map[uint32]*session // by the pid txlane gave the client
}

func newCancelKeys() *cancelKeys {
	return &cancelKeys{sessions: make(map[uint32]*session)}
}

// register assigns s a fresh random process ID and secret of secretLen bytes.
func (k *cancelKeys) register(s *session, secretLen int) (pid uint32, secret []byte) {
	secret = make([]byte, secretLen)
	rand.Read(secret)
	var b [4]byte
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		rand.Read(b[:])
		// NOTE: the top bit stays clear: some clients print the pid as a signed int.
		pid = binary.BigEndian.Uint32(b[:]) & 0x7fffffff
		if _, taken := k.sessions[pid]; !taken && pid != 0 {
			break
		}
	}
	k.sessions[pid] = s
	return pid, secret
}

func (k *cancelKeys) unregister(pid uint32) {
	k.mu.Lock()
	delete(k.sessions, pid)
	k.mu.Unlock()
}

// lookup returns the session that owns (pid, secret), or nil. The secret is
// compared in constant time.
func (k *cancelKeys) lookup(pid uint32, secret []byte) *session {
	k.mu.Lock()
	s := k.sessions[pid]
	k.mu.Unlock()
	if s == nil || subtle.ConstantTimeCompare(s.keySecret, secret) != 1 {
		return nil
	}
	return s
}
