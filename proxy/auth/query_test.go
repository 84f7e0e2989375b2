package auth

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Query against the plain test cluster, as its superuser (trusted): a
// user's secret, nothing for an unknown user or one without a password, an
// error for a database that does not exist, whose pool is then dropped.
func TestQueryLookup(t *testing.T) {
	cfg, err := pgconn.ParseConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := NewQuery(QueryConfig{Server: cfg, User: cfg.User, SQL: DefaultQuery,
		Credentials: func() *Credentials { return &Credentials{User: cfg.User} }})
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := q.Lookup(ctx, "txlane_test", "txlane_scram")
	if err != nil || s == nil || s.SCRAM == nil || s.Password != "" {
		t.Fatalf("txlane_scram: %+v, %v", s, err)
	}
	s, err = q.Lookup(ctx, "txlane_test", "txlane_md5")
	if err != nil || s == nil || s.MD5 == "" || s.SCRAM != nil {
		t.Fatalf("txlane_md5: %+v, %v", s, err)
	}
	for _, user := range []string{"txlane_nobody", "txlane_app"} { // unknown; no password
		if s, err := q.Lookup(ctx, "txlane_test", user); s != nil || err != nil {
			t.Fatalf("%s: %+v, %v", user, s, err)
		}
	}
	if _, err := q.Lookup(ctx, "txlane_no_such_db", "txlane_scram"); err == nil {
		t.Fatal("a lookup in a database that does not exist succeeded")
	}
	q.mu.Lock()
	_, kept := q.mu.pools["txlane_no_such_db"]
	n := len(q.mu.pools)
	q.mu.Unlock()
	if kept || n != 1 {
		t.Fatalf("pools after a failed database: kept %v, %d pools", kept, n)
	}
}
