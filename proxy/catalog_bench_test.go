package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/internal/pgtest"
	"github.com/txlane/txlane/proxy/catalog"
)

// BenchmarkCatalogRead reads the test database's catalog as the proxy does
// (catalog.Read: both statements, the decoding and the reading of function
// bodies) over one connection, after creating 200 PL/pgSQL and 100 SQL
// string-body functions of a few statements each in a schema of its own.
// ns/op is one read after the first (ms/first-read).
func BenchmarkCatalogRead(b *testing.B) {
	schema := uniqueName("catbench")
	var sb strings.Builder
	fmt.Fprintf(&sb, "CREATE SCHEMA %s; CREATE TABLE %[1]s.t (id int PRIMARY KEY, v text);\n", schema)
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&sb, `CREATE FUNCTION %s.pl%d(x int) RETURNS int STABLE LANGUAGE plpgsql AS $f$
DECLARE n int := 0; r record;
BEGIN
  IF x > %d THEN n := x * 2; END IF;
  SELECT count(*) INTO n FROM %[1]s.t WHERE id = x AND v LIKE 'a%%';
  FOR r IN SELECT id FROM %[1]s.t ORDER BY id LIMIT 3 LOOP n := n + r.id; END LOOP;
  RETURN coalesce(n, 0) + lower('X')::text::int;
END$f$;
`, schema, i, i)
	}
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&sb, "CREATE FUNCTION %s.sq%d(x int) RETURNS bigint STABLE LANGUAGE sql AS 'SELECT count(*) FROM %[1]s.t WHERE id > $1 + %d';\n", schema, i, i)
	}
	pgtest.Exec(b, sb.String())
	b.Cleanup(func() { pgtest.Exec(b, "DROP SCHEMA "+schema+" CASCADE") })
	ctx := context.Background()
	conn, err := pgconn.ConnectConfig(ctx, pgtest.Config(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	q := func(sql string) ([][]string, error) {
		res, err := conn.Exec(ctx, sql).ReadAll()
		if err != nil {
			return nil, err
		}
		var out [][]string
		for _, r := range res[len(res)-1].Rows {
			row := make([]string, len(r))
			for j, v := range r {
				row[j] = string(v)
			}
			out = append(out, row)
		}
		return out, nil
	}
	// The first read parses every body; later ones find them memoized
	// (router.ReadFunctionBody): ms/first-read is the first, ns/op the
	// later ones.
	start := time.Now()
	if _, err := catalog.Read(q); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		snap, err := catalog.Read(q)
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Objects.Functions) == 0 {
			b.Fatal("no functions read")
		}
	}
	b.ReportMetric(float64(first.Microseconds())/1000, "ms/first-read")
}
