package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/router"
)

// Snapshot is one read of a database's catalog.
type Snapshot struct {
	// VectorTables are the tables (and views, materialized views, foreign
	// tables) with a vector, halfvec or sparsevec column, schema-qualified;
	// temporary tables are left out.
	VectorTables []policy.Table
	// Objects is what classification reads; build the classifier's catalog
	// with router.NewCatalog.
	Objects router.CatalogObjects
}

// Querier runs one SQL statement and returns its rows as text, NULL as "".
type Querier func(sql string) ([][]string, error)

// Read reads a snapshot with q: two statements, the vector tables and then
// the objects (the latter one statement, so one consistent snapshot of them).
func Read(q Querier) (Snapshot, error) {
	tables, err := q(vectorTablesSQL)
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading vector tables: %w", err)
	}
	rows, err := q(objectsSQL)
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading catalog objects: %w", err)
	}
	objs, err := objectsFromRows(rows)
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{VectorTables: tablesFromRows(tables), Objects: objs}, nil
}

// Discover connects to the database cfg names and reads its snapshot.
func Discover(ctx context.Context, cfg *pgconn.Config) (Snapshot, error) {
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return Snapshot{}, err
	}
	defer conn.Close(ctx)
	return Read(func(sql string) ([][]string, error) {
		res, err := conn.Exec(ctx, sql).ReadAll()
		if err != nil {
			return nil, err
		}
		return textRows(res[len(res)-1].Rows), nil
	})
}

// vectorTablesSQL finds the vector tables of a database.
const vectorTablesSQL = `SELECT DISTINCT n.nspname, c.relname
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
WHERE t.typname OPERATOR(pg_catalog.=) ANY ('{vector,halfvec,sparsevec}'::pg_catalog.name[])
  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
  AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog."char"[])
  AND n.nspname OPERATOR(pg_catalog.!~~) 'pg_temp%'`

func textRows(rows [][][]byte) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = make([]string, len(r))
		for j, v := range r {
			out[i][j] = string(v)
		}
	}
	return out
}

// tablesFromRows turns the rows of vectorTablesSQL into routing's terms.
func tablesFromRows(rows [][]string) []policy.Table {
	tables := make([]policy.Table, 0, len(rows))
	for _, row := range rows {
		tables = append(tables, policy.Table{Schema: row[0], Name: row[1]})
	}
	return tables
}
