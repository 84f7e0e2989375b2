package auth

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/proxy/wire"
)

// fakeServer is the server end of net.Pipe: it reads a startup message,
// authenticates the client with Authenticate as txlane does, and on success
// ends the login as PostgreSQL does. It returns the credentials
// Authenticate gave, or its error.
func fakeServer(t *testing.T, conn net.Conn, method Method, secrets map[string]*Secret) (*Credentials, error) {
	t.Helper()
	br := bufio.NewReader(conn)
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:])-4)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	var startup pgproto3.StartupMessage
	if err := startup.Decode(body); err != nil {
		return nil, err
	}
	w := bufio.NewWriter(conn)
	user := startup.Parameters["user"]
	creds, err := Authenticate(Client{R: wire.NewReader[wire.Frontend](br, 1<<20), W: w}, method, user, secrets[user])
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			wire.WriteError(w, we)
			w.Flush()
		}
		return nil, err
	}
	for _, m := range []interface{ Encode([]byte) ([]byte, error) }{
		&pgproto3.AuthenticationOk{},
		&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"},
		&pgproto3.BackendKeyData{ProcessID: 42, SecretKey: []byte{1, 2, 3, 4}},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	} {
		wire.WriteMsg(w, m)
	}
	return creds, w.Flush()
}

// pipeLogin runs Login over a pipe against fakeServer and returns both ends'
// outcomes.
func pipeLogin(t *testing.T, method Method, secrets map[string]*Secret, user string, creds *Credentials) (*wire.LoginResult, error, *Credentials, error) {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	type out struct {
		creds *Credentials
		err   error
	}
	done := make(chan out, 1)
	go func() {
		defer server.Close()
		c, err := fakeServer(t, server, method, secrets)
		done <- out{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	startup := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": user, "database": "db"}}
	res, err := Login(ctx, client, wire.NewReader[wire.Backend](client, 0), bufio.NewWriter(client), startup, creds)
	client.Close()
	o := <-done
	return res, err, o.creds, o.err
}

// Credentials that Authenticate returns log in with Login to a server that
// holds the same secret, again and again: SCRAM keys recovered from the
// client's proof, an md5 hash, a password.
func TestAuthenticateThenLogin(t *testing.T) {
	scram, err := ParseSecret("alice", "pencil")
	if err != nil {
		t.Fatal(err)
	}
	verifierOnly := &Secret{SCRAM: scram.SCRAM}
	md5Only := &Secret{MD5: md5Secret("pencil", "bob")}
	secrets := map[string]*Secret{"alice": verifierOnly, "bob": md5Only}

	// The client knows the password; txlane knows the verifier only.
	res, err, creds, serr := pipeLogin(t, MethodSCRAM, secrets, "alice", &Credentials{User: "alice", Password: "pencil"})
	if err != nil || serr != nil {
		t.Fatalf("client with the password: %v / %v", err, serr)
	}
	if res.Params["server_version"] != "15.0" || res.Key.ProcessID != 42 || res.TxStatus != 'I' || res.Protocol != pgproto3.ProtocolVersion30 {
		t.Fatalf("login result %+v", res)
	}
	if creds.Keys == nil || creds.Password != "" {
		t.Fatalf("credentials after SCRAM: %v", creds)
	}
	for i := range 2 {
		if _, err, _, serr := pipeLogin(t, MethodSCRAM, secrets, "alice", creds); err != nil || serr != nil {
			t.Fatalf("pass-through login %d: %v / %v", i, err, serr)
		}
	}
	// Keys for another salt are refused before anything is sent.
	other, _ := NewKeys("pencil", []byte("another salt"), 4096)
	_, err, _, _ = pipeLogin(t, MethodSCRAM, secrets, "alice", &Credentials{User: "alice", Keys: other})
	var ce *CredentialsError
	if !errors.As(err, &ce) {
		t.Fatalf("keys of another salt: got %v, want a CredentialsError", err)
	}

	// md5: under MethodMD5 an md5 secret gets an md5 exchange.
	_, err, creds, serr = pipeLogin(t, MethodMD5, secrets, "bob", &Credentials{User: "bob", Password: "pencil"})
	if err != nil || serr != nil || creds.MD5 != md5Only.MD5 {
		t.Fatalf("md5: %v / %v / %v", err, serr, creds)
	}
	if _, err, _, serr := pipeLogin(t, MethodMD5, secrets, "bob", creds); err != nil || serr != nil {
		t.Fatalf("md5 pass-through: %v / %v", err, serr)
	}
	// Under MethodMD5 a verifier gets SCRAM, as in PostgreSQL.
	if _, err, creds, serr := pipeLogin(t, MethodMD5, secrets, "alice", &Credentials{User: "alice", Password: "pencil"}); err != nil || serr != nil || creds.Keys == nil {
		t.Fatalf("md5 method, SCRAM secret: %v / %v / %v", err, serr, creds)
	}

	// Refusals: the client sees PostgreSQL's 28P01.
	for _, tc := range []struct {
		name, user string
		method     Method
		creds      *Credentials
	}{
		{"wrong password", "alice", MethodSCRAM, &Credentials{User: "alice", Password: "wrong"}},
		{"unknown user", "carol", MethodSCRAM, &Credentials{User: "carol", Password: "pencil"}},
		{"md5 secret under scram-sha-256", "bob", MethodSCRAM, &Credentials{User: "bob", Password: "pencil"}},
		{"wrong md5", "bob", MethodMD5, &Credentials{User: "bob", Password: "wrong"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err, _, serr := pipeLogin(t, tc.method, secrets, tc.user, tc.creds)
			var sle *wire.ServerLoginError
			if !errors.As(err, &sle) || sle.Code != CodeInvalidPassword || sle.Message != `password authentication failed for user "`+tc.user+`"` {
				t.Fatalf("client got %v, want 28P01", err)
			}
			var we *wire.Error
			if !errors.As(serr, &we) || we.Code != CodeInvalidPassword {
				t.Fatalf("server got %v", serr)
			}
		})
	}
	// Trust: nothing checked; the credentials are the secret's.
	if _, err, creds, serr := pipeLogin(t, MethodTrust, secrets, "bob", nil); err != nil || serr != nil || creds.MD5 != md5Only.MD5 {
		t.Fatalf("trust: %v / %v / %v", err, serr, creds)
	}
}

// Login refuses with a CredentialsError what its credentials cannot answer:
// cleartext and md5 without a password or hash, GSSAPI and SSPI
// always, SCRAM without keys or a password, SASL without SCRAM-SHA-256.
func TestLoginCredentialsErrors(t *testing.T) {
	keys, _ := NewKeys("pencil", []byte("salt"), 4096)
	for _, tc := range []struct {
		name    string
		request interface{ Encode([]byte) ([]byte, error) }
		creds   *Credentials
	}{
		{"cleartext with keys", &pgproto3.AuthenticationCleartextPassword{}, &Credentials{User: "u", Keys: keys}},
		{"md5 with keys", &pgproto3.AuthenticationMD5Password{}, &Credentials{User: "u", Keys: keys}},
		{"GSSAPI", &pgproto3.AuthenticationGSS{}, &Credentials{User: "u", Password: "pencil"}},
		{"SCRAM with an md5 hash", &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}, &Credentials{User: "u", MD5: md5Secret("pencil", "u")}},
		{"SASL without SCRAM", &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"OAUTHBEARER"}}, &Credentials{User: "u", Password: "pencil"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			go func() {
				defer server.Close()
				var hdr [4]byte
				io.ReadFull(server, hdr[:])
				io.ReadFull(server, make([]byte, binary.BigEndian.Uint32(hdr[:])-4))
				w := bufio.NewWriter(server)
				wire.WriteMsg(w, tc.request)
				w.Flush()
				io.Copy(io.Discard, server)
			}()
			startup := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}}
			_, err := Login(context.Background(), client, wire.NewReader[wire.Backend](client, 0), bufio.NewWriter(client), startup, tc.creds)
			var ce *CredentialsError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a CredentialsError", err)
			}
		})
	}
}
