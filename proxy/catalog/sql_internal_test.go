package catalog

import (
	"strings"
	"testing"

	"github.com/txlane/txlane/internal/sqlguard"
)

// The catalog is read over a lane connection that carries the last client's
// search_path (and by `txlane explain` as a login whose role or database may
// set one): every operator, function, type and relation is pg_catalog's.
func TestCatalogSQLIgnoresSearchPath(t *testing.T) {
	for name, sql := range map[string]string{"vectorTablesSQL": vectorTablesSQL, "objectsSQL": objectsSQL} {
		found, err := sqlguard.Unqualified(sql)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(found) > 0 {
			t.Errorf("%s leaves to the search_path: %s", name, strings.Join(found, "; "))
		}
	}
}
