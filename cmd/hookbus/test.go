package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/app"
	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/script"
)

func testCmd() *cobra.Command {
	var cfgPath string
	var update bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "test [SCRIPT.js | DIR]...",
		Short: "Run the test cases of filter, transform and aggregate scripts",
		Long: "Run each script's test cases, kept in <name>.cases.json beside <name>.js:\n" +
			`[{"name": "...", "event": {...}, "ctx": {"pipeline": "p", "sink": "s", "attempt": 1},` + "\n" +
			` "expect": [events] | "expect_filtered": true | "expect_error": "regexp"}]` + "\n" +
			`An aggregate case gives "events": [...] (one window) instead of "event", and its ctx may set` + "\n" +
			`"key", "window_start", "window_end" and "count".` + "\n\n" +
			"Without arguments, the scripts the configuration's pipelines use. --update records\n" +
			"\"expect\" from what the script returns now, for cases that expect events or nothing yet.\n" +
			"Exits 1 when a case fails.",
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			// The configuration's scripts settings apply when it is used:
			// without arguments, or with --config given.
			cfg := config.Default()
			if len(args) == 0 || cmd.Flags().Changed("config") {
				loaded, err := config.Load(cfgPath, config.LoadOptions{})
				if err != nil {
					if errors.Is(err, fs.ErrNotExist) {
						return usage("configuration file %s not found (pass --config FILE, or name scripts)", cfgPath)
					}
					return usageError{fmt.Errorf("invalid configuration:\n%s", err)}
				}
				cfg = loaded
			}
			files, err := scriptsToTest(args, cfg, cfgPath)
			if err != nil {
				return err
			}
			opts := app.ScriptOptions(cfg, log)
			if cmd.Flags().Changed("timeout") {
				opts.Timeout = timeout
			}
			out := cmd.OutOrStdout()
			var sum testSummary
			for _, f := range files {
				sum.add(testScript(out, f, opts, update))
			}
			fmt.Fprintf(out, "%s, %s: %d passed, %d failed", plural(sum.scripts, "script"), plural(sum.cases, "case"), sum.passed, sum.failed)
			if sum.noCases > 0 {
				fmt.Fprintf(out, "; %s without cases", plural(sum.noCases, "script"))
			}
			if sum.updated > 0 {
				fmt.Fprintf(out, "; %s recorded", plural(sum.updated, "expectation"))
			}
			fmt.Fprintln(out)
			if sum.failed > 0 {
				return fmt.Errorf("%s failed", plural(sum.failed, "test"))
			}
			return nil
		},
	}
	addConfigFlag(c, &cfgPath)
	c.Flags().BoolVar(&update, "update", false, "record expect from the current output")
	c.Flags().DurationVar(&timeout, "timeout", script.DefaultTimeout, "deadline of one call (default: scripts.timeout of the configuration when it is used)")
	return c
}

// scriptsToTest expands the arguments (scripts and directories of
// scripts), or without any the scripts of the configuration's pipelines.
func scriptsToTest(args []string, cfg *config.Config, cfgPath string) ([]string, error) {
	var files []string
	if len(args) == 0 {
		for _, name := range cfg.PipelineNames() {
			for _, st := range cfg.Pipelines[name].Steps {
				for _, f := range st.Scripts() {
					f = relToWorkDir(f)
					if !slices.Contains(files, f) {
						files = append(files, f)
					}
				}
			}
		}
		if len(files) == 0 {
			return nil, usage("the pipelines of %s run no scripts; name scripts or directories to test", cfgPath)
		}
		return files, nil
	}
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, usage("%v", err)
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		found, err := filepath.Glob(filepath.Join(a, "*.js"))
		if err != nil {
			return nil, usage("%v", err)
		}
		if len(found) == 0 {
			return nil, usage("%s holds no .js scripts", a)
		}
		files = append(files, found...)
	}
	return files, nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// relToWorkDir shortens an absolute path under the working directory.
func relToWorkDir(path string) string {
	wd, err := os.Getwd()
	if err != nil || path == "" {
		return path
	}
	if rel, err := filepath.Rel(wd, path); err == nil && filepath.IsLocal(rel) {
		return rel
	}
	return path
}

type testSummary struct{ scripts, cases, passed, failed, noCases, updated int }

func (s *testSummary) add(o testSummary) {
	s.scripts += o.scripts
	s.cases += o.cases
	s.passed += o.passed
	s.failed += o.failed
	s.noCases += o.noCases
	s.updated += o.updated
}

// testScript runs one script's cases and prints a line per case. A script
// that does not compile, or whose cases file is broken, counts as one
// failure (or one per case that could not run).
func testScript(out io.Writer, file string, opts script.Options, update bool) testSummary {
	sum := testSummary{scripts: 1}
	casesPath := script.CasesPath(file)
	cases, casesErr := script.LoadCases(casesPath)
	s, err := script.Compile(file, opts)
	if err != nil {
		fmt.Fprintf(out, "FAIL %s: %v\n", file, err)
		sum.cases = len(cases)
		sum.failed = max(1, len(cases))
		return sum
	}
	if errors.Is(casesErr, fs.ErrNotExist) {
		fmt.Fprintf(out, "?    %s (compiles; no test cases: add %s)\n", file, casesPath)
		sum.noCases = 1
		return sum
	}
	if casesErr != nil {
		fmt.Fprintf(out, "FAIL %s: %v\n", file, casesErr)
		sum.failed = 1
		return sum
	}
	for i := range cases {
		c := &cases[i]
		sum.cases++
		r := s.Check(context.Background(), *c)
		if update && !r.Pass && r.Err == nil && c.ExpectError == "" && !c.ExpectFiltered {
			c.Expect = r.Got
			sum.updated++
			r.Pass = true
		}
		if r.Pass {
			sum.passed++
			fmt.Fprintf(out, "ok   %s: %s\n", file, c.Name)
			continue
		}
		sum.failed++
		fmt.Fprintf(out, "FAIL %s: %s: %s\n", file, c.Name, r.Problem)
		if r.Got != nil {
			fmt.Fprintf(out, "     got  %s\n", r.Got)
		}
		if len(c.Expect) > 0 {
			fmt.Fprintf(out, "     want %s\n", compact(c.Expect))
		}
	}
	if sum.updated > 0 {
		if err := script.WriteCases(casesPath, cases); err != nil {
			fmt.Fprintf(out, "FAIL %s: recording expectations: %v\n", file, err)
			sum.failed++
		}
	}
	return sum
}

func compact(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}
