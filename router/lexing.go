package router

/*
#include <stdlib.h>
#include <stddef.h>

// These declarations match pg_query.h of pg_query_go (v6), whose C library
// is linked into every binary that imports it: the Go API has no way to pass
// parser options, the C API does.
typedef struct {
	char* message;
	char* funcname;
	char* filename;
	int lineno;
	int cursorpos;
	char* context;
} txlanePgQueryError;
typedef struct {
	size_t len;
	char* data;
} txlanePgQueryProtobuf;
typedef struct {
	txlanePgQueryProtobuf parse_tree;
	char* stderr_buffer;
	txlanePgQueryError* error;
} txlanePgQueryProtobufParseResult;

txlanePgQueryProtobufParseResult pg_query_parse_protobuf_opts(const char* input, int parser_options);
void pg_query_free_protobuf_parse_result(txlanePgQueryProtobufParseResult result);

// PG_QUERY_DISABLE_STANDARD_CONFORMING_STRINGS in pg_query.h.
#define TXLANE_NO_STANDARD_STRINGS 32
*/
import "C"

import (
	"errors"
	"reflect"
	"strings"
	"unicode/utf8"
	"unsafe"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/txlane/txlane/policy"
)

// How the server reads a text depends on two things of the session besides
// the text, which the classifier does not know (and cannot know for sure: a
// pipelined SET, or a function's set_config, changes them before the proxy
// hears of it, and a prepared statement is read when it is parsed, not when
// it runs):
//
//   - standard_conforming_strings. Off, a backslash escapes the next byte in
//     plain '...' strings as it does in E'...' strings, so
//     SELECT '\' AS a, ' ; INSERT ...; --' AS b
//     is a SELECT and an INSERT to the server and one SELECT of two
//     constants to a parser that reads it with the setting on.
//   - client_encoding. In the client-only encodings (SJIS, BIG5, GBK, UHC,
//     GB18030, JOHAB, SHIFT_JIS_2004) the second byte of a character may be
//     0x5C, a backslash in ASCII: E'\x95\' is an unterminated string to an
//     ASCII reader and a complete one of one character to the server.
//
// So a classification holds whatever the session's settings are:
//
//   - a text without a backslash scans the same way under both settings of
//     standard_conforming_strings (scan.l: plain and escaped strings differ
//     only in what a backslash does) and in every encoding PostgreSQL
//     accepts from a client (no second byte of a character is an ASCII
//     quote, newline, '$', '-', '/', '*' or '"'; only 0x5C matters, see
//     below). Its classification is the parser's;
//   - a text with a backslash right after a byte >= 0x80 may be one
//     character of a client-only encoding: classified opaque (it may do
//     anything);
//   - any other text with a backslash is parsed twice, with
//     standard_conforming_strings on and off (PostgreSQL's own scanner in
//     both). Two equal classifications stand; otherwise it is opaque.
//
// backslash_quote and escape_string_warning need no such care: the first
// only decides whether \' in a string is an error (a text the server then
// refuses whole, running none of it), the second whether a backslash in a
// plain string draws a WARNING. Neither changes where a string, a comment or
// a statement ends.

// ambiguousEncoding reports whether sql has a backslash right after a byte
// of 0x80 or above: in a client-only encoding the two may be one character.
func ambiguousEncoding(sql string) bool {
	for i := strings.IndexByte(sql, '\\'); i >= 0; {
		if i > 0 && sql[i-1] >= 0x80 {
			return true
		}
		j := strings.IndexByte(sql[i+1:], '\\')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// Reasons of opaque classifications (policy.Statement.Reason).
const (
	reasonEncoding = "a backslash follows a non-ASCII byte: the text may read differently in the session's client encoding"
	reasonStrings  = "the text reads differently with standard_conforming_strings off"
)

// opaque is a statement txlane cannot describe for every session: it may
// write anything and change the session.
func opaque(reason string) *policy.Statement {
	return &policy.Statement{Class: policy.Unknown,
		Flags: policy.FlagWritesUnknown | policy.FlagMayChangeSession, Reason: reason}
}

// classifyText classifies sql as every session may read it (see above), and
// says whether the result may be shared with other texts through a
// normalized key (constDep: the classification used a constant's value).
func (g *generation) classifyText(sql string) (st *policy.Statement, constDep bool) {
	if !utf8.ValidString(sql) {
		return g.classifyNotUTF8(sql) // see encoding.go
	}
	st, constDep = g.classifySafe(sql, pg.Parse)
	if strings.IndexByte(sql, '\\') < 0 {
		return st, constDep
	}
	if ambiguousEncoding(sql) {
		return opaque(reasonEncoding), true
	}
	off, _ := g.classifySafe(sql, parseBackslashStrings)
	if !sameStatement(st, off) {
		return opaque(reasonStrings), true
	}
	return st, true
}

// sameStatement reports whether a and b describe the same statement (the
// explanation of an unparsable text aside).
func sameStatement(a, b *policy.Statement) bool {
	x, y := *a, *b
	if x.Class == policy.Unknown && y.Class == policy.Unknown {
		x.Reason, y.Reason = "", ""
	}
	return reflect.DeepEqual(&x, &y)
}

// parseBackslashStrings parses sql as a server with
// standard_conforming_strings off does.
func parseBackslashStrings(sql string) (*pg.ParseResult, error) {
	return parseWithOptions(sql, C.TXLANE_NO_STANDARD_STRINGS)
}

// parseWithOptions parses sql with pg_query's parser options (pg_query.h:
// a PG_QUERY_PARSE_* mode in the low bits, flags above).
func parseWithOptions(sql string, opts int) (*pg.ParseResult, error) {
	in := C.CString(sql)
	defer C.free(unsafe.Pointer(in))
	r := C.pg_query_parse_protobuf_opts(in, C.int(opts))
	defer C.pg_query_free_protobuf_parse_result(r)
	if r.error != nil {
		return nil, errors.New(C.GoString(r.error.message))
	}
	tree := &pg.ParseResult{}
	if err := proto.Unmarshal(C.GoBytes(unsafe.Pointer(r.parse_tree.data), C.int(r.parse_tree.len)), tree); err != nil {
		return nil, err
	}
	return tree, nil
}
