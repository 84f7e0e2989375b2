package router

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/txlane/txlane/policy"
)

// What the SQL text hides, from the catalog.
//
// A statement runs more than the functions it names: a view's definition, a
// row-level security policy, an operator's function, an aggregate's support
// functions, a cast's function, and, when it writes, triggers, rules,
// cascading foreign keys, writable views and partitions. This file evaluates
// those from a [CatalogSnapshot] (no database access): for what a statement
// reads, the effect of everything it runs (the same effects a function call
// has, so a view that calls a volatile function makes a read a write); for
// what it writes, the tables the writes reach.
//
// Invariant (fail safe): what cannot be proven is presumed to write. A
// relation or operator the catalog does not know, a foreign table, a view
// without a definition: effUnproven (presumed to write anything); a written
// relation with user triggers, or that the catalog does not know: its writes
// reach every table.

// More effects (see functions.go).
const (
	// effUnproven: an object whose behaviour cannot be proven; presumed to
	// write anything (comes with userWrites minus effWrites).
	effUnproven effect = 1 << (iota + 6)
	// effReadsUnknown: a function that is not volatile and has an opaque
	// body (IMMUTABLE or STABLE): it may read any table, and call a
	// function that changes the session (set_config, an advisory lock),
	// which only a pin check finds (policy.Statement.RunsUnknownCode).
	effReadsUnknown
	// effSeqState: it calls nextval or setval, which set the session's
	// sequence state (currval, lastval; policy.Statement.Sequences). Unlike
	// effSeqArg it holds through nesting: a default or a view calling
	// nextval sets it as well as a call in the text.
	effSeqState
	// effRemote: a dblink function, which may open a connection of the
	// session's own to another server (policy.FlagDblink).
	effRemote
)

// unproven is the effect of an object the catalog cannot account for.
const unproven = effUnproven | effUnknownWrites | effSession

// maxReached bounds the tables a statement's writes are said to reach; past
// it they reach everything (FlagReachesUnknown).
const maxReached = 256

// maxHidden bounds the explanations kept per statement.
const maxHidden = 4

// trustedSchema reports whether relations of schema come with the server
// (their definitions are PostgreSQL's own and write nothing).
func trustedSchema(schema string) bool {
	return schema == "pg_catalog" || schema == "information_schema"
}

// hidden is the result of evaluating one object: the effect of running it
// and what it reads and writes besides. Shared through the memo: read-only.
type hidden struct {
	eff effect
	// why explains eff (or unknown) in one sentence; "" when there is
	// nothing to explain.
	why string
	// reads are relations read besides the object (views' and policies'
	// relations), schema-qualified.
	reads []policy.Table
	// reached are relations written besides the object; unknown: every
	// table may be written.
	reached []policy.Table
	unknown bool
	// deferred and fires: what writing a relation may queue for the
	// transaction's end, and the code it runs that may change the session
	// (see policy.Statement.DeferredCheck and FiresCode); "" for none.
	deferred, fires string
}

// finding is an effect with its explanation as a noun phrase (subj) and what
// it does (pred, "" for a leaf such as "volatile public.logit()").
type finding struct {
	eff  effect
	subj string
	pred string
}

// desc is the finding as a noun phrase: "view public.v, which calls ...".
func (f finding) desc() string {
	if f.pred == "" {
		return f.subj
	}
	return f.subj + ", which " + f.pred
}

// sentence is the finding as a sentence: "view public.v calls ...".
func (f finding) sentence() string {
	if f.pred == "" {
		return f.subj
	}
	return f.subj + " " + f.pred
}

// add unions g into f, keeping f's explanation unless it has none (a
// finding about writes is preferred over one about reads).
func (f *finding) add(g finding, subj, pred string) {
	if g.eff == 0 {
		return
	}
	// A sequence call alone explains nothing a write does not (see reach).
	const minor = effReadsUnknown | effSeqState
	if f.eff&^minor == 0 && g.eff&^minor != 0 || f.pred == "" {
		f.subj, f.pred = subj, pred
	}
	// A sequence argument of a nested nextval is not in the text.
	f.eff |= g.eff &^ effSeqArg
}

// evalCtx is one top-level evaluation: it guards against cycles (functions
// calling each other, cascades between tables) and collects what is read and
// written besides.
type evalCtx struct {
	r    *funcRules
	c    *CatalogSnapshot
	seen map[any]bool
	// Collected by read and reach.
	reads   []policy.Table
	reached []policy.Table
	unknown bool
	why     string
	// Collected by reach: see hidden.deferred and hidden.fires.
	deferred, fires string
}

type (
	funcKey  policy.Func
	readKey  policy.Table
	opKey    policy.Func
	castKey  string
	attrKey  string
	reachKey struct {
		t       policy.Table
		ev      Events
		cascade bool
	}
	refreshKey policy.Table
)

func newEval(r *funcRules) *evalCtx {
	return &evalCtx{r: r, c: r.snap, seen: map[any]bool{}}
}

// once marks k visited; false if it was already.
func (e *evalCtx) once(k any) bool {
	if e.seen[k] {
		return false
	}
	e.seen[k] = true
	return true
}

func (e *evalCtx) noteUnknown(why string) {
	e.unknown = true
	if e.why == "" {
		e.why = why
	}
}

func (e *evalCtx) addReached(t policy.Table) {
	if len(e.reached) >= maxReached {
		e.noteUnknown("the writes reach more than " + strconv.Itoa(maxReached) + " tables")
		return
	}
	e.reached = policy.AppendTable(e.reached, t)
}

// call evaluates calling schema.name: its effect under the lists and the
// catalog, plus what it runs besides (an aggregate's support functions,
// functions in argument defaults or a BEGIN ATOMIC body or a body read as
// text, the relations such a body reads, the operators, casts and
// attribute names a body read as text uses) and, for a function that is
// not volatile and has an opaque body, that it may read anything and change
// the session.
func (e *evalCtx) call(schema, name string) finding {
	eff, src := e.r.effectFrom(schema, name)
	fn := policy.Func{Schema: schema, Name: name}.String() + "()"
	switch src {
	case srcVolatile:
		return finding{eff: eff, subj: "volatile " + fn}
	case srcUnknown:
		return finding{eff: eff, subj: fn + ", which the catalog does not know"}
	case srcWritingList:
		return finding{eff: eff, subj: fn + " (writing_functions)"}
	case srcBuiltin:
		return finding{eff: eff, subj: fn + builtinNote(eff)}
	case srcCatalog:
		// Below.
	default:
		// Listed read-only, or no catalog: trusted as is.
		return finding{}
	}
	if e.c == nil {
		return finding{}
	}
	var out finding
	for _, k := range e.c.funcKeys(schema, name) {
		if !e.once(funcKey(k)) {
			continue
		}
		fi := e.c.exact[k]
		subj := funcWord(fi) + " " + k.String()
		if fi.opaqueBody && !trustedSchema(k.Schema) {
			out.add(finding{eff: effReadsUnknown}, k.String()+"()", "has a body txlane cannot read: it may read any table and change the session")
		}
		for _, g := range fi.calls {
			sub := e.call(g.Schema, g.Name)
			out.add(sub, subj, "calls "+sub.desc())
		}
		if e.c.objects {
			// What a body read as text uses besides its calls
			// (ReadFunctionBody), as in a statement's text.
			for _, op := range fi.ops {
				sub := e.operator(op.Schema, op.Name)
				out.add(sub, subj, "uses "+sub.desc())
			}
			for _, n := range fi.casts {
				sub := e.cast(n)
				out.add(sub, subj, "uses "+sub.desc())
			}
			for _, n := range fi.attrs {
				sub := e.attr(n)
				out.add(sub, subj, "uses "+sub.desc())
			}
		}
		for _, t := range fi.reads {
			e.reads = policy.AppendTable(e.reads, t)
			sub := e.read(t)
			out.add(sub, subj, "reads "+sub.desc())
		}
	}
	return out
}

func builtinNote(e effect) string {
	switch {
	case e&effUnproven != 0:
		return ", which reads relations named only when it runs"
	case e&effWrites != 0:
		return ", which writes"
	case e&effSession != 0:
		return ", which changes session state"
	case e&effTx != 0:
		return ", whose value is the transaction's"
	case e&effBackend != 0:
		return ", whose value is the backend's"
	}
	return ""
}

func funcWord(fi *funcInfo) string {
	switch {
	case fi.aggregate:
		return "aggregate"
	case fi.window:
		return "window function"
	}
	return "function"
}

func relWord(kind byte) string {
	switch kind {
	case 'v':
		return "view"
	case 'm':
		return "materialized view"
	case 'f':
		return "foreign table"
	case 'p':
		return "partitioned table"
	case 'S':
		return "sequence"
	}
	return "table"
}

// usePred phrases a relation's use: "calls X" for its definition, "has
// policy p, which calls X" for the others.
func usePred(via, verb, what string) string {
	if via == "definition" {
		return verb + " " + what
	}
	return "has " + via + ", which " + verb + " " + what
}

// read evaluates reading relation t: what its definition (views) and
// row-level security policies run, through nested views and the relations
// policies read. Relations read besides t go to e.reads.
func (e *evalCtx) read(t policy.Table) finding {
	if backendRelation(t) {
		return finding{eff: effBackend, subj: "view " + t.String(), pred: "shows the backend session's own state"}
	}
	keys := e.c.relation(t)
	if len(keys) == 0 {
		switch {
		case e.c.unread:
			return finding{eff: unproven, subj: t.String(), pred: "cannot be proven read-only: the catalog has not been read"}
		case trustedSchema(t.Schema):
			return finding{}
		}
		return finding{eff: unproven, subj: t.String(),
			pred: "is not in the catalog (created since it was read, or temporary)"}
	}
	var out finding
	for _, k := range keys {
		if trustedSchema(k.Schema) || !e.once(readKey(k)) {
			continue
		}
		ri := e.c.rels[k]
		subj := relWord(ri.Kind) + " " + k.String()
		if ri.Opaque != "" {
			out.add(finding{eff: unproven}, subj, "cannot be proven read-only ("+ri.Opaque+")")
		}
		for i := range ri.Uses {
			u := &ri.Uses[i]
			if u.When != UseAlways {
				continue
			}
			if u.Func.Name != "" {
				sub := e.call(u.Func.Schema, u.Func.Name)
				out.add(sub, subj, usePred(u.Via, "calls", sub.desc()))
				if strings.HasPrefix(u.Via, policyVia) {
					if why := e.c.policyIdentity(u.Func, map[policy.Func]bool{}); why != "" {
						out.add(finding{eff: effBackend}, subj, usePred(u.Via, "calls", why))
					}
				}
			}
			if u.Table.Name != "" {
				e.reads = policy.AppendTable(e.reads, u.Table)
				sub := e.read(u.Table)
				out.add(sub, subj, usePred(u.Via, "reads", sub.desc()))
			}
		}
	}
	return out
}

// policyVia begins the Via of a row-level security policy's uses.
const policyVia = "row-level security policy "

// policyIdentity says why calling f in a row-level security policy may
// depend on the session's identity ("" when it cannot): f is one of
// identityBuiltins, its body is opaque (outside PostgreSQL's own schemas:
// PL/pgSQL, an SQL string body, any language but C), or it calls such a
// function (its BEGIN ATOMIC or RETURN body, argument defaults).
//
// On the vector lane the session user is the read pool's login and the
// settings are the lane connection's, so such a policy could admit other
// rows there: a read of the table stays on the primary. Unlike elsewhere,
// current_user counts too, and a body txlane cannot read: a policy decides
// which rows a client sees, and txlane does not reason about how a role
// was taken there.
func (c *CatalogSnapshot) policyIdentity(f policy.Func, seen map[policy.Func]bool) string {
	return c.callsWhere(f, seen, func(name string) string {
		if identityBuiltins[name] {
			return "whose value is the session's"
		}
		return ""
	}, "it may use the session's identity")
}

// opaqueCall says why calling f runs code txlane cannot read ("" when it
// does not): f, or a function it calls (its BEGIN ATOMIC or RETURN body,
// argument defaults), is a user function with an opaque body, of any
// volatility. Built-ins' effects are call's.
func (c *CatalogSnapshot) opaqueCall(f policy.Func) string {
	return c.callsWhere(f, map[policy.Func]bool{}, func(string) string { return "" }, "it may change the session")
}

// callsWhere says why calling f reaches what matters ("" when it does not):
// a built-in (in PostgreSQL's own schemas) for which builtin says why, or a
// user function with an opaque body (opaque says what such a body may do),
// through the functions each calls.
func (c *CatalogSnapshot) callsWhere(f policy.Func, seen map[policy.Func]bool, builtin func(name string) string, opaque string) string {
	for _, k := range c.funcKeys(f.Schema, f.Name) {
		if seen[k] {
			continue
		}
		seen[k] = true
		fi := c.exact[k]
		switch {
		case trustedSchema(k.Schema):
			if why := builtin(k.Name); why != "" {
				return k.String() + "(), " + why
			}
			continue
		case fi.opaqueAny:
			return k.String() + "(), whose body txlane cannot read (" + opaque + ")"
		}
		for _, g := range fi.calls {
			if why := c.callsWhere(g, seen, builtin, opaque); why != "" {
				return k.String() + "(), which calls " + why
			}
		}
		for _, g := range c.bodyUses(fi) {
			if why := c.policyIdentity(g, seen); why != "" {
				return k.String() + "(), whose body uses " + why
			}
		}
	}
	return ""
}

// bodyUses returns the functions that what a body read as text uses
// besides its calls may run: the functions of every operator of the names
// it uses, of every cast to the types it casts to, and every function
// named as an attribute (x.f).
func (c *CatalogSnapshot) bodyUses(fi *funcInfo) []policy.Func {
	var out []policy.Func
	for _, op := range fi.ops {
		for _, k := range c.operators(op.Schema, op.Name) {
			out = appendNew(out, c.ops[k])
		}
	}
	for _, n := range fi.casts {
		for _, ca := range c.casts[n] {
			out = appendNew(out, []policy.Func{ca.fn})
		}
	}
	for _, n := range fi.attrs {
		out = appendNew(out, c.byName[n])
	}
	return out
}

// operator evaluates using operator schema.name: the functions of every
// operator of that name (any argument types; any schema when unqualified),
// since the text does not say which one resolves.
func (e *evalCtx) operator(schema, name string) finding {
	op := "operator " + name
	if schema != "" {
		op = "operator " + schema + "." + name
	}
	keys := e.c.operators(schema, name)
	if len(keys) == 0 {
		return finding{eff: unproven, subj: op, pred: "is not in the catalog"}
	}
	var out finding
	for _, k := range keys {
		subj := "operator " + k.Schema + "." + k.Name
		for _, f := range e.c.ops[k] {
			sub := e.call(f.Schema, f.Name)
			out.add(sub, subj, "calls "+sub.desc())
		}
	}
	return out
}

// cast evaluates an explicit cast to type name: every cast function into a
// type of that name (the source type is not in the text).
func (e *evalCtx) cast(name string) finding {
	var out finding
	for _, ca := range e.c.casts[name] {
		sub := e.call(ca.fn.Schema, ca.fn.Name)
		out.add(sub, "cast from "+ca.source+" to "+name, "calls "+sub.desc())
	}
	return out
}

// attr evaluates x.name where x is a row: PostgreSQL reads it as name(x)
// when x has no column name, so a function of that name may run.
func (e *evalCtx) attr(name string) finding {
	if len(e.c.byName[name]) == 0 {
		return finding{}
	}
	sub := e.call("", name)
	var out finding
	out.add(sub, "."+name, "may be attribute notation for "+sub.desc())
	return out
}

// reach evaluates writing t with events ev: the tables the write reaches
// (e.reached), whether it may reach any table (e.unknown), and, returned,
// the effect of the functions the write runs that do not make it reach
// unknown tables: a rule's, a column default's or generated expression's,
// a check constraint's or an index expression's call of set_config or an
// advisory lock, which change or hold session state. A sequence function
// there (nextval in a serial column's default) counts for nothing more:
// the statement writes anyway. cascade is TRUNCATE ... CASCADE.
//
// It also notes (e.deferred) the first deferrable trigger the write may
// queue an event of, and (e.fires) the first function such code runs that
// may change the session it runs in: one that writes, locks or changes
// settings (a session advisory lock, set_config), or a user function
// whose body txlane cannot read, whatever its volatility (PostgreSQL does
// not hold an IMMUTABLE PL/pgSQL function to it). A sequence's nextval
// (serial and identity columns) is not noted: it changes only the
// session's currval and lastval.
func (e *evalCtx) reach(t policy.Table, ev Events, cascade bool) finding {
	var out finding
	runs := func(name string, f policy.Func, sub finding, pred string) {
		if sub.eff&effSeqArg != 0 {
			sub.eff &^= effWrites
		}
		out.add(sub, name, pred+" "+sub.desc())
		if e.fires != "" {
			return
		}
		if sub.eff&(effWrites|effSession) != 0 {
			e.fires = name + " " + pred + " " + sub.desc()
		} else if why := e.c.opaqueCall(f); why != "" {
			e.fires = name + " " + pred + " " + why
		}
	}
	type item struct {
		t  policy.Table
		ev Events
	}
	done := map[policy.Table]Events{}
	var queue []item
	push := func(t policy.Table, ev Events) {
		keys := e.c.relation(t)
		if len(keys) == 0 {
			if !trustedSchema(t.Schema) {
				e.noteUnknown(t.String() + " is not in the catalog: what writing it fires is unknown")
			}
			return
		}
		for _, k := range keys {
			queue = append(queue, item{k, ev})
		}
	}
	push(t, ev)
	// The named relations are not "reached" (a partition's parent may be).
	named := map[policy.Table]bool{}
	for _, it := range queue {
		named[it.t] = true
	}
	add := func(t policy.Table) {
		if !named[t] {
			e.addReached(t)
		}
	}
	for len(queue) > 0 && !e.unknown {
		it := queue[0]
		queue = queue[1:]
		ev := it.ev &^ done[it.t]
		if ev == 0 {
			continue
		}
		done[it.t] |= ev
		ri := e.c.rels[it.t]
		name := relWord(ri.Kind) + " " + it.t.String()
		if ri.Opaque != "" && !trustedSchema(it.t.Schema) {
			e.noteUnknown(name + " cannot be proven (" + ri.Opaque + "): what writing it does is unknown")
			return out
		}
		for _, d := range ri.Deferrable {
			if d.Events&ev != 0 && e.deferred == "" {
				e.deferred = name + " has deferrable constraint " + d.Name + " (checked on " + d.Events.words() + ")"
			}
		}
		for _, tr := range ri.Triggers {
			if tr.Events&ev != 0 && !trustedSchema(it.t.Schema) {
				e.noteUnknown(name + " has trigger " + tr.Name + " (" + tr.Func.String() + "()), whose writes are unknown")
				return out
			}
		}
		// Rules count in PostgreSQL's own schemas too: pg_settings' UPDATE
		// rule calls set_config.
		for _, ru := range ri.Rules {
			if ru.Events&ev == 0 {
				continue
			}
			for _, f := range ru.Funcs {
				sub := e.call(f.Schema, f.Name)
				if sub.eff&effUnknownWrites != 0 {
					e.noteUnknown(name + " has rule " + ru.Name + ", which calls " + sub.desc())
					return out
				}
				runs(name, f, sub, "has rule "+ru.Name+", which calls")
			}
			for _, u := range ru.Tables {
				add(u)
				push(u, EvAll)
			}
		}
		if trustedSchema(it.t.Schema) {
			continue
		}
		if ri.Kind == 'v' {
			// A writable view writes its base relations.
			for i := range ri.Uses {
				if u := &ri.Uses[i]; u.When == UseAlways && u.Table.Name != "" && u.Via == "definition" {
					add(u.Table)
					push(u.Table, ev)
				}
			}
		}
		for _, fk := range ri.Referenced {
			if ev&EvDelete != 0 {
				switch fk.OnDelete {
				case 'c':
					add(fk.Table)
					push(fk.Table, EvDelete)
				case 'n', 'd':
					add(fk.Table)
					push(fk.Table, EvUpdate)
				}
			}
			if ev&EvUpdate != 0 {
				switch fk.OnUpdate {
				case 'c', 'n', 'd':
					add(fk.Table)
					push(fk.Table, EvUpdate)
				}
			}
			if ev&EvTruncate != 0 && cascade {
				add(fk.Table)
				push(fk.Table, EvTruncate)
			}
		}
		// An UPDATE that moves a row to another partition deletes it from one
		// and inserts it into another: their triggers fire.
		chEv := ev
		if ev&EvUpdate != 0 && ri.Kind == 'p' {
			chEv |= EvInsert | EvDelete
		}
		for _, ch := range ri.Children {
			add(ch)
			push(ch, chEv)
		}
		// A partition's or child's rows are its ancestors' rows too.
		for up := ri.parents; len(up) > 0; {
			p := up[0]
			up = up[1:]
			if !named[p] && !slices.Contains(e.reached, p) {
				add(p)
				if pr := e.c.rels[p]; pr != nil {
					up = append(up, pr.parents...)
				}
			}
		}
		if ev&(EvInsert|EvUpdate) != 0 {
			for i := range ri.Uses {
				u := &ri.Uses[i]
				if u.When != UseWrite {
					continue
				}
				if u.Func.Name != "" {
					// NOTE: a non-volatile function with an opaque body
					// (effReadsUnknown) may call a volatile one, which may
					// do anything; PostgreSQL does not stop it.
					sub := e.call(u.Func.Schema, u.Func.Name)
					if sub.eff&(effUnknownWrites|effReadsUnknown) != 0 {
						if e.fires == "" {
							// What a rerouted write would run (FiresCode),
							// named though the write's effects are unknown.
							if why := e.c.opaqueCall(u.Func); why != "" {
								e.fires = name + " has " + u.Via + ", which calls " + why
							}
						}
						e.noteUnknown(name + " has " + u.Via + ", which calls " + sub.desc())
						return out
					}
					runs(name, u.Func, sub, "has "+u.Via+", which calls")
				}
				if u.Table.Name != "" {
					add(u.Table)
				}
			}
		}
	}
	return out
}

// refresh evaluates REFRESH MATERIALIZED VIEW t: its definition runs.
func (e *evalCtx) refresh(t policy.Table) {
	for _, k := range e.c.relation(t) {
		ri := e.c.rels[k]
		for i := range ri.Uses {
			u := &ri.Uses[i]
			if u.When != UseRefresh {
				continue
			}
			var sub finding
			switch {
			case u.Func.Name != "":
				sub = e.call(u.Func.Schema, u.Func.Name)
			case u.Table.Name != "":
				sub = e.read(u.Table)
			}
			if sub.eff&effUnknownWrites != 0 {
				e.noteUnknown("materialized view " + k.String() + " calls " + sub.desc())
				return
			}
		}
	}
}

// eval runs f in a fresh context, memoized under key.
func (r *funcRules) eval(key any, f func(e *evalCtx) finding) *hidden {
	if v, ok := r.memo.Load(key); ok {
		return v.(*hidden)
	}
	e := newEval(r)
	fd := f(e)
	h := &hidden{eff: fd.eff, reads: e.reads, reached: e.reached, unknown: e.unknown, why: e.why,
		deferred: e.deferred, fires: e.fires}
	if fd.pred != "" && fd.eff != 0 && !e.unknown {
		h.why = fd.sentence()
	}
	// NOTE: names the catalog does not know (temporary tables, typos) are
	// memoized too; past maxMemo entries results are computed each time, so
	// a stream of new names cannot grow the memo without bound.
	if r.memoN.Load() >= maxMemo {
		return h
	}
	v, loaded := r.memo.LoadOrStore(key, h)
	if !loaded {
		r.memoN.Add(1)
	}
	return v.(*hidden)
}

// maxMemo bounds the memoized evaluations of one rule set.
const maxMemo = 1 << 16

// callHidden is calling schema.name, with what it runs besides.
func (r *funcRules) callHidden(schema, name string) *hidden {
	if r.snap == nil {
		return &hidden{eff: r.effect(schema, name)}
	}
	return r.eval(funcKey{Schema: schema, Name: name}, func(e *evalCtx) finding { return e.call(schema, name) })
}

// evalHazards evaluates the catalog's hazards once per rule set: one
// hidden per hazard that may do more than read.
func (r *funcRules) evalHazards() []hidden {
	if r.snap == nil {
		return nil
	}
	var out []hidden
	for _, h := range r.snap.hazards {
		sub := newEval(r).call(h.Func.Schema, h.Func.Name)
		drop := effReadsUnknown | effSeqArg
		if h.Check {
			drop |= effTx | effBackend
		}
		if sub.eff&^drop == 0 {
			continue
		}
		out = append(out, hidden{eff: sub.eff &^ drop,
			why: h.What + " calls " + sub.desc() + " (it may run in any statement)"})
	}
	return out
}

// newFuncRules builds the rules of cfg.
func newFuncRules(cfg Config) funcRules {
	fr := funcRules{
		writing:  append([]policy.Func(nil), cfg.WritingFunctions...),
		readOnly: append([]policy.Func(nil), cfg.ReadOnlyFunctions...),
		catalog:  cfg.Catalog,
	}
	if cs, ok := cfg.Catalog.(*CatalogSnapshot); ok && cs != nil {
		fr.snap = cs
		fr.memo, fr.memoN = &sync.Map{}, &atomic.Int64{}
		fr.hazards = fr.evalHazards()
	}
	return fr
}

// writeEv is one table a statement writes with a DML command.
type writeEv struct {
	t       policy.Table
	ev      Events
	cascade bool // TRUNCATE ... CASCADE
}

// effectFlags pairs each effect with the statement flag it sets.
var effectFlags = [...]struct {
	e effect
	f policy.Flags
}{
	{effWrites, policy.FlagWritingFunction},
	{effUnknownWrites, policy.FlagWritesUnknown},
	{effSession, policy.FlagMayChangeSession},
	{effTx, policy.FlagTxDependent},
	{effBackend, policy.FlagBackendDependent},
	{effUnproven, policy.FlagUnproven},
	{effReadsUnknown, policy.FlagReadsUnknown},
	{effRemote, policy.FlagDblink},
}

// flagsOf maps effects to statement flags.
func flagsOf(e effect) policy.Flags {
	var f policy.Flags
	for _, m := range effectFlags {
		if e&m.e != 0 {
			f |= m.f
		}
	}
	return f
}

// noteHidden records a finding's explanation on the walker, bounded.
func (w *walker) noteHidden(why string) {
	if why == "" || len(w.hidden) >= maxHidden {
		return
	}
	for _, h := range w.hidden {
		if h == why {
			return
		}
	}
	w.hidden = append(w.hidden, why)
}

// applyHidden adds to w what the catalog shows the statement runs and
// writes besides what it names: the relations it reads (and the DML targets,
// which are read too, through their views and policies), the operators,
// casts and attribute notations it uses, the catalog's hazards, and the
// tables its writes reach. Only with a full catalog (NewCatalog).
func (w *walker) applyHidden() {
	fr := w.fr
	if fr.snap == nil || !fr.snap.objects {
		return
	}
	apply := func(h *hidden) {
		w.flags |= flagsOf(h.eff)
		w.sequences = w.sequences || h.eff&effSeqState != 0
		if h.eff&(effWrites|effSession) != 0 && w.sessionCall == "" {
			w.sessionCall = cmp.Or(h.why, "code the catalog shows it runs")
		}
		for _, t := range h.reads {
			w.readsReached = policy.AppendTable(w.readsReached, t)
		}
		if h.eff&^effSeqState != 0 {
			// A serial default's nextval alone is no finding: the
			// statement writes anyway.
			w.noteHidden(h.why)
		}
	}
	for i := range fr.hazards {
		apply(&fr.hazards[i])
	}
	for _, t := range w.reads {
		apply(fr.eval(readKey(t), func(e *evalCtx) finding { return e.read(t) }))
	}
	for _, we := range w.wev {
		if we.ev&^EvTruncate == 0 {
			continue // TRUNCATE reads nothing
		}
		if len(fr.snap.relation(we.t)) == 0 {
			continue // reach says so
		}
		apply(fr.eval(readKey(we.t), func(e *evalCtx) finding { return e.read(we.t) }))
	}
	for _, op := range w.ops {
		apply(fr.eval(opKey(op), func(e *evalCtx) finding { return e.operator(op.Schema, op.Name) }))
	}
	for _, c := range w.casts {
		apply(fr.eval(castKey(c), func(e *evalCtx) finding { return e.cast(c) }))
	}
	for _, a := range w.attrs {
		apply(fr.eval(attrKey(a), func(e *evalCtx) finding { return e.attr(a) }))
	}
	reached := func(h *hidden) {
		for _, t := range h.reached {
			w.writesReached = policy.AppendTable(w.writesReached, t)
		}
		if h.unknown {
			w.flags |= policy.FlagReachesUnknown
			w.noteHidden(h.why)
		}
	}
	for _, we := range w.wev {
		h := fr.eval(reachKey(we), func(e *evalCtx) finding { return e.reach(we.t, we.ev, we.cascade) })
		apply(h)
		reached(h)
		w.deferredCheck = cmp.Or(w.deferredCheck, h.deferred)
		w.firesCode = cmp.Or(w.firesCode, h.fires)
	}
	for _, t := range w.refreshes {
		reached(fr.eval(refreshKey(t), func(e *evalCtx) finding {
			e.refresh(t)
			return finding{}
		}))
	}
}
