package proxy

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// maxLaneStatements bounds the statements txlane keeps prepared on one
// vector-lane connection; the least recently used is closed beyond it.
const maxLaneStatements = 256

// stmtKey is the content-derived server-side name of a statement: the same SQL
// with the same parameter types gets the same name on every vector-lane
// connection, whichever client prepared it (as PgBouncer ≥ 1.21 does), so
// names from different clients never collide on shared connections.
type stmtKey string

func makeStmtKey(sql string, paramOIDs []uint32) stmtKey {
	h := sha256.New()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(paramOIDs)))
	h.Write(n[:])
	for _, oid := range paramOIDs {
		binary.BigEndian.PutUint32(n[:], oid)
		h.Write(n[:])
	}
	h.Write([]byte(sql))
	sum := h.Sum(nil)
	return stmtKey("txlane_" + hex.EncodeToString(sum[:16]))
}

// preparedStmt is one statement a client has prepared, as the client sees it.
type preparedStmt struct {
	sql       string
	paramOIDs []uint32
	key       stmtKey
}

// stmtLRU is the set of statements prepared on one vector-lane connection,
// in least-recently-used order. Not safe for concurrent use (the connection's
// holder owns it).
type stmtLRU struct {
	max   int
	order *list.List // of stmtKey, most recent at the front
	elems map[stmtKey]*list.Element
}

func newStmtLRU(max int) *stmtLRU {
	return &stmtLRU{max: max, order: list.New(), elems: make(map[stmtKey]*list.Element)}
}

func (l *stmtLRU) has(k stmtKey) bool { _, ok := l.elems[k]; return ok }

// touch marks k as used now.
func (l *stmtLRU) touch(k stmtKey) {
	if e, ok := l.elems[k]; ok {
		l.order.MoveToFront(e)
	}
}

// addKeep records k as prepared without evicting anything: the set may
// exceed its bound until the next request trims it (see trim).
func (l *stmtLRU) addKeep(k stmtKey) {
	if e, ok := l.elems[k]; ok {
		l.order.MoveToFront(e)
		return
	}
	l.elems[k] = l.order.PushFront(k)
}

// trimTo returns the least recently used statements beyond n, except those
// in keep, and forgets them: the caller closes them on the server.
func (l *stmtLRU) trimTo(n int, keep map[stmtKey]bool) []stmtKey {
	var out []stmtKey
	for e := l.order.Back(); e != nil && l.order.Len()-len(out) > n; {
		prev := e.Prev()
		k := e.Value.(stmtKey)
		if !keep[k] {
			out = append(out, k)
		}
		e = prev
	}
	for _, k := range out {
		l.remove(k)
	}
	return out
}

func (l *stmtLRU) remove(k stmtKey) {
	if e, ok := l.elems[k]; ok {
		l.order.Remove(e)
		delete(l.elems, k)
	}
}

// clear forgets every statement (the server dropped them all: DISCARD ALL,
// DEALLOCATE ALL).
func (l *stmtLRU) clear() {
	l.order.Init()
	clear(l.elems)
}
