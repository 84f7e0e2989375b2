package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/txlane/txlane/policy"

	"github.com/txlane/txlane/proxy/wire"
)

// TxStatus is a client's transaction status as the last ReadyForQuery it
// received reported it: 'I' idle, 'T' in a transaction block, 'E' in a failed
// transaction block.
type TxStatus byte

// Transaction status values, as ReadyForQuery carries them.
const (
	TxIdle   = TxStatus(wire.TxIdle)
	TxActive = TxStatus(wire.TxActive)
	TxFailed = TxStatus(wire.TxFailed)
)

// session is one client connection and the backends that serve it.
//
// Goroutines: serve's goroutine reads the client, builds requests and
// sends them to a lane (clientLoop); it also reads the vector lane's answers,
// since it waits for them before the next request. The primary connection's
// relay (primaryConn.relay) reads the primary and writes the client. Writes
// to the client go through out, whose lock is held for whole messages only,
// so asynchronous primary messages (notifications) never split a vector-lane
// message.
//
// A session reaches another session's primary connection only through
// primaryConn.runWhenIdle (a rerouted write), and another session's client
// only as the destination that call is given.
//
// Lock order: out.mu before mu; cancelMu before mu. None is held across a
// read; cancelMu is held across a cancel request's round trip only.
type session struct {
	id     uint64 // txlane's number for the client, as in logs and SHOW CLIENTS
	srv    *Server
	log    *zap.Logger
	client net.Conn
	cr     *wire.Reader[wire.Frontend]
	out    clientWriter

	startup *pgproto3.StartupMessage
	// envKeys: stampEnv's last key (parseenv.go).
	envKeys envKeyMemo
	// db is the database the client logged in to (startup's "database",
	// else its "user", as PostgreSQL defaults it), set once at creation.
	db    string
	proto *wire.Negotiation // the protocol version and options of the login (protocol.go)
	// pc is the client's backend on the primary lane: set at login; in
	// transaction mode nil while the client holds none (see attach, idle).
	pc atomic.Pointer[primaryConn]
	// lane is the vector-lane connection running a read of the client's,
	// nil between reads (for Close to cut a read that does not end:
	// abortServer).
	lane atomic.Pointer[laneConn]
	// pool is where the client's backends come from and go back to
	// (transaction mode; session mode after a login txlane checked);
	// txMode: pool_mode transaction.
	pool   *serverPool
	txMode bool
	// dirtyGen counts statements sent that may have left state a pool must
	// not move (see mayPin); cleanGen is the count when the server last
	// said what pins the session, and pin what it said ("" = nothing).
	dirtyGen, cleanGen atomic.Uint64
	pin                atomic.Pointer[string]
	// loaded: the client ran LOAD; the library stays in its backend.
	// seeded: the client seeded its backend's random sequence (unlisted.go).
	// dblink: the client may have opened a dblink connection (dblink.go).
	loaded, seeded, dblink atomic.Bool
	// named: the settings the client named in SET or set_config (unlisted.go).
	named settingNames
	// settings are the client's session settings as the server last
	// reported them (transaction mode; nil: those of its login).
	settings atomic.Pointer[sessionSettings]
	// env: what txlane knows of the client's parse environment (parseenv.go).
	env envState
	// customList is customs, sorted, for the relay goroutine; hidden tracks
	// statements that may have set custom settings by names not in it.
	customList atomic.Pointer[[]string]
	hidden     hiddenCustoms
	// own are the client's login values of the movable parameters
	// (transaction mode; nil otherwise); resets counts its statements that
	// reset one, and its backend has its values again after the first
	// resetsFixed of them (movable.go).
	own                 map[string]string
	resets, resetsFixed atomic.Uint64
	// cachedLogin: the login was answered from the pool's login cache, and
	// the client has not attached a backend since (firstAttach).
	cachedLogin atomic.Bool
	// dialer opens more backends for the client's (database, user) (login.go).
	dialer *backendDialer

	keyPID    uint32 // BackendKeyData txlane gave the client
	keySecret []byte

	// dbRouting is the routing state of the client's database (see
	// routing).
	dbRouting atomic.Pointer[dbRouting]
	// pinRetries counts pin checks cancelled in a row (see idle); only the
	// relay of the client's backend touches it, between its pin checks.
	pinRetries int
	// ownState: the client may have session state of its own (see
	// noteOwnState, rerouteBar).
	ownState atomic.Bool
	// txEnds counts the transaction ends (COMMIT, ROLLBACK, PREPARE
	// TRANSACTION) the client has sent (see unitHold.txEnds).
	txEnds atomic.Uint64
	// savepointAt is txEnds+1 as it was when the client last sent a
	// SAVEPOINT: equal to txEnds+1 while the transaction that made it is
	// open (see rerouteBar).
	savepointAt atomic.Uint64
	// localAt is txEnds+1 as it was when the client last sent something
	// that changes transaction-local state (reroute_local.go).
	localAt atomic.Uint64
	// setValues are the session-level settings the client has SET (name to
	// value as written; never nil after serve starts), which a rerouted
	// request must find the same on the holder's session (rerouteBar).
	setValues atomic.Pointer[map[string]string]
	// idleCalls counts calls of idle (see there).
	idleCalls atomic.Uint64

	stopping atomic.Bool // set when serve tears the session down: relay stays quiet

	// ops is the server's registry entry (ops.go); set before serve.
	ops *clientEntry

	// Owned by the client goroutine.
	cur batch
	// scratch is reused to assemble what sendPrimary writes.
	scratch []byte
	// open is the primary request of a request partly sent (up to a Flush)
	// whose Sync has not come yet: the rest of the request joins it.
	open *request
	// reg is the client's prepared statements and what its primary holds
	// (guarded by its own lock: relay applies confirmed replies to it).
	reg *registry
	// snapshot is the client's session state as last read from the primary;
	// snap.dirty (atomic: relay sets it on ParameterStatus too) says a
	// statement may have changed it since: it is read again before the next
	// offload (snapstate.go).
	snapshot   sessionSnapshot
	snap       snapState
	searchPath []string
	// customs are the custom (dotted) settings the client has set, which the
	// vector lane must mirror too.
	customs map[string]bool
	// plans resolves the client's messages into the current request's plan.
	plans *planner
	// skipToSync: the current request was refused before its Sync (at the
	// PAUSE gate); its remaining messages are dropped and its Sync answered
	// with ReadyForQuery.
	skipToSync bool
	// unitVals are the values txlane.unit may have in the session now (SET
	// [LOCAL] txlane.unit, set_config, options=-c): every value a request may
	// have set is kept until the server says otherwise. unitStale says a
	// statement may have changed or removed one (RESET, DISCARD, set_config,
	// a transaction that ended after a SET, and at login, when role and
	// database settings are unknown): the next check that needs them reads
	// the server's value first (see sessionUnits).
	unitVals  []string
	unitStale bool
	// unitLogin: the session has not changed txlane.unit since its login
	// (no SET, RESET or statement that may set it unseen): its backend's
	// login value is its value (backend.loginUnit).
	unitLogin bool
	// unitUnknown: unitVals may lack the unit (set unseen, not read back
	// yet); unitOpaque, unitGen, unitSeen, unitRead: the read of it behind
	// a request (units_stale.go).
	unitUnknown, unitOpaque bool
	unitGen                 uint64
	unitSeen                unitSeen
	unitRead                chan struct{}

	// Shared between goroutines; each says how.

	// cancelMu is held while a cancel request of the client is forwarded.
	cancelMu sync.Mutex
	// wait is the client's wait for a pooled backend, which its cancel
	// requests end (txwait.go).
	wait poolWait
	// unitPending: the registry counts the session as holding an unknown
	// unit (units_stale.go).
	unitPending atomic.Bool
	// unitsHeld counts the units this session holds in the registry;
	// unitWriting: it has writes in flight there (units_inflight.go).
	unitsHeld   atomic.Int32
	unitWriting atomic.Bool
	// shared are its backend's advisory locks on units (policy
	// shared_units; shared_units.go).
	shared sharedLocks

	mu struct {
		sync.Mutex
		// running is the backend executing the client's current request: the
		// target of the client's cancel requests.
		running *wire.CancelTarget
		// guest is the client's request rerouted onto another backend,
		// while running is that backend's (cancel_gate.go).
		guest *guestRun
		// tx is what routing knows of the client's transaction, updated as
		// primary requests complete (see requestDone).
		tx policy.TxState
	}
}

// clientWriter serialises writes to the client socket by whole messages.
type clientWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
	// reported holds the ParameterStatus values the client has been told,
	// from its login on (nil until then). A server report of a value the
	// client already has is not passed on: in transaction mode a backend
	// reports a setting taking back the client's value after another
	// client's (txlane's own set_config or RESET on attach), which is no
	// change for this client. PostgreSQL itself reports only a value that
	// differs from the last one it reported (protocol "Asynchronous
	// Operations"), so a client of a session-mode backend misses nothing.
	reported map[string]string
	// appName is reported["application_name"] for SHOW CLIENTS, which must
	// not wait for mu (held while a write to a slow client blocks).
	appName atomic.Pointer[string]
}

// newParam reports whether ParameterStatus ps tells the client something
// new, and records it as told. The caller holds w.mu.
func (w *clientWriter) newParam(ps *pgproto3.ParameterStatus) bool {
	if w.reported == nil {
		return true
	}
	if v, ok := w.reported[ps.Name]; ok && v == ps.Value {
		return false
	}
	w.reported[ps.Name] = ps.Value
	if ps.Name == "application_name" {
		v := ps.Value
		w.appName.Store(&v)
	}
	return true
}

// request describes how relay treats the answer to one request sent to the
// primary.
type request struct {
	// replies attributes the server's replies to the messages of the request,
	// hiding those to messages txlane injected.
	replies replyTracker
	// internal, when set, marks a query of txlane's own: nothing of its answer
	// reaches the client.
	internal *internalQuery
	// stmts are the statements the request's plan executes. The transaction
	// state follows those the server reported complete (replies.done); stmts
	// count only where replies cannot be attributed.
	stmts []*policy.Statement
	// guest, when set, routes the answer to another session's client: a
	// write rerouted into this session's transaction (see runWhenIdle).
	guest *guestRoute
	// extended: the request ends with a Sync (not a simple Query). copyIn: the
	// server entered COPY IN while answering it. The server ignores a Sync
	// received during COPY IN, so such a request and the next one (whose Sync
	// ends the COPY) share one ReadyForQuery.
	extended, copyIn bool
	// sent is when the request was first sent (statement latency).
	sent time.Time
	// failedAt is 1 + len(replies.done) when the server's ErrorResponse came
	// (0: none); see txEnds.
	failedAt int
	// inline holds the bookkeeping of the request's first messages.
	inline requestInline
}

// requestInline is room, inside a request, for what sendPrimary records
// about the first messages it sends: the sent list and the changes their
// Parse and Bind messages make. A typical request (Parse, Bind, Describe,
// Execute, Sync) then costs one allocation, the request, rather than one
// per message; a longer one takes the rest from the heap. What is handed
// out here lives as long as the request, like the heap's would.
type requestInline struct {
	sent     [6]sentMsg
	regs     [2]regChange
	portals  [2]portalChange
	stmts    [2]*policy.Statement
	sentUsed bool // sent was handed out (to the request's first part)
	stmtUsed bool // stmts was handed out
	nregs    int
	nportals int
}

// stmtList returns an empty statement list with room for n statements.
func (in *requestInline) stmtList(n int) []*policy.Statement {
	if in.stmtUsed || n > len(in.stmts) {
		return make([]*policy.Statement, 0, n)
	}
	in.stmtUsed = true
	return in.stmts[:0:len(in.stmts)]
}

// sentList returns an empty sent list with room for n messages.
func (in *requestInline) sentList(n int) []sentMsg {
	if in.sentUsed || n > len(in.sent) {
		return make([]sentMsg, 0, n)
	}
	in.sentUsed = true
	return in.sent[:0:len(in.sent)]
}

// regChange returns c, stored here while room lasts.
func (in *requestInline) regChange(c regChange) *regChange {
	return inRoom(in.regs[:], &in.nregs, c)
}

// portalChange returns c, stored here while room lasts.
func (in *requestInline) portalChange(c portalChange) *portalChange {
	return inRoom(in.portals[:], &in.nportals, c)
}

// inRoom stores c in the first of room's slots not used yet (*used
// counts them) and returns it there; with every slot used, on the heap.
func inRoom[T any](room []T, used *int, c T) *T {
	if *used == len(room) {
		h := new(T)
		*h = c
		return h
	}
	room[*used] = c
	*used++
	return &room[*used-1]
}

// TxStatus returns the client's transaction status.
func (s *session) TxStatus() TxStatus {
	if p := s.pc.Load(); p != nil {
		return p.TxStatus()
	}
	return TxIdle
}

// inFlight reports how many requests of the client the primary has not
// answered yet (txlane's own queries there do not count).
func (s *session) inFlight() int {
	if p := s.pc.Load(); p != nil {
		return p.requestsInFlight()
	}
	return 0
}

// ownerOut is the client connection (primaryOwner).
func (s *session) ownerOut() *clientWriter { return &s.out }

// requestDone applies what the primary reported complete in req to what
// routing knows of the client's transaction: its statements first, then the
// status, which is the truth (primaryOwner). last says no other request is
// in flight: at 'I' the units the transaction carried are free.
func (s *session) requestDone(req *request, status TxStatus, last bool) {
	ddl := false
	s.mu.Lock()
	s.srv.metrics.primaryRequestDone(s.mu.tx.Status, req, status)
	if req != nil {
		for _, st := range req.replies.done {
			s.mu.tx.Apply(st)
			s.noteExecuteDone(st) // sqlexecute.go
			ddl = ddl || isDDL(st)
		}
	}
	schema := status == TxIdle && (ddl || s.mu.tx.SchemaChanged)
	s.mu.tx.Ready(policy.TxStatus(status))
	s.mu.Unlock()
	if schema {
		// Committed DDL may have made or dropped vector tables: the next
		// request of this database reads the catalog again first.
		s.srv.schemaChanged(s.database())
	}
	s.srv.requestDone(s, req)
	if status == TxIdle && last {
		s.srv.units.releaseAll(s)
	}
	if s.srv.shared != nil {
		s.sharedDone(req, status, last)
	}
}

// parameterChanged marks the snapshot stale: the server reported a changed
// setting (primaryOwner).
func (s *session) parameterChanged() { s.snap.mark() }

// guestArriving marks the snapshot stale: a rerouted write may change the
// session's settings or temporary relations (primaryOwner).
func (s *session) guestArriving(req *request) {
	s.snap.mark()
	for _, st := range req.stmts {
		s.notePin(st)
	}
}

// dropStmt forgets the client's statement name, on the client's side and on
// its primary's.
func (s *session) dropStmt(name string) {
	s.reg.drop(name, false)
	if p := s.pc.Load(); p != nil {
		p.held.forget(name)
	}
}

// isDDL reports whether st (or a part of it) is DDL.
func isDDL(st *policy.Statement) bool {
	if st.Class == policy.DDL {
		return true
	}
	for i := range st.Parts {
		if st.Parts[i].Class == policy.DDL {
			return true
		}
	}
	return false
}

// restorePrimary makes the primary the target of the client's cancel
// requests again, after a borrowed backend (a vector-lane connection, or a
// holder's primary) ran a request. It waits for a cancel being forwarded to the
// borrowed backend, so that the backend is not handed on with a cancel in
// flight.
func (s *session) restorePrimary() {
	s.cancelMu.Lock()
	s.mu.Lock()
	s.mu.running = nil
	if p := s.pc.Load(); p != nil {
		s.mu.running = &p.target
	}
	s.mu.Unlock()
	s.cancelMu.Unlock()
}

// login relays the client's login to a new primary backend. On failure the
// client has been told why, either by the server or by txlane.
func (s *session) login(ctx context.Context) error {
	params := make(map[string]string, len(s.startup.Parameters)+len(s.srv.opts.Primary.RuntimeParams))
	// The DSN supplies defaults; what the client asked for wins.
	for k, v := range s.srv.opts.Primary.RuntimeParams {
		params[k] = v
	}
	for k, v := range s.startup.Parameters {
		params[k] = v
	}
	// NOTE: the server is asked for at most the version txlane speaks and
	// never sees the client's _pq_ options (see negotiation).
	startup := &pgproto3.StartupMessage{ProtocolVersion: s.proto.ServerVersion(), Parameters: params}
	if s.srv.auth.method.Terminates() {
		// login.go: txlane checks the password itself, then logs in.
		p, err := s.loginAuthenticated(ctx, startup)
		if err != nil || p == nil { // nil: answered from the login cache
			return err
		}
		p.setOwner(s)
		s.pc.Store(p)
		return nil
	}

	conn, target, err := wire.Dial(ctx, s.srv.opts.Primary)
	if err != nil {
		s.log.Warn("cannot reach the primary", zap.Error(err))
		return s.fail(&wire.Error{Severity: "FATAL", Code: CodeCannotConnectNow,
			Message: "txlane cannot reach the PostgreSQL server", Hint: "Check that the server named by txlane's primary DSN is running."})
	}
	b := newPrimaryConn(backend{conn: conn, r: wire.NewReader[wire.Backend](conn, 0), w: bufio.NewWriterSize(conn, wire.WriteBufSize), target: target}, s)
	s.pc.Store(b)
	res, err := wire.RelayLogin(b.r, b.w, startup, s.proto, s.cr, s.out.w, func(server *pgproto3.BackendKeyData) *pgproto3.BackendKeyData {
		// NOTE: the target is complete before the key is registered, so a
		// cancel request that finds the session finds a usable target.
		b.target.PID, b.target.Secret = server.ProcessID, server.SecretKey
		s.keyPID, s.keySecret = s.srv.keys.register(s, len(server.SecretKey))
		return &pgproto3.BackendKeyData{ProcessID: s.keyPID, SecretKey: s.keySecret}
	})
	if err != nil {
		conn.Close()
		var sle *wire.ServerLoginError
		if errors.As(err, &sle) {
			s.log.Info("login refused by server", zap.Error(err))
			return err
		}
		var pe *wire.Error
		if errors.As(err, &pe) {
			return s.fail(pe)
		}
		s.log.Info("login failed", zap.Error(err))
		if !res.Forwarded {
			return s.fail(wire.Fatalf(CodeCannotConnectNow, "login to the PostgreSQL server failed"))
		}
		return err
	}
	s.dialer = &backendDialer{a: s.srv.auth}
	s.out.reported = maps.Clone(res.Params)
	b.loggedIn(res.TxStatus, res.Params)
	go b.relay()
	return nil
}

// fail reports e to the client and returns it.
func (s *session) fail(e *wire.Error) error {
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	wire.WriteError(s.out.w, e)
	s.out.w.Flush()
	return e
}

// serve runs the session until the client leaves or a side fails, then
// releases everything: a client that vanishes leaves no transaction open.
func (s *session) serve() {
	s.reg = newRegistry()
	p := s.pc.Load() // nil after a login answered from the login cache
	if p != nil {
		s.mu.Lock()
		s.mu.running = &p.target
		s.mu.Unlock()
	}

	s.snap.dirty.Store(true) // never read
	s.setValues.Store(&map[string]string{})
	s.customs = make(map[string]bool)
	s.plans = newPlanner(s.reg, s.routing)
	s.plans.serverPrepared = func(name string) string { return s.settings.Load().preparedMap()[name] }
	// The login sets a unit too: ALTER ROLE / ALTER DATABASE ... SET
	// txlane.unit, postgresql.conf, options=-c txlane.unit=... (the latter
	// unknown until read: see checkUnknown). Read before the first check
	// that needs it, once per backend (freshUnits).
	s.unitStale, s.unitLogin = true, true
	for k, v := range s.startup.Parameters {
		if k == unitSetting || strings.Contains(v, unitSetting) {
			s.unitStale, s.unitUnknown = true, true
		}
	}
	for _, name := range startupCustomSettings(s.startup.Parameters) {
		s.customs[name] = true
	}
	customs := s.customSettings()
	s.customList.Store(&customs)
	if mode, _ := s.srv.opts.Pool.For(s.database(), s.startup.Parameters["user"]); mode == PoolTransaction {
		s.txMode = true
		s.plans.env = s.parseEnvNow
		if s.pool == nil { // a relayed login: its backend joins the pool
			s.pool = s.srv.poolFor(s.startup.Parameters)
			s.pool.adopt(p)
			s.own = movableOf(p.login) // its login's, as its client was told
		}
		s.pool.join() // leavePrimary leaves
		if p != nil {
			s.idle(p) // the login's backend is free until the first request
		}
	}

	err := s.clientLoop()
	s.stopping.Store(true)

	s.leavePrimary(err)
	s.srv.units.releaseAll(s)

	var pe *wire.Error
	if errors.As(err, &pe) {
		s.log.Info("closing client", zap.Error(err))
		s.fail(pe)
	} else if err != nil && !errors.Is(err, errClientTerminated) && !isClosedConn(err) && !isConnError(err) {
		// Not the client leaving: txlane closed the session on an error.
		s.log.Warn("session closed on an error", zap.Error(err))
	}
	s.client.Close()
}

var errClientTerminated = errors.New("client sent Terminate")

// clientLoop reads the client's messages into requests, resolving each
// message into the request's plan as it arrives, and sends each request to
// its lane, until the client terminates, disconnects or breaks the protocol.
//
// A request that cannot go to the vector lane is forwarded to the primary as
// its messages arrive (whenever the client has nothing more buffered), so
// that server-side timers such as statement_timeout see what they would see
// without txlane; so is any request at a Flush or past maxBatchBytes. Each
// part is checked (units of work, PAUSE) before its first byte goes out.
func (s *session) clientLoop() error {
	for {
		typ, _, err := s.cr.Next()
		if err != nil {
			var tooLong *wire.MessageTooLongError
			switch {
			case errors.As(err, &tooLong):
				return &wire.Error{Severity: "FATAL", Code: CodeProtocolViolation,
					Message: "message too long", Detail: tooLong.Error(),
					Hint: "Raise max_message_size in txlane's configuration if this message is legitimate."}
			case errors.Is(err, wire.ErrBadLength):
				return &wire.Error{Severity: "FATAL", Code: CodeProtocolViolation, Message: "invalid message length"}
			}
			return err
		}
		switch typ {
		case wire.Terminate:
			s.cr.Skip()
			return errClientTerminated
		case wire.CopyData, wire.CopyDone, wire.CopyFail:
			// COPY FROM STDIN runs on the primary lane only: stream it there.
			if err := s.forwardCopy(); err != nil {
				return err
			}
			continue
		}
		if s.skipToSync {
			if err := s.dropUntilSync(typ); err != nil {
				return err
			}
			continue
		}
		if len(s.cur.msgs) == 0 && s.open == nil {
			s.beginRequest()
		}
		if err := s.cur.add(typ, s.cr); err != nil {
			return err
		}
		if typ == wire.FunctionCall {
			// The fast-path function call interface: always the primary's.
			s.cur.synced = true
		}
		s.plans.add(&s.cur.msgs[len(s.cur.msgs)-1], s.cur.sql)
		switch {
		case s.cur.synced:
			err = s.dispatch()
			if p := s.pc.Load(); s.txMode && p != nil && err == nil {
				// A request answered elsewhere (the vector lane, or
				// txlane itself) leaves a backend it attached idle.
				s.idle(p)
			}
		case typ == wire.Flush || len(s.cur.buf) > maxBatchBytes:
			// NOTE: a client that flushes before Sync waits for answers
			// mid-request; the request is pinned to the primary lane from
			// here to its Sync (fail safe).
			err = s.sendEarly(policy.ReasonFlushed)
		case !s.cr.Buffered():
			if reason, bound := s.primaryBound(); bound {
				err = s.sendEarly(reason)
			}
		}
		if err != nil {
			return err
		}
	}
}

// dropUntilSync drops a message of a request refused before its Sync; the
// Sync gets the ReadyForQuery the refusal owed.
func (s *session) dropUntilSync(typ wire.Frontend) error {
	if err := s.cr.Skip(); err != nil {
		return err
	}
	if typ != wire.Sync {
		return nil
	}
	s.skipToSync = false
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	wire.WriteRaw(s.out.w, wire.ReadyForQuery, []byte{byte(s.TxStatus())})
	return s.out.w.Flush()
}

// beginRequest starts planning a new request.
func (s *session) beginRequest() {
	safe, idle := s.inFlight() == 0, s.TxStatus() == TxIdle
	s.plans.begin(safe, idle)
}

// primaryBound reports whether the current request, as far as it arrived,
// can only run on the primary, whatever follows, and why.
func (s *session) primaryBound() (policy.Reason, bool) {
	pl := &s.plans.cur
	if pl.sentEarly {
		return pl.early, true
	}
	for _, u := range s.unitsOfWork(pl) {
		if len(s.srv.units.others(u, s)) > 0 {
			// Keep it whole: at its Sync it may be rerouted into the
			// holder's transaction.
			return 0, false
		}
	}
	switch {
	case s.srv.lanes == nil:
		return policy.ReasonNotVectorRead, true
	case s.inFlight() > 0:
		return policy.ReasonPipelined, true
	case !pl.laneShape:
		return policy.ReasonRequestShape, true
	case pl.parsedPrimary:
		return pl.parsedReason, true
	case len(pl.steps) == 0:
		return 0, false
	}
	rt := s.routing()
	stmts := pl.stmts(0)
	s.mu.Lock()
	d := policy.DecideBatch(&s.mu.tx, stmts, rt.rules, s.searchPath)
	s.mu.Unlock()
	if d.Lane == policy.Vector || !s.primaryFinal(d, stmts, rt.rules) {
		return 0, false
	}
	return d.Reason, true
}

// dispatch sends the rest of the current request, now complete, to its lane.
func (s *session) dispatch() (err error) {
	defer s.cur.reset()
	defer func() { err = s.answerCanceledWait(err) }()
	pl := &s.plans.cur
	if s.open != nil {
		// Partly sent already: the rest follows it to the primary.
		if s.srv.lanes != nil {
			s.routed(policy.Primary, pl.early)
		}
		rej, err := s.checkPart()
		if err != nil {
			return err
		}
		return s.sendPrimary(&s.cur, rej)
	}
	if done, err := s.srv.admit(s); done { // PAUSE and graceful stop (ops.go)
		return err
	}
	defer s.srv.dispatched(s)
	handled, rej, err := s.checkUnits(true)
	if handled || err != nil {
		return err
	}
	if rej == nil && s.srv.lanes != nil {
		if handled, err := s.tryVectorLane(&s.cur); handled || err != nil {
			return err
		}
		if pl.checked == 0 {
			// The lane refused it as a write: check it again as one.
			if handled, rej, err = s.checkUnits(true); handled || err != nil {
				return err
			}
		}
	}
	if rej != nil && s.cur.sql != "" || rej != nil && s.cur.function() {
		// Nothing of a simple Query runs: it is refused whole.
		return s.refuseUnit(rej.err)
	}
	return s.sendPrimary(&s.cur, rej)
}

// sendEarly sends the part of the current request that has arrived to the
// primary before its Sync, for reason (the first part's reason holds for the
// whole request).
func (s *session) sendEarly(reason policy.Reason) (err error) {
	pl := &s.plans.cur
	defer func() {
		if errors.Is(err, errWaitCanceled) {
			s.cur.reset()
			err = s.answerCanceledWait(err)
		}
	}()
	if s.open == nil {
		if done, err := s.srv.admit(s); done {
			if err == nil {
				// Refused at the PAUSE gate: the answer is given, the rest of
				// the request is dropped up to its Sync.
				s.skipToSync = true
			}
			s.cur.reset()
			return err
		}
		defer s.srv.dispatched(s)
		pl.sentEarly, pl.early = true, reason
	}
	rej, err := s.checkPart()
	if err != nil {
		return err
	}
	err = s.sendPrimary(&s.cur, rej)
	s.cur.reset()
	return err
}

// checkPart checks the steps of a request being sent in parts: a write
// that would escape another connection's transaction is refused at its
// position, by the server, since what came before it is on its way.
func (s *session) checkPart() (*rejection, error) {
	if s.plans.cur.rejected {
		return nil, nil
	}
	_, rej, err := s.checkUnits(false)
	return rej, err
}

// sendPrimary sends b, a whole request or a part of one, to the primary
// lane. A statement the request uses that the primary does not hold under
// the client's name (it was prepared on the vector lane, or replaced there)
// is prepared right before the message that needs it; the replies to such
// injected messages are hidden from the client. With rej, the Execute of
// rej.step is replaced by a statement that makes the server raise rej.err:
// the server then skips the rest of the request up to its Sync, and the
// client sees the error where PostgreSQL would have raised it.
func (s *session) sendPrimary(b *batch, rej *rejection) error {
	pl := &s.plans.cur
	p := s.pc.Load()
	fresh := s.open == nil
	if s.open == nil {
		var err error
		if p, err = s.attach(); err != nil {
			return err
		}
		s.open = &request{sent: time.Now()}
		s.open.replies.reg = s.reg
		s.open.replies.held = &p.held
		p.push(s.open)
	}
	w := p.w
	steps := pl.steps[pl.sent:]
	pl.sent = len(pl.steps)

	// sent is handed to the reply tracker (track), which keeps it.
	in := &s.open.inline
	sent := in.sentList(len(b.msgs) + 1)
	out := s.scratch[:0]
	// settled holds the names whose state on the primary this request has
	// already made right (or changed itself): a few per request at most.
	var settledRoom [4]string
	settled := settledRoom[:0]
	// NOTE: txlane's own queries are written only under p's write right,
	// which this request holds (attach) until its Sync is sent: the count
	// cannot change while the request is written.
	epoch := p.held.epoch()
	em := s.markEnv() // before noteEffects (parseenv.go)
	em.at(p, fresh)
	ensure := func(name string) {
		if slices.Contains(settled, name) {
			return
		}
		settled = append(settled, name)
		st := s.reg.get(name)
		k, has := p.held.has(name)
		// NOTE: what an injected message does is recorded now, not when the
		// server confirms it: the client may pipeline more requests that rely
		// on it before the reply arrives. These statements ran before, so
		// they are expected to succeed; if the server fails or skips one
		// (a failed transaction refuses a Parse), the tracker marks the name
		// unknown on the backend (injected).
		if has && (st == nil || k != st.key) {
			// Stale, or gone for the client: close it, so that the server
			// answers as it would have.
			injected := name // on the heap only on this path
			out = wire.AppendCloseStatement(out, name)
			sent = append(sent, sentMsg{typ: wire.Close, kind: wire.ObjectStatement, hidden: true, injected: &injected})
			(&regChange{reg: s.reg, name: name, prim: &p.held, epoch: epoch}).apply()
		}
		if st != nil && (!has || k != st.key) {
			var parsed bool
			injected := name
			out, sent, parsed = s.appendReparse(p, out, sent, &injected, st, &em) // parseenv.go
			if parsed {
				(&regChange{reg: s.reg, name: name, stmt: st, prim: &p.held, epoch: epoch}).apply()
			}
		}
	}
	// Statements SQL-level DEALLOCATE and EXECUTE name must exist there too.
	for _, st := range steps {
		for _, name := range sqlStatementRefs(st.stmt) {
			ensure(name)
		}
	}
	if len(sent) > 0 && b.sql != "" {
		// NOTE: after an error in extended-protocol messages the server
		// ignores everything up to a Sync, a Query too: without this Sync a
		// failed Parse above would leave the Query unanswered.
		out = wire.AppendSync(out)
		sent = append(sent, sentMsg{typ: wire.Sync, hidden: true})
	}
	for _, st := range steps {
		s.noteEffects(st.stmt)
	}
	next := 0 // the step the next executing message runs
	var ran *policy.Statement
	for i := range b.msgs {
		m := &b.msgs[i]
		sm := sentMsg{typ: m.typ, kind: m.kind}
		switch m.typ {
		case wire.Query, wire.Execute, wire.FunctionCall:
			sm.exec = steps[next].stmt
			next++
		}
		em.step(ran) // what the previous message ran counts from here on
		ran = sm.exec
		switch {
		case m.typ == wire.Parse:
			s.stampEnv(m.stmt, &em) // parseenv.go
			if m.name != "" {
				em.parsing = true // only the name must exist (parseenv.go)
				ensure(m.name)    // an existing name must make the server say so
				em.parsing = false
			} else {
				// Parsing the unnamed statement drops the old one, even if
				// the new one fails.
				s.dropStmt("")
			}
			settled = append(settled, m.name)
			sm.change = in.regChange(regChange{reg: s.reg, name: m.name, stmt: m.stmt, client: true, prim: &p.held, epoch: epoch})
		case m.typ == wire.Bind:
			ensure(m.name)
			sm.portal = in.portalChange(portalChange{p: s.plans, name: m.portal, ref: m.bound})
		case m.typ == wire.Describe && m.kind == wire.ObjectStatement:
			ensure(m.name)
		case m.typ == wire.Close && m.kind == wire.ObjectStatement:
			settled = append(settled, m.name)
			sm.change = in.regChange(regChange{reg: s.reg, name: m.name, client: true, prim: &p.held, epoch: epoch})
		case m.typ == wire.Close:
			sm.portal = in.portalChange(portalChange{p: s.plans, name: m.portal, drop: true})
		case m.typ == wire.Query:
			// A simple Query replaces the unnamed statement, for the client
			// too, and drops the unnamed portal.
			s.dropStmt("")
			sm.portal = in.portalChange(portalChange{p: s.plans, drop: true})
		}
		if rej != nil && m.typ == wire.Execute && next-1 == rej.step-(len(pl.steps)-len(steps)) {
			out, sent = s.appendRaise(p, out, sent, rej.err)
			pl.rejected = true
			rej = nil
			continue
		}
		sent = append(sent, sm)
		out = append(out, b.buf[m.start:m.end]...)
		em.fresh = false
	}
	s.scratch = out[:0]

	synced := b.synced
	stmts := pl.appendStmts(in.stmtList(len(steps)), len(pl.steps)-len(steps))
	p.track(s.open, sent, stmts, synced && b.sql == "" && !b.function())
	if synced {
		s.open = nil
	}
	_, err := w.Write(out)
	if err == nil && (!s.cr.Buffered() || !synced) {
		// NOTE: with more input buffered the request could wait to coalesce
		// with the next, but another session may reroute a write in between.
		err = w.Flush()
	}
	if synced {
		s.readUnitBehind(p, pl.steps)
		p.release()
	}
	return err
}

// rejection is a step of the current request that must not run: the server
// is made to raise err in its place.
type rejection struct {
	step int // index in the request's plan
	err  *wire.Error
}

// appendRaise appends, hidden from the client except for the error itself,
// an unnamed statement that raises e at the server, in place of a refused
// Execute. The server fails the request there exactly as it would fail on
// an error of the statement itself (an implicit transaction rolls back, an
// explicit one is failed) and skips everything up to the next Sync.
func (s *session) appendRaise(p *primaryConn, out []byte, sent []sentMsg, e *wire.Error) ([]byte, []sentMsg) {
	out = wire.AppendParse(out, "", raiseSQL(e), nil)
	// The unnamed statement is the raise now: the client's is prepared
	// again before its next use.
	sent = append(sent, sentMsg{typ: wire.Parse, hidden: true, change: &regChange{reg: s.reg, name: "", prim: &p.held, epoch: p.held.epoch()}})
	out, _ = (&pgproto3.Bind{}).Encode(out)
	sent = append(sent, sentMsg{typ: wire.Bind, hidden: true})
	out, _ = (&pgproto3.Execute{}).Encode(out)
	sent = append(sent, sentMsg{typ: wire.Execute, hidden: true})
	return out, sent
}

// raiseSQL is a DO block that raises e with its SQLSTATE, message, detail
// and hint.
func raiseSQL(e *wire.Error) string {
	lit := func(v string) string { return textLiteral(strings.ReplaceAll(v, "$txlane$", "$ txlane$")) }
	sql := "DO $txlane$BEGIN RAISE EXCEPTION USING ERRCODE = " + lit(e.Code) + ", MESSAGE = " + lit(e.Message)
	if e.Detail != "" {
		sql += ", DETAIL = " + lit(e.Detail)
	}
	if e.Hint != "" {
		sql += ", HINT = " + lit(e.Hint)
	}
	return sql + "; END$txlane$"
}

// sqlStatementRefs returns the prepared statements that SQL-level
// DEALLOCATE name or EXECUTE name in st refer to.
func sqlStatementRefs(st *policy.Statement) []string {
	var out []string
	eachPart(st, func(p *policy.Statement) {
		if p.Deallocate != nil && !p.Deallocate.All && p.Deallocate.Name != "" {
			out = append(out, p.Deallocate.Name)
		}
		// NOTE: PREPARE too: protocol-level and SQL-level statements share
		// one namespace in the server's session, so another client's
		// protocol statement left on a pooled backend under the name would
		// make the PREPARE fail (42P05) where on its own backend it would not.
		if p.PrepareName != "" { // PREPARE, or one that executes it
			out = append(out, p.PrepareName)
		}
	})
	return out
}

// noteEffects records what statement st, sent to the primary, may do to the
// state txlane mirrors.
func (s *session) noteEffects(st *policy.Statement) {
	s.noteSetConfig(st)
	s.notePin(st)
	s.notePrepares(st) // parseenv.go
	s.noteSnap(st)
	s.noteOwnState(st)
	s.noteOpaqueUnit(st) // set_config, a function, DISCARD: the unit may have changed
	for _, set := range st.Settings {
		if set.Name == unitSetting || set.ResetAll {
			s.unitLogin = false
			v := unitValue(set)
			switch {
			case v != "" && !set.Local && s.TxStatus() == TxIdle && !beginsTx(st):
				// Outside a transaction block a SET is final: the value.
				s.unitVals = append(s.unitVals[:0], v)
			default:
				// NOTE: what a RESET removed, or what a rollback or the end of
				// a transaction brings back, is known only from the server:
				// every value seen counts until it is read (freshUnits).
				if v != "" && !slices.Contains(s.unitVals, v) {
					s.unitVals = append(s.unitVals, v)
				}
				s.unitStale = true
			}
		}
		if strings.Contains(set.Name, ".") && !s.customs[set.Name] {
			s.customs[set.Name] = true
			list := s.customSettings()
			s.customList.Store(&list)
		}
	}
}

// unitSetting is the session setting that carries a unit of work.
const unitSetting = "txlane.unit"

// unitValue is the unit a SET txlane.unit sets ("" for RESET).
func unitValue(set policy.Setting) string {
	if set.Reset || set.ResetAll {
		return ""
	}
	return strings.Trim(set.Value, "'")
}

// primaryLost ends the primary's relay (primaryOwner). If the backend failed
// while the session was live, the client gets an error and is closed; if
// serve is tearing the session down, relay just returns.
func (s *session) primaryLost(err error, quiet bool) error {
	if s.stopping.Load() {
		return err
	}
	s.out.mu.Lock()
	// What was already received still reaches the client. If that fails, the
	// error was the client's, not the backend's.
	clientOK := s.out.w.Flush() == nil
	var partial *wire.PartialError
	switch {
	case !clientOK || quiet:
	case errors.As(err, &partial):
		// The client holds part of a message: nothing can follow it.
		s.log.Warn("backend connection lost mid-message", zap.Error(err))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnError(err):
		s.log.Warn("backend connection lost", zap.Error(err))
		wire.WriteError(s.out.w, &wire.Error{Severity: "FATAL", Code: CodeConnectionFailure,
			Message: "server connection lost", Detail: "The PostgreSQL backend serving this session closed its connection."})
		s.out.w.Flush()
	default:
		s.log.Error("invalid message from the server; closing the session", zap.Error(err))
		wire.WriteError(s.out.w, &wire.Error{Severity: "FATAL", Code: CodeProtocolViolation,
			Message: "invalid message from the server", Detail: "txlane closed the session: the server's reply could not be read."})
		s.out.w.Flush()
	}
	s.out.mu.Unlock()
	s.client.Close() // unblocks clientLoop
	return err
}

func isClosedConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}

func isConnError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed)
}
