package proxy

import (
	"bufio"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/txlane/txlane/router"

	"github.com/txlane/txlane/proxy/wire"
)

// What runs in a client's transaction block besides the client's own
// requests (txlane's own queries, and writes of other clients rerouted into
// the transaction with escape: reroute) must leave it as the client's own
// requests left it: its transaction status, its savepoints and its unnamed
// portal. PostgreSQL's simple Query destroys the unnamed statement and the
// unnamed portal (protocol "Extended Query": "An unnamed portal is
// destroyed at the end of the transaction, or as soon as the next Bind
// statement specifying the unnamed portal as destination is issued. (Note
// that a simple Query message also destroys the unnamed portal.)"). A client
// that executes its unnamed portal in parts (Execute with a row limit) would
// find it gone. So inside a block (or behind requests still in flight, which
// may open one) txlane sends its statements in extended form on a portal of
// its own name, ownPortal, and the unnamed statement, which txlane prepares
// again before the client's next use (heldStmts.clobberUnnamed); the client's
// unnamed portal is left alone.
//
// A rerouted write runs on guestPortal between a SAVEPOINT of txlane's own
// (rerouteSavepoint, its own request before the write's, so that the
// write's client can cancel the write but not the savepoint: cancel_gate.go)
// and a RELEASE of it at the end of the write's request. When the write
// fails, the holder's transaction is left failed after its ReadyForQuery,
// and the write's session rolls back to the savepoint and releases it
// before the holder can send anything (it keeps the connection's write
// right throughout: rerouteCleanup). The holder sees nothing: the write's
// error goes to the writer alone, and the holder's next statement, its own
// savepoints and its COMMIT work as before. Savepoint names of the holder
// cannot collide: ROLLBACK TO and RELEASE find the most recent savepoint of
// a name (PostgreSQL "SAVEPOINT": the old savepoint is kept, "though only
// the more recent one will be used when rolling back or releasing"), which
// is txlane's while the write runs.
//
// NOTE: each rerouted write adds a subtransaction to the holder's
// transaction; past 64 in one transaction PostgreSQL's per-backend cache of
// subtransaction IDs overflows, which slows snapshots of other sessions
// while that transaction lasts.
const (
	// ownPortal is the portal txlane's own statements run on inside a
	// client's transaction block.
	ownPortal = "txlane_own"
	// guestPortal is the portal a rerouted write's statements run on
	// (the writer's unnamed portal, on the holder's backend).
	guestPortal = "txlane_reroute"
	// rerouteSavepoint is the savepoint around a rerouted write.
	rerouteSavepoint = "txlane_reroute"

	rerouteSavepointSQL = "SAVEPOINT " + rerouteSavepoint
	rerouteReleaseSQL   = "RELEASE SAVEPOINT " + rerouteSavepoint
	// rerouteRescueSQL undoes a failed rerouted write.
	rerouteRescueSQL = "ROLLBACK TO SAVEPOINT " + rerouteSavepoint + "; " + rerouteReleaseSQL
)

// appendRun appends the extended-protocol messages that run sql (one
// statement) on portal through the unnamed statement: Close, Parse, Bind,
// Execute, Close. Results are in text format, as a simple Query's. The
// first Close drops the portal an earlier run left when its statement
// failed (the server skipped the rest up to Sync); closing a portal that
// does not exist is no error, in a failed transaction too.
func appendRun(buf []byte, sql, portal string) []byte {
	buf, _ = (&pgproto3.Close{ObjectType: wire.ObjectPortal, Name: portal}).Encode(buf)
	buf = wire.AppendParse(buf, "", sql, nil)
	buf, _ = (&pgproto3.Bind{DestinationPortal: portal}).Encode(buf)
	buf, _ = (&pgproto3.Execute{Portal: portal}).Encode(buf)
	buf, _ = (&pgproto3.Close{ObjectType: wire.ObjectPortal, Name: portal}).Encode(buf)
	return buf
}

// portalSafeParts returns the statements of sql, txlane's own query about to
// be written to p, when it must go in extended form (ok): p is in a
// transaction block, or has requests in flight that may leave it in one,
// where the client may have an unnamed portal. A text that cannot be split
// goes as a simple Query (ok false).
func (p *primaryConn) portalSafeParts(sql string) (parts []string, ok bool) {
	if p.TxStatus() == TxIdle && p.inFlight() == 0 {
		return nil, false
	}
	return ownSplits.split(sql)
}

// splitCache remembers how txlane's own queries split (most are one of a
// few texts; splitting one parses it, some 15 µs): at most maxSplits
// texts, forgotten all at once when full.
type splitCache struct {
	mu sync.Mutex
	m  map[string][]string
}

const maxSplits = 128

var ownSplits = splitCache{m: make(map[string][]string)}

// split returns the statements of sql; ok is false when it cannot be
// split or holds none.
func (c *splitCache) split(sql string) (parts []string, ok bool) {
	c.mu.Lock()
	parts, ok = c.m[sql]
	c.mu.Unlock()
	if ok {
		return parts, true
	}
	parts, ok = router.SplitStatements(sql)
	if !ok || len(parts) == 0 {
		return nil, false
	}
	c.mu.Lock()
	if len(c.m) >= maxSplits {
		clear(c.m)
	}
	c.m[sql] = parts
	c.mu.Unlock()
	return parts, true
}

// writeParts writes parts as txlane's own request answered into q, in
// extended form (see portalSafeParts); the caller holds wsem.
func (p *primaryConn) writeParts(q *internalQuery, parts []string) error {
	p.push(&request{internal: q})
	// The Parse messages replace the server's unnamed statement.
	p.held.clobberUnnamed()
	var buf []byte
	for _, sql := range parts {
		buf = appendRun(buf, sql, ownPortal)
	}
	p.w.Write(wire.AppendSync(buf))
	return p.w.Flush()
}

// guestSavepoint is the request that takes rerouteSavepoint before a
// rerouted write's (pushGuest queues it first; its answer reaches no one).
func guestSavepoint() (*request, []byte) {
	req := &request{internal: &internalQuery{done: make(chan struct{})}}
	return req, wire.AppendSync(appendRun(nil, rerouteSavepointSQL, ownPortal))
}

// guestQueryParts returns the statements of a simple Query a rerouted
// request sends, as writeGuestQuery will send them, or why it cannot be
// rerouted ("" when it can).
func guestQueryParts(b *batch, steps []planStep) ([]string, string) {
	parts, ok := router.SplitStatements(b.sql)
	want := 1
	if n := len(steps[0].stmt.Parts); n > 0 {
		want = n
	}
	if !ok || len(parts) != want {
		return nil, "txlane could not split the request's statements as the server would, to run them without touching the holder's unnamed portal."
	}
	return parts, ""
}

// writeGuestQuery writes a rerouted simple Query as extended-protocol
// messages on guestPortal, one Parse, Bind, Describe, Execute and Close per
// statement, followed by the savepoint's RELEASE and a Sync: the client
// sees what the simple Query would have answered (RowDescription for a
// statement returning rows, CommandComplete, the first error, which skips
// the rest), and the holder's unnamed portal stays.
func (s *session) writeGuestQuery(w *bufio.Writer, b *batch, steps []planStep, tr *replyTracker) {
	parts, _ := guestQueryParts(b, steps) // rerouteBar refused what it cannot split
	s.dropStmt("")                        // as the simple Query would have, on the writer's own backend
	st := steps[0].stmt
	for i, sql := range parts {
		exec := st
		if len(st.Parts) > 0 {
			exec = &st.Parts[i]
		}
		w.Write(wire.AppendParse(nil, "", sql, nil))
		tr.add(sentMsg{typ: wire.Parse, hidden: true})
		bind, _ := (&pgproto3.Bind{DestinationPortal: guestPortal}).Encode(nil)
		w.Write(bind)
		tr.add(sentMsg{typ: wire.Bind, hidden: true})
		desc, _ := (&pgproto3.Describe{ObjectType: wire.ObjectPortal, Name: guestPortal}).Encode(nil)
		w.Write(desc)
		tr.add(sentMsg{typ: wire.Describe, kind: wire.ObjectPortal, hideNoData: true})
		ex, _ := (&pgproto3.Execute{Portal: guestPortal}).Encode(nil)
		w.Write(ex)
		tr.add(sentMsg{typ: wire.Execute, exec: exec})
		closeGuestPortal(w, tr)
	}
	writeGuestEnd(w, tr)
}

// closeGuestPortal closes guestPortal (hidden: a Bind to a named portal
// needs it closed, and closing one that does not exist is no error).
func closeGuestPortal(w *bufio.Writer, tr *replyTracker) {
	c, _ := (&pgproto3.Close{ObjectType: wire.ObjectPortal, Name: guestPortal}).Encode(nil)
	w.Write(c)
	tr.add(sentMsg{typ: wire.Close, kind: wire.ObjectPortal, hidden: true})
}

// writeGuestEnd writes the end of a rerouted request: the close of its
// portal, the savepoint's
// RELEASE (hidden, skipped by the server if the write failed) and the Sync
// whose ReadyForQuery ends the writer's answer.
func writeGuestEnd(w *bufio.Writer, tr *replyTracker) {
	closeGuestPortal(w, tr)
	w.Write(appendRun(nil, rerouteReleaseSQL, ownPortal))
	trackRun(tr)
	w.Write(wire.AppendSync(nil))
	tr.add(sentMsg{typ: wire.Sync})
}

// trackRun records in tr the messages appendRun writes, hidden from the
// client (an error still reaches it).
func trackRun(tr *replyTracker) {
	for _, typ := range []wire.Frontend{wire.Close, wire.Parse, wire.Bind, wire.Execute, wire.Close} {
		m := sentMsg{typ: typ, hidden: true}
		if typ == wire.Close {
			m.kind = wire.ObjectPortal
		}
		tr.add(m)
	}
}

// writeGuestMsg writes message m of a rerouted extended request when it
// names the unnamed portal (Execute, Describe 'P', Close 'P': on
// guestPortal instead) or is its Sync (writeGuestEnd); false leaves m to the
// caller. sm is what the tracker records of m.
func writeGuestMsg(w *bufio.Writer, m *batchMsg, tr *replyTracker, sm sentMsg) bool {
	var out []byte
	switch {
	case m.typ == wire.Sync:
		writeGuestEnd(w, tr)
		return true
	case m.typ == wire.Execute:
		out, _ = (&pgproto3.Execute{Portal: guestPortal, MaxRows: m.maxRows}).Encode(nil)
	case m.typ == wire.Describe && m.kind == wire.ObjectPortal:
		out, _ = (&pgproto3.Describe{ObjectType: wire.ObjectPortal, Name: guestPortal}).Encode(nil)
	case m.typ == wire.Close && m.kind == wire.ObjectPortal:
		out, _ = (&pgproto3.Close{ObjectType: wire.ObjectPortal, Name: guestPortal}).Encode(nil)
	default:
		return false
	}
	w.Write(out)
	tr.add(sm)
	return true
}

// rerouteCleanup ends a rerouted write's turn on host, whose write right the
// write's session kept since the write was sent (runWhenIdle, keepWrite):
// when the write failed (the holder's transaction is failed now), it rolls
// back to rerouteSavepoint and releases it, so that the holder finds its
// transaction as it left it; then it gives the write right back.
//
// First the session's cancels stop going to host (restorePrimary), which
// waits for a cancel of the write being forwarded (cancelMu is held across
// its round trip): once the server has taken it, host runs nothing of the
// write's, or the rescue, or the holder's next request, for it to hit
// (PostgreSQL ignores a cancel that arrives while a backend waits for a
// command). Without it a cancel the writer sent as its write ended reached
// the holder's next statement.
func (s *session) rerouteCleanup(host *primaryConn) {
	defer host.release()
	s.restorePrimary()
	if host.TxStatus() != TxFailed || !host.usable() {
		return
	}
	q, err := host.queryKeep(rerouteRescueSQL, true)
	switch {
	case err != nil:
		s.log.Warn("rerouted write: rolling back to its savepoint failed", zap.Error(err))
	case q.err != nil:
		// Only when the savepoint itself was not taken: the holder's
		// transaction stays failed, as an error of its own would leave it.
		s.log.Warn("rerouted write: rolling back to its savepoint failed", zap.String("error", errText(q)))
	}
}

// hasConfirmedPortal reports whether the server confirmed a portal of the
// client's named name (and it was not closed since).
func (p *planner) hasConfirmedPortal(name string) bool {
	p.confirmedMu.Lock()
	defer p.confirmedMu.Unlock()
	_, ok := p.confirmed[name]
	return ok
}
