package proxy

import (
	"net"
	"sort"
	"time"
)

// The admin console's own connections, as SHOW CLIENTS and SHOW POOLS list
// them: PgBouncer lists its console's clients too, under its admin database
// (pgbouncer), always active, in a pool of mode statement (its admin pool).

// LaneConsole is the lane column of SHOW POOLS' rows of console clients:
// the admin console is txlane itself and holds no backend.
const LaneConsole = "console"

// consolePoolMode is the pool mode SHOW POOLS shows for console clients:
// PgBouncer's admin pool's. It is no pool_mode txlane accepts.
const consolePoolMode PoolMode = "statement"

// adminClient is what is known of one admin console connection.
type adminClient struct {
	id              uint64
	user            string
	applicationName string
	since           time.Time
}

// AdminClientList describes the admin console's connections, as SHOW
// CLIENTS lists them after the clients of ClientList: database
// AdminDatabase, state active (as PgBouncer shows its console's clients),
// transaction status I, no backend. Ordered by ID.
func (s *Server) AdminClientList() []ClientInfo {
	s.ops.mu.Lock()
	out := make([]ClientInfo, 0, len(s.ops.mu.admins))
	for c, a := range s.ops.mu.admins {
		out = append(out, a.info(c))
	}
	s.ops.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (a adminClient) info(c net.Conn) ClientInfo {
	return ClientInfo{ID: a.id, Addr: clientAddr(c), User: a.user, Database: AdminDatabase,
		ApplicationName: a.applicationName, State: ClientActive, TxStatus: TxIdle, Active: true, Since: a.since}
}

// consolePools describes the console's clients as SHOW POOLS rows, one per
// user: cl_active counts them; no backends, no waits; pool mode statement,
// as PgBouncer's admin pool.
func (s *Server) consolePools() []PoolInfo {
	by := map[string]*PoolInfo{}
	var out []PoolInfo
	for _, c := range s.AdminClientList() {
		p := by[c.User]
		if p == nil {
			p = &PoolInfo{Database: AdminDatabase, User: c.User, Lane: LaneConsole, PoolMode: consolePoolMode}
			by[c.User] = p
		}
		p.ClActive++
	}
	for _, p := range by {
		out = append(out, *p)
	}
	return out
}
