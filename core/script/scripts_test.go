package script

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expect members of scripts/*.cases.json from the scripts' output")

// scriptCase is one test case of an example script, kept in
// scripts/<name>.cases.json beside scripts/<name>.js.
type scriptCase struct {
	Name  string          `json:"name"`
	Event json.RawMessage `json:"event"`
	// Ctx is optional: {"Pipeline": "...", "Sink": "...", "Attempt": 1}.
	Ctx *Context `json:"ctx,omitempty"`
	// Exactly one of the following is the expectation.
	Expect         json.RawMessage `json:"expect,omitempty"`          // the events that come out
	ExpectFiltered bool            `json:"expect_filtered,omitempty"` // filtered or dropped
	ExpectError    string          `json:"expect_error,omitempty"`    // a regexp the error must match
}

// TestExampleScripts runs every scripts/*.js against its cases (golden
// style; go test ./core/script -run TestExampleScripts -update rewrites the
// expected events).
func TestExampleScripts(t *testing.T) {
	dir := filepath.Join("..", "..", "scripts")
	files, err := filepath.Glob(filepath.Join(dir, "*.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in %s: %v", dir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			casesPath := strings.TrimSuffix(file, ".js") + ".cases.json"
			raw, err := os.ReadFile(casesPath)
			if err != nil {
				t.Fatalf("every example script needs test cases: %v", err)
			}
			var cases []scriptCase
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&cases); err != nil {
				t.Fatalf("%s: %v", casesPath, err)
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
					c := Context{Pipeline: "example", Attempt: 1}
					if tc.Ctx != nil {
						c = *tc.Ctx
					}
					r, err := s.RunJSON(context.Background(), tc.Event, c)
					if tc.ExpectError != "" {
						if err == nil || !regexp.MustCompile(tc.ExpectError).MatchString(err.Error()) {
							t.Fatalf("error = %v, want one matching %q", err, tc.ExpectError)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if tc.ExpectFiltered {
						if r.Kept {
							t.Fatalf("kept %s, want filtered", r.JSON())
						}
						return
					}
					got, err := json.Marshal(r.Events)
					if err != nil {
						t.Fatal(err)
					}
					if !r.Kept {
						got = []byte("[]")
					}
					if *update {
						var buf bytes.Buffer
						if err := json.Indent(&buf, got, "      ", "  "); err != nil {
							t.Fatal(err)
						}
						tc.Expect = buf.Bytes()
						changed = true
						return
					}
					if len(tc.Expect) == 0 {
						t.Fatal("case has no expectation (expect, expect_filtered or expect_error); run with -update to record expect")
					}
					if !sameJSON(t, got, tc.Expect) {
						t.Errorf("got  %s\nwant %s", got, compactJSON(t, tc.Expect))
					}
				})
			}
			if changed {
				out, err := json.MarshalIndent(cases, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(casesPath, append(out, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
