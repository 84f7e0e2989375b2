package wire

import (
	"bytes"

	"github.com/jackc/pgx/v5/pgproto3"
)

// CString splits a NUL-terminated string off b; ok is false without a NUL.
func CString(b []byte) (s string, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// PutLength writes the length word of a message with a body of bodyLen
// bytes into dst[0:4].
func PutLength(dst []byte, bodyLen int) {
	n := uint32(bodyLen + 4)
	dst[0], dst[1], dst[2], dst[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// AppendParse appends a Parse of query, with parameter type OIDs, under
// statement name.
func AppendParse(dst []byte, name, query string, paramOIDs []uint32) []byte {
	out, _ := (&pgproto3.Parse{Name: name, Query: query, ParameterOIDs: paramOIDs}).Encode(dst)
	return out
}

// AppendSync appends a Sync.
func AppendSync(dst []byte) []byte {
	out, _ := (&pgproto3.Sync{}).Encode(dst)
	return out
}

// AppendCloseStatement appends a Close of prepared statement name.
func AppendCloseStatement(dst []byte, name string) []byte {
	out, _ := (&pgproto3.Close{ObjectType: ObjectStatement, Name: name}).Encode(dst)
	return out
}

// IsFatal reports whether an ErrorResponse body has severity FATAL or PANIC.
func IsFatal(body []byte) bool {
	v := field(body, 'V')
	if v == "" {
		v = field(body, 'S')
	}
	return v == "FATAL" || v == "PANIC"
}

// ErrorCode returns the SQLSTATE field of an ErrorResponse body, without
// decoding the rest ("" when absent).
func ErrorCode(body []byte) string { return field(body, 'C') }

// field returns the value of field f of an ErrorResponse or NoticeResponse
// body ("Error and Notice Message Fields"), or "".
func field(body []byte, f byte) string {
	for len(body) > 1 {
		code := body[0]
		end := bytes.IndexByte(body[1:], 0)
		if end < 0 {
			return ""
		}
		if code == f {
			return string(body[1 : 1+end])
		}
		body = body[2+end:]
	}
	return ""
}
