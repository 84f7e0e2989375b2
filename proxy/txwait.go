package proxy

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/txlane/txlane/proxy/wire"
)

// poolWait lets a CancelRequest end a client's wait for a pooled backend
// (transaction mode, attach). To the client the request it sent is running:
// PostgreSQL cancels a running statement at a CancelRequest, and a request
// that waits in txlane for a backend is that statement, not yet begun. The
// request then fails with ERROR 57014 "canceling statement due to user
// request", as PostgreSQL's would, before anything of it reached a server,
// and the connection stays usable.
//
// The wait lasts from the moment attach asks its pool for a backend until
// the backend is the target of the client's cancels (session.mu.running),
// after its session settings were moved there: a cancel in between ends the
// wait, and a backend already taken goes back to the pool unused. Both ends
// are decided under session.cancelMu, which forwardCancel holds throughout,
// so a cancel is either forwarded to the backend or ends the wait, never
// lost between the two.
type poolWait struct {
	mu sync.Mutex
	// active: the client waits (begin to end).
	active bool
	// gotCancel: a CancelRequest came during the current wait.
	gotCancel bool
	// cancel ends the current dial of a new backend for the wait (nil
	// while none runs: see dialContext).
	cancel context.CancelCauseFunc
	// cancelCh has a value while a CancelRequest ended the current block
	// (capacity 1; block empties it). timer bounds the block. Both live as
	// long as the session and are reused by every block: a block in a full
	// pool is the common case at many clients per server connection, and a
	// context with a timeout per block cost about 5% of txlane's CPU at 200
	// clients over pool_size 8 (pgbench -S -M extended).
	cancelCh chan struct{}
	timer    *time.Timer
	// deadline is when the current block ends by its timeout.
	deadline time.Time
	// blockedSince is when the current block in the pool began (zero while
	// there is none): the client waits for a server, PgBouncer's
	// cl_waiting (SHOW CLIENTS state waiting, SHOW POOLS cl_waiting and
	// maxwait read it through blocked).
	blockedSince time.Time
}

// errCancelRequest is the cause of a wait ended by a CancelRequest.
var errCancelRequest = errors.New("canceled by the client's cancel request")

// errWaitCanceled: a CancelRequest ended the client's wait for a backend;
// the request is answered with ERROR 57014 (answerCanceledWait).
var errWaitCanceled = errors.New("the wait for a pooled backend was canceled by the client")

// begin starts a wait: from here to end, a CancelRequest ends it.
func (w *poolWait) begin() {
	w.mu.Lock()
	w.active, w.gotCancel, w.cancel = true, false, nil
	w.mu.Unlock()
}

// block starts a block in the pool of at most timeout; it ends with the
// timeout (w.timer) or at the client's cancel (w.cancelCh), at once if one
// came already. unblock ends it.
func (w *poolWait) block(timeout time.Duration) {
	w.mu.Lock()
	if w.cancelCh == nil {
		w.cancelCh = make(chan struct{}, 1)
		w.timer = time.NewTimer(timeout)
	} else {
		w.timer.Reset(timeout)
	}
	select {
	case <-w.cancelCh: // a cancel of an earlier wait
	default:
	}
	if w.gotCancel {
		w.cancelCh <- struct{}{}
	}
	now := time.Now()
	w.blockedSince, w.deadline = now, now.Add(timeout)
	w.mu.Unlock()
}

// unblock ends the current block (see block).
func (w *poolWait) unblock() {
	w.mu.Lock()
	w.blockedSince = time.Time{}
	w.mu.Unlock()
	// NOTE: since Go 1.23 a stopped timer's channel holds no stale value,
	// so the next block's Reset starts clean.
	w.timer.Stop()
}

// dialContext returns the context for dialing a new backend during the
// current block: it ends at the block's deadline or at the client's
// cancel (cause errCancelRequest). stop releases it.
func (w *poolWait) dialContext() (ctx context.Context, stop func()) {
	parent, cancel := context.WithCancelCause(context.Background())
	ctx, cancelTimeout := context.WithDeadline(parent, w.deadline)
	w.mu.Lock()
	if w.gotCancel {
		cancel(errCancelRequest)
	}
	w.cancel = cancel
	w.mu.Unlock()
	return ctx, func() {
		w.mu.Lock()
		w.cancel = nil
		w.mu.Unlock()
		cancelTimeout()
		cancel(nil)
	}
}

// blocked returns when the client's current block in the pool began, and
// false when it is not blocked there (it holds a backend, or took one idle
// in the pool without waiting, or sent no request).
func (w *poolWait) blocked() (since time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.blockedSince, !w.blockedSince.IsZero()
}

// end stops taking cancels for the current wait.
func (w *poolWait) end() {
	w.mu.Lock()
	w.active, w.cancel = false, nil
	w.mu.Unlock()
}

// cancelWait ends the client's wait for a backend, if it waits (called by
// forwardCancel, holding the session's cancelMu, when no backend runs the
// client's request).
func (w *poolWait) cancelWait() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.active {
		return
	}
	w.gotCancel = true
	if w.cancel != nil {
		w.cancel(errCancelRequest)
	}
	if w.cancelCh != nil {
		select {
		case w.cancelCh <- struct{}{}:
		default: // one is there already
		}
	}
}

// canceled reports whether a CancelRequest came during the current wait.
func (w *poolWait) canceled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gotCancel
}

// answerCanceledWait answers the current request with ERROR 57014 when err
// says a CancelRequest ended its wait for a backend: the client holds no
// backend, so it is idle outside a transaction block ('I'). synced says the
// request is complete (its Sync or Query came); otherwise its remaining
// messages are dropped up to its Sync, which gets the ReadyForQuery. Any
// other err is returned as it is.
func (s *session) answerCanceledWait(err error) error {
	if !errors.Is(err, errWaitCanceled) {
		return err
	}
	s.log.Debug("a cancel request ended the wait for a pooled backend")
	return s.refuseAtBoundary(&wire.Error{Severity: "ERROR", Code: CodeQueryCanceled,
		Message: "canceling statement due to user request"})
}
