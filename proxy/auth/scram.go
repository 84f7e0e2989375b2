package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/text/secure/precis"
)

// SCRAM-SHA-256 (RFC 5802 with SHA-256, RFC 7677) as PostgreSQL uses it
// ("SASL Authentication" in the PostgreSQL manual). Names follow RFC 5802
// section 3:
//
//	SaltedPassword  = PBKDF2-HMAC-SHA-256(Normalize(password), salt, i)
//	ClientKey       = HMAC(SaltedPassword, "Client Key")
//	StoredKey       = H(ClientKey)
//	ServerKey       = HMAC(SaltedPassword, "Server Key")
//	AuthMessage     = client-first-message-bare + "," + server-first-message + "," + client-final-message-without-proof
//	ClientSignature = HMAC(StoredKey, AuthMessage)
//	ClientProof     = ClientKey XOR ClientSignature
//	ServerSignature = HMAC(ServerKey, AuthMessage)
//
// A server that stores StoredKey and ServerKey (the verifier) checks a
// ClientProof by recovering ClientKey = ClientProof XOR ClientSignature and
// comparing H(ClientKey) with StoredKey. The recovered ClientKey is enough to
// compute a ClientProof for any later exchange with the same salt and
// iteration count: this is the "pass-through" txlane (as PgBouncer) logs in
// to the server with. ClientKey is not the password, but it is equivalent to
// it for SCRAM logins to any server holding the same verifier.

const (
	scramMechanism     = "SCRAM-SHA-256"
	scramPlusMechanism = "SCRAM-SHA-256-PLUS"
	scramKeyLen        = sha256.Size // bytes of every key and signature
	scramPrefix        = "SCRAM-SHA-256$"

	// DefaultIterations is PostgreSQL's default scram_iterations (4096), used
	// for verifiers txlane makes itself.
	DefaultIterations = 4096
	// maxIterations bounds the PBKDF2 work a server's (or a file's) iteration
	// count may ask for: PostgreSQL's scram_iterations accepts at most
	// INT_MAX, but anything beyond this is a misconfiguration or an attack on
	// txlane's CPU.
	maxIterations = 10_000_000
)

// Verifier is a SCRAM-SHA-256 secret as PostgreSQL stores it in
// pg_authid.rolpassword:
//
//	SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//
// It lets its holder check a client's proof and prove itself to the client,
// but not log in anywhere: logging in needs ClientKey, which only a client's
// proof (or the password) gives.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte // H(ClientKey), 32 bytes
	ServerKey  []byte // 32 bytes
}

// ParseVerifier parses a SCRAM-SHA-256 secret in PostgreSQL's format (see
// Verifier); it accepts what PostgreSQL's parse_scram_secret accepts.
func ParseVerifier(s string) (*Verifier, error) {
	rest, ok := strings.CutPrefix(s, scramPrefix)
	if !ok {
		return nil, errors.New("not a SCRAM-SHA-256 secret (want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)")
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, errors.New("malformed SCRAM-SHA-256 secret: no '$' before the keys")
	}
	iter, salt, ok1 := strings.Cut(params, ":")
	stored, server, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return nil, errors.New("malformed SCRAM-SHA-256 secret: want <iterations>:<salt>$<StoredKey>:<ServerKey>")
	}
	v := &Verifier{}
	var err error
	if v.Iterations, err = strconv.Atoi(iter); err != nil || v.Iterations < 1 || v.Iterations > maxIterations {
		return nil, fmt.Errorf("malformed SCRAM-SHA-256 secret: iteration count %q (want 1 to %d)", iter, maxIterations)
	}
	if v.Salt, err = base64.StdEncoding.DecodeString(salt); err != nil || len(v.Salt) == 0 {
		return nil, errors.New("malformed SCRAM-SHA-256 secret: the salt is not base64")
	}
	if v.StoredKey, err = base64.StdEncoding.DecodeString(stored); err != nil || len(v.StoredKey) != scramKeyLen {
		return nil, errors.New("malformed SCRAM-SHA-256 secret: StoredKey is not 32 bytes of base64")
	}
	if v.ServerKey, err = base64.StdEncoding.DecodeString(server); err != nil || len(v.ServerKey) != scramKeyLen {
		return nil, errors.New("malformed SCRAM-SHA-256 secret: ServerKey is not 32 bytes of base64")
	}
	return v, nil
}

// String returns the verifier in PostgreSQL's format, as ALTER ROLE ...
// PASSWORD accepts it.
func (v *Verifier) String() string {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s%d:%s$%s:%s", scramPrefix, v.Iterations, b64(v.Salt), b64(v.StoredKey), b64(v.ServerKey))
}

// Keys are what a SCRAM-SHA-256 login needs for one salt and iteration
// count: ClientKey proves the client, ServerKey checks the server's
// signature. Derived from a password (NewKeys) or recovered from a client's
// proof (pass-through).
type Keys struct {
	Iterations int
	Salt       []byte
	ClientKey  []byte
	ServerKey  []byte
}

// NewKeys derives the keys of password for salt and iterations, the
// password normalized with SASLprep as PostgreSQL does (pg_saslprep): a
// password that is not valid under SASLprep is used as its bytes.
func NewKeys(password string, salt []byte, iterations int) (*Keys, error) {
	if iterations < 1 || iterations > maxIterations {
		return nil, fmt.Errorf("SCRAM iteration count %d out of range (1 to %d)", iterations, maxIterations)
	}
	salted, err := pbkdf2.Key(sha256.New, saslPrep(password), salt, iterations, scramKeyLen)
	if err != nil {
		return nil, err
	}
	return &Keys{Iterations: iterations, Salt: salt,
		ClientKey: hmacSHA256(salted, "Client Key"), ServerKey: hmacSHA256(salted, "Server Key")}, nil
}

// Verifier returns the verifier that k's password has for k's salt and
// iteration count.
func (k *Keys) Verifier() *Verifier {
	stored := sha256.Sum256(k.ClientKey)
	return &Verifier{Iterations: k.Iterations, Salt: k.Salt, StoredKey: stored[:], ServerKey: k.ServerKey}
}

// saslPrep normalizes a password as PostgreSQL's pg_saslprep does (RFC
// 4013's profile, of which PRECIS OpaqueString is the successor); a password
// it refuses is used unchanged, as PostgreSQL uses it.
func saslPrep(password string) string {
	if p, err := precis.OpaqueString.String(password); err == nil {
		return p
	}
	return password
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// clientProof returns ClientKey XOR HMAC(H(ClientKey), authMessage).
func clientProof(clientKey []byte, authMessage string) []byte {
	stored := sha256.Sum256(clientKey)
	return xor(clientKey, hmacSHA256(stored[:], authMessage))
}

// recoverClientKey returns the ClientKey a proof carries for the verifier's
// StoredKey, and whether it is the right one (H(ClientKey) = StoredKey,
// compared in constant time).
func recoverClientKey(v *Verifier, proof []byte, authMessage string) ([]byte, bool) {
	if len(proof) != scramKeyLen {
		return nil, false
	}
	clientKey := xor(proof, hmacSHA256(v.StoredKey, authMessage))
	got := sha256.Sum256(clientKey)
	return clientKey, subtle.ConstantTimeCompare(got[:], v.StoredKey) == 1
}

// serverSignature returns HMAC(ServerKey, authMessage).
func serverSignature(serverKey []byte, authMessage string) []byte {
	return hmacSHA256(serverKey, authMessage)
}

func xor(a, b []byte) []byte {
	out := make([]byte, len(a))
	subtle.XORBytes(out, a, b)
	return out
}

// endpointHash returns the tls-server-end-point channel binding data of a
// certificate (RFC 5929 section 4.1): its DER hashed with the hash of its
// signature algorithm, SHA-256 for MD5 and SHA-1. It fails for signature
// algorithms without one hash (Ed25519), as PostgreSQL's does.
func endpointHash(cert *x509.Certificate) ([]byte, error) {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil, fmt.Errorf("tls-server-end-point channel binding is undefined for certificates signed with %v", cert.SignatureAlgorithm)
	}
	h.Write(cert.Raw)
	return h.Sum(nil), nil
}

// EndpointHash returns the tls-server-end-point channel binding data of the
// first certificate of a DER chain (a tls.Certificate's Certificate field),
// for a server that presents it: txlane towards its clients.
func EndpointHash(chain [][]byte) ([]byte, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate")
	}
	cert, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, err
	}
	return endpointHash(cert)
}
