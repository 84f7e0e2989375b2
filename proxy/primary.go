package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy/wire"
)

// primaryConn is one backend of the primary lane and everything known of
// it: its socket (backend), the requests sent to it and not yet answered,
// the server state it reported (transaction status and ParameterStatus
// values, observed in one place: observe), the prepared statements it holds,
// and the goroutine that reads it (relay).
//
// Its owner is the session it serves: replies go to the owner's client,
// except those of a request another session queued with runWhenIdle, whose
// replies go to that session's client. No session reaches into another's
// primaryConn except through runWhenIdle.
//
// Lock order: mu and held.mu are never held together, nor across a network
// read or write; the owner's hooks are called with neither held.
type primaryConn struct {
	backend
	// pooled is what its pool records of it (transaction mode); guarded by
	// the pool's mu.
	pooled pooled

	// wsem is the right to write a request: held from a request's first
	// message to its Sync by the owner, or by runWhenIdle for a guest's.
	wsem chan struct{}
	// gone is closed when relay returns: the connection is unusable.
	gone chan struct{}
	// loginUnit is txlane.unit as the backend's login left it (freshUnits).
	loginUnit atomic.Pointer[string]

	mu struct {
		sync.Mutex
		// owner is the session the connection serves (an idleOwner while
		// idle in a pool).
		owner primaryOwner
		// txStatus is the status of the last ReadyForQuery.
		txStatus TxStatus
		// pending lists the requests sent and not yet answered by
		// ReadyForQuery, oldest first.
		pending []*request
		// params holds the server's ParameterStatus values as last reported.
		params map[string]string
		// changed is closed (and replaced) whenever the connection may have
		// become idle: after each ReadyForQuery and when wsem is released.
		changed chan struct{}
	}

	// held is what the server holds in its session's prepared statements.
	held heldStmts
	// login is the ParameterStatus values of its login: those RESET goes
	// back to (movable.go). Never modified.
	login map[string]string
	// settings are the session settings the backend holds beyond its
	// login's (transaction mode; changed only by its owner, holding wsem).
	settings *sessionSettings
	// seqClient is the id of the client whose statements may have set the
	// session's sequence state (currval, lastval); 0 for none (seqstate.go).
	seqClient atomic.Uint64
	// unchecked: the backend has not been idle in transaction mode yet
	// (see session.idle).
	unchecked atomic.Bool
	// connected is when the backend logged in; lastRequest (Unix
	// nanoseconds) when it was last given a request (SHOW SERVERS).
	connected   time.Time
	lastRequest atomic.Int64
	// idler owns the connection whenever it is idle in its pool (one per
	// connection, so that pooling it again allocates nothing).
	idler idleOwner
}

// describe is the backend as SHOW SERVERS lists it.
func (p *primaryConn) describe(user, database, state string, link uint64) ServerInfo {
	info := ServerInfo{User: user, Database: database, Lane: LanePrimary, State: state, Addr: p.target.Addr, PID: p.target.PID,
		ConnectTime: p.connected, Link: link}
	if t := p.lastRequest.Load(); t != 0 {
		info.RequestTime = time.Unix(0, t)
	}
	return info
}

// primaryOwner is what a primaryConn needs of the session it serves. relay
// calls these from its goroutine, with no lock of the primaryConn held.
type primaryOwner interface {
	// ownerOut is the client connection replies go to.
	ownerOut() *clientWriter
	// requestDone applies what the server reported complete in req (or, for
	// req nil, an unsolicited ReadyForQuery) to the owner's state, before
	// the request leaves the pending queue; last says no other request is
	// in flight.
	requestDone(req *request, status TxStatus, last bool)
	// parameterChanged says the server reported a ParameterStatus.
	parameterChanged()
	// guestArriving says req, a request of another session, is about to
	// run in the owner's server session (and may change its settings).
	guestArriving(req *request)
	// idle says the connection is idle outside a transaction block with
	// nothing in flight (after the ReadyForQuery went to the client).
	idle(p *primaryConn)
	// primaryLost ends relay: err is why it stopped reading, fatal says the
	// server sent a FATAL error first.
	primaryLost(err error, fatal bool) error
}

// heldStmts is what a primary backend holds in its prepared statements: the
// owner's statements under the owner's names, and content-named statements
// that guests' requests prepared (see writeShared).
type heldStmts struct {
	mu      sync.Mutex
	named   map[string]stmtKey
	content *stmtLRU
	// unnamedEpoch counts txlane's own simple Queries written to the
	// backend: each replaces the server's unnamed statement. A change to
	// the unnamed statement made before the latest one (a client's Parse
	// "" whose ParseComplete comes later) no longer describes the server,
	// so it is not applied (regChange.epoch).
	unnamedEpoch uint64
}

// epoch returns the count of txlane's own queries written so far, for a
// change of the unnamed statement to be applied only if none came after it.
func (h *heldStmts) epoch() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unnamedEpoch
}

// clobberUnnamed records that txlane's own simple Query has replaced the
// server's unnamed statement (PostgreSQL's simple Query protocol parses
// into it): the backend holds under "" something that is not the
// client's, which the client's next use closes or prepares again.
func (h *heldStmts) clobberUnnamed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.named[""] = unknownStmt
	h.unnamedEpoch++
}

func newPrimaryConn(b backend, owner primaryOwner) *primaryConn {
	p := &primaryConn{backend: b, wsem: make(chan struct{}, 1), gone: make(chan struct{}), connected: time.Now()}
	p.unchecked.Store(true)
	p.mu.owner = owner
	p.held.named = make(map[string]stmtKey)
	p.held.content = newStmtLRU(maxLaneStatements)
	p.mu.params = map[string]string{}
	p.idler.c = p
	return p
}

// has returns the key of what the backend holds under name.
func (h *heldStmts) has(name string) (stmtKey, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k, ok := h.named[name]
	return k, ok
}

func (h *heldStmts) set(name string, k stmtKey) {
	h.mu.Lock()
	h.named[name] = k
	h.mu.Unlock()
}

// forget records that the backend no longer holds name.
func (h *heldStmts) forget(name string) {
	h.mu.Lock()
	delete(h.named, name)
	h.mu.Unlock()
}

// drop forgets name, or with all every statement (DISCARD ALL,
// DEALLOCATE ALL). A nil h holds nothing.
func (h *heldStmts) drop(name string, all bool) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if all {
		clear(h.named)
		h.content.clear()
		return
	}
	delete(h.named, name)
}

// owner returns the session the connection serves.
func (p *primaryConn) owner() primaryOwner {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.owner
}

// setOwner hands the connection to o.
func (p *primaryConn) setOwner(o primaryOwner) {
	p.mu.Lock()
	p.mu.owner = o
	p.mu.Unlock()
}

// setIdle hands the connection to its idle owner: nobody's, idle in a pool
// or about to be.
func (p *primaryConn) setIdle() { p.setOwner(&p.idler) }

// usable reports whether relay still reads the connection.
func (p *primaryConn) usable() bool {
	select {
	case <-p.gone:
		return false
	default:
		return true
	}
}

// afterReady tells the owner when the connection is idle outside a
// transaction block with nothing in flight.
func (p *primaryConn) afterReady() {
	p.mu.Lock()
	o := p.mu.owner
	idle := len(p.mu.pending) == 0 && p.mu.txStatus == TxIdle
	p.mu.Unlock()
	if idle {
		o.idle(p)
	}
}

// TxStatus returns the status of the last ReadyForQuery.
func (p *primaryConn) TxStatus() TxStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.txStatus
}

// inFlight reports how many requests the server has not answered yet.
func (p *primaryConn) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mu.pending)
}

// params returns a copy of the server's ParameterStatus values.
func (p *primaryConn) params() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.mu.params)
}

// loggedIn records the state the login left the backend in.
func (p *primaryConn) loggedIn(status byte, params map[string]string) {
	p.mu.Lock()
	p.mu.txStatus = TxStatus(status)
	p.mu.params = params
	p.mu.Unlock()
	p.login = maps.Clone(params)
}

// acquire takes the right to write a request; release gives it up.
func (p *primaryConn) acquire() { p.wsem <- struct{}{} }

func (p *primaryConn) release() {
	<-p.wsem
	p.mu.Lock()
	p.signalLocked()
	p.mu.Unlock()
}

// push queues req, whose messages are about to be written.
func (p *primaryConn) push(req *request) {
	p.lastRequest.Store(time.Now().UnixNano())
	p.mu.Lock()
	p.mu.pending = append(p.mu.pending, req)
	p.mu.Unlock()
}

// nextChange returns a channel closed at the next moment the connection
// may have become idle.
func (p *primaryConn) nextChange() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.changed == nil {
		p.mu.changed = make(chan struct{})
	}
	return p.mu.changed
}

// signalLocked wakes whoever waits on nextChange. p.mu must be held.
func (p *primaryConn) signalLocked() {
	if p.mu.changed != nil {
		close(p.mu.changed)
		p.mu.changed = nil
	}
}

// observe records a ReadyForQuery: the status is the truth from now on, and
// the oldest pending request is complete. The owner applies what it did
// (requestDone) before the request leaves the queue, so that whoever sees
// the queue empty sees the owner's state up to date.
func (p *primaryConn) observe(status byte) *request {
	p.mu.Lock()
	p.mu.txStatus = TxStatus(status)
	var req *request
	n := 0 // the requests this ReadyForQuery ends
	if len(p.mu.pending) > 0 {
		req, n = p.mu.pending[0], 1
		if req.copyIn && req.extended && len(p.mu.pending) > 1 {
			// The server ignored a Sync during COPY IN: the next request's
			// replies were attributed to this one, and one ReadyForQuery
			// ends both.
			req.replies.done = append(req.replies.done, p.mu.pending[1].stmts...)
			n = 2
		}
	}
	last := len(p.mu.pending) == n
	o := p.mu.owner
	p.mu.Unlock()
	o.requestDone(req, TxStatus(status), last)
	p.mu.Lock()
	// NOTE: the queue is shifted down rather than resliced, so that its
	// array is reused by the next push instead of reallocated once the end
	// is reached (one or two requests are pending at a time, mostly).
	k := copy(p.mu.pending, p.mu.pending[n:])
	clear(p.mu.pending[k:])
	p.mu.pending = p.mu.pending[:k]
	p.signalLocked()
	p.mu.Unlock()
	return req
}

// replyFor returns the oldest unanswered request, which the message of type
// typ answers, and whether that message must be hidden from the client (a
// reply to a message txlane injected).
func (p *primaryConn) replyFor(typ wire.Backend) (o primaryOwner, req *request, hide bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o = p.mu.owner
	if len(p.mu.pending) == 0 {
		return o, nil, false
	}
	req = p.mu.pending[0]
	if typ == wire.CopyInResponse {
		req.copyIn = true
	}
	if req.internal != nil {
		return o, req, true
	}
	return o, req, req.replies.reply(typ)
}

// relay forwards the server's messages to the clients they answer,
// observing ReadyForQuery and ParameterStatus on the way, until the
// connection fails or is closed. It flushes a client only when the server
// has nothing more buffered, so a response goes out in as few writes as
// possible.
func (p *primaryConn) relay() error {
	defer close(p.gone)
	fatal := false
	var out *clientWriter // the client written since the last flush
	for {
		if !p.r.Buffered() && out != nil {
			out.mu.Lock()
			err := out.w.Flush()
			out.mu.Unlock()
			if err != nil {
				return p.owner().primaryLost(err, fatal)
			}
		}
		typ, _, err := p.r.Next()
		if err != nil {
			return p.owner().primaryLost(err, fatal)
		}
		o, req, hide := p.replyFor(typ)
		if oo := o.ownerOut(); oo != out && out != nil {
			// A new owner: what the previous one was sent goes out first.
			out.mu.Lock()
			out.w.Flush()
			out.mu.Unlock()
		}
		out = o.ownerOut()
		switch {
		case req != nil && req.internal != nil:
			err = p.internalReply(req, typ)
		case hide:
			err = p.r.Skip()
		case req != nil && req.guest != nil && typ != wire.NotificationResponse && typ != wire.ParameterStatus:
			err = p.guestReply(req, typ)
		default:
			var f bool
			f, err = p.forward(out, typ)
			fatal = fatal || f
		}
		if err != nil {
			return o.primaryLost(err, fatal)
		}
		if typ == wire.ReadyForQuery {
			if !p.r.Buffered() {
				// The client has its answer before the connection may go
				// back to the pool.
				out.mu.Lock()
				err = out.w.Flush()
				out.mu.Unlock()
				if err != nil {
					return o.primaryLost(err, fatal)
				}
			}
			p.afterReady()
		}
	}
}

// forward passes one message to out, observing it on the way. fatal says it
// was a FATAL error: the server explaining its own exit.
func (p *primaryConn) forward(out *clientWriter, typ wire.Backend) (fatal bool, err error) {
	out.mu.Lock()
	defer out.mu.Unlock()
	switch typ {
	case wire.ReadyForQuery:
		var status byte
		if status, err = p.r.Status(); err == nil {
			p.observe(status)
			wire.WriteRaw(out.w, typ, []byte{status})
		}
	case wire.ParameterStatus:
		var body []byte
		if body, err = p.r.Body(); err == nil {
			var ps pgproto3.ParameterStatus
			told := true
			if ps.Decode(body) == nil {
				p.mu.Lock()
				p.mu.params[ps.Name] = ps.Value
				p.mu.Unlock()
				p.serverReported(&ps)
				body = p.clientParam(&ps, body)
				told = !out.newParam(&ps)
			}
			p.owner().parameterChanged()
			if !told {
				wire.WriteRaw(out.w, typ, body)
			}
		}
	case wire.ErrorResponse:
		var body []byte
		if body, err = p.r.Body(); err == nil {
			fatal = wire.IsFatal(body)
			p.serverError(body)
			wire.WriteRaw(out.w, typ, wire.WithSQLState(body))
		}
	default:
		err = p.r.Forward(out.w)
	}
	return fatal, err
}

// guestRoute sends the answer to a request another session queued (see
// runWhenIdle) to that session's client.
type guestRoute struct {
	out *clientWriter
	// status is the transaction status the guest's client gets in the
	// ReadyForQuery that ends the answer (its own, not the owner's).
	status func() TxStatus
	// done is closed once the answer has been delivered.
	done chan struct{}
	// queued: the request is in the host's queue; canceled: its client's
	// cancel came before, and it is never sent; onCancel ends its wait
	// then. Guarded by the host's mu (cancel_gate.go).
	queued, canceled bool
	onCancel         func()
	// pre, when set, is txlane's own request written right before this
	// one; keepWrite: runWhenIdle keeps the write right once the request is
	// sent, for the guest's session to give back (guest_wrap.go).
	pre       *request
	keepWrite bool
}

// guestReply forwards one message of the answer to a guest's request to the
// guest's client. The ReadyForQuery is the owner's to observe; the guest
// gets its own status.
func (p *primaryConn) guestReply(req *request, typ wire.Backend) error {
	g := req.guest
	if typ == wire.ReadyForQuery {
		status, err := p.r.Status()
		if err != nil {
			return err
		}
		p.observe(status)
		g.out.mu.Lock()
		wire.WriteRaw(g.out.w, wire.ReadyForQuery, []byte{byte(g.status())})
		g.out.w.Flush() // a guest that went away does not concern the owner
		g.out.mu.Unlock()
		close(g.done)
		return nil
	}
	// NOTE: the body is read whole before the guest's socket is written, so
	// that a guest that went away cannot leave the owner's stream mid-message.
	body, err := p.r.Body()
	if err != nil {
		return err
	}
	if typ == wire.ErrorResponse {
		p.serverError(body)
		body = wire.WithSQLState(body)
	}
	g.out.mu.Lock()
	wire.WriteRaw(g.out.w, typ, body)
	if !p.r.Buffered() {
		g.out.w.Flush()
	}
	g.out.mu.Unlock()
	return nil
}

// internalQuery collects the answer to a query txlane runs on the primary.
type internalQuery struct {
	rows [][][]byte // text values; nil is NULL
	err  *pgproto3.ErrorResponse
	done chan struct{}
	// then, when set, runs in relay once the answer is complete, before
	// the connection may be found idle.
	then func(*internalQuery)
}

// internalReply consumes one message of the answer to a query of txlane's own.
func (p *primaryConn) internalReply(req *request, typ wire.Backend) error {
	q := req.internal
	switch typ {
	case wire.DataRow:
		body, err := p.r.Body()
		if err != nil {
			return err
		}
		var dr pgproto3.DataRow
		if err := dr.Decode(body); err != nil {
			return err
		}
		row := make([][]byte, len(dr.Values))
		for i, v := range dr.Values {
			if v != nil {
				row[i] = append([]byte{}, v...) // body is reused by the next read
			}
		}
		q.rows = append(q.rows, row)
	case wire.ErrorResponse:
		body, err := p.r.Body()
		if err != nil {
			return err
		}
		q.err = &pgproto3.ErrorResponse{}
		q.err.Decode(body)
	case wire.ReadyForQuery:
		status, err := p.r.Status()
		if err != nil {
			return err
		}
		p.observe(status)
		close(q.done)
		if q.then != nil {
			q.then(q)
		}
	case wire.NotificationResponse, wire.ParameterStatus:
		// Asynchronous: still the owner's client's.
		_, err := p.forward(p.owner().ownerOut(), typ)
		return err
	default:
		return p.r.Skip()
	}
	return nil
}

// query runs sql as txlane's own query and waits for the answer, which
// reaches no client. The caller must be the owner holding wsem (see
// session.attach), which query releases.
func (p *primaryConn) query(sql string) (*internalQuery, error) {
	return p.queryKeep(sql, false)
}

// queryKeep is query; with keep the caller keeps wsem throughout (nobody
// may take the connection between the answer and the caller's next step).
func (p *primaryConn) queryKeep(sql string, keep bool) (*internalQuery, error) {
	q := &internalQuery{done: make(chan struct{})}
	if err := p.write(q, sql); err != nil {
		if !keep {
			p.release()
		}
		return nil, err
	}
	if !keep {
		p.release()
	}
	select {
	case <-q.done:
		return q, nil
	case <-p.gone:
		return nil, errPrimaryGone
	case <-time.After(internalQueryTimeout):
		return nil, errors.New("primary did not answer txlane's internal query in time")
	}
}

const internalQueryTimeout = 30 * time.Second

// send writes sql as txlane's own query answered into q, and releases wsem,
// which the caller holds.
func (p *primaryConn) send(q *internalQuery, sql string) error {
	err := p.write(q, sql)
	p.release()
	return err
}

// write writes sql as txlane's own query answered into q; the caller holds
// wsem.
func (p *primaryConn) write(q *internalQuery, sql string) error {
	if parts, ok := p.portalSafeParts(sql); ok {
		return p.writeParts(q, parts) // the client's unnamed portal stays
	}
	p.push(&request{internal: q})
	// A simple Query replaces the server's unnamed statement: the client's
	// (if any) is prepared again before its next use, and a client that has
	// none gets the server's 26000 rather than txlane's statement.
	p.held.clobberUnnamed()
	wire.WriteMsg(p.w, &pgproto3.Query{String: sql})
	return p.w.Flush()
}

// Why runWhenIdle did not run a guest's request.
var (
	errPrimaryGone     = errors.New("primary connection closed")
	errGuestWaited     = errors.New("waited too long for the primary connection to be idle")
	errGuestNotWelcome = errors.New("the request may no longer run there")
	errGuestTxFailed   = errors.New("the transaction there has failed")
	errGuestCanceled   = errors.New("the guest's client canceled the request")
)

// runWhenIdle runs req, a request of another session, inside the
// transaction open on p, at the first moment p is idle in it: no request
// in flight, none being written, status 'T'. still is asked at each such
// moment whether the request may still run there (for a rerouted write:
// whether the transaction still holds the unit). build writes the request's
// messages, recording them in req.replies; it may prepare statements under
// content names in held.content. req.guest says where the answer goes;
// req.guest.done is closed when it has been delivered (or p.gone first).
//
// With req.guest.keepWrite the caller gives the write right back once the
// request is answered (guest_wrap.go).
//
// It returns nil once the request is sent, or why it was not: errPrimaryGone,
// errGuestWaited (timeout fired first), errGuestNotWelcome (still said no),
// errGuestTxFailed (the transaction failed: status 'E'), errGuestCanceled
// (req's client canceled it before it was queued: see guestCancel).
//
// NOTE: taking wsem while nothing is in flight keeps p idle while the request
// is written; the request then runs before anything the owner sends later,
// COMMIT included.
func (p *primaryConn) runWhenIdle(timeout <-chan time.Time, still func() bool, req *request, build func(w *bufio.Writer, held *heldStmts)) error {
	for {
		if !still() {
			return errGuestNotWelcome
		}
		// NOTE: taken before the state is looked at, so that a change after
		// the look is not missed.
		changed := p.nextChange()
		select {
		case p.wsem <- struct{}{}:
		case <-p.gone:
			return errPrimaryGone
		case <-timeout:
			return errGuestWaited
		}
		status := p.TxStatus()
		if p.inFlight() == 0 && status == TxActive && still() {
			break // holding wsem: p stays idle
		}
		<-p.wsem // nothing changed: no signal
		if status == TxFailed {
			return errGuestTxFailed
		}
		select {
		case <-changed:
		case <-p.gone:
			return errPrimaryGone
		case <-timeout:
			return errGuestWaited
		}
	}
	// NOTE: the request is assembled, and its tracker filled, before it is
	// queued and anything reaches the server: relay reads the tracker as soon
	// as replies come.
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	build(bw, &p.held)
	bw.Flush()
	p.owner().guestArriving(req)
	if !p.pushGuest(req) {
		p.release()
		return errGuestCanceled
	}
	p.w.Write(buf.Bytes())
	err := p.w.Flush()
	// The guest's request replaced the server's unnamed statement.
	p.held.clobberUnnamed()
	if err != nil || !req.guest.keepWrite {
		p.release()
	}
	if err != nil {
		return errPrimaryGone
	}
	return nil
}

// track records messages of req just written (or about to be) and the
// statements they execute; extended marks req complete, ended by a Sync.
// sent becomes req's: the caller must not touch it afterwards.
func (p *primaryConn) track(req *request, sent []sentMsg, stmts []*policy.Statement, extended bool) {
	p.mu.Lock()
	if len(req.replies.sent) == 0 {
		req.replies.sent = sent // the caller's to give: it keeps no reference
	} else {
		req.replies.sent = append(req.replies.sent, sent...)
	}
	if len(req.stmts) == 0 {
		req.stmts = stmts // the caller's to give, as sent
	} else {
		req.stmts = append(req.stmts, stmts...)
	}
	req.extended = req.extended || extended
	p.mu.Unlock()
}
