package proxy

import (
	"fmt"
	"maps"
	"testing"

	"github.com/txlane/txlane/proxy/wire"
)

// cacheBackend is a backend as a login left it: logged in with login, its
// current values params (the login's and what the server reported since).
func cacheBackend(login, params map[string]string) *primaryConn {
	p := newPrimaryConn(backend{target: wire.CancelTarget{Secret: make([]byte, 4)}}, nil)
	p.loggedIn('I', maps.Clone(login))
	maps.Copy(p.mu.params, params)
	return p
}

var cacheLogin = map[string]string{
	"application_name": "", "client_encoding": "UTF8", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres",
	"TimeZone": "Etc/UTC", "standard_conforming_strings": "on",
	"server_version": "15.20", "is_superuser": "on", "session_authorization": "postgres", "default_transaction_read_only": "off",
}

// TestLoginCacheAnswers: the cache answers a login only with values a
// backend applied (over the same login value), for the protocol version it
// learned, and never when a movable parameter is sent twice.
func TestLoginCacheAnswers(t *testing.T) {
	var c loginCache
	if _, _, _, ok := c.answer(map[string]string{}, 196608); ok {
		t.Fatal("an empty cache answered")
	}
	c.learn(cacheBackend(cacheLogin, map[string]string{"TimeZone": "UTC", "DateStyle": "SQL, MDY"}),
		map[string]string{"user": "u", "timezone": "utc", "DateStyle": "SQL"}, 196608)
	params, own, keyLen, ok := c.answer(map[string]string{"user": "u", "TimeZone": "utc"}, 196608)
	if !ok || own["TimeZone"] != "UTC" || own["DateStyle"] != "ISO, MDY" || params["TimeZone"] != "UTC" ||
		params["server_version"] != "15.20" || keyLen != 4 {
		t.Fatalf("answer: %v %v %d %v", params, own, keyLen, ok)
	}
	for _, startup := range []map[string]string{
		{"TimeZone": "Nowhere"},                // never applied
		{"TimeZone": "utc", "timezone": "utc"}, // sent twice
		{"application_name": "new"},
	} {
		if _, _, _, ok := c.answer(startup, 196608); ok {
			t.Errorf("answered %v", startup)
		}
	}
	if _, _, _, ok := c.answer(map[string]string{}, 196610); ok {
		t.Error("answered a login asking for another protocol version")
	}
	for i := 0; i < maxApplied+10; i++ {
		name := fmt.Sprint("app", i)
		c.learn(cacheBackend(cacheLogin, map[string]string{"application_name": name}), map[string]string{"application_name": name}, 196608)
	}
	if len(c.applied) > maxApplied {
		t.Errorf("%d values cached, more than maxApplied", len(c.applied))
	}
}

// TestLoginCacheReported: a report of a server value other than the cached
// one drops the server values; movable values, session_authorization and
// is_superuser (a client's SET ROLE) and an equal value do not.
func TestLoginCacheReported(t *testing.T) {
	var c loginCache
	c.learn(cacheBackend(cacheLogin, nil), nil, 196608)
	for _, r := range [][2]string{{"TimeZone", "Asia/Tokyo"}, {"is_superuser", "off"}, {"session_authorization", "other"},
		{"default_transaction_read_only", "off"}} {
		c.reported(r[0], r[1])
		if _, _, _, ok := c.answer(nil, 196608); !ok {
			t.Fatalf("a report of %s = %s dropped the cache", r[0], r[1])
		}
	}
	c.reported("default_transaction_read_only", "on")
	if _, _, _, ok := c.answer(nil, 196608); ok {
		t.Fatal("the cache answered after a server value changed")
	}
	c.learn(cacheBackend(cacheLogin, nil), nil, 196608)
	c.reported("in_hot_standby", "off") // a value the cache did not have
	if _, _, _, ok := c.answer(nil, 196608); ok {
		t.Fatal("the cache answered after a new server value was reported")
	}
}
