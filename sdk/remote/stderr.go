package remote

import (
	"bytes"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// maxLogLine bounds one log line a plugin writes; a longer one is logged
// in pieces of this size.
const maxLogLine = 64 << 10

// lineLogger is an io.Writer that splits what a plugin writes (to its
// stderr, or to os.Stdout and os.Stderr after sdk.Serve replaced them) into
// lines and logs each through the host's logger:
//
//   - a JSON object with "@message" (hclog's form, which sdk.Logger
//     writes) at its "@level" (info when missing or unknown), its other
//     members as attributes; "@timestamp" is dropped (the host stamps the
//     line) whatever its precision, "@module" and "@caller" become
//     "module" and "caller";
//   - a Go panic ("panic: ", "fatal error: ") and every line after it at
//     error;
//   - any other line at info, as its text.
//
// go-plugin parses a plugin's stderr itself too, but accepts only
// timestamps of exactly six fractional digits and logs every other line at
// debug; Start turns that off (stderrOff) and gives the lines to a
// lineLogger instead.
type lineLogger struct {
	log hclog.Logger

	mu      sync.Mutex
	buf     []byte
	inPanic bool
}

func newLineLogger(l hclog.Logger) *lineLogger { return &lineLogger{log: l} }

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	rest := w.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		w.line(rest[:i])
		rest = rest[i+1:]
	}
	for len(rest) >= maxLogLine {
		w.line(rest[:maxLogLine])
		rest = rest[maxLogLine:]
	}
	w.buf = append(w.buf[:0], rest...)
	return len(p), nil
}

func (w *lineLogger) line(b []byte) {
	b = bytes.TrimRight(b, "\r")
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	if msg, level, args, ok := parseJSONLine(b); ok {
		w.log.Log(level, msg, args...)
		return
	}
	s := string(b)
	if strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ") {
		w.inPanic = true
	}
	level := hclog.Info
	switch {
	case w.inPanic:
		level = hclog.Error
	case strings.HasPrefix(s, "[ERROR]"):
		level = hclog.Error
	case strings.HasPrefix(s, "[WARN]"):
		level = hclog.Warn
	case strings.HasPrefix(s, "[DEBUG]"), strings.HasPrefix(s, "[TRACE]"):
		level = hclog.Debug
	}
	w.log.Log(level, s)
}

// parseJSONLine reads an hclog JSON line.
func parseJSONLine(b []byte) (msg string, level hclog.Level, args []any, ok bool) {
	if len(b) == 0 || b[0] != '{' {
		return "", 0, nil, false
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return "", 0, nil, false
	}
	msg, ok = m["@message"].(string)
	if !ok {
		return "", 0, nil, false
	}
	lvl, _ := m["@level"].(string)
	level = hclog.LevelFromString(lvl)
	if level == hclog.NoLevel || level == hclog.Off {
		level = hclog.Info
	}
	delete(m, "@message")
	delete(m, "@level")
	delete(m, "@timestamp")
	for _, k := range slices.Sorted(maps.Keys(m)) {
		name := k
		if k == "@module" || k == "@caller" {
			name = k[1:]
		}
		args = append(args, name, m[k])
	}
	return msg, level, args, true
}

// stderrOff is the host's logger with go-plugin's own logging of the
// plugin's stderr turned off: go-plugin logs those lines through
// Named(<executable's base name>), and an hclog.Off logger makes it skip
// them. Everything else go-plugin logs passes through.
type stderrOff struct {
	hclog.Logger
	stderrName string
}

func newStderrOff(l hclog.Logger, path string) hclog.Logger {
	return stderrOff{Logger: l, stderrName: filepath.Base(path)}
}

func (l stderrOff) Named(name string) hclog.Logger {
	if name == l.stderrName {
		return offLogger{hclog.NewNullLogger()}
	}
	return l.Logger.Named(name)
}

// offLogger discards everything and says so, so callers skip their work.
type offLogger struct{ hclog.Logger }

func (offLogger) GetLevel() hclog.Level { return hclog.Off }
