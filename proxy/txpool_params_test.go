package proxy_test

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rawTxClient is a client speaking the protocol by hand, so that a test sees
// every message txlane sends it (pgconn keeps only the last value of each
// ParameterStatus).
type rawTxClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// rawLogin logs in to p as the test DSN's user and database.
func rawLogin(t *testing.T, p *testProxy) *rawTxClient {
	t.Helper()
	cfg, err := pgconn.ParseConfig(p.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c := rawDial(t, p)
	start, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": cfg.User, "database": cfg.Database}}).Encode(nil)
	if _, err := c.Write(start); err != nil {
		t.Fatal(err)
	}
	rc := &rawTxClient{t: t, c: c, r: bufio.NewReader(c)}
	if login := readRawUntil(t, rc.r, 'Z'); login[len(login)-1].typ != 'Z' {
		t.Fatalf("login: %v", login)
	}
	return rc
}

// query runs sql as a simple query and returns the ParameterStatus messages
// of its answer, as "name=value".
func (rc *rawTxClient) query(sql string) []string {
	rc.t.Helper()
	q, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	if _, err := rc.c.Write(q); err != nil {
		rc.t.Fatal(err)
	}
	var params []string
	for _, m := range readRawUntil(rc.t, rc.r, 'Z') {
		switch m.typ {
		case 'E':
			rc.t.Fatalf("%s: %v", sql, m)
		case 'S':
			var ps pgproto3.ParameterStatus
			if err := ps.Decode(m.body); err != nil {
				rc.t.Fatal(err)
			}
			params = append(params, ps.Name+"="+ps.Value)
		}
	}
	return params
}

// TestTxPoolParameterStatusOnlyNews: in transaction mode a client is told of
// a reported setting only when its own value changes. Another client's
// settings on the shared backend, and txlane putting the client's back, are
// no news to it (pgx's TestConnExecStatementNetworkUsage counts the bytes
// and failed on the 26 of "client_encoding=UTF8" after another pgx test's
// SET client_encoding; the reports of the other GUC_REPORT settings are of
// the same kind).
func TestTxPoolParameterStatusOnlyNews(t *testing.T) {
	p := startTxPool(t, 1)
	a := p.connect(t)
	b := rawLogin(t, p)
	others := "SET client_encoding TO 'SQL_ASCII'; SET application_name = 'other'; SET TimeZone = 'Asia/Tokyo'; " +
		"SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'iso_8601'; SET standard_conforming_strings = off"
	for i := 0; i < 3; i++ {
		exec(t, a, others)
		exec(t, a, "SELECT 1")
		if got := b.query("SELECT 1"); len(got) > 0 {
			t.Fatalf("round %d: b was told %v, which it already had", i, got)
		}
	}
	if got := b.query("SET application_name = 'bee'"); strings.Join(got, ",") != "application_name=bee" {
		t.Fatalf("b's own SET: told %v, want application_name=bee", got)
	}
	exec(t, a, "SELECT 1")
	if got := b.query("SELECT 1"); len(got) > 0 {
		t.Fatalf("b was told %v after a ran", got)
	}
	if got := b.query("RESET application_name"); strings.Join(got, ",") != "application_name=" {
		t.Fatalf("b's RESET: told %v, want application_name=", got)
	}
	if got := a.ParameterStatus("client_encoding"); got != "SQL_ASCII" {
		t.Fatalf("a's client_encoding reads %q", got)
	}
}
