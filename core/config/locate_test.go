package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLocate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(`version: 1
sinks:
  partner:
    type: acme
    config:
      colour: red
`), 0o644); err != nil {
		t.Fatal(err)
	}
	got := Locate(path, Errors{
		{Path: "sinks.partner.config.colour", Message: "unknown key"},
		{Path: "sinks.partner.config.path", Message: "required"}, // not in the file: its parent's line
		{File: "other.yaml", Line: 3, Path: "x", Message: "kept"},
		{Message: "no path"},
	})
	want := Errors{
		{File: path, Path: "", Message: "no path"},
		{File: "other.yaml", Line: 3, Path: "x", Message: "kept"},
		{File: path, Line: 5, Path: "sinks.partner.config.path", Message: "required"},
		{File: path, Line: 6, Path: "sinks.partner.config.colour", Message: "unknown key"},
	}
	if len(got) != len(want) {
		t.Fatalf("Locate = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Locate[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := Locate(filepath.Join(t.TempDir(), "missing.yaml"), Errors{{Path: "a", Message: "m"}}); len(got) != 1 || got[0].Line != 0 || got[0].File != "" {
		t.Errorf("Locate without a file = %+v", got)
	}
}
