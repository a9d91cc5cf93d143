package httpsource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

// SourceName is the plugin name of the out-of-process http source.
const SourceName = "http"

// SourceConfig is the `config` block of the http source served as a plugin
// (cmd/hookbus-http-source). In process, hookbus serves http sources on its
// own server and this block is not used.
type SourceConfig struct {
	// Listen (`listen`, required) is the address the source serves
	// POST /v1/sources/{source}/events on, e.g. "127.0.0.1:8081" or
	// ":8081". Port 0 picks a free port (logged at start).
	Listen string `json:"listen"`
	// MaxBody (`max_body`, default 1048576) is the largest request body in
	// bytes; larger bodies get 413.
	MaxBody int64 `json:"max_body,omitempty"`
	// MaxBatch (`max_batch`, default 1000) is the most events in one
	// request; more get 413.
	MaxBatch int `json:"max_batch,omitempty"`
}

const sourceSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "http source config",
  "type": "object",
  "additionalProperties": false,
  "required": ["listen"],
  "properties": {
    "listen": {"type": "string", "minLength": 1, "description": "Address to serve POST /v1/sources/{source}/events on, e.g. 127.0.0.1:8081."},
    "max_body": {"type": "integer", "minimum": 0, "default": 1048576, "description": "Largest request body in bytes."},
    "max_batch": {"type": "integer", "minimum": 0, "default": 1000, "description": "Most events in one request."}
  }
}`

// ParseSourceConfig decodes and checks a `config` block. Problems are
// *sdk.ConfigError values naming the key, joined with errors.Join.
func ParseSourceConfig(raw json.RawMessage) (SourceConfig, error) {
	var c SourceConfig
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, &sdk.ConfigError{Message: "http source: " + err.Error()}
	}
	var errs []error
	if c.Listen == "" {
		errs = append(errs, &sdk.ConfigError{Field: "listen", Message: `required: the address to listen on, e.g. "127.0.0.1:8081"`})
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, &sdk.ConfigError{Field: "listen", Message: fmt.Sprintf("%q is not a host:port address: %v", c.Listen, err)})
	}
	if c.MaxBody < 0 {
		errs = append(errs, &sdk.ConfigError{Field: "max_body", Message: fmt.Sprintf("must not be negative, got %d", c.MaxBody)})
	}
	if c.MaxBatch < 0 {
		errs = append(errs, &sdk.ConfigError{Field: "max_batch", Message: fmt.Sprintf("must not be negative, got %d", c.MaxBatch)})
	}
	return c, errors.Join(errs...)
}

// Source is the http source as an sdk.Source, for running it out of
// process: it serves the ingest endpoint on its own listener and answers
// 202 only after hookbus acked the batch (that is, queued it durably). The
// {source} path segment becomes the `source` attribute of events that have
// none; every event goes to the source this plugin is configured as.
//
// The zero value is ready for Init. A Source serves one Run at a time.
type Source struct {
	// Logger receives the listen address, publish failures and rejected
	// requests. Nil means slog.Default().
	Logger *slog.Logger

	mu  sync.Mutex
	cfg SourceConfig
	ln  net.Listener // bound by Init, taken by Run
}

// Describe returns the source's manifest.
func (s *Source) Describe() sdk.Manifest {
	return sdk.Manifest{Name: SourceName, Kinds: []string{sdk.KindSource}, ConfigSchema: json.RawMessage(sourceSchema), Version: "1"}
}

// ValidateConfig checks a `config` block without listening.
func (s *Source) ValidateConfig(raw json.RawMessage) error {
	_, err := ParseSourceConfig(raw)
	return err
}

// Init checks the config and binds the listen address, so a port in use is
// reported as a configuration error.
func (s *Source) Init(_ context.Context, raw json.RawMessage) error {
	cfg, err := ParseSourceConfig(raw)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return &sdk.ConfigError{Field: "listen", Message: err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		_ = s.ln.Close()
	}
	s.cfg, s.ln = cfg, ln
	return nil
}

// Addr is the address the source listens on after Init, nil before.
func (s *Source) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *Source) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// listener takes the listener Init bound, or binds the address again when
// a previous Run used it up.
func (s *Source) listener() (net.Listener, SourceConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Listen == "" {
		return nil, s.cfg, errors.New("http source: Run before Init")
	}
	ln := s.ln
	s.ln = nil
	if ln != nil {
		return ln, s.cfg, nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return nil, s.cfg, fmt.Errorf("http source: listen: %w", err)
	}
	return ln, s.cfg, nil
}

// Run serves POST /v1/sources/{source}/events until ctx is done. Each
// request's events go to emit as one batch; the request gets 202 once Emit
// returned nil, and 503 with Retry-After (nothing accepted) otherwise.
func (s *Source) Run(ctx context.Context, emit sdk.Emitter) error {
	ln, cfg, err := s.listener()
	if err != nil {
		return err
	}
	log := s.logger()
	pub := PublisherFunc(func(ctx context.Context, _ string, events []sdk.Event) error {
		return emit.Emit(ctx, events)
	})
	mux := http.NewServeMux()
	mux.Handle(Pattern, NewHandler(pub, Options{MaxBody: cfg.MaxBody, MaxBatch: cfg.MaxBatch, Logger: log}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("http source listening", "addr", ln.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("http source: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// Requests in flight finish (their Emit is answered or fails), then Run returns.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-served
	return nil
}

// Close releases the listener when Run never took it.
func (s *Source) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	err := s.ln.Close()
	s.ln = nil
	return err
}

var (
	_ sdk.Source          = (*Source)(nil)
	_ sdk.Describer       = (*Source)(nil)
	_ sdk.ConfigValidator = (*Source)(nil)
)
