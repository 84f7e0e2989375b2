package console

import "fmt"

// SQLSTATEs the console reports.
const (
	CodeSyntaxError         = "42601" // a malformed command (missing or extra arguments)
	CodeFeatureNotSupported = "0A000" // an unknown command or SHOW item
	CodeConfigFile          = "F0000" // RELOAD found a bad configuration file (config_file_error)
	CodeProtocolViolation   = "08P01" // a malformed, unsupported or oversized message (FATAL)
	CodeAdminShutdown       = "57P01" // txlane is stopping
	codeInvalidStatement    = "26000" // invalid_sql_statement_name: no such prepared statement
	codeInvalidCursorName   = "34000" // no such portal
)

// Error is what the client receives as an ErrorResponse.
type Error struct {
	Severity string // ERROR or FATAL
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s (SQLSTATE %s): %s", e.Message, e.Code, e.Detail)
	}
	return fmt.Sprintf("%s (SQLSTATE %s)", e.Message, e.Code)
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Severity: "ERROR", Code: code, Message: fmt.Sprintf(format, args...)}
}
