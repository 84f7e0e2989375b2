// Package wire is the PostgreSQL frontend/backend protocol as txlane speaks
// it (the "Frontend/Backend Protocol" chapter of the PostgreSQL manual):
// framing of the regular message stream, the message kinds txlane looks at,
// errors as clients see them, the startup phase, and the login txlane relays
// between a client and a server.
//
// Files:
//
//	kinds.go     Frontend and Backend message kinds (distinct types: the same
//	             byte means different messages in the two directions)
//	reader.go    Reader: length-checked framing that forwards bodies untouched;
//	             WriteRaw, WriteMsg
//	encode.go    encoders that append into a caller's buffer; ErrorResponse fields
//	errors.go    Error (an ErrorResponse of txlane's own) and txlane's SQLSTATEs
//	startup.go   ReadHello: SSLRequest, GSSENCRequest, CancelRequest and
//	             StartupMessage, with PostgreSQL's limits
//	bufpool.go   the pool of clients' read buffers (Hello.Release)
//	negotiate.go protocol versions 3.0 to 3.2 and _pq_ options
//	             (NegotiateProtocolVersion)
//	login.go     RelayLogin and RelayAuth: the server's authentication
//	             exchange relayed message by message, its order checked;
//	             LoginResult, also what proxy/auth's own server login returns
//	server.go    Dial (TLS as the DSN's sslmode says), SendCancel and
//	             ForwardCancel (to another txlane instance)
//
// Nothing here starts goroutines or holds locks: a Reader belongs to the
// goroutine that reads its socket.
package wire
