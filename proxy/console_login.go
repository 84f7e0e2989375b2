package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/txlane/txlane/proxy/wire"
)

// consoleAuthDatabase is the database a console user's login is checked
// against when the primary DSN names none.
const consoleAuthDatabase = "postgres"

// consoleLogin decides whether the client in hello may use the admin
// console. It answers a refusal to the client itself (through w) and
// returns it; nil means the client may be served, and has not been sent
// AuthenticationOk yet.
//
// With admin.users set, a user not listed is refused with FATAL 28000
// before PostgreSQL is involved. A listed user's login is relayed to the
// primary server as a client's login is (relayAuth): the server asks for
// whatever pg_hba.conf says, the client answers it message by message, and
// txlane never learns the password. The user is let in only once the server
// has accepted the login (ReadyForQuery); a refusal is the server's own
// error (28P01 for a wrong password, 28000 for an unknown role, ...). The
// server connection is closed right after.
//
// With admin.users empty, only a client on this host whose TCP socket
// belongs to the operating-system user running txlane is let in (Linux,
// /proc/net/tcp); anyone else gets FATAL 28000.
func (s *Server) consoleLogin(ctx context.Context, hello *wire.Hello, w *bufio.Writer, log *zap.Logger) error {
	user := hello.Startup.Parameters["user"]
	refuse := func(pe *wire.Error) error {
		log.Warn("admin console: login refused", zap.String("reason", pe.Message), zap.String("detail", pe.Detail))
		wire.WriteError(w, pe)
		w.Flush()
		return pe
	}
	users := s.live().AdminUsers
	if len(users) == 0 {
		if pe := checkConsolePeer(hello); pe != nil {
			return refuse(pe)
		}
		return nil
	}
	if !slices.Contains(users, user) {
		return refuse(&wire.Error{Severity: "FATAL", Code: CodeInvalidAuthorization,
			Message: fmt.Sprintf("user %q may not use the txlane admin console", user),
			Hint:    "List the user in admin.users in txlane's configuration."})
	}
	return s.consoleAuthenticate(ctx, hello, w, log, refuse)
}

// checkConsolePeer admits a client whose socket belongs to the OS user
// running txlane, and refuses anyone else with FATAL 28000.
func checkConsolePeer(hello *wire.Hello) *wire.Error {
	refuse := func(detail string) *wire.Error {
		return &wire.Error{Severity: "FATAL", Code: CodeInvalidAuthorization,
			Message: "the txlane admin console accepts only local connections from the operating-system user running txlane",
			Detail:  detail,
			Hint:    "Connect from the same host as the same OS user, or list admin users in admin.users."}
	}
	uid, err := peerUID(hello.Conn)
	if err != nil {
		return refuse(err.Error())
	}
	if uid != os.Getuid() {
		return refuse(fmt.Sprintf("The client's socket belongs to uid %d; txlane runs as uid %d.", uid, os.Getuid()))
	}
	return nil
}

// consoleAuthenticate has the primary server authenticate the console user
// in hello (see consoleLogin), or, with an auth_type other than server,
// checks the user's password itself as it checks clients'. The login names the primary DSN's database
// (consoleAuthDatabase when it names none), so the server's rules for that
// database apply: pg_hba.conf, CONNECT privilege, LOGIN.
func (s *Server) consoleAuthenticate(ctx context.Context, hello *wire.Hello, w *bufio.Writer, log *zap.Logger, refuse func(*wire.Error) error) error {
	primary := s.opts.Primary
	db := primary.Database
	if db == "" {
		db = consoleAuthDatabase
	}
	if s.auth.method.Terminates() {
		return s.consoleCheckPassword(ctx, hello, w, db, log, refuse) // login.go
	}
	startup := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{
		"user":             hello.Startup.Parameters["user"],
		"database":         db,
		"application_name": "txlane admin console login",
	}}
	conn, _, err := wire.Dial(ctx, primary)
	if err != nil {
		log.Warn("admin console: cannot reach the primary to authenticate", zap.Error(err))
		return refuse(&wire.Error{Severity: "FATAL", Code: CodeCannotConnectNow,
			Message: "txlane cannot reach the PostgreSQL server to authenticate the admin console user",
			Hint:    "Check that the server named by txlane's primary DSN is running."})
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	sw := bufio.NewWriterSize(conn, wire.WriteBufSize)
	res, err := wire.RelayAuth(wire.NewReader[wire.Backend](conn, 0), sw, startup, wire.NewReader[wire.Frontend](hello.BR, s.live().MaxMessageSize), w)
	if err != nil {
		var sle *wire.ServerLoginError
		var pe *wire.Error
		switch {
		case errors.As(err, &sle):
			log.Warn("admin console: login refused by the server", zap.Error(err))
			return err
		case errors.As(err, &pe):
			return refuse(pe)
		case !res.Forwarded:
			log.Info("admin console: login failed", zap.Error(err))
			return refuse(wire.Fatalf(CodeCannotConnectNow, "login to the PostgreSQL server failed"))
		}
		log.Info("admin console: login failed", zap.Error(err))
		return err
	}
	// The server let the user in; the console needs nothing more from it.
	wire.WriteMsg(sw, &pgproto3.Terminate{})
	sw.Flush()
	return nil
}
