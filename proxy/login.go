package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/txlane/txlane/proxy/auth"
	"github.com/txlane/txlane/proxy/wire"
)

// AuthOptions say who authenticates clients (the configuration's auth_type,
// auth_file, auth_user, auth_query, auth_dbname; PgBouncer's names). Only
// File changes on Reload; the rest needs a restart.
type AuthOptions struct {
	// Type is auth_type. auth.MethodServer (the default, also for "")
	// relays every login to the server and txlane knows no secret. With
	// auth.MethodSCRAM or auth.MethodMD5 txlane checks the client's
	// password against the user's secret (File first, then Query) and logs
	// in to the server with what the client's login gave (auth.Credentials).
	// auth.MethodTrust checks nothing.
	Type auth.Method
	// File is the parsed auth_file; nil when none is configured.
	File *auth.File
	// User is auth_user: the user txlane runs Query as, for users that File
	// does not list. "" disables Query.
	User string
	// Query is auth_query (default auth.DefaultQuery).
	Query string
	// DBName is auth_dbname: the database Query runs in; "" is the
	// database the client asks for.
	DBName string
}

// authState is the server's authentication: AuthOptions made ready.
type authState struct {
	method auth.Method
	file   atomic.Pointer[auth.File] // replaced by Reload
	query  *auth.Query               // nil without auth_user
	// endpoint is the tls-server-end-point hash of the certificate txlane
	// presents to clients; nil (no SCRAM-SHA-256-PLUS offered) without TLS
	// or when the certificate is not one fixed certificate with a hash.
	endpoint []byte
	primary  *pgconn.Config
	// serverProto is the newest protocol version the primary is known to
	// speak (0: not known yet; see learnProtocol): a client that txlane
	// authenticates is told its version before a server connection exists
	// (see wire.Negotiation.Cap).
	serverProto atomic.Uint32
}

func newAuthState(opts *Options) *authState {
	a := &authState{method: opts.Auth.Type, primary: opts.Primary}
	if a.method == "" {
		a.method = auth.MethodServer
	}
	a.file.Store(opts.Auth.File)
	if t := opts.TLS; t != nil && len(t.Certificates) == 1 && t.GetCertificate == nil {
		if h, err := auth.EndpointHash(t.Certificates[0].Certificate); err == nil {
			a.endpoint = h
		} else {
			opts.Logger.Info("SCRAM-SHA-256-PLUS is not offered to clients", zap.Error(err))
		}
	}
	if a.method.Terminates() && opts.Auth.User != "" {
		sql := opts.Auth.Query
		if sql == "" {
			sql = auth.DefaultQuery
		}
		user := opts.Auth.User
		a.query = auth.NewQuery(auth.QueryConfig{Server: opts.Primary, SQL: sql, Database: opts.Auth.DBName,
			User: user, Credentials: func() *auth.Credentials { return a.authUser(user) }})
	}
	return a
}

// authUser returns what auth_user logs in with: its auth_file entry, or the
// primary DSN's password when the DSN names the same user.
func (a *authState) authUser(user string) *auth.Credentials {
	if s, ok := a.file.Load().Lookup(user); ok {
		return &auth.Credentials{User: user, Password: s.Password, MD5: s.MD5}
	}
	if a.primary.User == user {
		return &auth.Credentials{User: user, Password: a.primary.Password}
	}
	return &auth.Credentials{User: user}
}

// lookup returns user's secret: the auth file's entry, else the
// auth_query's answer in database. nil, nil: no usable secret.
func (a *authState) lookup(ctx context.Context, database, user string) (*auth.Secret, error) {
	if s, ok := a.file.Load().Lookup(user); ok {
		return s, nil
	}
	if a.query == nil {
		return nil, nil
	}
	return a.query.Lookup(ctx, database, user)
}

func (a *authState) close() {
	if a.query != nil {
		a.query.Close()
	}
}

// backendDialer opens backends to the primary for one (database, user)
// without a client: each is a new server login with creds (auth.Login).
// Every session has one; a pool can open further backends for the
// session's (database, user) with it.
//
// After a login txlane checked itself, creds hold what the client's login
// gave (SCRAM keys, an md5 hash, or the auth file's password): they work
// for as long as the server's secret for the user stays what txlane checked
// the client against. After a relayed login (auth_type server) creds hold
// nothing, and only a server that asks this user for no password lets the
// dialer in; any other request fails with an *auth.CredentialsError.
type backendDialer struct {
	a     *authState
	creds *auth.Credentials
}

// dial opens a backend and logs it in with startup. Its cancel target is
// complete; the LoginResult holds the server's parameters, key, status and
// protocol version.
func (d *backendDialer) dial(ctx context.Context, startup *pgproto3.StartupMessage) (*backend, *wire.LoginResult, error) {
	conn, target, err := wire.Dial(ctx, d.a.primary)
	if err != nil {
		return nil, nil, &dialError{err}
	}
	b := &backend{conn: conn, r: wire.NewReader[wire.Backend](conn, 0), w: bufio.NewWriterSize(conn, wire.WriteBufSize), target: target}
	res, err := auth.Login(ctx, conn, b.r, b.w, startup, d.creds)
	if err == nil && res.Key == nil {
		err = errors.New("the server sent no BackendKeyData")
	}
	if err != nil {
		conn.Close()
		return nil, res, err
	}
	b.target.PID, b.target.Secret = res.Key.ProcessID, res.Key.SecretKey
	d.a.learnProtocol(startup.ProtocolVersion, res.Protocol)
	return b, res, nil
}

// learnProtocol records what a login that asked for protocol version asked
// was granted: a server that granted less speaks exactly that much; one
// that granted all it was asked speaks at least that much.
func (a *authState) learnProtocol(asked, granted uint32) {
	for {
		cur := a.serverProto.Load()
		next := cur
		switch {
		case granted < asked:
			next = granted
		case cur != 0 && cur < granted:
			next = granted
		}
		if next == cur || a.serverProto.CompareAndSwap(cur, next) {
			return
		}
	}
}

// dialError is a server that could not be reached.
type dialError struct{ err error }

func (e *dialError) Error() string { return "cannot reach the primary: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// loginAuthenticated is session.login when txlane authenticates the client
// itself (auth_type scram-sha-256, md5 or trust): look up the user's secret,
// tell the client its protocol version, run the exchange with the client,
// open the client's backend with the credentials it gave (no password
// relayed) and end the client's login as PostgreSQL does: AuthenticationOk,
// the server's ParameterStatus values, txlane's own BackendKeyData,
// ReadyForQuery. It returns the client's backend and its login, for the
// session to keep; nil in transaction mode when the pool's login cache
// answered the login without a backend (loginFromCache). Refusals reach the
// client: 28P01 for any failed password (as PostgreSQL, for unknown users
// too), the server's own error when the server refuses the login, 28000
// when txlane's credentials cannot answer the server, 57P03 when the secret
// cannot be looked up or the server not reached.
func (s *session) loginAuthenticated(ctx context.Context, startup *pgproto3.StartupMessage) (*primaryConn, error) {
	a := s.srv.auth
	user, database := s.startup.Parameters["user"], s.startup.Parameters["database"]
	if database == "" {
		database = user // PostgreSQL's default
	}
	secret, err := a.lookup(ctx, database, user)
	if err != nil {
		s.log.Warn("cannot look up the client's secret", zap.Error(err))
		return nil, s.fail(&wire.Error{Severity: "FATAL", Code: CodeCannotConnectNow,
			Message: fmt.Sprintf("txlane cannot look up the password of user %q", user),
			Hint:    "Check auth_user, auth_query and the server named by txlane's primary DSN."})
	}
	s.proto.Cap(a.serverProto.Load())
	startup.ProtocolVersion = s.proto.ServerVersion()
	if err := s.proto.Tell(s.out.w); err != nil {
		return nil, err
	}
	_, onTLS := s.client.(*tls.Conn)
	creds, err := auth.Authenticate(auth.Client{R: s.cr, W: s.out.w, TLS: onTLS, EndpointHash: a.endpoint}, a.method, user, secret)
	if err != nil {
		var pe *wire.Error
		if errors.As(err, &pe) {
			s.log.Info("login refused", zap.String("reason", pe.Message), zap.String("detail", pe.Detail))
			return nil, s.fail(pe)
		}
		return nil, err
	}
	d := &backendDialer{a: a, creds: creds}
	s.dialer = d
	// The client's backend comes from its pool: one a client left there
	// (nothing forked), or a new login with the client's credentials.
	pool := s.srv.poolFor(s.startup.Parameters)
	dial := s.poolDial(d, startup)
	if s.txModeFor() {
		dial = pool.login.learning(dial, startup.ProtocolVersion)
	}
	pool.setDial(dial)
	if s.txModeFor() {
		// A login the pool's cache can answer takes no backend (logincache.go).
		if done, err := s.loginFromCache(pool, startup); done || err != nil {
			return nil, err
		}
	}
	wctx := ctx
	if s.txModeFor() {
		// In transaction mode a login waits for a backend as a request
		// does: up to query_wait_timeout (within the login's own deadline).
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, s.srv.live().QueryWaitTimeout)
		defer cancel()
	}
	p, err := s.backendFrom(wctx, pool)
	if err == nil && s.txModeFor() {
		// The pool's backends serve clients of other movable parameters.
		if err = s.takeOwnValues(p, startup.Parameters); err != nil {
			pool.put(p)
		}
	}
	if err != nil {
		// NOTE: the wait may have used up the login's deadline, which also
		// bounds writes to the client: the refusal gets a moment of its own.
		s.client.SetWriteDeadline(time.Now().Add(time.Second))
		var pe *wire.Error
		if errors.As(err, &pe) {
			return nil, s.fail(pe)
		}
		return nil, s.failBackendLogin(err, user)
	}
	s.pool = pool
	if s.txModeFor() {
		pool.login.learn(p, startup.Parameters, startup.ProtocolVersion)
	}
	s.keyPID, s.keySecret = s.srv.keys.register(s, len(p.target.Secret))
	if err := s.endLogin(p.params()); err != nil {
		pool.put(p)
		return nil, err
	}
	return p, nil
}

// failBackendLogin reports a failed backend login to the client: the
// server's own ErrorResponse when it refused (bad database, too many
// connections, a secret that changed since txlane checked the client),
// FATAL 28000 when txlane's credentials cannot answer the server, 57P03
// otherwise.
func (s *session) failBackendLogin(err error, user string) error {
	if sle := (*wire.ServerLoginError)(nil); errors.As(err, &sle) {
		s.log.Info("login refused by server", zap.Error(err))
		s.out.mu.Lock()
		wire.WriteRaw(s.out.w, wire.ErrorResponse, sle.Body) // as sent, every field kept
		s.out.w.Flush()
		s.out.mu.Unlock()
		return err
	}
	if e := s.backendLoginError(err, user); e != nil {
		return s.fail(e)
	}
	s.log.Info("login failed", zap.Error(err))
	return s.fail(wire.Fatalf(CodeCannotConnectNow, "login to the PostgreSQL server failed"))
}

// backendLoginError is the FATAL error a client gets for a failed login of
// a backend opened for it (nil for any other err): the server's own refusal
// (28000 a role that cannot log in, 3D000, 53300, …, a secret that changed
// since txlane checked the client), 28000 when txlane's credentials cannot
// answer the server, 57P03 when the server cannot be reached. In
// transaction mode a client that logged in from the login cache meets these
// at its first transaction, when its pool opens a backend.
func (s *session) backendLoginError(err error, user string) *wire.Error {
	if err == nil {
		return nil // before errors.As's targets, which escape: no allocation per attach
	}
	var sle *wire.ServerLoginError
	var ce *auth.CredentialsError
	var de *dialError
	switch {
	case errors.As(err, &sle):
		s.log.Info("login refused by server", zap.Error(err))
		e := &wire.Error{Severity: "FATAL", Code: sle.Code, Message: sle.Message}
		var er pgproto3.ErrorResponse
		if er.Decode(sle.Body) == nil {
			e.Detail, e.Hint = er.Detail, er.Hint
		}
		return e
	case errors.As(err, &ce):
		s.log.Warn("cannot log in to the server with the client's credentials", zap.Error(err))
		return &wire.Error{Severity: "FATAL", Code: CodeInvalidAuthorization,
			Message: fmt.Sprintf("txlane cannot log in to the PostgreSQL server as user %q", user), Detail: ce.Reason}
	case errors.As(err, &de):
		s.log.Warn("cannot reach the primary", zap.Error(err))
		return &wire.Error{Severity: "FATAL", Code: CodeCannotConnectNow,
			Message: "txlane cannot reach the PostgreSQL server", Hint: "Check that the server named by txlane's primary DSN is running."}
	}
	return nil
}

// consoleCheckPassword authenticates an admin console user as
// loginAuthenticated authenticates a client (the secret looked up for the
// console's database db), without a server login: the console is txlane's.
func (s *Server) consoleCheckPassword(ctx context.Context, hello *wire.Hello, w *bufio.Writer, db string, log *zap.Logger, refuse func(*wire.Error) error) error {
	user := hello.Startup.Parameters["user"]
	secret, err := s.auth.lookup(ctx, db, user)
	if err != nil {
		log.Warn("admin console: cannot look up the user's secret", zap.Error(err))
		return refuse(wire.Fatalf(CodeCannotConnectNow, "txlane cannot look up the password of user %q", user))
	}
	_, onTLS := hello.Conn.(*tls.Conn)
	client := auth.Client{R: wire.NewReader[wire.Frontend](hello.BR, s.live().MaxMessageSize), W: w, TLS: onTLS, EndpointHash: s.auth.endpoint}
	if _, err := auth.Authenticate(client, s.auth.method, user, secret); err != nil {
		var pe *wire.Error
		if errors.As(err, &pe) {
			return refuse(pe)
		}
		return err
	}
	return nil
}
