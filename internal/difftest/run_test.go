package difftest

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/txlane/txlane/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestExecuteKinds runs every step kind against PostgreSQL twice: the transcripts must be
// equal (nothing run-specific leaks into them) and hold the server's answers.
func TestExecuteKinds(t *testing.T) {
	dsn := pgtest.DSN(t)
	sc, err := ParseFile("testdata/kinds.txt")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var trs [2]*Transcript
	var wg sync.WaitGroup
	for i := range trs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr, err := Execute(ctx, sc, dsn)
			if err != nil {
				t.Error(err)
				return
			}
			trs[i] = tr
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, tr := range trs {
		if len(tr.ClientErrors) > 0 {
			t.Fatalf("client errors: %v\n%s", tr.ClientErrors, tr.Text)
		}
	}
	if d := Diff("first", trs[0].Text, "second", trs[1].Text); d != "" {
		t.Fatalf("two concurrent runs differ:\n%s", d)
	}
	text := trs[0].Text
	for _, want := range []string{
		"NOTICE 00000: table \"kinds_{{id}}\" does not exist, skipping",
		"tag: INSERT 0 2\ncolumns: count bigint\nrow: 2\ntag: SELECT 1\nstatus I",
		"tag: UPDATE 1",
		"columns: id integer (binary), price numeric(10,2) (binary)\nrow: \\x00000001 | \\x000200000000000200011388",
		"prepared: params (integer)\ncolumns: id integer, name text, price numeric(10,2)",
		"row: 1 | one | 1.50",
		"deallocated",
		"tag: COPY 2",
		"data: \"4,\\\"a, b\\\",\\n\"\ncopy bytes: 45\ntag: COPY 4",
		"  [1] tag: INSERT 0 1\n  [2] sync, status I\n  [3] ERROR 22012: division by zero\n  [4] skipped\n  [5] sync, status I",
		"  [7] row: five",
		"NOTICE 00000: rows: 5\n  where: PL/pgSQL function inline_code_block line 3 at RAISE",
		"tag: (empty query)",
		"parameter TimeZone = UTC",
		"notification chan_{{id}}: hello",
		"row: UTC",
		"ERROR 57014: canceling statement due to user request\nstatus I",
		"row: still usable",
		"  [3] DataRow: 2\n  [3] DataRow: 3\n  [3] PortalSuspended\n  [5] DataRow: 4\n  [5] DataRow: 5\n  [5] CommandComplete: SELECT 2\n  [6] ReadyForQuery I",
		"  [1] ParseComplete\n  [2] BindComplete\n  [3] DataRow: 2",
		"  [11] ParseComplete\n  [12] ParameterDescription ()\n  [12] NoData\n  [13] CloseComplete\n  [14] ReadyForQuery I\n" +
			"  [15] CopyOutResponse\n  [15] CopyData: \"1\\n\"\n  [15] CopyDone\n  [15] CommandComplete: COPY 1\n  [15] ReadyForQuery I",
		"  [7] CopyInResponse\n  [9] CommandComplete: COPY 1\n  [9] ReadyForQuery I\n  [10] FunctionCallResponse: 900150983cd24fb0d6963f7d28e17f72",
		"  [1] row: before flush\n  [1] tag: SELECT 1\n  [2] flushed\n  [3] columns: ?column? text",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	if regexp.MustCompile(`_r[0-9a-f]{10}\b`).MatchString(text) {
		t.Error("a run token leaked into the transcript")
	}
	if t.Failed() {
		t.Logf("transcript:\n%s", text)
	}
}

// recorder is a testing.TB that records failures instead of reporting them.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	msgs   []string
	failed bool
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(r) // unwound by runRecorded
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// runRecorded calls Run with a recorder and returns what it reported.
func runRecorded(t *testing.T, direct, proxied, file string) *recorder {
	rec := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != any(rec) {
				panic(p)
			}
		}()
		Run(rec, direct, proxied, file)
	}()
	return rec
}

// TestRunReportsDifference checks that Run fails, with a readable diff, when the two sides
// answer differently: here the second DSN sets another TimeZone.
func TestRunReportsDifference(t *testing.T) {
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("timezone", "America/New_York")
	u.RawQuery = q.Encode()

	rec := runRecorded(t, dsn, dsn, "testdata/kinds.txt")
	if rec.failed {
		t.Fatalf("same DSN on both sides reported a difference:\n%s", strings.Join(rec.msgs, "\n"))
	}
	rec = runRecorded(t, dsn, u.String(), "testdata/kinds.txt")
	if !rec.failed || len(rec.msgs) != 1 {
		t.Fatalf("want one failure, got %q", rec.msgs)
	}
	msg := rec.msgs[0]
	for _, want := range []string{
		"transcripts differ (- PostgreSQL directly, + through txlane)",
		"--- direct\n+++ txlane\n@@ ",
		"\n-parameter TimeZone = ",
		"\n+parameter TimeZone = America/New_York\n",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure message lacks %q:\n%s", want, msg)
		}
	}
}

// TestRunRefusesBrokenReference checks that a scenario that cannot run against PostgreSQL
// itself fails the test instead of comparing two failures.
func TestRunRefusesBrokenReference(t *testing.T) {
	rec := runRecorded(t, "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2",
		"postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2", "testdata/kinds.txt")
	if !rec.failed || !strings.Contains(rec.msgs[0], "does not run cleanly against PostgreSQL itself") {
		t.Fatalf("got %q", rec.msgs)
	}
}
