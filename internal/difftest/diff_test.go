package difftest

import (
	"fmt"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	if d := Diff("a", "x\ny\n", "b", "x\ny\n"); d != "" {
		t.Fatalf("equal texts: %q", d)
	}
	var a, b []string
	for i := 1; i <= 20; i++ {
		a = append(a, fmt.Sprint(i))
		b = append(b, fmt.Sprint(i))
	}
	b[4] = "five"                                               // line 5 changed
	b = append(b[:15], append([]string{"extra"}, b[15:]...)...) // inserted after 15
	got := Diff("direct", strings.Join(a, "\n"), "txlane", strings.Join(b, "\n"))
	want := `--- direct
+++ txlane
@@ -2,7 +2,7 @@
 2
 3
 4
-5
+five
 6
 7
 8
@@ -13,6 +13,7 @@
 13
 14
 15
+extra
 16
 17
 18
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	got = Diff("a", "only\n", "b", "")
	if want := "--- a\n+++ b\n@@ -1,1 +0,0 @@\n-only\n"; got != want {
		t.Errorf("deletion: got %q, want %q", got, want)
	}
}
