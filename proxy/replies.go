package proxy

import (
	"sync"

	"github.com/txlane/txlane/policy"

	"github.com/txlane/txlane/proxy/wire"
)

// sentMsg is one message sent to a backend, kept to match the server's
// replies to it: the server answers messages in order, so the replies can be
// attributed exactly, and those to messages txlane injected hidden from the
// client wherever they fall in the request.
type sentMsg struct {
	typ  wire.Frontend // Parse, Bind, Describe, Execute, Close, Sync, Flush, Query, FunctionCall
	kind byte          // Describe and Close: 'S' or 'P'
	// hidden: txlane injected the message; its replies do not reach the
	// client (an ErrorResponse always does: the request failed).
	// hideNoData: a Describe txlane added for a simple Query's
	// RowDescription; its NoData does not reach the client.
	hidden, hideNoData bool
	// change is applied when the message succeeds (ParseComplete,
	// CloseComplete): registries follow what the server did, not what was
	// asked of it.
	change *regChange
	// portal is applied when a Bind or Close of a portal succeeds (and when a
	// Query completes, for the unnamed portal it drops).
	portal *portalChange
	// exec is the statement an Execute, Query or FunctionCall runs (from the
	// request's plan); it takes effect (transaction state, DEALLOCATE,
	// DISCARD) only once the server reports it complete, so that statements
	// the server skipped after an error change nothing.
	exec *policy.Statement
	// parts counts the statements of a multi-statement Query completed so
	// far; failed: the Query met an error, so its later parts did not run.
	parts  int
	failed bool
	// injected names the statement of a Parse or Close txlane injected to
	// prepare the backend, recorded as done when sent: if the server fails
	// or skips it, what the backend holds under the name is unknown.
	injected *string
}

// regChange is the effect of a successful Parse or Close of a statement on
// what txlane tracks: the client's registry, and what a backend holds.
type regChange struct {
	reg  *registry     // the client's registry
	name string        // the client's statement name
	stmt *preparedStmt // the statement parsed; nil for Close
	// client: the client's own registry changes (false for a message txlane
	// injected to prepare a backend).
	client bool
	// prim, when set, is the primary connection that now holds (or dropped)
	// the statement under the client's name; epoch is prim's count of
	// txlane's own queries when the change was sent (see
	// heldStmts.unnamedEpoch).
	prim  *heldStmts
	epoch uint64
	// shared, when set, is the set of content-named statements of a shared
	// backend (a vector-lane connection, or a holder's primary taking
	// rerouted writes), guarded by sharedMu when not nil.
	shared   *stmtLRU
	sharedMu *sync.Mutex
	key      stmtKey
}

// apply makes the change. It takes the locks it needs, one at a time.
func (c *regChange) apply() {
	if c.client {
		c.reg.put(c.name, c.stmt)
	}
	if c.prim != nil {
		c.prim.mu.Lock()
		switch {
		case c.name == "" && c.epoch != c.prim.unnamedEpoch:
			// txlane's own query replaced the unnamed statement after this
			// change was sent: the server holds that one now.
		case c.stmt != nil:
			c.prim.named[c.name] = c.stmt.key
		default:
			delete(c.prim.named, c.name)
		}
		c.prim.mu.Unlock()
	}
	if c.shared != nil {
		if c.sharedMu != nil {
			c.sharedMu.Lock()
			defer c.sharedMu.Unlock()
		}
		if c.stmt != nil {
			c.shared.addKeep(c.key)
		} else {
			c.shared.remove(c.key)
		}
	}
}

// replyTracker attributes a backend's replies to the messages of one
// request. Not safe for concurrent use: its owner's lock guards it.
type replyTracker struct {
	sent []sentMsg
	pos  int // the message whose replies come next
	// reg, when set, is the client registry that SQL DEALLOCATE and DISCARD
	// ALL change when they complete (in pipeline order with Parse and Close),
	// and held what the backend running them holds under the client's names.
	reg  *registry
	held *heldStmts
	// done lists the statements the server reported complete, in order;
	// doneRoom holds the first few (no allocation for a typical request).
	done     []*policy.Statement
	doneRoom [2]*policy.Statement
	// describedParams: a Describe 'S' got its ParameterDescription and awaits
	// its RowDescription or NoData.
	describedParams bool
}

func (t *replyTracker) add(m sentMsg) { t.sent = append(t.sent, m) }

// reply attributes the reply of type typ and says whether it must be hidden
// from the client. changes of messages that completed are applied.
func (t *replyTracker) reply(typ wire.Backend) (hide bool) {
	switch typ {
	case wire.NoticeResponse, wire.NotificationResponse, wire.ParameterStatus:
		return false // asynchronous: the client's, whatever runs
	}
	for t.pos < len(t.sent) && t.sent[t.pos].typ == wire.Flush {
		t.pos++
	}
	if t.pos >= len(t.sent) {
		return false
	}
	m := &t.sent[t.pos]
	if typ == wire.ErrorResponse {
		if m.typ == wire.Query || m.typ == wire.FunctionCall {
			m.failed = true
			return false // the ReadyForQuery still ends it
		}
		// The server skips everything up to the next Sync: those messages
		// get no reply and change nothing.
		t.describedParams = false
		for t.pos < len(t.sent) && t.sent[t.pos].typ != wire.Sync {
			if n := t.sent[t.pos].injected; n != nil && t.held != nil {
				t.held.set(*n, unknownStmt)
			}
			t.pos++
		}
		return false
	}
	done := false
	switch m.typ {
	case wire.Query:
		switch typ {
		case wire.CommandComplete, wire.EmptyQueryResponse:
			if m.exec != nil {
				if len(m.exec.Parts) == 0 {
					if m.parts == 0 {
						t.completed(m.exec)
					}
				} else if m.parts < len(m.exec.Parts) {
					t.completed(&m.exec.Parts[m.parts])
				}
			}
			m.parts++
		case wire.ReadyForQuery:
			done = true
			// NOTE: without an error every statement of the text ran, whatever
			// the count of completions said (a conservative catch-up).
			if m.exec != nil && !m.failed {
				for ; m.parts < len(m.exec.Parts); m.parts++ {
					t.completed(&m.exec.Parts[m.parts])
				}
				if len(m.exec.Parts) == 0 && m.parts == 0 {
					t.completed(m.exec)
				}
			}
		}
	case wire.FunctionCall:
		if typ == wire.FunctionCallResponse && m.exec != nil {
			t.completed(m.exec)
		}
		done = typ == wire.ReadyForQuery
	case wire.Parse, wire.Bind, wire.Close, wire.Sync:
		done = typ == replyOf(m.typ)
	case wire.Describe:
		if m.kind == wire.ObjectStatement && !t.describedParams && typ == wire.ParameterDescription {
			t.describedParams = true
			return m.hidden
		}
		done = typ == wire.RowDescription || typ == wire.NoData
		t.describedParams = false
	case wire.Execute:
		done = typ == wire.CommandComplete || typ == wire.EmptyQueryResponse || typ == wire.PortalSuspended
		if done && m.exec != nil {
			t.completed(m.exec)
		}
	}
	if done {
		if m.change != nil {
			m.change.apply()
		}
		if m.portal != nil {
			m.portal.apply()
		}
		t.pos++
	}
	return m.hidden || m.hideNoData && typ == wire.NoData
}

// completed records that st ran and applies what it does to the client's
// prepared statements.
func (t *replyTracker) completed(st *policy.Statement) {
	if t.done == nil {
		t.done = t.doneRoom[:0]
	}
	t.done = append(t.done, st)
	if t.reg == nil {
		return
	}
	if d := st.Deallocate; d != nil {
		t.reg.drop(d.Name, d.All)
		t.held.drop(d.Name, d.All)
	}
	if st.Discard == policy.DiscardAll {
		t.reg.drop("", true)
		t.held.drop("", true)
	}
}

// replyOf is the reply that completes a message of type typ.
func replyOf(typ wire.Frontend) wire.Backend {
	switch typ {
	case wire.Parse:
		return wire.ParseComplete
	case wire.Bind:
		return wire.BindComplete
	case wire.Close:
		return wire.CloseComplete
	}
	return wire.ReadyForQuery // Sync, Query, FunctionCall
}

// registry is a client's prepared statements as the client sees them. relay
// applies confirmed changes; the client goroutine reads it and applies the
// effects of SQL DEALLOCATE / DISCARD ALL.
type registry struct {
	mu    sync.Mutex
	stmts map[string]*preparedStmt // the client's statements, "" = unnamed
	// unknown counts the statements in stmts whose parse environment is
	// unknown (parseenv.go).
	unknown int
}

func newRegistry() *registry {
	return &registry{stmts: make(map[string]*preparedStmt)}
}

// get returns the client's statement name, or nil.
func (r *registry) get(name string) *preparedStmt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stmts[name]
}

// drop removes name (all: everything) from the client's statements.
func (r *registry) drop(name string, all bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if all {
		clear(r.stmts)
		r.unknown = 0
		return
	}
	r.delLocked(name)
}
