package app

import (
	"testing"

	"github.com/hookbus/hookbus/core/config"
)

// TestScriptOptionsCarryTheMemoryBound: scripts.max_memory reaches the
// script runtime.
func TestScriptOptionsCarryTheMemoryBound(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Scripts.MaxMemory = 8 * config.MiB
	if got := ScriptOptions(cfg, nil).MaxMemory; got != 8<<20 {
		t.Errorf("MaxMemory = %d, want %d", got, 8<<20)
	}
}
