package auth

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// Secret is what txlane knows of one user's password: exactly what
// PostgreSQL stores in pg_authid.rolpassword (a SCRAM-SHA-256 verifier or an
// md5 hash), or, from an auth file only, the password itself.
type Secret struct {
	// SCRAM is the SCRAM-SHA-256 verifier: parsed from a SCRAM secret, or
	// made for a plain password (a random salt, DefaultIterations) so that
	// txlane can run SCRAM with the client. Nil for an md5 secret.
	SCRAM *Verifier
	// MD5 is "md5" followed by 32 hex digits of md5(password || user), as
	// PostgreSQL stores it; set for an md5 secret and for a plain password.
	MD5 string
	// Password is the password itself (an auth file entry that is neither
	// a verifier nor an md5 hash); "" otherwise.
	Password string
}

// isMD5 reports whether s has the shape of a PostgreSQL md5 secret ("md5"
// and 32 hex digits), as PostgreSQL's get_password_type tells it.
func isMD5(s string) bool {
	if len(s) != 35 || !strings.HasPrefix(s, "md5") {
		return false
	}
	for _, c := range s[3:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ParseSecret reads a secret of user as PostgreSQL tells its kinds apart
// (get_password_type): "md5" + 32 lower-case hex digits is an md5 hash,
// "SCRAM-SHA-256$..." a verifier (an error if malformed), anything else a
// plain password. An empty secret is an error: PostgreSQL never accepts an
// empty password.
func ParseSecret(user, s string) (*Secret, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("empty password for user %q", user)
	case isMD5(s):
		return &Secret{MD5: s}, nil
	case strings.HasPrefix(s, scramPrefix):
		v, err := ParseVerifier(s)
		if err != nil {
			return nil, err
		}
		return &Secret{SCRAM: v}, nil
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	keys, err := NewKeys(s, salt, DefaultIterations)
	if err != nil {
		return nil, err
	}
	return &Secret{SCRAM: keys.Verifier(), MD5: md5Secret(s, user), Password: s}, nil
}

// md5Secret returns PostgreSQL's md5 secret of password for user:
// "md5" + hex(md5(password || user)).
func md5Secret(password, user string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

// md5Response returns what a client answers an md5 request with salt, given
// the stored md5 secret: "md5" + hex(md5(hex part of secret || salt))
// ("Protocol Flow: AuthenticationMD5Password").
func md5Response(secret string, salt [4]byte) string {
	sum := md5.Sum(append([]byte(secret[3:]), salt[:]...))
	return "md5" + hex.EncodeToString(sum[:])
}

// checkMD5 reports whether a client's md5 response answers salt for secret,
// comparing in constant time.
func checkMD5(secret string, salt [4]byte, response string) bool {
	return subtle.ConstantTimeCompare([]byte(md5Response(secret, salt)), []byte(response)) == 1
}

// Credentials are what txlane logs in to the server with as User, any
// number of times and without the client. At most one kind is used, the one
// the server's request needs: Keys for SCRAM-SHA-256 (only when the server's
// salt and iteration count are theirs), MD5 for md5, Password for any
// method. Credentials with none of them log in only where the server asks
// for no password (trust).
//
// Credentials are password-equivalent for the logins they allow: ClientKey
// logs in to any server whose verifier for the user has the same salt and
// iteration count, an md5 hash to any server that accepts md5 for the user.
// They live in txlane's memory only, never on disk nor in a log.
type Credentials struct {
	User     string
	Keys     *Keys
	MD5      string
	Password string
}

// String names what c holds, without secrets (for logs).
func (c *Credentials) String() string {
	switch {
	case c == nil:
		return "none"
	case c.Password != "":
		return "password"
	case c.Keys != nil:
		return "SCRAM-SHA-256 keys"
	case c.MD5 != "":
		return "md5 hash"
	}
	return "none"
}

// credentialsOf returns what s alone lets txlane log in with: the password,
// or the md5 hash (a verifier alone logs in nowhere).
func credentialsOf(user string, s *Secret) *Credentials {
	c := &Credentials{User: user}
	if s != nil {
		c.Password, c.MD5 = s.Password, s.MD5
	}
	return c
}
