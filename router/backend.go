package router

import "github.com/txlane/txlane/policy"

// backendRelations are the relations of PostgreSQL's own schemas whose rows
// are the backend session's: what a vector-lane connection shows in them is
// that connection's (another client's statements, cursors and settings), not
// the client's. A read of one is backend-dependent (primary lane).
//
// TestBackendDependentCatalogViews (proxy) checks the list against a live
// server's view definitions: every view of pg_catalog and
// information_schema that calls a backend-dependent function, or reads such
// a view, is here.
var backendRelations = map[policy.Table]bool{
	// Over pg_prepared_statement(), pg_cursor(), pg_show_all_settings(),
	// pg_get_backend_memory_contexts().
	{Schema: "pg_catalog", Name: "pg_prepared_statements"}:     true,
	{Schema: "pg_catalog", Name: "pg_cursors"}:                 true,
	{Schema: "pg_catalog", Name: "pg_settings"}:                true,
	{Schema: "pg_catalog", Name: "pg_backend_memory_contexts"}: true,
	// The counts of the current transaction (pg_stat_get_xact_*).
	{Schema: "pg_catalog", Name: "pg_stat_xact_all_tables"}:     true,
	{Schema: "pg_catalog", Name: "pg_stat_xact_sys_tables"}:     true,
	{Schema: "pg_catalog", Name: "pg_stat_xact_user_tables"}:    true,
	{Schema: "pg_catalog", Name: "pg_stat_xact_user_functions"}: true,
	// They list the session's own temporary objects and leave out other
	// sessions' (pg_is_other_temp_schema), or qualify names by what the
	// search path shows (pg_*_is_visible).
	{Schema: "pg_catalog", Name: "pg_sequences"}: true,
	{Schema: "pg_catalog", Name: "pg_seclabels"}: true,
}

// backendInfoSchema are the information_schema views that list the
// session's own temporary objects and leave out other sessions'
// (pg_is_other_temp_schema), directly or through one another. They match
// only when qualified: unqualified, names such as "tables" or "columns" are
// far more often the application's own.
var backendInfoSchema = map[string]bool{
	"columns": true, "data_type_privileges": true, "element_types": true, "key_column_usage": true,
	"sequences": true, "table_constraints": true, "tables": true, "triggered_update_columns": true,
	"triggers": true, "views": true,
}

// backendRelation reports whether reading t shows the backend session's own
// state (see backendRelations): t is one of them written unqualified or in
// its schema.
func backendRelation(t policy.Table) bool {
	switch t.Schema {
	case "", "pg_catalog":
		return backendRelations[policy.Table{Schema: "pg_catalog", Name: t.Name}]
	case "information_schema":
		return backendInfoSchema[t.Name]
	}
	return false
}
