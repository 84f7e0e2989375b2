package auth

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// File is an auth file: user names and their secrets in PgBouncer's
// userlist.txt format, one user per line:
//
//	"user" "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
//	"user" "md5<32 hex digits: md5(password || user)>"
//	"user" "plain password"
//
// Each field is enclosed in double quotes, a quote inside one written twice
// (""); the rest of a line after the second field is ignored, as are empty
// lines and lines whose first non-blank character is ';' or '#'. A later
// line for the same user replaces an earlier one. The secrets are read as
// ParseSecret reads them.
//
// A File is immutable once loaded and safe for concurrent use.
type File struct {
	users map[string]*Secret
}

// LoadFile reads and parses the auth file at path (see File).
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseFile(path, data)
}

// ParseFile parses an auth file's content; name prefixes each problem as
// NAME:LINE: message. Every problem of the file is reported, joined.
func ParseFile(name string, data []byte) (*File, error) {
	f := &File{users: map[string]*Secret{}}
	var errs []error
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		user, rest, err := quoted(line)
		var secret string
		if err == nil {
			secret, _, err = quoted(strings.TrimLeft(rest, " \t"))
		}
		var s *Secret
		if err == nil && user == "" {
			err = errors.New("empty user name")
		}
		if err == nil {
			s, err = ParseSecret(user, secret)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, i+1, err))
			continue
		}
		f.users[user] = s
	}
	return f, errors.Join(errs...)
}

// quoted reads one double-quoted field at the start of s ("" inside stands
// for one quote) and returns it and what follows it.
func quoted(s string) (field, rest string, err error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", errors.New(`want two double-quoted fields: "user" "secret"`)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '"' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' {
			b.WriteByte('"')
			i++
			continue
		}
		return b.String(), s[i+1:], nil
	}
	return "", "", errors.New("unterminated double-quoted field")
}

// Lookup returns the secret of user, and whether the file lists the user.
func (f *File) Lookup(user string) (*Secret, bool) {
	if f == nil {
		return nil, false
	}
	s, ok := f.users[user]
	return s, ok
}

// Len returns the number of users in the file.
func (f *File) Len() int {
	if f == nil {
		return 0
	}
	return len(f.users)
}
