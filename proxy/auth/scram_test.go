package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/txlane/txlane/proxy/wire"
)

// RFC 7677 section 3: the SCRAM-SHA-256 exchange of user "user" with
// password "pencil".
const (
	rfcPassword    = "pencil"
	rfcSalt        = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	rfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfcServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	rfcClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

func rfcKeys(t *testing.T) *Keys {
	t.Helper()
	salt, _ := base64.StdEncoding.DecodeString(rfcSalt)
	k, err := NewKeys(rfcPassword, salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The server side reproduces the RFC's messages from the verifier alone,
// and recovers the ClientKey the password gives.
func TestSCRAMServerRFC7677(t *testing.T) {
	keys := rfcKeys(t)
	s := &scramServer{user: "user", v: keys.Verifier(), mechs: []string{scramMechanism}, serverNonce: rfcServerNonce}
	first, err := s.first(scramMechanism, []byte(rfcClientFirst))
	if err != nil {
		t.Fatal(err)
	}
	if first != rfcServerFirst {
		t.Fatalf("server-first-message\n got %s\nwant %s", first, rfcServerFirst)
	}
	final, got, err := s.final([]byte(rfcClientFinal))
	if err != nil {
		t.Fatal(err)
	}
	if final != rfcServerFinal {
		t.Fatalf("server-final-message\n got %s\nwant %s", final, rfcServerFinal)
	}
	if !bytes.Equal(got.ClientKey, keys.ClientKey) || !bytes.Equal(got.ServerKey, keys.ServerKey) {
		t.Fatal("recovered keys differ from the password's")
	}
}

// The client side's proof and the signature it expects are the RFC's.
func TestSCRAMClientRFC7677(t *testing.T) {
	keys := rfcKeys(t)
	withoutProof, proof, _ := cutLast(rfcClientFinal, ",p=")
	authMessage := rfcClientFirst[len("n,,"):] + "," + rfcServerFirst + "," + withoutProof
	if got := base64.StdEncoding.EncodeToString(clientProof(keys.ClientKey, authMessage)); got != proof {
		t.Fatalf("ClientProof %s, want %s", got, proof)
	}
	if got := "v=" + base64.StdEncoding.EncodeToString(serverSignature(keys.ServerKey, authMessage)); got != rfcServerFinal {
		t.Fatalf("ServerSignature %s, want %s", got, rfcServerFinal)
	}
	nonce, salt, iter, err := parseServerFirst(rfcServerFirst, "rOprNGfwEbeRWgbNEkqO")
	if err != nil || nonce != "rOprNGfwEbeRWgbNEkqO"+rfcServerNonce || base64.StdEncoding.EncodeToString(salt) != rfcSalt || iter != 4096 {
		t.Fatalf("parseServerFirst: %q %x %d %v", nonce, salt, iter, err)
	}
}

// A ClientKey recovered from one exchange answers another exchange (another
// nonce, so another AuthMessage) for the same verifier: pass-through.
func TestSCRAMPassThrough(t *testing.T) {
	keys := rfcKeys(t)
	v := keys.Verifier()
	s := &scramServer{user: "user", v: v, mechs: []string{scramMechanism}, serverNonce: rfcServerNonce}
	if _, err := s.first(scramMechanism, []byte(rfcClientFirst)); err != nil {
		t.Fatal(err)
	}
	_, recovered, err := s.final([]byte(rfcClientFinal))
	if err != nil {
		t.Fatal(err)
	}
	other := "n=,r=abc,r=abcdef,s=" + rfcSalt + ",i=4096,c=biws,r=abcdef"
	if _, ok := recoverClientKey(v, clientProof(recovered.ClientKey, other), other); !ok {
		t.Fatal("a proof made with the recovered ClientKey does not verify")
	}
	wrong := append([]byte(nil), recovered.ClientKey...)
	wrong[0] ^= 1
	if _, ok := recoverClientKey(v, clientProof(wrong, other), other); ok {
		t.Fatal("a proof made with another key verifies")
	}
}

func TestSCRAMServerRefusals(t *testing.T) {
	keys := rfcKeys(t)
	cb := []byte("certificate hash")
	newServer := func(plus bool) *scramServer {
		s := &scramServer{user: "user", v: keys.Verifier(), mechs: []string{scramMechanism}, serverNonce: rfcServerNonce}
		if plus {
			s.mechs, s.cbData = append(s.mechs, scramPlusMechanism), cb
		}
		return s
	}
	code := func(err error) string {
		var we *wire.Error
		if errors.As(err, &we) {
			return we.Code
		}
		return ""
	}
	t.Run("wrong password", func(t *testing.T) {
		s := newServer(false)
		s.first(scramMechanism, []byte(rfcClientFirst))
		final := strings.Replace(rfcClientFinal, "p=dHzb", "p=dHzc", 1)
		if _, _, err := s.final([]byte(final)); code(err) != CodeInvalidPassword {
			t.Fatalf("got %v, want 28P01", err)
		}
	})
	t.Run("mock verifier", func(t *testing.T) {
		// Even a proof that matches the verifier fails when it is a mock.
		s := newServer(false)
		s.mock = true
		s.first(scramMechanism, []byte(rfcClientFirst))
		if _, _, err := s.final([]byte(rfcClientFinal)); code(err) != CodeInvalidPassword {
			t.Fatalf("got %v, want 28P01", err)
		}
		a, b := mockVerifier("ghost"), mockVerifier("ghost")
		if !bytes.Equal(a.Salt, b.Salt) || bytes.Equal(a.Salt, mockVerifier("other").Salt) {
			t.Fatal("the mock salt must be stable per user and differ between users")
		}
	})
	t.Run("downgrade: y while -PLUS was offered", func(t *testing.T) {
		s := newServer(true)
		if _, err := s.first(scramMechanism, []byte("y,,n=,r=abc")); code(err) != wire.CodeInvalidAuthorization || !strings.Contains(err.Error(), "negotiation") {
			t.Fatalf("got %v, want 28000 channel binding negotiation error", err)
		}
		if _, err := newServer(false).first(scramMechanism, []byte("y,,n=,r=abc")); err != nil {
			t.Fatalf("y without -PLUS offered: %v", err)
		}
	})
	t.Run("channel binding", func(t *testing.T) {
		proofFor := func(s *scramServer, cbData []byte) string {
			gs2 := "p=tls-server-end-point,,"
			first, err := s.first(scramPlusMechanism, []byte(gs2+"n=,r=abc"))
			if err != nil {
				t.Fatal(err)
			}
			without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(gs2), cbData...)) + ",r=abc" + rfcServerNonce
			am := "n=,r=abc," + first + "," + without
			return without + ",p=" + base64.StdEncoding.EncodeToString(clientProof(keys.ClientKey, am))
		}
		s := newServer(true)
		if _, _, err := s.final([]byte(proofFor(s, cb))); err != nil {
			t.Fatalf("right binding: %v", err)
		}
		s = newServer(true)
		if _, _, err := s.final([]byte(proofFor(s, []byte("another certificate")))); code(err) != wire.CodeInvalidAuthorization {
			t.Fatalf("wrong binding: got %v, want 28000", err)
		}
		if _, err := newServer(false).first(scramPlusMechanism, []byte("p=tls-server-end-point,,n=,r=abc")); err == nil {
			t.Fatal("-PLUS accepted where it was not offered")
		}
		if _, err := newServer(true).first(scramPlusMechanism, []byte("n,,n=,r=abc")); err == nil {
			t.Fatal("-PLUS without binding data accepted")
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for _, msg := range []string{"", "n", "n,", "n,a=someone,n=,r=abc", "n,,m=ext,n=,r=abc", "n,,n=,r=", "n,,r=abc", "x,,n=,r=abc"} {
			if _, err := newServer(false).first(scramMechanism, []byte(msg)); code(err) == "" {
				t.Errorf("client-first %q: got %v, want an error for the client", msg, err)
			}
		}
		s := newServer(false)
		s.first(scramMechanism, []byte(rfcClientFirst))
		for _, msg := range []string{"", "c=biws,r=x", "c=biws,r=wrongnonce,p=" + base64.StdEncoding.EncodeToString(make([]byte, 32)),
			"c=eSws," + rfcClientFinal[len("c=biws,"):], "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=short"} {
			if _, _, err := s.final([]byte(msg)); code(err) == "" || code(err) == CodeInvalidPassword {
				t.Errorf("client-final %q: got %v, want a protocol error", msg, err)
			}
		}
	})
}

func TestVerifierFormat(t *testing.T) {
	v := rfcKeys(t).Verifier()
	text := v.String()
	if !strings.HasPrefix(text, "SCRAM-SHA-256$4096:"+rfcSalt+"$") {
		t.Fatal(text)
	}
	back, err := ParseVerifier(text)
	if err != nil || back.String() != text {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for _, bad := range []string{
		"SCRAM-SHA-256$", "SCRAM-SHA-256$4096:" + rfcSalt, "SCRAM-SHA-256$0:" + rfcSalt + "$a:b",
		"SCRAM-SHA-256$4096:***$" + text[strings.LastIndex(text, "$")+1:],
		"SCRAM-SHA-256$4096:" + rfcSalt + "$c2hvcnQ=:c2hvcnQ=",
	} {
		if _, err := ParseVerifier(bad); err == nil {
			t.Errorf("ParseVerifier(%q) accepted", bad)
		}
	}
}

func TestMD5(t *testing.T) {
	// PgBouncer's documented example: user admin, password 1234.
	if got := md5Secret("1234", "admin"); got != "md545f2603610af569b6155c45067268c6b" {
		t.Fatal(got)
	}
	salt := [4]byte{1, 2, 3, 4}
	secret := md5Secret("1234", "admin")
	if !checkMD5(secret, salt, md5Response(secret, salt)) {
		t.Fatal("the right response fails")
	}
	if checkMD5(secret, salt, md5Response(md5Secret("12345", "admin"), salt)) || checkMD5(secret, [4]byte{}, md5Response(secret, salt)) {
		t.Fatal("a wrong password or salt passes")
	}
}

func TestParseSecret(t *testing.T) {
	v := rfcKeys(t).Verifier().String()
	for _, tc := range []struct {
		in               string
		scram, md5, pass bool
	}{
		{v, true, false, false},
		{"md545f2603610af569b6155c45067268c6b", false, true, false},
		{"md545F2603610AF569B6155C45067268C6B", true, true, true}, // upper case: PostgreSQL reads a password
		{"pencil", true, true, true},
	} {
		s, err := ParseSecret("admin", tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if (s.SCRAM != nil) != tc.scram || (s.MD5 != "") != tc.md5 || (s.Password != "") != tc.pass {
			t.Errorf("%q: got %+v", tc.in, s)
		}
	}
	if _, err := ParseSecret("admin", ""); err == nil {
		t.Error("empty secret accepted")
	}
	if _, err := ParseSecret("admin", "SCRAM-SHA-256$bad"); err == nil {
		t.Error("malformed verifier accepted")
	}
}

func TestParseFile(t *testing.T) {
	v := rfcKeys(t).Verifier().String()
	data := "; comment\n# another\n\n\"alice\" \"" + v + "\" anything after\r\n" +
		"\"bob\"\t\"md545f2603610af569b6155c45067268c6b\"\n" +
		"\"quo\"\"te\" \"pa\"\"ss\"\n"
	f, err := ParseFile("users.txt", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != 3 {
		t.Fatalf("%d users", f.Len())
	}
	if s, ok := f.Lookup("alice"); !ok || s.SCRAM == nil || s.SCRAM.String() != v {
		t.Fatalf("alice: %+v", s)
	}
	if s, ok := f.Lookup(`quo"te`); !ok || s.Password != `pa"ss` {
		t.Fatalf(`quo"te: %+v`, s)
	}
	if _, ok := f.Lookup("carol"); ok {
		t.Fatal("carol found")
	}
	_, err = ParseFile("users.txt", []byte("\"ok\" \"pw\"\nalice pw\n\"open\n\"\" \"pw\"\n\"x\" \"\"\n"))
	for _, want := range []string{"users.txt:2:", "users.txt:3:", "users.txt:4:", "users.txt:5:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
