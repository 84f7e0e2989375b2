package proxy

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"
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
	return makeStmtKeyEnv("", sql, paramOIDs)
}

// makeStmtKeyEnv is makeStmtKey for a statement parsed under parse
// environment env (parseenv.go): texts parsed under different environments
// get different names, so a backend never runs one for the other
// (stampEnv passes the key of the text, without parameter types, as sql).
func makeStmtKeyEnv(env, sql string, paramOIDs []uint32) stmtKey {
	// NOTE: the hashed bytes are assembled in a recycled buffer and hashed
	// at once, and the name is built in an array: one allocation (the
	// name), where a hash.Hash, a copy of the text and the sum took four.
	bp := stmtKeyBufs.Get().(*[]byte)
	b := binary.BigEndian.AppendUint32((*bp)[:0], uint32(len(paramOIDs)))
	for _, oid := range paramOIDs {
		b = binary.BigEndian.AppendUint32(b, oid)
	}
	b = append(b, sql...)
	if env != "" {
		b = append(b, 0)
		b = append(b, env...)
	}
	sum := sha256.Sum256(b)
	if cap(b) <= maxRecycledKeyBuf {
		*bp = b
		stmtKeyBufs.Put(bp)
	}
	var name [len(stmtKeyPrefix) + 32]byte
	copy(name[:], stmtKeyPrefix)
	hex.Encode(name[len(stmtKeyPrefix):], sum[:16])
	return stmtKey(name[:])
}

// stmtKeyPrefix starts every content-derived statement name.
const stmtKeyPrefix = "txlane_"

// stmtKeyBufs recycles makeStmtKey's buffers up to maxRecycledKeyBuf bytes
// (a text with a long inline vector literal is not worth keeping a buffer
// for).
var stmtKeyBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxRecycledKeyBuf = 64 << 10

// preparedStmt is one statement a client has prepared, as the client sees it.
type preparedStmt struct {
	sql       string
	paramOIDs []uint32
	key       stmtKey
	// env is the parse environment the client's Parse ran under
	// (parseenv.go; "" in session mode), envUnknown says txlane did not
	// know it then, and stamped that both (and key) are set (stampEnv).
	env        string
	envUnknown bool
	stamped    bool
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
