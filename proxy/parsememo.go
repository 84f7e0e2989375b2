package proxy

import (
	"bytes"
	"encoding/binary"
)

// textMemo remembers the last few statement texts and names one client
// sent, so that a client that sends the same ones again — an unnamed
// statement parsed per request, as most drivers' extended protocol does, or
// a named statement bound per request — costs no copy of the text, no
// hash for its key and no allocation. The client goroutine owns it (in its
// batch).
//
// Invariant: the strings and OID slices handed out are never modified by
// anyone (preparedStmt's fields are read-only once made), so two statements
// may share them.
type textMemo struct {
	texts    [memoTexts]memoText
	nextText int
	names    [memoNames]string
	nextName int
}

// memoTexts and memoNames bound the texts and names remembered: a client
// alternating between more than that many misses and pays as without the
// memo (one text copy and one hash per Parse).
const (
	memoTexts = 8
	memoNames = 8
	// maxMemoText bounds, in bytes, a text remembered: a long one (an
	// inline vector literal) is rarely sent twice, and 10,000 clients each
	// keeping a few would hold a lot of memory.
	maxMemoText = 4 << 10
)

// memoText is one remembered Parse: raw is the Parse body after the
// statement name (the text, its terminator and the parameter types, as on
// the wire); sql is the text (a part of raw) and key its statement key.
type memoText struct {
	raw  string
	sql  string
	oids []uint32
	key  stmtKey
}

// parse decodes a Parse body (name, text, parameter types: PostgreSQL
// protocol, "Message Formats", Parse) and returns the statement it
// defines. ok is false for a malformed body: a missing terminator, or a
// parameter-type count the body does not hold.
func (m *textMemo) parse(body []byte) (name string, st *preparedStmt, ok bool) {
	name, rest, ok := m.cstring(body)
	if !ok {
		return "", nil, false
	}
	for i := range m.texts {
		t := &m.texts[i]
		if len(t.raw) == len(rest) && t.raw == string(rest) {
			return name, &preparedStmt{sql: t.sql, paramOIDs: t.oids, key: t.key}, true
		}
	}
	end := bytes.IndexByte(rest, 0)
	if end < 0 || len(rest) < end+3 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(rest[end+1:]))
	types := rest[end+3:]
	if len(types) != 4*n {
		return "", nil, false
	}
	var oids []uint32
	if n > 0 {
		oids = make([]uint32, n)
		for i := range oids {
			oids[i] = binary.BigEndian.Uint32(types[4*i:])
		}
	}
	raw := string(rest)
	t := memoText{raw: raw, sql: raw[:end], oids: oids, key: makeStmtKey(raw[:end], oids)}
	if len(raw) > maxMemoText {
		return name, &preparedStmt{sql: t.sql, paramOIDs: t.oids, key: t.key}, true
	}
	m.texts[m.nextText] = t
	m.nextText = (m.nextText + 1) % memoTexts
	return name, &preparedStmt{sql: t.sql, paramOIDs: t.oids, key: t.key}, true
}

// cstring is wire.CString with the string drawn from the names remembered
// when it is one of them: the empty name, or a statement or portal name the
// client used lately, costs no allocation.
func (m *textMemo) cstring(b []byte) (s string, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	rest = b[i+1:]
	if i == 0 {
		return "", rest, true
	}
	for _, n := range m.names {
		if len(n) == i && n == string(b[:i]) {
			return n, rest, true
		}
	}
	s = string(b[:i])
	m.names[m.nextName] = s
	m.nextName = (m.nextName + 1) % memoNames
	return s, rest, true
}
