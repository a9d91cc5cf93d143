package console

import (
	"testing"
	"time"
)

func TestSealOpen(t *testing.T) {
	k, err := newSealer("a secret of the console")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	s := session{Bearer: "key", CSRF: "c", Expires: now.Add(time.Minute).Unix()}
	v, err := k.seal(consoleCookie, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.open(consoleCookie, v, now)
	if err != nil || got != s {
		t.Fatalf("open: %+v, %v", got, err)
	}
	if _, err := k.open(portalCookie, v, now); err == nil {
		t.Error("a console cookie opened as a portal one")
	}
	if _, err := k.open(consoleCookie, v, now.Add(time.Minute)); err == nil {
		t.Error("an expired session opened")
	}
	b := []byte(v)
	b[len(b)/2] ^= 1
	if _, err := k.open(consoleCookie, string(b), now); err == nil {
		t.Error("a changed cookie opened")
	}
	same, _ := newSealer("a secret of the console")
	if _, err := same.open(consoleCookie, v, now); err != nil {
		t.Errorf("another instance with the same key: %v", err)
	}
	other, _ := newSealer("")
	if _, err := other.open(consoleCookie, v, now); err == nil {
		t.Error("a cookie opened with another key")
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/attempts?x=1": "/console/attempts?x=1",
		"//evil.example/":       "/console/",
		"https://evil.example/": "/console/",
		"/console/login":        "/console/",
		"/portal/":              "/console/",
		`/console/\evil`:        "/console/",
		"":                      "/console/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
