package app

import (
	"slices"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/config"
)

// TestReloadConsoleKeys: the console keys are restart-only, but
// console.portal.frame_ancestors, which a reload applies.
func TestReloadConsoleKeys(t *testing.T) {
	t.Parallel()
	cur := config.Default()
	next := config.Default()
	next.Console.Portal.FrameAncestors = []string{"https://dev.example.com"}
	if keys := restartOnlyChanges(cur, next); len(keys) != 0 {
		t.Errorf("frame_ancestors changed: restart-only keys %v, want none", keys)
	}
	next.Console.Enabled = false
	next.Console.PublicURL = "https://hooks.example.com"
	next.Console.SessionTTL = time.Hour
	next.Console.SessionKey = "k"
	next.Console.Portal.LinkTTL = time.Minute
	want := []string{"console.enabled", "console.public_url", "console.session_ttl", "console.session_key", "console.portal.link_ttl"}
	if keys := restartOnlyChanges(cur, next); !slices.Equal(keys, want) {
		t.Errorf("restart-only keys %v, want %v", keys, want)
	}
}
