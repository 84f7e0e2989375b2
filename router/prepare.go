package router

import (
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// PrepareText returns the SQL-level PREPARE statement that defines
// prepared statement name within query, the query string that created it
// (pg_prepared_statements.statement holds the client's whole query string,
// which may hold other statements too). name is as the server stores it
// (folded unless it was quoted). ok is false when query holds no such
// PREPARE, or cannot be split.
func PrepareText(query, name string) (text string, ok bool) {
	parts, err := pg.SplitWithParser(query, true)
	if err != nil {
		return "", false
	}
	for _, part := range parts {
		tree, err := pg.Parse(part)
		if err != nil || len(tree.Stmts) != 1 {
			continue
		}
		if ps := tree.Stmts[0].GetStmt().GetPrepareStmt(); ps != nil && ps.Name == name {
			text, ok = part, true // the last definition in the string is the one in force
		}
	}
	return text, ok
}

// SplitStatements returns the statements of a simple Query's text, in
// order, as PostgreSQL's parser delimits them (empty statements left out,
// as the server skips them; each part without its semicolon). ok is false
// when the text cannot be parsed.
func SplitStatements(query string) (parts []string, ok bool) {
	parts, err := pg.SplitWithParser(query, true)
	if err != nil {
		return nil, false
	}
	out := parts[:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return out, true
}

// PreparedQuery returns the query that the last SQL-level PREPARE of
// prepared statement name within text defines (text as PrepareText takes
// it), as the parser's deparsed text: what EXECUTE name runs. ok is false
// when text holds no such PREPARE or its query cannot be printed again.
func PreparedQuery(text, name string) (query string, ok bool) {
	if !utf8.ValidString(text) {
		return preparedQueryNotUTF8(text, name) // see encoding.go
	}
	parts, err := pg.SplitWithParser(text, true)
	if err != nil {
		return "", false
	}
	var last *pg.Node
	var version int32
	for _, part := range parts {
		tree, err := pg.Parse(part)
		if err != nil || len(tree.Stmts) != 1 {
			continue
		}
		if ps := tree.Stmts[0].GetStmt().GetPrepareStmt(); ps != nil && ps.Name == name && ps.Query != nil {
			last, version = ps.Query, tree.Version
		}
	}
	if last == nil {
		return "", false
	}
	q, err := pg.Deparse(&pg.ParseResult{Version: version, Stmts: []*pg.RawStmt{{Stmt: last}}})
	if err != nil || q == "" {
		return "", false
	}
	return q, true
}
