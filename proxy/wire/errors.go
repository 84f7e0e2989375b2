package wire

import (
	"bufio"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes txlane itself reports. Where PostgreSQL or PgBouncer has an
// established code for the same situation, txlane uses it.
const (
	CodeTooManyConnections   = "53300" // max_client_conn reached (as PgBouncer)
	CodeProtocolViolation    = "08P01" // malformed or oversized message
	CodeConnectionFailure    = "08006" // backend connection lost
	CodeCannotConnectNow     = "57P03" // backend unreachable during login, or shutting down
	CodeAdminShutdown        = "57P01" // txlane is stopping
	CodeFeatureNotSupported  = "0A000" // unsupported protocol feature or version
	CodeInvalidAuthorization = "28000" // authentication could not be relayed
	CodeQueryCanceled        = "57014" // timeouts
	CodeInternalError        = "XX000"
)

// Error is an error of txlane's own that reaches the client as an
// ErrorResponse (severity ERROR or FATAL, a SQLSTATE, message, detail and
// hint). Its text is meant for the client; internal causes go to the log.
type Error struct {
	Severity string // ERROR or FATAL
	Code     string
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

// Fatalf returns a FATAL Error with SQLSTATE code and a formatted message.
func Fatalf(code, format string, args ...any) *Error {
	return &Error{Severity: "FATAL", Code: code, Message: fmt.Sprintf(format, args...)}
}

// WriteError encodes e as an ErrorResponse into w. It is the one place that
// turns a proxy-side error into a message for the client.
func WriteError(w *bufio.Writer, e *Error) error {
	return WriteMsg(w, &pgproto3.ErrorResponse{
		Severity:            e.Severity,
		SeverityUnlocalized: e.Severity,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
	})
}
