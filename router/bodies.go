package router

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/txlane/txlane/policy"
)

// Function bodies the catalog stores as text.
//
// PostgreSQL stores the body of a PL/pgSQL function, and of a LANGUAGE sql
// function written as a string (AS '...', not BEGIN ATOMIC or RETURN), as
// text (pg_proc.prosrc): pg_depend records nothing of what it calls or
// reads, and there is no node tree to search. ReadFunctionBody parses such
// a text with PostgreSQL's own parsers (pg_query: the PL/pgSQL compiler for
// PL/pgSQL, the SQL grammar for each SQL statement and expression in it)
// and collects what it names, as the walker collects it from a statement's
// text. The catalog (NewCatalog) then judges those names as it judges a
// BEGIN ATOMIC body's calls and reads.
//
// Invariant (fail safe): a body is read only when every SQL text it runs is
// in it as text and is a plain read. Anything else is an error, and the
// function stays opaque (CatalogFunc.OpaqueBody): dynamic SQL (EXECUTE,
// FOR ... IN EXECUTE, OPEN ... FOR EXECUTE, RETURN QUERY EXECUTE: the SQL
// is a value known only when it runs), a statement that is not a SELECT
// (INSERT, UPDATE, DELETE, MERGE, a utility command, CALL, COMMIT: a
// non-volatile function cannot run them, PostgreSQL's SPI read-only mode,
// and a volatile one counts as writing anyway), a locking SELECT, SELECT
// INTO a table, a data-modifying WITH, a parse failure, a body larger than
// MaxBodyBytes, a backslash (the text may read differently with
// standard_conforming_strings off, which the function would be compiled
// under in such a session), a PL/pgSQL statement kind not listed in
// plpgsqlStatements, a language other than plpgsql and sql.

// MaxBodyBytes bounds the function body ReadFunctionBody reads (bytes); a
// larger one stays opaque. The catalog read sends no larger body.
const MaxBodyBytes = 64 << 10

// FunctionBody is what a function body runs, by name as its text writes
// them (Schema "" when unqualified: every schema's object of that name
// counts, as in a statement's text).
type FunctionBody struct {
	// Calls are the functions it calls; SQL value functions count as the
	// function they stand for (CURRENT_USER as current_user(),
	// CURRENT_TIMESTAMP as now()).
	Calls []policy.Func
	// Reads are the relations it reads (CTE names left out).
	Reads []policy.Table
	// Operators are the operators it uses, named or implied (IN, CASE x
	// WHEN, BETWEEN, ...); Casts the type names it casts to explicitly;
	// Attrs the names that may be attribute notation for a function (x.f).
	Operators []policy.Func
	Casts     []string
	Attrs     []string
}

// plpgsqlStatements are the PL/pgSQL statement kinds a readable body may
// hold (pg_query's PLpgSQL_stmt_* names): those whose SQL is in the text.
// Dynamic SQL (dynexecute, dynfors; the dynquery of open and return_query)
// is not, and call, commit and rollback are utility commands.
var plpgsqlStatements = map[string]bool{
	"PLpgSQL_stmt_block": true, "PLpgSQL_stmt_assign": true, "PLpgSQL_stmt_if": true,
	"PLpgSQL_stmt_case": true, "PLpgSQL_stmt_loop": true, "PLpgSQL_stmt_while": true,
	"PLpgSQL_stmt_fori": true, "PLpgSQL_stmt_fors": true, "PLpgSQL_stmt_forc": true,
	"PLpgSQL_stmt_foreach_a": true, "PLpgSQL_stmt_exit": true, "PLpgSQL_stmt_return": true,
	"PLpgSQL_stmt_return_next": true, "PLpgSQL_stmt_return_query": true, "PLpgSQL_stmt_raise": true,
	"PLpgSQL_stmt_assert": true, "PLpgSQL_stmt_execsql": true, "PLpgSQL_stmt_perform": true,
	"PLpgSQL_stmt_getdiag": true, "PLpgSQL_stmt_open": true, "PLpgSQL_stmt_fetch": true,
	"PLpgSQL_stmt_close": true,
}

// ReadFunctionBody reads the body src of a function in language lang
// (pg_language.lanname: "plpgsql" or "sql"). For PL/pgSQL, args and result
// are the function's signature as pg_get_function_arguments and
// pg_get_function_result print it (result "" for a procedure): the
// PL/pgSQL compiler needs the parameter names, whether it returns a set,
// and whether it is a trigger function. The error says why the body
// cannot be read (see the invariant above).
//
// Answers are memoized by a hash of the four texts (see bodyMemo).
func ReadFunctionBody(lang, args, result, src string) (FunctionBody, error) {
	h := sha256.New()
	for _, s := range []string{lang, args, result, src} {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{0})
		h.Write([]byte(s))
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	bodyMemo.mu.Lock()
	r, ok := bodyMemo.m[k]
	bodyMemo.mu.Unlock()
	if !ok {
		r.body, r.err = readFunctionBody(lang, args, result, src)
		bodyMemo.mu.Lock()
		if len(bodyMemo.m) >= maxBodyMemo || bodyMemo.m == nil {
			bodyMemo.m = make(map[[sha256.Size]byte]bodyResult)
		}
		bodyMemo.m[k] = r
		bodyMemo.mu.Unlock()
	}
	// Copies: the memo's answer stays as it is.
	return FunctionBody{Calls: slices.Clone(r.body.Calls), Reads: slices.Clone(r.body.Reads),
		Operators: slices.Clone(r.body.Operators), Casts: slices.Clone(r.body.Casts),
		Attrs: slices.Clone(r.body.Attrs)}, r.err
}

// bodyMemo holds ReadFunctionBody's answers by a SHA-256 of its inputs: the
// catalog is read again after DDL and every discover_interval, its bodies
// rarely change, and reading one costs about 0.4 ms of CPU (pg_query's
// PL/pgSQL compiler, then a parse per SQL text in it). Bounded: past
// maxBodyMemo answers it starts over. mu is held only around map access,
// never while parsing.
var bodyMemo struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]bodyResult
}

// maxBodyMemo bounds bodyMemo (answers).
const maxBodyMemo = 1 << 14

type bodyResult struct {
	body FunctionBody
	err  error
}

func readFunctionBody(lang, args, result, src string) (FunctionBody, error) {
	var b bodyReader
	switch {
	case len(src) > MaxBodyBytes:
		return FunctionBody{}, fmt.Errorf("the body is larger than %d bytes", MaxBodyBytes)
	case strings.Contains(src, `\`):
		return FunctionBody{}, errors.New("a backslash: the body may read differently with standard_conforming_strings off")
	case lang == "sql":
		return b.out, b.sql(src, 0)
	case lang == "plpgsql":
		return b.out, b.plpgsql(args, result, src)
	}
	return FunctionBody{}, fmt.Errorf("language %s is not read", lang)
}

// bodyReader collects one body's FunctionBody.
type bodyReader struct {
	out FunctionBody
}

// noRules: the walker of a body judges nothing (the catalog does, later);
// it only collects names.
var noRules funcRules

// sql parses text in pg_query parse mode (0: statements; 2: a PL/pgSQL
// expression; 3 to 5: a PL/pgSQL assignment) and collects what it names.
// Every statement must be a plain read.
func (b *bodyReader) sql(text string, mode int) error {
	tree, err := parseWithOptions(text, mode)
	if err != nil {
		return fmt.Errorf("%q: %w", text, err)
	}
	for _, raw := range tree.Stmts {
		n := raw.Stmt
		if n.GetSelectStmt() == nil && n.GetPlassignStmt() == nil {
			return fmt.Errorf("%q is not a SELECT", text)
		}
		w := &walker{fr: &noRules, collect: true, body: true}
		w.visitNode(n)
		// NOTE: w.writes may hold the sequence of a nextval('s') call,
		// which counts as a call (Calls); a table written by DML or SELECT
		// INTO shows in the flags or in wev.
		if len(w.wev) > 0 || w.flags&(policy.FlagLocking|policy.FlagDataModifyingCTE|policy.FlagSelectInto) != 0 {
			return fmt.Errorf("%q is not a plain read", text)
		}
		b.out.Calls = appendNew(b.out.Calls, w.calls)
		b.out.Reads = appendNew(b.out.Reads, w.reads)
		b.out.Operators = appendNew(b.out.Operators, w.ops)
		b.out.Casts = appendNew(b.out.Casts, w.casts)
		b.out.Attrs = appendNew(b.out.Attrs, w.attrs)
	}
	return nil
}

// plpgsql compiles a PL/pgSQL body with pg_query's PL/pgSQL compiler and
// reads every SQL text in it: each PLpgSQL_expr (statements, conditions,
// assignments, defaults of declarations, cursor queries), each in its own
// parse mode.
func (b *bodyReader) plpgsql(args, result, src string) error {
	head := "CREATE PROCEDURE pg_temp.f(" + args + ")"
	if result != "" {
		head = "CREATE FUNCTION pg_temp.f(" + args + ") RETURNS " + result
	}
	tree, err := pg.ParsePlPgSqlToJSON(head + " LANGUAGE plpgsql AS " + dollarQuote(src))
	if err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal([]byte(tree), &v); err != nil {
		return err
	}
	return b.plpgsqlNode(v)
}

func (b *bodyReader) plpgsqlNode(v any) error {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := b.plpgsqlNode(e); err != nil {
				return err
			}
		}
	case map[string]any:
		for k, e := range x {
			switch {
			case k == "dynquery":
				return errors.New("dynamic SQL (EXECUTE)")
			case strings.HasPrefix(k, "PLpgSQL_stmt_") && !plpgsqlStatements[k]:
				return fmt.Errorf("PL/pgSQL statement %s", strings.TrimPrefix(k, "PLpgSQL_stmt_"))
			case k == "PLpgSQL_expr":
				ex, _ := e.(map[string]any)
				q, _ := ex["query"].(string)
				mode, _ := ex["parseMode"].(float64)
				if err := b.sql(q, int(mode)); err != nil {
					return err
				}
				continue
			}
			if err := b.plpgsqlNode(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// appendNew appends to dst each element of src it does not hold yet.
func appendNew[T comparable](dst, src []T) []T {
	for _, x := range src {
		if !slices.Contains(dst, x) {
			dst = append(dst, x)
		}
	}
	return dst
}

// txTimeValue reports whether an SQL value function is the transaction's
// start time (CURRENT_DATE, CURRENT_TIME[STAMP], LOCALTIME[STAMP]).
func txTimeValue(op pg.SQLValueFunctionOp) bool {
	switch op {
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE,
		pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME,
		pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N,
		pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP,
		pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N,
		pg.SQLValueFunctionOp_SVFOP_LOCALTIME,
		pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N,
		pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP,
		pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
		return true
	}
	return false
}

// valueCall records an SQL value function as the function it stands for
// (as the catalog read maps PostgreSQL 15's stored ones).
func (w *walker) valueCall(op pg.SQLValueFunctionOp) {
	name := ""
	switch {
	case txTimeValue(op):
		name = "now"
	case op == pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE || op == pg.SQLValueFunctionOp_SVFOP_CURRENT_USER || op == pg.SQLValueFunctionOp_SVFOP_USER:
		name = "current_user"
	case op == pg.SQLValueFunctionOp_SVFOP_SESSION_USER:
		name = "session_user"
	default:
		return
	}
	w.calls = appendOp(w.calls, policy.Func{Schema: "pg_catalog", Name: name})
}

// dollarQuote quotes body with a tag it does not contain.
func dollarQuote(body string) string {
	tag := "body"
	for i := 0; strings.Contains(body, "$"+tag+"$"); i++ {
		tag = "body" + strconv.Itoa(i)
	}
	return "$" + tag + "$" + body + "$" + tag + "$"
}
