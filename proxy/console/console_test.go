package console

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/txlane/txlane/router"
)

// stubProxy answers the console's API with fixed state, so that the wire
// protocol and the rows can be checked exactly. (The console reaches the
// real proxy and PostgreSQL in the proxy package's tests.)
type stubProxy struct {
	reloadErr, pauseErr, unitsErr error
	paused                        bool
}

var since = time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.FixedZone("x", 3600))

func (p *stubProxy) Clients() []Client {
	return []Client{
		{ID: 1, Addr: "127.0.0.1:5000", User: "u", Database: "d", ApplicationName: "a", State: "active", TxStatus: 'T', Since: since, Units: 2, Pinned: "temp_table", ServerPID: 4242},
		{ID: 2, Addr: "127.0.0.1:5001", User: "u", Database: "d", State: "waiting", WaitingFor: "resume", Wait: 3*time.Second + 7*time.Microsecond, TxStatus: 'I', Since: since},
		{ID: 3, Addr: "unix", User: "u", Database: "d", State: "idle", TxStatus: 'I', Since: since},
	}
}
func (p *stubProxy) Pools() []Pool {
	return []Pool{{Database: "d", User: "u", Lane: "primary", PoolSize: 20,
		PoolMode: "transaction", ClActive: 5, ClWaiting: 7, SvActive: 9, SvIdle: 10, SvTested: 1, MaxWait: 2*time.Second + 500*time.Microsecond},
		{Database: "d", User: "r", Lane: "vector", PoolSize: 8, PoolMode: "transaction", ClActive: 2, ClWaiting: 4, SvActive: 2, SvIdle: 1,
			MaxWait: 3 * time.Microsecond}}
}
func (p *stubProxy) Servers() []Server {
	return []Server{{User: "u", Database: "d", Lane: "primary", State: "active", Addr: "127.0.0.1:5432", PID: 4242, ConnectTime: since, RequestTime: since, Link: 1},
		{User: "u", Database: "d", Lane: "primary", State: "tested"},
		{User: "r", Database: "d", Lane: "vector", State: "idle", Addr: "127.0.0.1:5432", PID: 4343, ConnectTime: since}}
}
func (p *stubProxy) Routes() []Route {
	return []Route{{Lane: "vector", Reason: "vector_read_idle", Requests: 7}}
}
func (p *stubProxy) Units(context.Context) ([]Unit, error) {
	return []Unit{{Unit: "u1", Local: true, ClientID: 1, Addr: "127.0.0.1:5000", User: "u", Database: "d", ApplicationName: "a", Since: since, Failed: true, Instance: 1, BackendPID: 4242, Key: 7},
		{Instance: 2, BackendPID: 4343, Key: 8, User: "u", Database: "d", ApplicationName: "b"}}, p.unitsErr
}
func (p *stubProxy) Policy() Policy {
	return Policy{Settings: []Setting{{Name: "listen", Value: "x", Source: "file"}}}
}
func (p *stubProxy) Paused() bool    { return p.paused }
func (p *stubProxy) Version() string { return "txlane v0.0.0-stub" }
func (p *stubProxy) Reload() error   { return p.reloadErr }
func (p *stubProxy) Pause(ctx context.Context) error {
	p.paused = true
	if errors.Is(p.pauseErr, context.DeadlineExceeded) {
		<-ctx.Done()
		return ctx.Err()
	}
	return p.pauseErr
}
func (p *stubProxy) Resume()                         { p.paused = false }
func (p *stubProxy) QueryWaitTimeout() time.Duration { return 10 * time.Millisecond }
func (p *stubProxy) Explain(sql string) router.Explanation {
	return router.Explanation{SQL: sql, Command: "SELECT", Class: "Read", Lane: "primary", Reason: "not_vector_read"}
}

// pipeClient is a frontend talking to Serve over a pipe.
type pipeClient struct {
	t    *testing.T
	fe   *pgproto3.Frontend
	conn net.Conn
	done chan error
}

func startServe(t *testing.T, p Proxy, maxMsg int) *pipeClient {
	t.Helper()
	client, server := net.Pipe()
	w := &pipeClient{t: t, fe: pgproto3.NewFrontend(client, client), conn: client, done: make(chan error, 1)}
	go func() {
		w.done <- Serve(p, server, server, Config{MaxMessageSize: maxMsg, ApplicationName: "app"})
		server.Close()
	}()
	t.Cleanup(func() { client.Close() })
	client.SetDeadline(time.Now().Add(10 * time.Second))
	return w
}

func (w *pipeClient) send(msgs ...pgproto3.FrontendMessage) {
	w.t.Helper()
	for _, m := range msgs {
		w.fe.Send(m)
	}
	if err := w.fe.Flush(); err != nil {
		w.t.Fatal(err)
	}
}

// until reads messages up to and including ReadyForQuery (or a FATAL
// error) and returns a compact transcript of them.
func (w *pipeClient) until() []string {
	w.t.Helper()
	var out []string
	for {
		msg, err := w.fe.Receive()
		if err != nil {
			w.t.Fatalf("after %q: %v", out, err)
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationOk:
			out = append(out, "AuthenticationOk")
		case *pgproto3.ParameterStatus:
			out = append(out, "S "+m.Name+"="+m.Value)
		case *pgproto3.BackendKeyData:
			out = append(out, "K")
		case *pgproto3.ReadyForQuery:
			return append(out, "Z "+string(m.TxStatus))
		case *pgproto3.RowDescription:
			var cols []string
			for _, f := range m.Fields {
				cols = append(cols, string(f.Name))
			}
			out = append(out, "T "+strings.Join(cols, ","))
		case *pgproto3.DataRow:
			var vals []string
			for _, v := range m.Values {
				vals = append(vals, string(v))
			}
			out = append(out, "D "+strings.Join(vals, "|"))
		case *pgproto3.CommandComplete:
			out = append(out, "C "+string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			out = append(out, "E "+m.Severity+" "+m.Code+" "+m.Detail)
			if m.Severity == "FATAL" {
				return out
			}
		case *pgproto3.NoticeResponse:
			out = append(out, "N "+m.Severity)
		case *pgproto3.ParseComplete:
			out = append(out, "1")
		case *pgproto3.BindComplete:
			out = append(out, "2")
		case *pgproto3.CloseComplete:
			out = append(out, "3")
		case *pgproto3.ParameterDescription:
			out = append(out, "t")
		case *pgproto3.NoData:
			out = append(out, "n")
		case *pgproto3.EmptyQueryResponse:
			out = append(out, "I")
		default:
			out = append(out, "?")
		}
	}
}

func (w *pipeClient) expect(what string, want ...string) {
	w.t.Helper()
	if got := w.until(); !reflect.DeepEqual(got, want) {
		w.t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// TestServeProtocol: the welcome, the rows of each SHOW as the handlers
// format them, a Query stopping at its first error, an extended batch
// skipped to its Sync after an error, and the answers of RELOAD and PAUSE
// to each outcome of the proxy's API.
func TestServeProtocol(t *testing.T) {
	p := &stubProxy{}
	w := startServe(t, p, 0)
	w.expect("welcome", "AuthenticationOk", "S server_version="+ServerVersion, "S server_encoding=UTF8",
		"S client_encoding=UTF8", "S DateStyle=ISO", "S integer_datetimes=on", "S standard_conforming_strings=on",
		"S application_name=app", "K", "Z I")

	w.send(&pgproto3.Query{String: "SHOW CLIENTS; show pools; SHOW SERVERS; SHOW STATS; SHOW UNITS"})
	w.expect("SHOW",
		"T type,user,database,state,addr,port,connect_time,wait,wait_us,link,application_name,id,tx_status,waiting_for,units_of_work,pinned",
		"D C|u|d|active|127.0.0.1|5000|2026-01-02 02:04:05.006Z|0|0|4242|a|1|T||2|temp_table",
		"D C|u|d|waiting|127.0.0.1|5001|2026-01-02 02:04:05.006Z|3|7|||2|I|resume|0|",
		"D C|u|d|idle|unix||2026-01-02 02:04:05.006Z|0|0|||3|I||0|",
		"C SHOW",
		"T database,user,cl_active,cl_waiting,sv_active,sv_idle,sv_tested,maxwait,maxwait_us,pool_mode,lane,pool_size",
		"D d|u|5|7|9|10|1|2|500|transaction|primary|20", "D d|r|2|4|2|1|0|0|3|transaction|vector|8", "C SHOW",
		"T type,user,database,state,addr,port,connect_time,request_time,link,remote_pid,lane",
		"D S|u|d|active|127.0.0.1|5432|2026-01-02 02:04:05.006Z|2026-01-02 02:04:05.006Z|1|4242|primary",
		"D S|u|d|tested|||||||primary",
		"D S|r|d|idle|127.0.0.1|5432|2026-01-02 02:04:05.006Z|||4343|vector", "C SHOW",
		"T lane,reason,requests", "D vector|vector_read_idle|7", "C SHOW",
		"T unit,client_id,addr,user,database,application_name,since,failed,local,instance,remote_pid,unit_key",
		"D u1|1|127.0.0.1:5000|u|d|a|2026-01-02 02:04:05.006Z|true|true|1|4242|7",
		"D |||u|d|b||false|false|2|4343|8", "C SHOW",
		"Z I")

	w.send(&pgproto3.Query{String: "SHOW VERSION"})
	w.expect("SHOW VERSION: one row, PgBouncer's column", "T version", "D txlane v0.0.0-stub", "C SHOW", "Z I")

	w.send(&pgproto3.Query{String: "SHOW POLICY; SHOW NOTHING; PAUSE"})
	w.expect("a Query stops at its first error",
		"T key,value,source", "D listen|x|file", "D paused|false|admin console", "C SHOW",
		"E ERROR 0A000 ", "Z I")
	if p.paused {
		t.Fatal("PAUSE ran after an error earlier in the Query")
	}

	w.send(&pgproto3.Query{String: "-- ping"})
	w.expect("empty", "I", "Z I")

	w.send(&pgproto3.Parse{Name: "a", Query: "SHOW NOTHING"}, &pgproto3.Bind{PreparedStatement: "a"},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	w.expect("an extended batch after an error", "E ERROR 0A000 ", "Z I")

	w.send(&pgproto3.Parse{Name: "p", Query: "SHOW POOLS"}, &pgproto3.Describe{ObjectType: 'S', Name: "p"},
		&pgproto3.Bind{PreparedStatement: "p"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "SET x = 1"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Close{ObjectType: 'S', Name: "p"}, &pgproto3.Bind{PreparedStatement: "p"}, &pgproto3.Execute{},
		&pgproto3.Sync{})
	pools := "T database,user,cl_active,cl_waiting,sv_active,sv_idle,sv_tested,maxwait,maxwait_us,pool_mode,lane,pool_size"
	w.expect("extended", "1", "t", pools, "2", pools, "D d|u|5|7|9|10|1|2|500|transaction|primary|20",
		"D d|r|2|4|2|1|0|0|3|transaction|vector|8", "C SHOW",
		"1", "t", "n", "2", "C SET", "3", "E ERROR 26000 ", "Z I")

	w.send(&pgproto3.Query{String: "EXPLAIN SELECT 1; SELECT 2"})
	got := w.until()
	if len(got) < 3 || got[0] != "T key,value" || got[len(got)-2] != "C EXPLAIN" {
		t.Errorf("EXPLAIN: %q", got)
	}

	p.reloadErr = ErrNoReload
	w.send(&pgproto3.Query{String: "RELOAD"})
	w.expect("RELOAD without a file", "E ERROR 0A000 ", "Z I")
	p.reloadErr = errors.New("t.yaml:1:1: bad")
	w.send(&pgproto3.Query{String: "RELOAD"})
	w.expect("RELOAD of a bad file", "E ERROR F0000 t.yaml:1:1: bad", "Z I")
	p.reloadErr = nil
	w.send(&pgproto3.Query{String: "RELOAD"})
	w.expect("RELOAD", "C RELOAD", "Z I")

	p.unitsErr = errors.New("connection refused")
	w.send(&pgproto3.Query{String: "SHOW UNITS"})
	w.expect("SHOW UNITS without the other instances' units: a warning, then this instance's", "N WARNING",
		"T unit,client_id,addr,user,database,application_name,since,failed,local,instance,remote_pid,unit_key",
		"D u1|1|127.0.0.1:5000|u|d|a|2026-01-02 02:04:05.006Z|true|true|1|4242|7",
		"D |||u|d|b||false|false|2|4343|8", "C SHOW", "Z I")
	p.unitsErr = nil

	p.pauseErr = context.DeadlineExceeded
	w.send(&pgproto3.Query{String: "PAUSE"})
	w.expect("PAUSE past query_wait_timeout", "N WARNING", "C PAUSE", "Z I")
	w.send(&pgproto3.Query{String: "RESUME"})
	w.expect("RESUME", "C RESUME", "Z I")
	if p.paused {
		t.Fatal("still paused after RESUME")
	}
	p.pauseErr = ErrStopping
	w.send(&pgproto3.Query{String: "PAUSE"})
	w.expect("PAUSE while stopping", "E FATAL 57P01 ")
	if err := <-w.done; err == nil {
		t.Fatal("Serve went on after a FATAL error")
	}
}

// TestServeTerminate: Serve returns nil when the client says goodbye.
func TestServeTerminate(t *testing.T) {
	w := startServe(t, &stubProxy{}, 0)
	w.until()
	w.send(&pgproto3.Terminate{})
	if err := <-w.done; err != nil {
		t.Fatalf("Serve after Terminate: %v", err)
	}
}

// TestServeProtocolViolations: an oversized message and a message the
// console does not take end the connection with FATAL 08P01.
func TestServeProtocolViolations(t *testing.T) {
	for name, msg := range map[string]pgproto3.FrontendMessage{
		"too long":      &pgproto3.Query{String: "SHOW HELP -- " + strings.Repeat("x", 100)},
		"function call": &pgproto3.FunctionCall{Function: 1},
	} {
		t.Run(name, func(t *testing.T) {
			w := startServe(t, &stubProxy{}, 64)
			w.until()
			w.send(msg)
			if got := w.until(); len(got) != 1 || !strings.HasPrefix(got[0], "E FATAL 08P01 ") {
				t.Errorf("%s: %q, want FATAL 08P01 alone", name, got)
			}
			if err := <-w.done; err == nil {
				t.Fatal("Serve returned nil after a protocol violation")
			}
		})
	}
}
