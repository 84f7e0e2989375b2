package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy/wire"
)

// maxBatchBytes bounds how much of an extended-protocol batch txlane holds
// before its Sync arrives. A longer batch is sent to the primary lane as it
// comes (fail safe) instead of growing without limit.
const maxBatchBytes = 1 << 20

// batchMsg is one client message of a batch: its raw bytes are
// buf[start:end] of the batch; the fields describe what routing needs.
type batchMsg struct {
	typ        wire.Frontend
	start, end int
	// name is the statement named by Parse, Bind, Describe 'S' or Close 'S';
	// portal the portal named by Bind, Execute, Describe 'P' or Close 'P'.
	name, portal string
	kind         byte // Describe and Close: 'S' or 'P'
	// stmt is the statement a Parse defines.
	stmt *preparedStmt
	// resolved is the client's statement a Bind or Describe 'S' names, as
	// the request's plan resolved it (nil: unknown to txlane).
	resolved *preparedStmt
	// maxRows is an Execute's row limit (0: all rows).
	maxRows uint32
	// bound is what the plan bound a Bind's portal to.
	bound portalRef
	// params is a Bind's body after its names (formats, values, result
	// formats), in the batch's buffer: valid only while the planner adds
	// the message.
	params []byte
}

// batch holds the messages of the current request not yet sent: a simple
// Query, or the extended-protocol messages up to and including Sync, or the
// part of them that arrived since the last part went out early. The client
// goroutine owns it.
type batch struct {
	buf  []byte
	msgs []batchMsg
	// sql is the query text of a simple Query batch.
	sql string
	// synced is true when the batch ends with Sync or is a simple Query: the
	// server answers it with ReadyForQuery.
	synced bool
	// memo outlives reset: the client's recent texts and names.
	memo textMemo
}

func (b *batch) reset() {
	b.buf = b.buf[:0]
	b.msgs = b.msgs[:0]
	b.sql = ""
	b.synced = false
}

// function reports whether b is a fast-path function call.
func (b *batch) function() bool {
	return len(b.msgs) == 1 && b.msgs[0].typ == wire.FunctionCall
}

// add copies the current message of r into the batch and decodes the fields
// routing needs.
func (b *batch) add(typ wire.Frontend, r *wire.Reader[wire.Frontend]) error {
	body, err := r.Body()
	if err != nil {
		return err
	}
	start := len(b.buf)
	b.buf = append(b.buf, byte(typ), 0, 0, 0, 0)
	b.buf = append(b.buf, body...)
	wire.PutLength(b.buf[start+1:], len(body))
	m := batchMsg{typ: typ, start: start, end: len(b.buf)}
	switch typ {
	case wire.Query:
		var q pgproto3.Query
		if err := q.Decode(body); err != nil {
			return err
		}
		b.sql = q.String
		b.synced = true
	case wire.Sync:
		b.synced = true
	case wire.Parse:
		name, st, ok := b.memo.parse(body)
		if !ok {
			return errMalformed(typ)
		}
		m.name, m.stmt = name, st
	case wire.Bind:
		// Bind starts with the portal and statement names; the rest (parameter
		// values) is decoded only where a value matters (bindUnits).
		portal, rest, ok := b.memo.cstring(body)
		if !ok {
			return errMalformed(typ)
		}
		name, params, ok := b.memo.cstring(rest)
		if !ok {
			return errMalformed(typ)
		}
		m.portal, m.name, m.params = portal, name, params
	case wire.Describe, wire.Close:
		if len(body) < 2 {
			return errMalformed(typ)
		}
		name, _, ok := b.memo.cstring(body[1:])
		if !ok {
			return errMalformed(typ)
		}
		m.kind = body[0]
		if m.kind == wire.ObjectStatement {
			m.name = name
		} else {
			m.portal = name
		}
	case wire.Execute:
		portal, rest, ok := b.memo.cstring(body)
		if !ok || len(rest) < 4 {
			return errMalformed(typ)
		}
		m.portal = portal
		m.maxRows = uint32(rest[0])<<24 | uint32(rest[1])<<16 | uint32(rest[2])<<8 | uint32(rest[3])
	}
	b.msgs = append(b.msgs, m)
	return nil
}

func errMalformed(typ wire.Frontend) error {
	return &wire.Error{Severity: "FATAL", Code: CodeProtocolViolation, Message: "malformed " + string(typ) + " message"}
}
