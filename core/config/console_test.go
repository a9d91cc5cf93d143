package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConsoleKeys: the console block loads with its defaults, takes
// values from the file and the environment, and each bad value is an
// error naming its key.
func TestConsoleKeys(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load(writeConfig(t, "version: 1\n"), LoadOptions{Env: []string{}, Checkers: testCheckers()})
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Console
		if !c.Enabled || c.PublicURL != "" || c.SessionTTL != 12*time.Hour || c.SessionKey != "" ||
			c.Portal.LinkTTL != time.Hour || len(c.Portal.FrameAncestors) != 0 {
			t.Errorf("defaults: %+v", c)
		}
	})
	t.Run("set", func(t *testing.T) {
		t.Parallel()
		yaml := `version: 1
console:
  enabled: false
  public_url: https://hooks.example.com/base/
  session_ttl: 2h
  session_key: ${KEY}
  portal:
    link_ttl: 30m
    frame_ancestors: ["'self'", "https://dev.example.com", "http://localhost:3000"]
`
		key := strings.Repeat("k", 32)
		cfg, err := Load(writeConfig(t, yaml), LoadOptions{
			Env: []string{"KEY=" + key, "HOOKBUS_CONSOLE__SESSION_TTL=3h"}, Checkers: testCheckers()})
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Console
		if c.Enabled || c.PublicURL != "https://hooks.example.com/base/" || c.SessionTTL != 3*time.Hour || c.SessionKey != key ||
			c.Portal.LinkTTL != 30*time.Minute ||
			!slices.Equal(c.Portal.FrameAncestors, []string{"'self'", "https://dev.example.com", "http://localhost:3000"}) {
			t.Errorf("loaded: %+v", c)
		}
	})
	bad := []struct {
		name, yaml, path, msg string
	}{
		{"public url scheme", "console: {public_url: ftp://x.example}", "console.public_url", "must be an http or https URL"},
		{"public url relative", "console: {public_url: /portal}", "console.public_url", "must be an http or https URL"},
		{"public url no host", "console: {public_url: 'https://'}", "console.public_url", "has no host"},
		{"public url query", "console: {public_url: 'https://x.example/?a=1'}", "console.public_url", "no query or fragment"},
		{"public url fragment", "console: {public_url: 'https://x.example/#top'}", "console.public_url", "no query or fragment"},
		{"public url user", "console: {public_url: 'https://u:p@x.example'}", "console.public_url", "user info"},
		{"session ttl", "console: {session_ttl: 0s}", "console.session_ttl", "positive duration"},
		{"session key short", "console: {session_key: short}", "console.session_key", "at least 32 characters (got 5)"},
		{"link ttl short", "console: {portal: {link_ttl: 30s}}", "console.portal.link_ttl", "from 1m to 24h, got 30s"},
		{"link ttl long", "console: {portal: {link_ttl: 25h}}", "console.portal.link_ttl", "from 1m to 24h"},
		{"link ttl type", "console: {portal: {link_ttl: soon}}", "console.portal.link_ttl", ""},
		{"frame ancestor path", "console: {portal: {frame_ancestors: ['https://x.example/app']}}", "console.portal.frame_ancestors[0]", "must be an origin"},
		{"frame ancestor wildcard", "console: {portal: {frame_ancestors: ['https://*.example.com']}}", "console.portal.frame_ancestors[0]", "must be an origin"},
		{"frame ancestor injection", "console: {portal: {frame_ancestors: ['self', \"https://a.example; script-src *\"]}}", "console.portal.frame_ancestors[1]", "must be an origin"},
		{"frame ancestor bare word", "console: {portal: {frame_ancestors: ['self']}}", "console.portal.frame_ancestors[0]", "or 'self'"},
		{"frame ancestor port", "console: {portal: {frame_ancestors: ['https://x.example:99999']}}", "console.portal.frame_ancestors[0]", ""},
		{"unknown key", "console: {portal: {link_tll: 1h}}", "console.portal.link_tll", "unknown key"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(writeConfig(t, "version: 1\n"+tc.yaml+"\n"), LoadOptions{Env: []string{}, Checkers: testCheckers()})
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load = %+v, %v; want *Errors", cfg, err)
			}
			for _, e := range *errs {
				if e.Path == tc.path && strings.Contains(e.Message, tc.msg) {
					return
				}
			}
			t.Errorf("no error on %s saying %q: %v", tc.path, tc.msg, errs)
		})
	}
}
