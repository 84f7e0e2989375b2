package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy"
	"github.com/txlane/txlane/proxy/console"
)

// consoleLoginApp is the application_name of txlane's login to the primary
// on behalf of a console user.
const consoleLoginApp = "txlane admin console login"

// adminConnect logs in to the console of p as user with password.
func adminConnect(t *testing.T, p *testProxy, user, password string) (*pgconn.PgConn, error) {
	t.Helper()
	u, err := url.Parse(p.adminDSN(t, user))
	if err != nil {
		t.Fatal(err)
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, u.String())
	if err == nil {
		t.Cleanup(func() { c.Close(context.Background()) })
	}
	return c, err
}

// TestAdminConsoleAuthentication: with admin.users set, PostgreSQL decides
// the console login of a listed user (its own password, through the
// relayed exchange, for md5, scram-sha-256, password and trust); the
// server's own refusal reaches the client and no console is served; a user
// not listed is refused by txlane with 28000 whether or not PostgreSQL knows
// the role; txlane's own connection to the server is closed after login.
func TestAdminConsoleAuthentication(t *testing.T) {
	noLogin := uniqueName("console_nologin")
	pgtest.Exec(t, "CREATE ROLE "+noLogin+" NOLOGIN")
	t.Cleanup(func() { pgtest.Exec(t, "DROP ROLE IF EXISTS "+noLogin) })
	users := []string{pgtest.AppRole, noLogin, "console_ghost"}
	for _, r := range pgtest.PasswordRoles() {
		users = append(users, r.User)
	}
	p := startProxy(t, func(o *proxy.Options) { o.AdminUsers = users })

	for _, r := range append(pgtest.PasswordRoles(), pgtest.Role{User: pgtest.AppRole, Method: "trust"}) {
		t.Run(r.Method, func(t *testing.T) {
			c, err := adminConnect(t, p, r.User, r.Password)
			if err != nil {
				t.Fatalf("%s with the right password: %v", r.User, err)
			}
			if v := c.ParameterStatus("server_version"); v != console.ServerVersion {
				t.Fatalf("server_version %q: not the console", v)
			}
			if got := exec(t, c, "SHOW HELP"); len(got[0].Rows) != len(console.Commands()) {
				t.Fatalf("SHOW HELP: %d rows", len(got[0].Rows))
			}
			if r.Password == "" {
				return
			}
			c, err = adminConnect(t, p, r.User, "wrong")
			if code := pgCode(err); code != "28P01" {
				t.Fatalf("%s with a wrong password: %v (code %q), want the server's 28P01", r.User, err, code)
			}
			if c != nil {
				t.Fatal("a console was served after a wrong password")
			}
		})
	}

	for _, tc := range []struct {
		user, why, message string
	}{
		{"console_nobody", "unknown to PostgreSQL and not listed", "may not use the txlane admin console"},
		{"postgres", "a PostgreSQL role (trust) not listed", "may not use the txlane admin console"},
		{"console_ghost", "listed but unknown to PostgreSQL", "does not exist"},
		{noLogin, "listed, authenticated by trust, but not allowed to log in", "not permitted to log in"},
	} {
		c, err := adminConnect(t, p, tc.user, "")
		var pe *pgconn.PgError
		if c != nil || !errors.As(err, &pe) || pe.Code != "28000" || !strings.Contains(pe.Message, tc.message) {
			t.Errorf("%s (%s): %v, want 28000 %q and no console", tc.user, tc.why, err, tc.message)
		}
	}

	// txlane keeps no server connection for a console.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := directScalar(t, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'", consoleLoginApp))
		if n == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s server connections of console logins still open", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdminConsoleCommandTable: every command of the console's table is
// reachable through txlane over the simple and the extended protocol with
// the columns the table declares, and SHOW HELP lists it; a malformed
// command is 42601, an unknown one 0A000, and the console stays usable.
func TestAdminConsoleCommandTable(t *testing.T) {
	var bed *opsBed
	bed = startOpsProxy(t, func(o *proxy.Options) {
		o.AdminUsers = []string{pgtest.AppRole}
		o.OnReload = func() error { return bed.Reload(bed.opts) }
	})
	c, err := adminConnect(t, bed.testProxy, pgtest.AppRole, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := func(fields []pgconn.FieldDescription) []string {
		var out []string
		for _, f := range fields {
			out = append(out, f.Name)
		}
		return out
	}

	help := map[string]bool{}
	for _, row := range exec(t, c, "SHOW HELP")[0].Rows {
		help[string(row[0])] = true
	}
	cmds := console.Commands()
	if len(help) != len(cmds) {
		t.Errorf("SHOW HELP lists %d commands, the table has %d", len(help), len(cmds))
	}
	for i, cmd := range cmds {
		if !help[cmd.Usage] {
			t.Errorf("SHOW HELP does not list %q", cmd.Usage)
		}
		// The simple protocol. NOTE: pgconn's Result keeps the row
		// description only when rows came; the reader has it either way.
		mrr := c.Exec(ctx, cmd.Example)
		if !mrr.NextResult() {
			t.Fatalf("%s: no result: %v", cmd.Example, mrr.Close())
		}
		rr := mrr.ResultReader()
		if got := names(rr.FieldDescriptions()); !slices.Equal(got, cmd.Columns) {
			t.Errorf("%s: columns %q, want %q", cmd.Example, got, cmd.Columns)
		}
		res := rr.Read()
		if err := mrr.Close(); err != nil || res.Err != nil {
			t.Fatalf("%s: %v %v", cmd.Example, err, res.Err)
		}
		for _, row := range res.Rows {
			if len(row) != len(cmd.Columns) {
				t.Errorf("%s: row %q has %d values for %d columns", cmd.Example, row, len(row), len(cmd.Columns))
			}
		}
		tag, _, _ := strings.Cut(cmd.Name, " ")
		if got := res.CommandTag.String(); got != tag {
			t.Errorf("%s: tag %q, want %q", cmd.Example, got, tag)
		}

		// The extended protocol: Parse and Describe, then Bind and Execute.
		sd, err := c.Prepare(ctx, fmt.Sprintf("s%d", i), cmd.Example, nil)
		if err != nil {
			t.Fatalf("prepare %s: %v", cmd.Example, err)
		}
		if got := names(sd.Fields); !slices.Equal(got, cmd.Columns) {
			t.Errorf("Describe %s: columns %q, want %q", cmd.Example, got, cmd.Columns)
		}
		if r := c.ExecPrepared(ctx, sd.Name, nil, nil, nil).Read(); r.Err != nil || r.CommandTag.String() != tag {
			t.Errorf("execute %s: %v, tag %q", cmd.Example, r.Err, r.CommandTag)
		}
	}
	if bed.Paused() {
		t.Error("paused after the table's RESUME")
	}

	for sql, code := range map[string]string{
		"SHOW":                console.CodeSyntaxError,
		"SHOW CLIENTS please": console.CodeSyntaxError,
		"SHOW HELP HELP":      console.CodeSyntaxError,
		"RELOAD now":          console.CodeSyntaxError,
		"EXPLAIN":             console.CodeSyntaxError,
		"EXPLAIN ; -- no SQL": console.CodeSyntaxError,
		"SHOW NOTHING":        console.CodeFeatureNotSupported,
		"SELECT 1":            console.CodeFeatureNotSupported,
		"VACUUM":              console.CodeFeatureNotSupported,
		"PAUSE mydb":          console.CodeFeatureNotSupported,
	} {
		if err := opsExecErr(c, sql); pgCode(err) != code {
			t.Errorf("%q: %v, want %s", sql, err, code)
		}
		if _, err := c.Prepare(ctx, "", sql, nil); pgCode(err) != code {
			t.Errorf("Parse %q: %v, want %s", sql, err, code)
		}
	}
	// A Query stops at its first failing command.
	if err := opsExecErr(c, "SHOW HELP; SHOW NOTHING; PAUSE"); pgCode(err) != console.CodeFeatureNotSupported || bed.Paused() {
		t.Errorf("SHOW HELP; SHOW NOTHING; PAUSE: %v, paused %v", err, bed.Paused())
	}
	exec(t, c, "SHOW HELP") // still usable after errors
}
