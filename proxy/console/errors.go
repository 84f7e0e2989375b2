package console

import (
	"fmt"

	"github.com/txlane/txlane/proxy/wire"
)

// SQLSTATEs the console reports.
const (
	CodeSyntaxError         = "42601"                      // a malformed command (missing or extra arguments)
	CodeFeatureNotSupported = wire.CodeFeatureNotSupported // an unknown command or SHOW item
	CodeConfigFile          = "F0000"                      // RELOAD found a bad configuration file (config_file_error)
	CodeProtocolViolation   = wire.CodeProtocolViolation   // a malformed, unsupported or oversized message (FATAL)
	CodeAdminShutdown       = wire.CodeAdminShutdown       // txlane is stopping
	codeInvalidStatement    = "26000"                      // invalid_sql_statement_name: no such prepared statement
	codeInvalidCursorName   = "34000"                      // no such portal
)

// Error is what the client receives as an ErrorResponse (wire's).
type Error = wire.Error

func errorf(code, format string, args ...any) *Error {
	return &Error{Severity: "ERROR", Code: code, Message: fmt.Sprintf(format, args...)}
}
