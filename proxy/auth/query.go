package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/puddle/v2"

	"github.com/txlane/txlane/proxy/wire"
)

// DefaultQuery is PgBouncer's default auth_query: the user's secret from
// pg_authid, none once it is past VALID UNTIL, no row for a role that may
// not log in. Reading pg_authid takes a superuser; see the README for a
// SECURITY DEFINER function that an unprivileged auth_user may call instead.
// Every name is schema-qualified (operators too: OPERATOR(pg_catalog.=)),
// so that a search_path set for auth_user or its database cannot put other
// code in its place.
const DefaultQuery = "SELECT rolname, CASE WHEN rolvaliduntil OPERATOR(pg_catalog.<) pg_catalog.now() THEN NULL ELSE rolpassword END FROM pg_catalog.pg_authid WHERE rolname OPERATOR(pg_catalog.=) $1 AND rolcanlogin"

const (
	// queryPoolSize is the most auth_query connections open per database.
	queryPoolSize = 4
	// queryIdle is how long an auth_query connection stays open unused.
	queryIdle = time.Minute
)

// QueryConfig configures a Query.
type QueryConfig struct {
	// Server is the server to run the query on and how to reach it
	// (host, port, TLS: the primary DSN); its user and database are not used.
	Server *pgconn.Config
	// User is the auth user.
	User string
	// Credentials return what User logs in with (Login), at each new
	// connection: a password or an md5 hash, or none where the server
	// trusts the user.
	Credentials func() *Credentials
	// SQL is the query, with $1 for the user name. It returns at most one
	// row of two columns: the user name and the secret. No row, or a NULL
	// user name, means no such user; a NULL secret a user without a
	// password.
	SQL string
	// Database is the database the query runs in; "" means the database the
	// client asks for (the query, or the function it calls, must then exist
	// in every database).
	Database string
}

// Query looks up users' secrets with an auth_query, over connections that
// txlane opens as the auth user (at most queryPoolSize per database, closed
// after queryIdle unused). It is safe for concurrent use.
type Query struct {
	cfg  QueryConfig
	stop chan struct{}
	wg   sync.WaitGroup
	mu   struct {
		sync.Mutex
		pools  map[string]*puddle.Pool[*pgconn.PgConn]
		closed bool
	}
}

// NewQuery returns a Query for cfg; it connects on first use.
func NewQuery(cfg QueryConfig) *Query {
	q := &Query{cfg: cfg, stop: make(chan struct{})}
	q.mu.pools = map[string]*puddle.Pool[*pgconn.PgConn]{}
	q.wg.Add(1)
	go q.reap()
	return q
}

// Lookup returns the secret of user, running the query in database (or in
// QueryConfig.Database when set). nil and no error: the user does not exist,
// may not log in or has no password.
func (q *Query) Lookup(ctx context.Context, database, user string) (*Secret, error) {
	if q.cfg.Database != "" {
		database = q.cfg.Database
	}
	pool, err := q.pool(database)
	if err != nil {
		return nil, err
	}
	res, err := pool.Acquire(ctx)
	if err != nil {
		q.forget(database, pool)
		return nil, fmt.Errorf("auth_query as %q in database %q: %w", q.cfg.User, database, err)
	}
	r := res.Value().ExecParams(ctx, q.cfg.SQL, [][]byte{[]byte(user)}, nil, nil, nil).Read()
	if r.Err != nil {
		res.Destroy()
		return nil, fmt.Errorf("auth_query as %q in database %q: %w", q.cfg.User, database, r.Err)
	}
	res.Release()
	if len(r.Rows) == 0 {
		return nil, nil
	}
	if len(r.Rows) > 1 || len(r.Rows[0]) != 2 {
		return nil, fmt.Errorf("auth_query returned %d rows of %d columns; want at most one row of two: user name, secret", len(r.Rows), len(r.Rows[0]))
	}
	if r.Rows[0][0] == nil || r.Rows[0][1] == nil {
		return nil, nil
	}
	return ParseSecret(user, string(r.Rows[0][1]))
}

func (q *Query) pool(database string) (*puddle.Pool[*pgconn.PgConn], error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.mu.closed {
		return nil, errors.New("auth_query: closed")
	}
	if p := q.mu.pools[database]; p != nil {
		return p, nil
	}
	p, err := puddle.NewPool(&puddle.Config[*pgconn.PgConn]{
		Constructor: func(ctx context.Context) (*pgconn.PgConn, error) { return q.dial(ctx, database) },
		Destructor: func(c *pgconn.PgConn) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c.Close(ctx)
		},
		MaxSize: queryPoolSize,
	})
	if err != nil {
		return nil, err
	}
	q.mu.pools[database] = p
	return p, nil
}

// forget drops database's pool when it holds no connection (its login
// failed): a client naming databases that do not exist must not make the
// map grow.
func (q *Query) forget(database string, pool *puddle.Pool[*pgconn.PgConn]) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.mu.pools[database] == pool && pool.Stat().TotalResources() == 0 {
		delete(q.mu.pools, database)
		pool.Close()
	}
}

// dial opens a connection to database as the auth user, logging in with
// Login (so that SCRAM-SHA-256-PLUS, a password from the auth file or an
// md5 hash all work as for a client's backend), then hands it to pgconn.
func (q *Query) dial(ctx context.Context, database string) (*pgconn.PgConn, error) {
	conn, _, err := wire.Dial(ctx, q.cfg.Server)
	if err != nil {
		return nil, err
	}
	startup := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{
		"user": q.cfg.User, "database": database, "application_name": "txlane auth_query",
	}}
	r := wire.NewReader[wire.Backend](conn, 0)
	res, err := Login(ctx, conn, r, bufio.NewWriter(conn), startup, q.cfg.Credentials())
	if err == nil && (r.Buffered() || res.Key == nil) {
		err = errors.New("unexpected messages after the server's ReadyForQuery, or no BackendKeyData")
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	cfg := q.cfg.Server.Copy()
	cfg.User, cfg.Database = q.cfg.User, database
	return pgconn.Construct(&pgconn.HijackedConn{Conn: conn, PID: res.Key.ProcessID, SecretKey: res.Key.SecretKey,
		ParameterStatuses: res.Params, TxStatus: res.TxStatus, Frontend: pgproto3.NewFrontend(conn, conn), Config: cfg})
}

// reap closes connections unused for queryIdle.
func (q *Query) reap() {
	defer q.wg.Done()
	t := time.NewTicker(queryIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
		}
		q.mu.Lock()
		pools := make([]*puddle.Pool[*pgconn.PgConn], 0, len(q.mu.pools))
		for _, p := range q.mu.pools {
			pools = append(pools, p)
		}
		q.mu.Unlock()
		for _, p := range pools {
			for _, res := range p.AcquireAllIdle() {
				if res.IdleDuration() >= queryIdle {
					res.Destroy()
				} else {
					res.ReleaseUnused()
				}
			}
		}
	}
}

// Close closes every connection and stops the reaper.
func (q *Query) Close() {
	q.mu.Lock()
	if q.mu.closed {
		q.mu.Unlock()
		return
	}
	q.mu.closed = true
	pools := q.mu.pools
	q.mu.Unlock()
	close(q.stop)
	q.wg.Wait()
	for _, p := range pools {
		p.Close()
	}
}
