package proxy

import (
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// Text of txlane's own queries, whatever the session's client_encoding.
//
// The server converts every text it receives from the session's
// client_encoding and every text it sends to it (PostgreSQL docs,
// "Character Set Support", 24.3.3), and in transaction mode a backend's
// client_encoding is whichever client last ran there: LATIN1, WIN1252,
// GB18030, … So no value txlane reads in its own queries, and no value it
// sends, may depend on it:
//
//   - a value read is read as the hex digits of its UTF-8 bytes
//     (hexUTF8): ASCII in every client encoding, and exact;
//   - a value sent is an ASCII literal (textLiteral): itself when it is
//     ASCII, else pg_catalog.convert_from of the hex digits of its UTF-8
//     bytes, which the server converts to its own encoding;
//   - a statement txlane replays that is not ASCII (a client's PREPARE, a
//     RESET or DEALLOCATE of a non-ASCII name) runs through a DO block that
//     EXECUTEs it from such a literal (asciiStmt).
//
// Values the server reports in ParameterStatus (the movable parameters) are
// ASCII: application_name is (PostgreSQL replaces other bytes by '?'), and
// the others are names and keywords.

// hexUTF8 returns an SQL expression that reads the text expression expr as
// the hex digits of its UTF-8 bytes (NULL for NULL).
func hexUTF8(expr string) string {
	return "pg_catalog.encode(pg_catalog.convert_to(" + expr + ", 'UTF8'), 'hex')"
}

// fromHexUTF8 returns an SQL expression of type text whose value is the
// UTF-8 text whose bytes the text expression expr gives in hex digits (NULL
// for NULL), converted to the server's encoding: the reverse of hexUTF8.
func fromHexUTF8(expr string) string {
	return "pg_catalog.convert_from(pg_catalog.decode(" + expr + ", 'hex'), 'UTF8')"
}

// hexed returns the hex digits of the bytes of each of values (nil stays
// nil), for fromHexUTF8.
func hexed[T string | *string](values []T) []*string {
	out := make([]*string, len(values))
	for i, v := range values {
		if s, ok := strOf(v); ok {
			h := hex.EncodeToString([]byte(s))
			out[i] = &h
		}
	}
	return out
}

// fromHex decodes a value hexUTF8 read. A value that is not hex is an error.
func fromHex(h string) (string, error) {
	b, err := hex.DecodeString(h)
	return string(b), err
}

// isASCII reports whether s has no byte of 0x80 or above (a byte that is not
// UTF-8 ranges as utf8.RuneError, above them too).
func isASCII(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r >= utf8.RuneSelf }) < 0
}

// textLiteral returns an SQL expression of type text whose value is s and
// whose text is ASCII: quoteLiteral(s) for ASCII, else s's UTF-8 bytes
// converted to the server's encoding. A value that is not UTF-8 (a raw
// value the client sent in its own encoding) is quoted as it is.
func textLiteral(s string) string {
	if isASCII(s) || !utf8.ValidString(s) {
		return quoteLiteral(s)
	}
	return fromHexUTF8("'" + hex.EncodeToString([]byte(s)) + "'")
}

// asciiStmt returns stmt (UTF-8 text) as a statement of ASCII text that runs
// it: stmt itself when it is ASCII, else a DO block that EXECUTEs it from
// textLiteral. The server records a statement it PREPAREs so with the text
// EXECUTE gave it, which is stmt (pg_prepared_statements.statement).
//
// NOTE: a DO block needs PL/pgSQL (installed in every database by default)
// and its USAGE privilege (PUBLIC's by default); without them the statement
// fails, and the client is closed rather than moved (moveState).
func asciiStmt(stmt string) string {
	if isASCII(stmt) {
		return stmt
	}
	return "DO $txlane$BEGIN EXECUTE " + textLiteral(stmt) + "; END$txlane$"
}

// resetSetting returns the statement that resets setting name: RESET, or
// for a name that is not ASCII, RESET run by asciiStmt.
func resetSetting(name string) string {
	return asciiStmt("RESET " + quoteGUC(name))
}

// deallocate returns the statement that drops prepared statement name.
func deallocate(name string) string {
	return asciiStmt("DEALLOCATE " + quoteIdent(name))
}
