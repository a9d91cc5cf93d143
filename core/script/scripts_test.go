package script

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expect members of scripts/*.cases.json from the scripts' output")

// TestExampleScripts runs every scripts/*.js against its cases, as
// `hookbus test scripts` does (golden style; go test ./core/script -run
// TestExampleScripts -update rewrites the expected events).
func TestExampleScripts(t *testing.T) {
	dir := filepath.Join("..", "..", "scripts")
	files, err := filepath.Glob(filepath.Join(dir, "*.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in %s: %v", dir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			casesPath := CasesPath(file)
			cases, err := LoadCases(casesPath)
			if err != nil {
				t.Fatalf("every example script needs test cases: %v", err)
			}
			if len(cases) == 0 {
				t.Fatalf("%s has no cases", casesPath)
			}
			s, err := Compile(file, Options{})
			if err != nil {
				t.Fatal(err)
			}
			changed := false
			for i := range cases {
				tc := &cases[i]
				t.Run(tc.Name, func(t *testing.T) {
					r := s.Check(context.Background(), *tc)
					if *update && tc.ExpectError == "" && !tc.ExpectFiltered && r.Err == nil {
						tc.Expect = r.Got
						changed = true
						return
					}
					if !r.Pass {
						t.Errorf("%s\ngot  %s\nwant %s", r.Problem, r.Got, compactJSON(t, tc.Expect))
					}
				})
			}
			if changed {
				if err := WriteCases(casesPath, cases); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	if len(b) == 0 {
		return "(nothing)"
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
