package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/txlane/txlane/proxy/wire"
)

// InstanceOptions configure txlane as one of several instances serving one
// database (README: "Running several instances"). The zero value is a
// standalone instance.
//
// What instances share is what PostgreSQL holds: with SharedUnits, which
// transaction holds which unit of work, as advisory locks (shared_units.go).
// Cancels find their instance through the BackendKeyData: each instance's
// process IDs carry its ID (cancel.go), and a CancelRequest that reaches
// another instance is forwarded once to the right one.
type InstanceOptions struct {
	// ID is this instance's instance_id, 1 to MaxInstanceID, unique among
	// the instances (PgBouncer's peer_id); 0 is a standalone instance,
	// whose keys carry no ID and which forwards no cancel.
	ID int
	// Peers are the other instances, by ID and client address. A
	// CancelRequest whose key carries a peer's ID is forwarded to it.
	Peers []Peer
	// SharedUnits (policy.shared_units) makes units of work shared by every
	// instance through PostgreSQL advisory locks (shared_units.go).
	SharedUnits bool
}

// Peer is another txlane instance: its instance_id and an address that
// reaches it alone: the host:port its clients connect to, or the path of
// its Unix-domain socket (instances sharing one port with SO_REUSEPORT are
// told apart by their sockets, as PgBouncer's peers are).
type Peer struct {
	ID   int
	Addr string
}

// check reports what makes o unusable.
func (o *InstanceOptions) check() error {
	if o.ID < 0 || o.ID > MaxInstanceID {
		return fmt.Errorf("instance ID %d out of range 0..%d", o.ID, MaxInstanceID)
	}
	if len(o.Peers) > 0 && o.ID == 0 {
		return fmt.Errorf("peers need an instance ID of this instance's own")
	}
	seen := map[int]bool{o.ID: true}
	for _, p := range o.Peers {
		switch {
		case p.ID < 1 || p.ID > MaxInstanceID:
			return fmt.Errorf("peer ID %d out of range 1..%d", p.ID, MaxInstanceID)
		case seen[p.ID]:
			return fmt.Errorf("instance ID %d is listed twice (peers and this instance's own)", p.ID)
		}
		seen[p.ID] = true
		if strings.HasPrefix(p.Addr, "/") {
			continue
		}
		if _, _, err := net.SplitHostPort(p.Addr); err != nil {
			return fmt.Errorf("peer %d: address %q: %v", p.ID, p.Addr, err)
		}
	}
	return nil
}

// peer returns the address of the instance with ID id ("" for none).
func (o *InstanceOptions) peer(id int) string {
	for _, p := range o.Peers {
		if p.ID == id {
			return p.Addr
		}
	}
	return ""
}

// cancelTimeout bounds the handling of one CancelRequest (forwarding it to
// a backend or to another instance).
const cancelTimeout = 5 * time.Second

// cancel handles a CancelRequest for the key (pid, secret). A key of this
// instance goes to the backend running that client's request (forwardCancel);
// one that carries a peer's ID goes to that peer, once: a request another
// instance forwarded here (forwarded) is never forwarded again, so that a
// wrong peer list cannot make two instances pass one cancel back and forth.
// Anything else is dropped, as PostgreSQL ignores a key it does not know.
func (s *Server) cancel(log *zap.Logger, pid uint32, secret []byte, forwarded bool) {
	own := s.opts.Instances.ID
	inst := instanceOfKey(pid)
	if own == 0 || inst == own {
		s.forwardCancel(log, pid, secret)
		return
	}
	addr := s.opts.Instances.peer(inst)
	switch {
	case forwarded:
		log.Info("forwarded cancel request for another instance dropped", zap.Int("instance", inst))
		s.metrics.cancel("dropped")
		return
	case addr == "":
		log.Info("cancel request for an unknown instance ignored", zap.Int("instance", inst))
		s.metrics.cancel("dropped")
		return
	}
	ctx, stop := context.WithTimeout(context.Background(), cancelTimeout)
	defer stop()
	if err := wire.ForwardCancel(ctx, addr, pid, secret); err != nil {
		log.Warn("forwarding cancel request to another instance failed", zap.Int("instance", inst), zap.String("peer", addr), zap.Error(err))
		s.metrics.cancel("dropped")
		return
	}
	s.metrics.cancel("peer")
}
