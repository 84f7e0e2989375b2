package difftest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scenarioTimeout bounds one execution of a scenario.
const scenarioTimeout = 5 * time.Minute

// Run executes the scenario in file against directDSN (PostgreSQL itself) and then against
// proxiedDSN (the same server through txlane), and fails t with a unified diff when the
// transcripts differ. It fails without running the proxied side when the scenario does not
// run cleanly against PostgreSQL itself (client-side errors: the scenario or the database is
// broken, and a comparison would prove nothing).
func Run(t testing.TB, directDSN, proxiedDSN, file string) {
	t.Helper()
	sc, err := ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	direct, err := Execute(ctx, sc, directDSN)
	if err != nil {
		t.Fatal(err)
	}
	if len(direct.ClientErrors) > 0 {
		t.Fatalf("scenario %s does not run cleanly against PostgreSQL itself:\n  %s\n\ntranscript:\n%s",
			file, strings.Join(direct.ClientErrors, "\n  "), direct.Text)
	}
	proxied, err := Execute(ctx, sc, proxiedDSN)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff("direct", direct.Text, "txlane", proxied.Text); d != "" {
		t.Errorf("scenario %s: transcripts differ (- PostgreSQL directly, + through txlane):\n%s", file, d)
		return
	}
	if testing.Verbose() {
		t.Logf("scenario %s: transcripts equal (%d lines)", file, strings.Count(direct.Text, "\n"))
	}
}

// RunDir runs every scenario file (*.txt) in dir as a parallel subtest of t named after the
// file, each with Run. It fails t when dir holds fewer than atLeast scenarios, so that a moved
// or emptied directory cannot pass silently.
func RunDir(t *testing.T, directDSN, proxiedDSN, dir string, atLeast int) {
	t.Helper()
	RunDirExcept(t, directDSN, proxiedDSN, dir, atLeast, nil)
}

// RunDirExcept is RunDir without the scenarios named in except (file name
// without .txt), each skipped with the reason except gives: a behaviour
// the proxy's mode changes on purpose.
func RunDirExcept(t *testing.T, directDSN, proxiedDSN, dir string, atLeast int, except map[string]string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < atLeast {
		t.Fatalf("found %d scenarios in %s, want at least %d", len(files), dir, atLeast)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			if why, ok := except[strings.TrimSuffix(filepath.Base(file), ".txt")]; ok {
				t.Skip(why)
			}
			t.Parallel()
			Run(t, directDSN, proxiedDSN, file)
		})
	}
}
