package proxy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/txlane/txlane/internal/sqlguard"
	"github.com/txlane/txlane/proxy/auth"
	"github.com/txlane/txlane/proxy/wire"
)

// sqlLiteral matches the Go string literals that hold SQL txlane sends.
var sqlLiteral = regexp.MustCompile(`^\s*(SELECT|WITH|DO|SET|RESET|BEGIN|ROLLBACK|SAVEPOINT|RELEASE|DISCARD|DEALLOCATE|COMMIT)\b|pg_catalog\.|\bFROM\s+\w`)

// sqlDecls returns the top-level declarations (function, method, constant
// or variable names) of the non-test Go files of dir that hold a string
// literal looking like SQL.
func sqlDecls(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(fset, f, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			var names []string
			switch d := d.(type) {
			case *ast.FuncDecl:
				names = []string{d.Name.Name}
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					if vs, ok := sp.(*ast.ValueSpec); ok {
						for _, n := range vs.Names {
							names = append(names, n.Name)
						}
					}
				}
			}
			ast.Inspect(d, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil && sqlLiteral.MatchString(v) {
						for _, name := range names {
							out[name] = true
						}
					}
				}
				return true
			})
		}
	}
	return out
}

// ownSQL are the SQL texts txlane sends inside a client's session (its
// backend, a lane connection that carries its settings) or as a login whose
// database or role may set a search_path, by the declaration that holds or
// builds them, each with samples of what it sends.
func ownSQL() map[string][]string {
	nonASCII := &sessionSettings{values: map[string]string{"app.é": "中", "search_path": `"schéma", public`, "role": "rôle"},
		prepared: map[string]string{"pé": "PREPARE \"pé\" AS SELECT 'café'"}}
	snapshotNonASCII, _ := snapshotQuery([]string{"app.é"})
	ss := &sessionSettings{values: map[string]string{"work_mem": "13MB", "a.b": "", "search_path": "evil, pg_catalog", "role": "r", "session_authorization": "u"}}
	s := &session{own: map[string]string{"DateStyle": "SQL, DMY"}}
	s.resets.Store(1)
	resetFix, _ := s.resetFixSQL(&primaryConn{login: map[string]string{"DateStyle": "ISO, MDY"}})
	pool := PoolOptions{}
	pool.setDefaults()
	snapshot, _ := snapshotQuery([]string{"a.b"})
	keys := []uint32{1, 4000000000}
	// Parse environments (parseenv.go): one with the pool's login values
	// (""), one with values of its own.
	envA := strings.Repeat(envSep, len(parseParams)-1)
	envB := "LATIN1" + strings.Repeat(envSep+"x", len(parseParams)-1)
	want := &sessionSettings{env: envA, prepared: map[string]string{"p": "PREPARE p AS SELECT 1", "q": "PREPARE q AS SELECT 2"},
		prepEnv: map[string]string{"p": envB, "q": envA}}
	same, prepared := preparesSQL(nil, want)
	prepared = append(prepared, same)
	return map[string][]string{
		"pinCheckQuery": {pinCheckQuery(nil, false, nil), pinCheckQuery([]string{"a.b", "c.d"}, true, []string{"work_mem", "x'y"})},
		// pinCheckSQL, hiddenSettingsSQL, pinStateSQL: parts of pinCheckQuery.
		"pinCheckSQL":         {pinCheckQuery(nil, false, nil)},
		"hiddenSettingsSQL":   {pinCheckQuery(nil, false, []string{"dynamic_library_path"})},
		"pinStateSQL":         {pinCheckQuery(nil, false, nil)},
		"customsSQL":          {"SELECT 1" + customsSQL([]string{"a.b"})},
		"protectSQL":          {protectSQL + "SELECT 1"},
		"stateDiffSQL":        {stateDiffSQL(ss, nil), stateDiffSQL(nil, ss)},
		"stateDiff":           {stateDiffSQL(ss, nil), stateDiffSQL(nil, ss)},
		"envSetSQL":           {"SELECT " + envSetSQL(envA, envB, true), "SELECT " + envSetSQL(envB, envA, false)},
		"appendEnvRun":        {"SELECT " + envSetSQL(envA, envB, true)},
		"appendReparse":       {"SAVEPOINT " + envSavepoint, "ROLLBACK TO SAVEPOINT " + envSavepoint, "RELEASE SAVEPOINT " + envSavepoint},
		"parsePlaceholderSQL": {parsePlaceholderSQL},
		"preparesSQL":         prepared,
		"setConfig":           {"SELECT " + setConfig("work_mem", "1MB")},
		"resetFixSQL":         {"SELECT 1" + resetFix},
		"resetLeftSQL":        resetLeftSQL,
		"setDefaults":         {pool.ServerResetQuery},
		"snapshotQuery":       {snapshot},
		// tempRelationsSQL: also in its own right.
		"tempRelationsSQL":  {tempRelationsSQL},
		"laneApplySQL":      {laneApplySQL},
		"laneCheckSQL":      {laneCheckSQL},
		"laneLoadVectorSQL": {laneLoadVectorSQL},
		"laneDialSQL":       {laneDialSQL()},
		"unitReadSQL":       {unitReadSQL},
		"probeCols":         {"SELECT " + probeCols(keys)},
		"lockSQL":           {lockSQL(keys, 3, true), lockSQL(keys, 3, false)},
		"unlockSQL":         {unlockSQL(keys, 3)},
		"settleSQL":         {settleSQL(keys, keys, 3, TxActive, true), settleSQL(keys, nil, 3, TxIdle, false)},
		"holdersSQL":        {holdersSQL(""), holdersSQL(othersOf(keys))},
		"othersOf":          {holdersSQL(othersOf(keys))},
		"sharedRescueSQL":   {"SAVEPOINT " + sharedSavepoint + "; " + sharedRescueSQL},
		"poisonSQL":         {poisonSQL},
		"raiseSQL":          {raiseSQL(&wire.Error{Code: "25L01", Message: "m $txlane$ '", Detail: "d", Hint: "h"})},
		"catalogReadBegin":  {catalogReadBegin + "SELECT 1; COMMIT"},
		"auth.DefaultQuery": {auth.DefaultQuery},
		"reseedSQL":         {reseedSQL()},
		// The reroute wrap's savepoint statements (guest_wrap.go); the
		// other names of their const block are portal and savepoint names.
		"rerouteSavepointSQL": {rerouteSavepointSQL},
		"idleLockSQL":         {idleLockSQL(keys)},
		"idleUnlockSQL":       {idleUnlockSQL(keys)},
		"idleKeysSQL":         {idleLockSQL(keys)},
		"instanceMarkSQL":     {instanceMarkSQL(2)},
		"rerouteReleaseSQL":   {rerouteReleaseSQL},
		"rerouteRescueSQL":    {rerouteRescueSQL},
		"discardSequencesSQL": {discardSequencesSQL},
		"isoGuardSQL":         {isoGuardSQL(&wire.Error{Code: "25L01", Message: "m"}, true), isoGuardSQL(&wire.Error{Code: "25L01", Message: "m"}, false)},
		// enctext.go: values and statements of any encoding as ASCII SQL.
		"textLiteral":             {"SELECT " + textLiteral("acmé"), "SELECT " + textLiteral("plain")},
		"hexUTF8":                 {"SELECT " + hexUTF8("pg_catalog.current_setting('search_path')")},
		"fromHexUTF8":             {"SELECT " + fromHexUTF8("'c3a9'")},
		"asciiStmt":               {asciiStmt("PREPARE pe AS SELECT 'café'"), asciiStmt("SELECT 1")},
		"resetSetting":            {resetSetting("app.é"), resetSetting("work_mem")},
		"deallocate":              {deallocate("pé"), deallocate("p")},
		"stateDiffSQL/non-ASCII":  {stateDiffSQL(nonASCII, nil), stateDiffSQL(nil, nonASCII)},
		"pinCheckQuery/non-ASCII": {pinCheckQuery([]string{"app.é"}, true, []string{"app.中"})},
		"snapshotQuery/non-ASCII": {snapshotNonASCII},
		"raiseSQL/non-ASCII":      {raiseSQL(&wire.Error{Code: "25L01", Message: "unit \"café\"", Detail: "中"})},
	}
}

// composers join texts of ownSQL (with SAVEPOINT, RELEASE and SELECT
// around them) and hold no SQL of their own; notSQL hold literals that only
// look like SQL.
var (
	composers = []string{"moveState", "sharedQuery", "settleLocks", "sharedLock", "sharedProbe", "takeOwnValues", "refreshRouting", "sharedHolders", "resetLeft", "discardSequencesAhead"}
	// resetDiscardsSequences compares a configured query with names.
	notSQL = []string{"mayChangeUnit", "rerouteBar", "opaqueUnitSetter", "endWorkStmt", "ownPortal", "guestPortal", "rerouteSavepoint", "partCodeBar", "resetDiscardsSequences"}
)

// Every SQL text txlane sends into a client's session resolves each
// operator, function, type and relation in pg_catalog (or names its
// schema), whatever the session's search_path: a client's own operator = in
// a schema before pg_catalog must not make the pin check, the snapshot or
// the lane check lie. And every declaration of the package that holds SQL is
// checked here.
func TestOwnSQLIgnoresSearchPath(t *testing.T) {
	texts := ownSQL()
	for name, samples := range texts {
		for _, sql := range samples {
			found, err := sqlguard.Unqualified(sql)
			if err != nil {
				t.Errorf("%s: %v\n%s", name, err, sql)
				continue
			}
			if len(found) > 0 {
				t.Errorf("%s leaves to the search_path: %s\n%s", name, strings.Join(found, "; "), sql)
			}
		}
	}
	known := map[string]bool{}
	for _, n := range append(composers, notSQL...) {
		known[n] = true
	}
	for name := range sqlDecls(t, ".") {
		if _, ok := texts[name]; !ok && !known[name] {
			t.Errorf("%s holds SQL that TestOwnSQLIgnoresSearchPath does not check: add samples of it to ownSQL", name)
		}
	}
}

// TestOwnSQLIsASCII: every SQL text txlane sends into a client's session is
// ASCII, also when it carries non-ASCII names, values and statements: the
// server reads it in the backend's client_encoding, which in transaction
// mode may be any client's (LATIN1, GB18030, …), and would read other
// bytes as other characters, or refuse them (22021).
func TestOwnSQLIsASCII(t *testing.T) {
	for name, samples := range ownSQL() {
		for _, sql := range samples {
			if !isASCII(sql) {
				t.Errorf("%s sends non-ASCII text: %s", name, sql)
			}
		}
	}
}
