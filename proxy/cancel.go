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
//
// With an instance ID (Options.Instances.ID, 1 to MaxInstanceID) the
// process ID carries it in bits 21 to 30, the rest random, so that any
// instance can tell which instance issued a key (see instanceOfKey).
type cancelKeys struct {
	mu       sync.Mutex
	sessions map[uint32]*session // by the pid txlane gave the client
	instance uint32              // the instance ID in the pids' high bits (0: none)
}

func newCancelKeys(instance int) *cancelKeys {
	return &cancelKeys{sessions: make(map[uint32]*session), instance: uint32(instance)}
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
		if k.instance != 0 {
			pid = k.instance<<instanceShift | pid&(1<<instanceShift-1)
		}
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

// Where the instance ID sits in a process ID txlane hands out: bits 21 to
// 30 (bit 31 stays clear), leaving 2^21 process IDs per instance.
const (
	instanceShift = 21
	// MaxInstanceID is the largest instance_id (PgBouncer's peer_id goes
	// to 16383; txlane's fits in the 10 bits above instanceShift).
	MaxInstanceID = 1<<(31-instanceShift) - 1
)

// instanceOfKey is the instance ID a process ID txlane handed out carries
// (0 for a standalone instance's keys: they carry none).
func instanceOfKey(pid uint32) int { return int(pid >> instanceShift) }
