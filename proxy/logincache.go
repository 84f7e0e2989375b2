package proxy

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy/wire"
)

// loginCache is what a transaction-mode pool has learned from its logins, so
// that a later login txlane checks itself (auth_type scram-sha-256, md5,
// trust) is answered without a backend: AuthenticationOk, the cached
// ParameterStatus values, txlane's BackendKeyData, ReadyForQuery, as
// PgBouncer answers logins from the server parameters it cached. The
// client's movable values are then applied at its first attach, by the
// machinery that moves them anyway (moveState, movableSets).
//
// Only a pool some login has taken a backend for has a cache: the server has
// accepted that (database, user, non-movable startup parameters), the pool
// key. Only values a backend has applied are cached: a value the server
// refuses (TimeZone=Nowhere: FATAL 22023 "invalid value for parameter") is
// never in the cache, and a login sending it takes a backend and gets the
// server's refusal (takeOwnValues).
//
// Guarded by mu; serverPool.login of every pool.
type loginCache struct {
	mu sync.Mutex
	// server are the ParameterStatus values of the parameters that do not
	// move (server_version, is_superuser, default_transaction_read_only,
	// …), as a backend of the pool had them when the pool last opened one
	// (its login's) or a login last took one (with no client's session
	// state: backendFrom resets it). nil: no login has taken a backend yet,
	// or a backend has since reported a value that differs (see reported).
	server map[string]string
	// login are the movable parameters' values of the pool's own logins:
	// the values of a client that sends none of them (takeOwnValues).
	login map[string]string
	// applied maps a movable value a client sent to the value the server
	// reported once a backend had applied it (DateStyle 'iso' reads 'ISO,
	// MDY', TimeZone 'utc' 'UTC', an application_name longer than 63 bytes
	// is cut).
	applied map[appliedKey]string
	// proto and keyLen: the protocol version that login asked for, and the
	// length in bytes of its backend's cancel key. A cached login asking for
	// another version takes a backend.
	proto  uint32
	keyLen int
}

// appliedKey is a movable value a client sent: the parameter (its
// ParameterStatus name), the value it was applied over (the pool's login
// value: a partial DateStyle such as 'SQL' keeps that value's field order),
// and the value as sent.
type appliedKey struct{ name, base, value string }

// maxApplied bounds a pool's applied values (application_name may differ
// in every login): past it an arbitrary entry makes room.
const maxApplied = 1024

// learn records what a login of the pool found on its backend p, with
// p's session that of the pool's logins plus the client's movable values
// (after takeOwnValues): startup are the login's startup parameters, proto
// the protocol version it asked the server for.
func (c *loginCache) learn(p *primaryConn, startup map[string]string, proto uint32) {
	params := p.params()
	sent, ok := sentMovable(startup)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setServerLocked(params, p, proto)
	if !ok {
		return
	}
	if c.applied == nil {
		c.applied = make(map[appliedKey]string)
	}
	for m, v := range sent {
		got, ok := params[m]
		if !ok {
			continue
		}
		k := appliedKey{name: m, base: p.login[m], value: v}
		if _, known := c.applied[k]; !known && len(c.applied) >= maxApplied {
			for old := range c.applied {
				delete(c.applied, old)
				break
			}
		}
		c.applied[k] = got
	}
}

// learning returns dial, the pool's way of opening a backend, recording
// each new backend's login values as the server values of the pool's
// logins: the server has just accepted a login of the pool, and a new login
// sees what changed since the last (a server restart, ALTER ROLE … SET).
// proto is the protocol version dial asks for.
func (c *loginCache) learning(dial func(context.Context) (*primaryConn, error), proto uint32) func(context.Context) (*primaryConn, error) {
	return func(ctx context.Context) (*primaryConn, error) {
		p, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.setServerLocked(p.login, p, proto)
		c.mu.Unlock()
		return p, nil
	}
}

// setServerLocked records params, the ParameterStatus values of a backend
// p of the pool with the session of the pool's logins (its login's, or its
// current ones after backendFrom), as the pool's server values. c.mu must
// be held.
func (c *loginCache) setServerLocked(params map[string]string, p *primaryConn, proto uint32) {
	c.server = make(map[string]string, len(params))
	for name, v := range params {
		if _, mov := movableName(name); !mov {
			c.server[name] = v
		}
	}
	c.login = movableOf(p.login)
	c.proto, c.keyLen = proto, len(p.target.Secret)
}

// answer returns the ParameterStatus values of a login with startup
// parameters startup that asks for protocol version proto, the client's own
// movable values among them, and the length of the cancel key to give it;
// ok false when the cache cannot answer (no login took a backend yet, a
// value no backend has applied, another protocol version).
func (c *loginCache) answer(startup map[string]string, proto uint32) (params, own map[string]string, keyLen int, ok bool) {
	sent, ok := sentMovable(startup)
	if !ok {
		return nil, nil, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == nil || c.proto != proto {
		return nil, nil, 0, false
	}
	own = make(map[string]string, len(movableParams))
	for _, m := range movableParams {
		base, ok := c.login[m]
		if !ok {
			return nil, nil, 0, false
		}
		own[m] = base
		if v, sent := sent[m]; sent {
			if own[m], ok = c.applied[appliedKey{name: m, base: base, value: v}]; !ok {
				return nil, nil, 0, false
			}
		}
	}
	params = maps.Clone(c.server)
	maps.Copy(params, own)
	return params, own, c.keyLen, true
}

// reported notes a ParameterStatus a backend of the pool sent after its
// login, for a parameter its client did not set (serverReported). A
// non-movable value other than the cached one drops the cached server
// values, and the next login takes a backend and caches that backend's: an
// ALTER SYSTEM and reload (PostgreSQL reports the new value at the end of
// each backend's next statement) or a promotion (in_hot_standby) changed
// it. A client that logged in from the stale values is told the value of
// the backend it runs on at its first attach (firstAttach, through
// clientWriter.newParam: only what differs from what it was told), or when
// that backend reports it during its request. session_authorization and
// is_superuser change only with a client's SET ROLE or SET SESSION
// AUTHORIZATION after login (an ALTER ROLE shows in new logins only):
// theirs do not count.
func (c *loginCache) reported(name, value string) {
	if _, mov := movableName(name); mov || name == "session_authorization" || name == "is_superuser" {
		return
	}
	c.mu.Lock()
	if v, ok := c.server[name]; c.server != nil && (!ok || v != value) {
		c.server = nil
	}
	c.mu.Unlock()
}

// sentMovable returns the movable parameters among startup parameters
// params, by ParameterStatus name; ok false when one is sent twice (in two
// letter cases: PostgreSQL applies both, in the packet's order, which a map
// has lost).
func sentMovable(params map[string]string) (sent map[string]string, ok bool) {
	sent = map[string]string{}
	for k, v := range params {
		m, mov := movableName(k)
		if !mov {
			continue
		}
		if _, dup := sent[m]; dup {
			return nil, false
		}
		sent[m] = v
	}
	return sent, true
}

// serverReported passes a ParameterStatus that p reported (relay, forward)
// to its pool's login cache, unless p's client may have set that parameter
// itself (mayHaveSet): its own value, reported for its SET or for txlane
// setting its settings on p (moveState), says nothing of the server's.
func (p *primaryConn) serverReported(ps *pgproto3.ParameterStatus) {
	pl := p.pooled.pool
	if pl == nil {
		return
	}
	if s, ok := p.owner().(*session); ok && s.mayHaveSet(ps.Name) {
		return
	}
	pl.login.reported(ps.Name, ps.Value)
}

// mayHaveSet reports whether the client may have given its session a value
// of setting name: it SET it, its settings as last read back hold it, or it
// has session state txlane does not follow (SET LOCAL, a function).
// Safe from any goroutine.
func (s *session) mayHaveSet(name string) bool {
	if s.ownState.Load() {
		return true
	}
	if vals := s.setValues.Load(); vals != nil {
		for k := range *vals {
			if strings.EqualFold(k, name) {
				return true
			}
		}
	}
	if ss := s.settings.Load(); ss != nil {
		for k := range ss.values {
			if strings.EqualFold(k, name) {
				return true
			}
		}
	}
	return false
}

// loginFromCache ends the login of a transaction-mode client that txlane
// has authenticated without a backend, when pool's cache can answer it
// (loginCache): AuthenticationOk, the ParameterStatus values (the cached
// server values and the client's own movable values), txlane's
// BackendKeyData and ReadyForQuery. It reports false, having written
// nothing, when the cache cannot: the login then takes a backend.
func (s *session) loginFromCache(pool *serverPool, startup *pgproto3.StartupMessage) (bool, error) {
	params, own, keyLen, ok := pool.login.answer(startup.Parameters, startup.ProtocolVersion)
	if !ok {
		s.srv.metrics.poolLogin(loginFromBackend)
		return false, nil
	}
	s.srv.metrics.poolLogin(loginFromCache)
	s.pool, s.own = pool, own
	s.cachedLogin.Store(true)
	s.keyPID, s.keySecret = s.srv.keys.register(s, keyLen)
	return true, s.endLogin(params)
}

// endLogin writes what ends a login txlane checked: AuthenticationOk, the
// ParameterStatus values params (by name), which the client is then known
// to have been told, txlane's BackendKeyData and ReadyForQuery (idle).
func (s *session) endLogin(params map[string]string) error {
	w := s.out.w
	wire.WriteMsg(w, &pgproto3.AuthenticationOk{})
	for _, name := range slices.Sorted(maps.Keys(params)) {
		wire.WriteMsg(w, &pgproto3.ParameterStatus{Name: name, Value: params[name]})
	}
	s.out.reported = params
	wire.WriteMsg(w, &pgproto3.BackendKeyData{ProcessID: s.keyPID, SecretKey: s.keySecret})
	wire.WriteMsg(w, &pgproto3.ReadyForQuery{TxStatus: byte(TxIdle)})
	return w.Flush()
}

// firstAttach tells a client that logged in from the cache, at its first
// attach (p has its settings already), the server values of p that differ
// from those it was told, as it would have been told had it logged in on
// p: the cache may have been stale (a reload or restart since), or p may
// not have reported a change yet. Movable values are the client's own,
// set on p by moveState. One call takes the flag (cachedLogin).
func (s *session) firstAttach(p *primaryConn) {
	if !s.cachedLogin.Load() || !s.cachedLogin.CompareAndSwap(true, false) {
		return
	}
	params := p.params()
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	told := false
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if _, mov := movableName(name); mov {
			continue
		}
		ps := &pgproto3.ParameterStatus{Name: name, Value: params[name]}
		if s.out.newParam(ps) {
			wire.WriteMsg(s.out.w, ps)
			told = true
		}
	}
	if told {
		s.out.w.Flush()
	}
}

// Where a pool_mode transaction login txlane checked got its ParameterStatus
// values (txlane_pool_logins_total{from}).
const (
	loginFromCache   = "cache"
	loginFromBackend = "backend"
)
