package wire

// Frontend is the kind (type byte) of a message a client sends, Backend of
// one a server sends, as the protocol's "Message Formats" section lists them.
// The two are distinct types because the same byte means different messages
// in the two directions ('E' is Execute from a client, ErrorResponse from a
// server).
type (
	Frontend byte
	Backend  byte
)

// Kind is either message kind.
type Kind interface{ Frontend | Backend }

// Frontend message kinds txlane looks at.
const (
	Query           Frontend = 'Q'
	Parse           Frontend = 'P'
	Bind            Frontend = 'B'
	Describe        Frontend = 'D'
	Execute         Frontend = 'E'
	Close           Frontend = 'C'
	Sync            Frontend = 'S'
	Flush           Frontend = 'H'
	Terminate       Frontend = 'X'
	FunctionCall    Frontend = 'F'
	CopyData        Frontend = 'd'
	CopyDone        Frontend = 'c'
	CopyFail        Frontend = 'f'
	PasswordMessage Frontend = 'p' // also SASLInitialResponse, SASLResponse, GSSResponse
)

// Backend message kinds txlane looks at.
const (
	Authentication           Backend = 'R'
	BackendKeyData           Backend = 'K'
	NegotiateProtocolVersion Backend = 'v'
	ParameterStatus          Backend = 'S'
	ReadyForQuery            Backend = 'Z'
	ErrorResponse            Backend = 'E'
	NoticeResponse           Backend = 'N'
	NotificationResponse     Backend = 'A'
	ParseComplete            Backend = '1'
	BindComplete             Backend = '2'
	CloseComplete            Backend = '3'
	ParameterDescription     Backend = 't'
	RowDescription           Backend = 'T'
	NoData                   Backend = 'n'
	DataRow                  Backend = 'D'
	CommandComplete          Backend = 'C'
	EmptyQueryResponse       Backend = 'I'
	PortalSuspended          Backend = 's'
	CopyInResponse           Backend = 'G'
	FunctionCallResponse     Backend = 'V'
)

// Object kinds of Describe and Close: a prepared statement or a portal.
const (
	ObjectStatement byte = 'S'
	ObjectPortal    byte = 'P'
)

// Transaction status of ReadyForQuery.
const (
	TxIdle   byte = 'I'
	TxActive byte = 'T'
	TxFailed byte = 'E'
)
