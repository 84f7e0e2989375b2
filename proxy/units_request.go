package proxy

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"

	"github.com/txlane/txlane/proxy/wire"
)

// A unit set inside the request that writes. The unit-of-work check runs
// before a request is sent, so a statement of the request that sets
// txlane.unit is read from its text: SET [LOCAL] txlane.unit (planner.step)
// and set_config('txlane.unit', v, is_local) whose v is a constant or a
// bind parameter (configUnits, bindUnits) carry their unit for the whole
// request (a unit too many only adds a check). A statement that may set it
// in a way txlane cannot read before it runs (a DO block, CALL, a function,
// set_config with a computed value or name, a bind parameter txlane cannot
// decode) makes every write after it in the request of an unknown unit: refused (25L01) while any other connection holds a
// unit, or may (policy.shared_units: a client of another instance), as a
// write pipelined behind such a request is (checkUnknown).

// configUnits adds to the current plan the units the set_config calls of
// part (one statement) set to constants.
func (p *planner) configUnits(part *policy.Statement) {
	pl := &p.cur
	for _, c := range part.ConfigCalls {
		if c.Name == unitSetting && c.Known && c.Param == 0 && c.Value != "" && !slices.Contains(pl.units, c.Value) {
			pl.units = append(pl.units, c.Value)
		}
	}
}

// boundUnits adds to the current plan the units a portal's Bind gave
// set_config('txlane.unit', $n, …), and marks the step just added when one
// could not be read.
func (p *planner) boundUnits(ref portalRef) {
	pl := &p.cur
	for _, u := range ref.units {
		if !slices.Contains(pl.units, u) {
			pl.units = append(pl.units, u)
		}
	}
	if ref.unitUnread {
		pl.steps[len(pl.steps)-1].unitUnread = true
	}
}

// bindUnits returns the values a Bind of st (params: the Bind's body after
// its names) gives the bind parameters st passes to set_config as the value
// of txlane.unit; unread is true when one cannot be read: binary, or of a
// declared type other than text (whose text form the server's cast may
// change), or the Bind is malformed (the server refuses it then).
func bindUnits(cl *router.Classifier, st *preparedStmt, params []byte) (units []string, unread bool) {
	if !containsFold(st.sql, "set_config") {
		return nil, false
	}
	eachPart(cl.Classify(st.sql), func(part *policy.Statement) {
		for _, c := range part.ConfigCalls {
			if c.Name != unitSetting || c.Param == 0 {
				continue
			}
			v, ok := bindParam(params, c.Param, st.paramOIDs)
			switch {
			case !ok:
				unread = true
			case v != "" && !slices.Contains(units, v):
				units = append(units, v)
			}
		}
	})
	return units, unread
}

// Type OIDs whose values a text-format bind parameter passes to a text
// argument unchanged (PostgreSQL's pg_type).
const (
	oidUnspecified = 0
	oidName        = 19
	oidText        = 25
	oidBPChar      = 1042
	oidVarchar     = 1043
)

// bindParam returns the n-th (1-based) parameter value of a Bind body after
// its names, as the text the server passes to a text argument; ok is false
// when it cannot say (see bindUnits) or the value is not UTF-8, and for a
// NULL: set_config(name, NULL, …) resets the setting, to a login value
// txlane may not know (PostgreSQL's set_config_by_name).
func bindParam(body []byte, n int, oids []uint32) (string, bool) {
	declared := false // a text type declared by the client
	if n <= len(oids) {
		switch oids[n-1] {
		case oidUnspecified:
		case oidName, oidText, oidBPChar, oidVarchar:
			declared = true
		default:
			return "", false
		}
	}
	if len(body) < 2 {
		return "", false
	}
	nf := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	if len(body) < 2*nf {
		return "", false
	}
	formats := body[:2*nf]
	body = body[2*nf:]
	if len(body) < 2 {
		return "", false
	}
	np := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	if n > np {
		return "", false
	}
	format := uint16(0)
	switch {
	case nf == 1:
		format = binary.BigEndian.Uint16(formats)
	case nf >= n:
		format = binary.BigEndian.Uint16(formats[2*(n-1):])
	}
	if format != 0 && !declared {
		// Binary, of a type the server infers: text's binary form is its
		// text, but a declared text type is needed to know it is text.
		return "", false
	}
	for i := 1; ; i++ {
		if len(body) < 4 {
			return "", false
		}
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l < 0 {
			if i == n {
				return "", false
			}
			continue
		}
		if int(l) > len(body) {
			return "", false
		}
		if i == n {
			v := string(body[:l])
			// NOTE: a value that is not UTF-8 is in the client's own
			// encoding (LATIN1, GB18030, …), which the server converts and
			// txlane cannot: it is read back from the server (unitReadSQL),
			// as other units txlane cannot read before they are set.
			return v, utf8.ValidString(v)
		}
		body = body[l:]
	}
}

// containsFold reports whether s contains sub, ASCII case-insensitively.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// opaqueUnitSetter reports whether part (one statement) may set txlane.unit
// in a way txlane cannot read from its text before it runs. Its set_config
// calls with constant names are read when they are all it may change the
// session with (policy.Statement.SetConfig, SetConfigLocal) and those that
// name txlane.unit have a constant or bind-parameter value.
func opaqueUnitSetter(part *policy.Statement) bool {
	if !mayChangeUnit(part) {
		return false
	}
	exact := (len(part.SetConfig) > 0 || part.SetConfigLocal) && part.Discard == policy.DiscardNone &&
		part.Class != policy.Unknown && part.Command != "DO" && part.Command != "CALL"
	if !exact {
		return true
	}
	for _, c := range part.ConfigCalls {
		if c.Name == unitSetting && !c.Known {
			return true
		}
	}
	return false
}

// unitUnknownWrite returns the first step from from on that writes after a
// statement before it in the request may have set txlane.unit unseen (see
// the file comment), or -1.
//
// NOTE: the setter's own writes are checked against the units known before
// it, as a lone statement's always were: a function that sets txlane.unit
// and then writes is not refused for it (README, Known gaps). Counting them
// unknown would refuse every write through EXECUTE of an unknown
// statement, CALL or a function txlane cannot see into whenever another
// connection holds a unit.
func unitUnknownWrite(steps []planStep, from int) int {
	opaque := false
	for i := range steps {
		st := &steps[i]
		at := -1
		if opaque && st.runs != nil && isWrite(st.runs) {
			at = i
		}
		eachPart(st.stmt, func(p *policy.Statement) {
			if opaque && at < 0 && isWrite(p) {
				at = i
			}
			opaque = opaque || opaqueUnitSetter(p)
		})
		if at >= from {
			return at
		}
		opaque = opaque || st.unitUnread
	}
	return -1
}

// checkUnitSetInRequest is the part of checkUnits for a unit set unseen
// inside the request that writes: the refusal of the first write after it
// while another connection holds a unit (or may), or nil.
func (s *session) checkUnitSetInRequest(from int) *rejection {
	pl := &s.plans.cur
	at := unitUnknownWrite(pl.steps, from)
	if at < 0 || s.TxStatus() == TxFailed || !s.srv.units.anyBut(s) && s.srv.shared == nil {
		return nil
	}
	return &rejection{step: at, err: &wire.Error{Severity: "ERROR", Code: CodeEscapedWrite,
		Message: fmt.Sprintf("write to %s could not be checked against the units of work held: the request sets txlane.unit before it in a way txlane cannot read", describeTables(pl.stmts(0))),
		Detail: "A statement of this request may set txlane.unit in a way its text does not show (a DO block, CALL, a function, set_config with a computed value), and the write after it runs before txlane could read the unit back. " +
			"Another connection holds a unit of work (or may, on another txlane instance), so the write could escape its transaction. Nothing was written.",
		Hint: "Set the unit in an earlier request, with SET LOCAL txlane.unit or set_config with a constant or a bind parameter, or carry it in a comment."}}
}

// A unit set after writes of the same request that already went out (a
// Flush before Sync, or a request past the size txlane holds back). Until
// its Sync the extended protocol runs the request in one implicit
// transaction (protocol "Extended Query": the Sync "causes the backend to
// close the current transaction if it's not inside a BEGIN/COMMIT
// transaction block"), so those writes are not committed when txlane sees
// the statement that sets txlane.unit, and the unit is theirs too. They
// were checked under the units known then; the setter is checked now as a
// write of the units it sets (unitSetAfterWrites): refused (25L01, the
// server raising it in the setter's place) while another connection holds
// one, so that the implicit transaction rolls back with the writes. Inside
// an explicit transaction block the refusal fails the block, which the
// client must roll back: the writes go with it. A write an explicit COMMIT
// earlier in the request committed is beyond recall; the setter is refused
// all the same (fail safe), and what the COMMIT committed stays.

// checkUnseenSetterAfterWrites refuses the setter at step at (from
// unitSetAfterWrites; -1: none) when the unit it gives the writes already
// sent is one the text does not show (RESET, SET … TO DEFAULT, RESET ALL, a
// set_config txlane cannot read, a function, DO) while another connection
// holds a unit (or may, on another instance): that unit could be the other
// connection's, and the writes would commit outside its transaction. A
// setter that names its unit is checked as a write of that unit instead.
func (s *session) checkUnseenSetterAfterWrites(at int) *rejection {
	pl := &s.plans.cur
	if at < 0 || s.TxStatus() == TxFailed || !s.srv.units.anyBut(s) && s.srv.shared == nil {
		return nil
	}
	st := &pl.steps[at]
	unseen := st.unitUnread
	eachPart(st.stmt, func(p *policy.Statement) { unseen = unseen || opaqueUnitSetter(p) })
	if !unseen {
		return nil
	}
	return &rejection{step: at, err: &wire.Error{Severity: "ERROR", Code: CodeEscapedWrite,
		Message: fmt.Sprintf("txlane.unit may not be set in a way txlane cannot read after writes to %s of the same request", describeTables(pl.stmts(0))),
		Detail: "Writes of this request were sent before this statement (a Flush before the Sync, or a request larger than txlane holds back), and this statement gives txlane.unit a value its text does not show (RESET, SET ... TO DEFAULT, RESET ALL, set_config with a value txlane cannot read, a function, DO). " +
			"Another connection holds a unit of work (or may, on another txlane instance), so the writes could commit outside its transaction. The transaction fails here.",
		Hint: "Name the unit with SET LOCAL txlane.unit or set_config with a constant before the writes, or carry it in a comment."}}
}

// unitSetAfterWrites returns the first step at or after from that may set
// txlane.unit (SET [LOCAL] txlane.unit, set_config of it, a statement that
// may set it unseen) when a step before from writes, or -1.
func unitSetAfterWrites(steps []planStep, from int) int {
	wrote := false
	for i := range steps[:from] {
		st := &steps[i]
		wrote = wrote || isWrite(st.stmt) || st.runs != nil && isWrite(st.runs)
	}
	if !wrote {
		return -1
	}
	for i := from; i < len(steps); i++ {
		st := &steps[i]
		sets := st.unitUnread
		eachPart(st.stmt, func(p *policy.Statement) {
			sets = sets || opaqueUnitSetter(p)
			for _, set := range p.Settings {
				sets = sets || set.Name == unitSetting || set.ResetAll
			}
			for _, c := range p.ConfigCalls {
				sets = sets || c.Name == unitSetting
			}
		})
		if sets {
			return i
		}
	}
	return -1
}
