package proxy

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// TestDecodeTextArray: the binary text[] of laneCheckSQL's settings column,
// NULL elements included; anything malformed is an error, never a value.
func TestDecodeTextArray(t *testing.T) {
	enc := func(elems ...*string) []byte {
		b := binary.BigEndian.AppendUint32(nil, 1)               // ndim
		b = binary.BigEndian.AppendUint32(b, 1)                  // has nulls
		b = binary.BigEndian.AppendUint32(b, 25)                 // text
		b = binary.BigEndian.AppendUint32(b, uint32(len(elems))) // length
		b = binary.BigEndian.AppendUint32(b, 1)                  // lower bound
		for _, e := range elems {
			if e == nil {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(*e)))
			b = append(b, *e...)
		}
		return b
	}
	a, empty := "public, x", ""
	got, err := decodeTextArray(enc(&a, nil, &empty))
	if err != nil || len(got) != 3 || *got[0] != a || got[1] != nil || *got[2] != "" {
		t.Fatalf("decodeTextArray = %v, %v", got, err)
	}
	zero := binary.BigEndian.AppendUint32(make([]byte, 0, 12), 0)
	if got, err := decodeTextArray(append(zero, 0, 0, 0, 0, 0, 0, 0, 25)); err != nil || len(got) != 0 {
		t.Fatalf("empty array: %v, %v", got, err)
	}
	whole := enc(&a)
	for n := 0; n < len(whole); n++ {
		if _, err := decodeTextArray(whole[:n]); err == nil {
			t.Fatalf("a truncated array (%d of %d bytes) decoded", n, len(whole))
		}
	}
}

// TestCheckExpected: what the check compares each setting with — the value
// applied, else what a reset gave, else the login value — and the custom
// settings after the fixed ones, sorted, the role never among them.
func TestCheckExpected(t *testing.T) {
	login := "utc"
	c := &laneConn{
		settings: map[string]string{"TimeZone": "Asia/Tokyo", settingRole: "alice", "app.b": "2", "hnsw.ef_search": "80"},
		resetTo:  map[string]string{"app.a": ""},
		base:     map[string]*string{"TimeZone": &login, "lock_timeout": &login},
	}
	e := c.expected()
	if !reflect.DeepEqual(e.names[:len(checkFixed)], checkFixed) || !reflect.DeepEqual(e.names[len(checkFixed):], []string{"app.a", "app.b"}) {
		t.Fatalf("names = %q", e.names)
	}
	want := func(n string) *string {
		for i, m := range e.names {
			if m == n {
				return e.want[i]
			}
		}
		t.Fatalf("%s not checked", n)
		return nil
	}
	for n, v := range map[string]string{"TimeZone": "Asia/Tokyo", "hnsw.ef_search": "80", "app.a": "", "app.b": "2", "lock_timeout": "utc"} {
		if w := want(n); w == nil || *w != v {
			t.Errorf("%s: expected %v, want %q", n, w, v)
		}
	}
	if w := want("search_path"); w != nil {
		t.Errorf("search_path, never applied nor read at login: expected %q, want NULL", *w)
	}
}
