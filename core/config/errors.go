package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem with a configuration. It names the key path that
// caused it and, when the key comes from the YAML file, its line.
type Error struct {
	// File is the configuration file as the caller named it, "" when the
	// problem is not tied to a file.
	File string
	// Path is the dotted key path, with sequence indexes in brackets:
	// "sinks.partner.config.url", "pipelines.paid-orders.steps[1].transform".
	// It is "" for problems with the file as a whole.
	Path string
	// Line is the 1-based line of Path in File, 0 when unknown (for example
	// when the value comes from an environment variable or a default).
	Line int
	// Message says what is wrong and, where it helps, what is expected.
	Message string
}

// Error formats the problem as "config.yaml:12: sinks.partner.config.url: message".
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is every problem found in a configuration. Load and
// Config.Validate return it as *Errors, so callers match it with
//
//	var errs *config.Errors
//	if errors.As(err, &errs) { for _, e := range *errs { ... } }
type Errors []Error

// Error lists the problems, one per line.
func (e *Errors) Error() string {
	lines := make([]string, len(*e))
	for i, one := range *e {
		lines[i] = one.Error()
	}
	return strings.Join(lines, "\n")
}

// sortErrors orders problems by line, then key path, then message, and drops
// exact duplicates.
func sortErrors(errs []Error) []Error {
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Message < b.Message
	})
	out := errs[:0]
	for i, e := range errs {
		if i > 0 && e == errs[i-1] {
			continue
		}
		out = append(out, e)
	}
	return out
}
