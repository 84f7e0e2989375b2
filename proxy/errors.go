package proxy

import "github.com/txlane/txlane/proxy/wire"

// SQLSTATE codes txlane itself reports (see package wire, where the wire
// errors are built); repeated here as the proxy's public API.
const (
	CodeTooManyConnections   = wire.CodeTooManyConnections
	CodeProtocolViolation    = wire.CodeProtocolViolation
	CodeConnectionFailure    = wire.CodeConnectionFailure
	CodeCannotConnectNow     = wire.CodeCannotConnectNow
	CodeAdminShutdown        = wire.CodeAdminShutdown
	CodeFeatureNotSupported  = wire.CodeFeatureNotSupported
	CodeInvalidAuthorization = wire.CodeInvalidAuthorization
	CodeQueryCanceled        = wire.CodeQueryCanceled
	CodeInternalError        = wire.CodeInternalError
)
