package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/txlane/txlane/proxy/console"
	"github.com/txlane/txlane/router"

	"github.com/txlane/txlane/proxy/wire"
)

// AdminDatabase is the virtual database of the admin console: a client that
// logs in to it talks to txlane itself, not to PostgreSQL (package console).
const AdminDatabase = console.Database

// isAdminStartup reports whether a client asks for the admin console. As in
// PostgreSQL, a missing database defaults to the user name.
func isAdminStartup(m *pgproto3.StartupMessage) bool {
	db := m.Parameters["database"]
	if db == "" {
		db = m.Parameters["user"]
	}
	return db == AdminDatabase
}

// serveAdmin runs the admin console for a client past its startup message:
// it lets the client in (consoleLogin), then hands the connection to
// console.Serve with the proxy's inspection and control API.
func (s *Server) serveAdmin(hello *wire.Hello, id uint64, log *zap.Logger) {
	user := hello.Startup.Parameters["user"]
	log = log.With(zap.String("user", user), zap.String("database", AdminDatabase))
	w := bufio.NewWriterSize(hello.Conn, wire.WriteBufSize)
	// The console is txlane itself: it grants what txlane speaks (its
	// BackendKeyData is 4 bytes, valid from 3.0 to 3.2) and, as PostgreSQL,
	// negotiates before it decides on the login.
	if err := hello.Proto.Tell(w); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.live().ClientLoginTimeout)
	err := s.consoleLogin(ctx, hello, w, log)
	cancel()
	if err != nil {
		return
	}
	if !s.addAdmin(hello.Conn, adminClient{id: id, user: user, since: time.Now(),
		applicationName: hello.Startup.Parameters["application_name"]}) {
		wire.WriteError(w, shutdownError())
		w.Flush()
		return
	}
	defer s.removeAdmin(hello.Conn)
	hello.Conn.SetDeadline(time.Time{})
	log.Info("admin console: login")
	err = console.Serve(consoleAPI{s}, hello.BR, hello.Conn, console.Config{
		Log:             log,
		MaxMessageSize:  s.live().MaxMessageSize,
		ApplicationName: hello.Startup.Parameters["application_name"],
	})
	if err != nil && !isClosedConn(err) {
		log.Debug("admin console: connection ended", zap.Error(err))
	}
}

// addAdmin registers a console connection; false when txlane is stopping.
func (s *Server) addAdmin(c net.Conn, a adminClient) bool {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	if s.ops.gate.Load().stopping {
		return false
	}
	s.ops.mu.admins[c] = a
	return true
}

func (s *Server) removeAdmin(c net.Conn) {
	s.ops.mu.Lock()
	delete(s.ops.mu.admins, c)
	s.ops.mu.Unlock()
}

// closeAdmins closes every console connection. NOTE: the error is written
// without the console's own writer, which its goroutine may be using; a
// console is idle between commands nearly always, and is closed right after.
func (s *Server) closeAdmins(pe *wire.Error) {
	s.ops.mu.Lock()
	admins := make([]net.Conn, 0, len(s.ops.mu.admins))
	for c := range s.ops.mu.admins {
		admins = append(admins, c)
	}
	s.ops.mu.Unlock()
	for _, c := range admins {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		w := bufio.NewWriter(c)
		wire.WriteError(w, pe)
		w.Flush()
		c.Close()
	}
}

// consoleAPI is the Server as the admin console sees it: the inspection
// and control API of console.Proxy, in the console's own types.
type consoleAPI struct{ s *Server }

var _ console.Proxy = consoleAPI{}

func (a consoleAPI) Clients() []console.Client {
	list := append(a.s.ClientList(), a.s.AdminClientList()...)
	out := make([]console.Client, len(list))
	for i, c := range list {
		var wait time.Duration
		if !c.WaitSince.IsZero() {
			wait = time.Since(c.WaitSince)
		}
		out[i] = console.Client{ID: c.ID, Addr: c.Addr, User: c.User, Database: c.Database,
			ApplicationName: c.ApplicationName, State: c.State, WaitingFor: c.WaitingFor, Wait: wait,
			TxStatus: byte(c.TxStatus), Since: c.Since, Units: c.Units, Pinned: c.Pinned, ServerPID: c.ServerPID}
	}
	return out
}

func (a consoleAPI) Pools() []console.Pool {
	list := a.s.Pools()
	out := make([]console.Pool, len(list))
	for i, p := range list {
		out[i] = console.Pool{Database: p.Database, User: p.User, Lane: p.Lane, PoolMode: string(p.PoolMode),
			ClActive: p.ClActive, ClWaiting: p.ClWaiting, SvActive: p.SvActive, SvIdle: p.SvIdle, SvTested: p.SvTested,
			MaxWait: p.MaxWait, PoolSize: p.PoolSize}
	}
	return out
}

func (a consoleAPI) Servers() []console.Server {
	list := a.s.ServerList()
	out := make([]console.Server, len(list))
	for i, s := range list {
		out[i] = console.Server(s)
	}
	return out
}

func (a consoleAPI) Routes() []console.Route {
	list := a.s.metrics.Routes()
	out := make([]console.Route, len(list))
	for i, r := range list {
		out[i] = console.Route{Lane: r.Lane, Reason: r.Reason, Requests: r.Requests}
	}
	return out
}

func (a consoleAPI) Units(ctx context.Context) ([]console.Unit, error) {
	list, err := a.s.SharedUnits(ctx)
	out := make([]console.Unit, len(list))
	for i, u := range list {
		out[i] = console.Unit{Unit: u.Unit, Local: u.Local, ClientID: u.ClientID, Addr: u.ClientAddr, User: u.User,
			Database: u.Database, ApplicationName: u.ApplicationName, Since: u.Since, Failed: u.Failed,
			Instance: u.Instance, BackendPID: u.BackendPID, Key: u.Key}
	}
	return out, err
}

func (a consoleAPI) Policy() console.Policy {
	pi := a.s.Policy()
	settings := make([]console.Setting, len(pi.Settings))
	for i, st := range pi.Settings {
		settings[i] = console.Setting{Name: st.Name, Value: st.Value, Source: st.Source}
	}
	return console.Policy{Settings: settings, Rules: pi.Rules, Discovered: pi.Discovered}
}

func (a consoleAPI) Paused() bool { return a.s.Paused() }

func (a consoleAPI) Version() string { return "txlane " + a.s.opts.Version }

func (a consoleAPI) Reload() error {
	reload := a.s.live().OnReload
	if reload == nil {
		return console.ErrNoReload
	}
	return reload()
}

func (a consoleAPI) Pause(ctx context.Context) error {
	err := a.s.Pause(ctx)
	if errors.Is(err, errStopping) {
		return console.ErrStopping
	}
	return err
}

func (a consoleAPI) Resume() { a.s.Resume() }

func (a consoleAPI) QueryWaitTimeout() time.Duration { return a.s.live().QueryWaitTimeout }

func (a consoleAPI) Explain(sql string) router.Explanation {
	rt := a.s.explainRouting()
	return router.Explain(rt.classifier, sql, nil, rt.rules, nil)
}
