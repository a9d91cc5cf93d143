package pluginhost

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// slogAdapter is an hclog.Logger writing to a *slog.Logger, so go-plugin
// forwards a plugin's log lines into hookbus' log.
type slogAdapter struct {
	l       *slog.Logger
	name    string
	implied []any
}

func newSlogAdapter(l *slog.Logger) hclog.Logger { return &slogAdapter{l: l} }

func (a *slogAdapter) Log(level hclog.Level, msg string, args ...any) {
	var lvl slog.Level
	switch level {
	case hclog.Trace, hclog.Debug:
		lvl = slog.LevelDebug
	case hclog.Warn:
		lvl = slog.LevelWarn
	case hclog.Error:
		lvl = slog.LevelError
	case hclog.Off:
		return
	default:
		lvl = slog.LevelInfo
	}
	if !a.l.Enabled(context.Background(), lvl) {
		return
	}
	attrs := make([]any, 0, len(a.implied)+len(args)+2)
	if a.name != "" {
		attrs = append(attrs, "logger", a.name)
	}
	attrs = append(attrs, a.implied...)
	attrs = append(attrs, pairs(args)...)
	a.l.Log(context.Background(), lvl, msg, attrs...)
}

// pairs turns hclog's key/value args into slog's, stringifying odd keys.
func pairs(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i < len(args); i += 2 {
		key := fmt.Sprint(args[i])
		if i+1 >= len(args) {
			out = append(out, "extra", args[i])
			break
		}
		out = append(out, key, args[i+1])
	}
	return out
}

func (a *slogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *slogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *slogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *slogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *slogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *slogAdapter) enabled(l slog.Level) bool { return a.l.Enabled(context.Background(), l) }

func (a *slogAdapter) IsTrace() bool { return a.enabled(slog.LevelDebug) }
func (a *slogAdapter) IsDebug() bool { return a.enabled(slog.LevelDebug) }
func (a *slogAdapter) IsInfo() bool  { return a.enabled(slog.LevelInfo) }
func (a *slogAdapter) IsWarn() bool  { return a.enabled(slog.LevelWarn) }
func (a *slogAdapter) IsError() bool { return a.enabled(slog.LevelError) }

func (a *slogAdapter) ImpliedArgs() []any { return a.implied }

func (a *slogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), pairs(args)...)
	return &c
}

func (a *slogAdapter) Name() string { return a.name }

func (a *slogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (a *slogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

// SetLevel is a no-op: the slog handler decides.
func (a *slogAdapter) SetLevel(hclog.Level) {}

func (a *slogAdapter) GetLevel() hclog.Level {
	switch {
	case a.enabled(slog.LevelDebug):
		return hclog.Trace
	case a.enabled(slog.LevelInfo):
		return hclog.Info
	case a.enabled(slog.LevelWarn):
		return hclog.Warn
	}
	return hclog.Error
}

func (a *slogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *slogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		a.Info(string(p))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
