package proxy

import (
	"github.com/txlane/txlane/proxy/wire"

	"strconv"
	"testing"
)

func TestRefusedTexts(t *testing.T) {
	var r refusedTexts
	if r.has("db", "SELECT 1") {
		t.Fatal("empty set has a text")
	}
	r.add("db", "SELECT f(id) FROM items")
	if !r.has("db", "SELECT f(id) FROM items") || r.has("other", "SELECT f(id) FROM items") {
		t.Fatal("texts are per database")
	}
	// A trailing sqlcommenter comment is not part of the text.
	if !r.has("db", "SELECT f(id) FROM items /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/") {
		t.Fatal("a trailing comment made another text")
	}
	r.add("db", "SELECT f(id) FROM items /*unit='x'*/")
	if n := r.n.Load(); n != 1 {
		t.Fatalf("the same text twice counts %d", n)
	}
	// Bounded per database, oldest forgotten first.
	for i := 0; i < maxRefusedTexts; i++ {
		r.add("db", "SELECT "+strconv.Itoa(i))
	}
	if r.has("db", "SELECT f(id) FROM items") || !r.has("db", "SELECT 0") || !r.has("db", "SELECT "+strconv.Itoa(maxRefusedTexts-1)) {
		t.Fatal("not forgotten oldest first")
	}
	if n := r.n.Load(); n != maxRefusedTexts {
		t.Fatalf("%d texts remembered, want at most %d", n, maxRefusedTexts)
	}
	if got := len(r.byDB["db"].has); got != maxRefusedTexts {
		t.Fatalf("the set holds %d texts", got)
	}
}

func TestErrorCode(t *testing.T) {
	body := []byte("SERROR\x00VERROR\x00C25006\x00Mcannot execute INSERT in a read-only transaction\x00\x00")
	if got := wire.ErrorCode(body); got != "25006" {
		t.Fatalf("errorCode = %q", got)
	}
	if got := wire.ErrorCode([]byte("SERROR\x00\x00")); got != "" {
		t.Fatalf("errorCode without a code = %q", got)
	}
	if got := wire.ErrorCode([]byte("SERR")); got != "" {
		t.Fatalf("errorCode of a truncated body = %q", got)
	}
}
