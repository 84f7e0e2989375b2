package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
)

// Protocol version words as a StartupMessage carries them.
const (
	proto30     = 3 << 16
	proto31     = 3<<16 | 1
	proto32     = 3<<16 | 2
	protoGrease = 3<<16 | 9999 // what newer libpq asks for to exercise negotiation
)

// startupBody returns a StartupMessage for version with the name/value pairs
// kv in this order, terminated.
func startupBody(version uint32, kv ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, version)
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	return append(b, 0)
}

// withoutTerminator drops body's final NUL and appends tail.
func withoutTerminator(body []byte, tail ...byte) []byte {
	return append(body[:len(body)-1:len(body)-1], tail...)
}

// framed prefixes a startup-phase body with its length word.
func framed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

// wireMsg is one backend message as it came off the wire.
type wireMsg struct {
	typ  byte
	body []byte
}

func (m wireMsg) String() string { return fmt.Sprintf("%c %q", m.typ, m.body) }

// readRawUntil reads backend messages from r up to and including the first of
// type stop (or an ErrorResponse), failing the test on a read error.
func readRawUntil(t *testing.T, r *bufio.Reader, stop byte) []wireMsg {
	t.Helper()
	var msgs []wireMsg
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatalf("after %v: %v", msgs, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("after %v: %v", msgs, err)
		}
		msgs = append(msgs, wireMsg{hdr[0], body})
		if hdr[0] == stop || hdr[0] == 'E' {
			return msgs
		}
	}
}

// directAddr is the address of the PostgreSQL server behind p.
func directAddr(t *testing.T, p *testProxy) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(p.Direct)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// rawSession runs a login with startup (a framed packet) then query on a raw
// connection to addr, and returns the server's messages for each.
func rawSession(t *testing.T, addr string, startup []byte, query string) (login, reply []wireMsg) {
	t.Helper()
	c := dialRaw(t, addr)
	r := bufio.NewReader(c)
	if _, err := c.Write(startup); err != nil {
		t.Fatal(err)
	}
	login = readRawUntil(t, r, 'Z')
	if login[len(login)-1].typ != 'Z' {
		return login, nil
	}
	q, _ := (&pgproto3.Query{String: query}).Encode(nil)
	c.Write(q)
	reply = readRawUntil(t, r, 'Z')
	x, _ := (&pgproto3.Terminate{}).Encode(nil)
	c.Write(x)
	return login, reply
}

// TestProtocolNegotiationMatchesPostgres sends the same raw StartupMessage to
// PostgreSQL and to txlane and compares the answers message by message —
// NegotiateProtocolVersion, authentication, ParameterStatus, ReadyForQuery —
// then runs a query on both sessions. BackendKeyData differs by design
// (txlane's own key) and is compared by length only.
func TestProtocolNegotiationMatchesPostgres(t *testing.T) {
	p := startProxy(t, nil)
	direct := directAddr(t, p)
	cfg, _ := pgconn.ParseConfig(p.Direct)
	login := []string{"user", cfg.User, "database", cfg.Database}
	with := func(kv ...string) []string { return append(append([]string{}, login...), kv...) }
	for _, tc := range []struct {
		name    string
		body    []byte
		wantNPV bool // PostgreSQL 15 negotiates (asserted on its answer, so the case tests what it claims)
	}{
		{"3.9999 with _pq_.test_protocol_negotiation", startupBody(protoGrease, with("_pq_.test_protocol_negotiation", "")...), true},
		{"3.0 with a _pq_ option", startupBody(proto30, with("_pq_.test_protocol_negotiation", "on")...), true},
		{"3.2", startupBody(proto32, login...), true},
		{"3.1", startupBody(proto31, login...), true},
		{"3.0", startupBody(proto30, login...), false},
		{"repeated _pq_ options keep their order", startupBody(protoGrease,
			append([]string{"_pq_.b", "1", "_pq_.a", ""}, with("_pq_.b", "2", "application_name", "negotiation")...)...), true},
		// PostgreSQL ignores a final name that has no value before the end.
		{"dangling final name", withoutTerminator(startupBody(protoGrease, with("_pq_.x", "y")...), 'X'), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			query := "SELECT 6 * 7 AS answer, current_setting('application_name')"
			wantLogin, wantReply := rawSession(t, direct, framed(tc.body), query)
			gotLogin, gotReply := rawSession(t, p.Addr, framed(tc.body), query)
			if (wantLogin[0].typ == 'v') != tc.wantNPV {
				t.Fatalf("PostgreSQL answered %v; the case expects NegotiateProtocolVersion=%v", wantLogin[0], tc.wantNPV)
			}
			if len(gotLogin) != len(wantLogin) {
				t.Fatalf("login: txlane sent %d messages, PostgreSQL %d:\n txlane %v\n postgres %v", len(gotLogin), len(wantLogin), gotLogin, wantLogin)
			}
			for i := range wantLogin {
				w, g := wantLogin[i], gotLogin[i]
				if w.typ == 'K' && g.typ == 'K' {
					if len(w.body) != len(g.body) {
						t.Errorf("BackendKeyData: txlane's is %d bytes, PostgreSQL's %d", len(g.body), len(w.body))
					}
					continue
				}
				if w.typ != g.typ || !bytes.Equal(w.body, g.body) {
					t.Errorf("login message %d: txlane %v, PostgreSQL %v", i, g, w)
				}
			}
			if fmt.Sprint(gotReply) != fmt.Sprint(wantReply) {
				t.Errorf("query: txlane %v\n PostgreSQL %v", gotReply, wantReply)
			}
			if len(gotReply) == 0 || gotReply[0].typ != 'T' {
				t.Errorf("the query did not run through txlane: %v", gotReply)
			}
		})
	}
}

// errorFields decodes an ErrorResponse, keeping what txlane must match:
// PostgreSQL adds its source location (file, line, routine).
func errorFields(t *testing.T, body []byte) string {
	t.Helper()
	var e pgproto3.ErrorResponse
	if err := e.Decode(body); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return fmt.Sprintf("S=%s V=%s C=%s M=%s D=%s", e.Severity, e.SeverityUnlocalized, e.Code, e.Message, e.Detail)
}

// TestStartupRefusalsMatchPostgres compares txlane's answer to startup
// packets it refuses with PostgreSQL's: major versions other than 3 (older
// ones answered in the old protocol's error format, as PostgreSQL does) and a
// bad layout. The supported range in the version message is txlane's own
// (3.0 to 3.2); PostgreSQL 15 says 3.0 to 3.0.
func TestStartupRefusalsMatchPostgres(t *testing.T) {
	p := startProxy(t, nil)
	direct := directAddr(t, p)
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"2.0", startupBody(2<<16, "user", "postgres")},
		{"1.0", startupBody(1<<16, "user", "postgres")},
		{"0.0", startupBody(0, "user", "postgres")},
		{"4.0", startupBody(4<<16, "user", "postgres")},
		{"1234.5681", startupBody(1234<<16|5681, "user", "postgres")},
		{"3.9999 without terminator", withoutTerminator(startupBody(protoGrease, "user", "postgres"))},
		{"3.0 version word only", binary.BigEndian.AppendUint32(nil, proto30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := func(addr string) []byte {
				c := dialRaw(t, addr)
				c.Write(framed(tc.body))
				data, err := io.ReadAll(c)
				if err != nil && !strings.Contains(err.Error(), "reset") {
					t.Fatalf("%s: %v", addr, err)
				}
				return data
			}
			want := bytes.ReplaceAll(answer(direct), []byte("server supports 3.0 to 3.0"), []byte("server supports 3.0 to 3.2"))
			got := answer(p.Addr)
			if len(want) == 0 || want[0] != 'E' {
				t.Fatalf("PostgreSQL answered %q", want)
			}
			if bytes.HasPrefix(want, []byte("EFATAL:  ")) { // the old protocol's format
				if !bytes.Equal(got, want) {
					t.Fatalf("txlane %q\nPostgreSQL %q", got, want)
				}
				return
			}
			if len(got) < 5 || got[0] != 'E' || int(binary.BigEndian.Uint32(got[1:]))+1 != len(got) {
				t.Fatalf("txlane answered %q, want one ErrorResponse", got)
			}
			if g, w := errorFields(t, got[5:]), errorFields(t, want[5:]); g != w {
				t.Fatalf("txlane %s\nPostgreSQL %s", g, w)
			}
		})
	}
	assertHealthy(t, p)
}

// TestProtocolNegotiationRealClient logs in with pgx asking for protocol 3.2
// (max_protocol_version=latest): PostgreSQL 15 through txlane grants 3.0 and
// the session works; a client that insists on 3.2 is refused as it is by the
// server directly.
func TestProtocolNegotiationRealClient(t *testing.T) {
	p := startProxy(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, p.DSN(t, "")+"&max_protocol_version=latest")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if got := scalar(t, conn, "SELECT 'negotiated'"); got != "negotiated" {
		t.Fatal(got)
	}
	if n := len(conn.SecretKey()); n != 4 {
		t.Fatalf("cancel key of %d bytes in a 3.0 session", n)
	}
	var server string
	direct := p.Direct + "&min_protocol_version=3.2"
	if _, err := pgconn.Connect(ctx, direct); err == nil {
		t.Skip("the test server speaks protocol 3.2: nothing to refuse")
	} else {
		server = err.Error()
	}
	_, err = pgconn.Connect(ctx, p.DSN(t, "")+"&min_protocol_version=3.2")
	if err == nil || !strings.Contains(err.Error(), "server protocol version too low") {
		t.Fatalf("min_protocol_version=3.2 through txlane: %v; directly: %s", err, server)
	}
}

// TestAdminConsoleNegotiates: the console is txlane itself and grants what
// txlane speaks, 3.2, listing the client's _pq_ options.
func TestAdminConsoleNegotiates(t *testing.T) {
	p := startProxy(t, func(o *proxy.Options) { o.AdminUsers = []string{pgtest.AppRole} })
	c := dialRaw(t, p.Addr)
	c.Write(framed(startupBody(protoGrease, "user", pgtest.AppRole, "database", proxy.AdminDatabase, "_pq_.test_protocol_negotiation", "")))
	msgs := readRawUntil(t, bufio.NewReader(c), 'Z')
	want, _ := (&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: proto32, UnrecognizedOptions: []string{"_pq_.test_protocol_negotiation"}}).Encode(nil)
	if msgs[0].typ != 'v' || !bytes.Equal(msgs[0].body, want[5:]) {
		t.Fatalf("first message %v, want %q", msgs[0], want)
	}
	if msgs[len(msgs)-1].typ != 'Z' {
		t.Fatalf("login ended with %v", msgs[len(msgs)-1])
	}
}

// keyBackend is a fake PostgreSQL 18 for what a PostgreSQL 15 server cannot
// produce: it grants protocol 3.2 (it never negotiates), hands out a 32-byte
// cancel key, answers every Query with an empty SELECT, and reports the
// startup packets and cancel requests it receives.
type keyBackend struct {
	addr     string
	pid      uint32
	secret   []byte
	startups chan []byte                 // StartupMessage bodies, version word included
	cancels  chan pgproto3.CancelRequest // as received
	running  chan struct{}               // a statement that runs until cancelled arrived
}

func startKeyBackend(t *testing.T) *keyBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	kb := &keyBackend{addr: ln.Addr().String(), pid: 4242, secret: bytes.Repeat([]byte{0xa5, 0x5a}, 16),
		startups: make(chan []byte, 16), cancels: make(chan pgproto3.CancelRequest, 16), running: make(chan struct{}, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go kb.serve(c)
		}
	}()
	return kb
}

func (kb *keyBackend) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return
	}
	body := make([]byte, binary.BigEndian.Uint32(n[:])-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return
	}
	if binary.BigEndian.Uint32(body) == 80877102 {
		var cr pgproto3.CancelRequest
		if cr.Decode(body) == nil {
			kb.cancels <- cr // before the close that txlane waits for
		}
		return
	}
	kb.startups <- body
	var out []byte
	out, _ = (&pgproto3.AuthenticationOk{}).Encode(out)
	out, _ = (&pgproto3.ParameterStatus{Name: "server_version", Value: "18.0"}).Encode(out)
	out, _ = (&pgproto3.BackendKeyData{ProcessID: kb.pid, SecretKey: kb.secret}).Encode(out)
	out, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(out)
	c.Write(out)
	for {
		typ, err := r.ReadByte()
		if err != nil || typ == 'X' {
			return
		}
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return
		}
		msg := make([]byte, int(binary.BigEndian.Uint32(n[:]))-4)
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		if typ == 'Q' && bytes.Contains(msg, []byte("pg_sleep")) {
			kb.running <- struct{}{}
			continue // a statement that runs until cancelled: no answer
		}
		if typ == 'Q' {
			out, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")}).Encode(out[:0])
			out, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(out)
			c.Write(out)
		}
	}
}

// proxyTo starts a proxy whose primary is the server at addr.
func proxyTo(t *testing.T, addr string) *testProxy {
	t.Helper()
	return startProxy(t, func(o *proxy.Options) {
		host, port, _ := net.SplitHostPort(addr)
		pn, _ := strconv.Atoi(port)
		c := o.Primary.Copy()
		c.Host, c.Port, c.Fallbacks = host, uint16(pn), nil
		o.Primary = c
	})
}

// sendCancelRequest sends a CancelRequest to txlane and waits until txlane
// closes the connection, that is, until it has dealt with the request (a
// forwarded cancel has then reached the server).
func sendCancelRequest(t *testing.T, addr string, pid uint32, secret []byte) {
	t.Helper()
	c := dialRaw(t, addr)
	b, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(b)
	if data, err := io.ReadAll(c); len(data) > 0 || err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("cancel request answered %q, %v; want a silent close", data, err)
	}
}

// TestProtocol32LongCancelKey: in a 3.2 session the server's 32-byte cancel
// key is replaced by a 32-byte key of txlane's; a CancelRequest with that key
// reaches the server with the server's key, and wrong keys (one byte off, or
// cut to a 3.0 key's 4 bytes) reach nobody.
func TestProtocol32LongCancelKey(t *testing.T) {
	kb := startKeyBackend(t)
	p := proxyTo(t, kb.addr)

	c := dialRaw(t, p.Addr)
	r := bufio.NewReader(c)
	c.Write(framed(startupBody(proto32, "user", "app", "database", "app")))
	login := readRawUntil(t, r, 'Z')
	if got := <-kb.startups; binary.BigEndian.Uint32(got) != proto32 {
		t.Fatalf("the server was asked for protocol %#x, want 3.2", binary.BigEndian.Uint32(got))
	}
	var key *pgproto3.BackendKeyData
	for _, m := range login {
		switch m.typ {
		case 'v':
			t.Fatalf("NegotiateProtocolVersion %v for a version the server granted", m)
		case 'K':
			key = &pgproto3.BackendKeyData{}
			if err := key.Decode(m.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if key == nil || len(key.SecretKey) != 32 {
		t.Fatalf("BackendKeyData %+v, want a 32-byte secret", key)
	}
	if bytes.Equal(key.SecretKey, kb.secret) || key.ProcessID == kb.pid {
		t.Fatalf("the client was given the server's own key %+v", key)
	}
	q, _ := (&pgproto3.Query{String: "SELECT 1"}).Encode(nil)
	c.Write(q)
	if reply := readRawUntil(t, r, 'Z'); reply[0].typ != 'C' {
		t.Fatalf("query answered %v", reply)
	}

	// A cancel reaches the server only while the client's request runs there
	// (PostgreSQL ignores one for a session that runs nothing).
	q, _ = (&pgproto3.Query{String: "SELECT pg_sleep(60)"}).Encode(nil)
	c.Write(q)
	select {
	case <-kb.running:
	case <-time.After(5 * time.Second):
		t.Fatal("the query never reached the server")
	}
	wrong := bytes.Clone(key.SecretKey)
	wrong[31] ^= 1
	sendCancelRequest(t, p.Addr, key.ProcessID, wrong)
	sendCancelRequest(t, p.Addr, key.ProcessID, key.SecretKey[:4])
	sendCancelRequest(t, p.Addr, key.ProcessID^1, key.SecretKey)
	select {
	case cr := <-kb.cancels:
		t.Fatalf("a cancel request with a wrong key reached the server: %+v", cr)
	default:
	}
	sendCancelRequest(t, p.Addr, key.ProcessID, key.SecretKey)
	select {
	case cr := <-kb.cancels:
		if cr.ProcessID != kb.pid || !bytes.Equal(cr.SecretKey, kb.secret) {
			t.Fatalf("the server got cancel %+v, want pid %d and its own 32-byte key", cr, kb.pid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cancel request never reached the server")
	}
}

// TestProtocolNegotiationCappedAtTxlane: a server that speaks 3.2 is asked
// for 3.2 (never more, and without the client's _pq_ options) when a client
// asks for 3.9999; txlane then tells the client 3.2 itself, since the server
// had nothing to negotiate.
func TestProtocolNegotiationCappedAtTxlane(t *testing.T) {
	kb := startKeyBackend(t)
	p := proxyTo(t, kb.addr)
	c := dialRaw(t, p.Addr)
	c.Write(framed(startupBody(protoGrease, "user", "app", "_pq_.test_protocol_negotiation", "", "database", "app")))
	login := readRawUntil(t, bufio.NewReader(c), 'Z')
	want, _ := (&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: proto32, UnrecognizedOptions: []string{"_pq_.test_protocol_negotiation"}}).Encode(nil)
	if login[0].typ != 'v' || !bytes.Equal(login[0].body, want[5:]) {
		t.Fatalf("first message %v, want %q", login[0], want)
	}
	got := <-kb.startups
	if v := binary.BigEndian.Uint32(got); v != proto32 {
		t.Fatalf("the server was asked for protocol %#x, want 3.2", v)
	}
	if bytes.Contains(got, []byte("_pq_.")) {
		t.Fatalf("the server was sent the client's protocol options: %q", got)
	}
}
