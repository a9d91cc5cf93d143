// Package api serves hookbus' HTTP interface: the ingest endpoint, the
// management API under /v1, /metrics, /healthz and /readyz.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/sdk"
)

// Options configure the HTTP interface.
type Options struct {
	// Ingest serves POST /v1/sources/{source}/events.
	Ingest http.Handler
	// APIKeys are the admin keys: when non-empty, /v1/* needs
	// "Authorization: Bearer <key>" (or an application token where one
	// reaches).
	APIKeys []string
	// Store keeps the dead letters the /v1/dead-letters routes list and replay.
	Store deadletter.Store
	// Queue is where replayed dead letters are queued (a queue.Queue).
	Queue    deadletter.Publisher
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// SinkKnown reports whether a sink is configured (for replay).
	SinkKnown func(name string) bool
	// SinkPublicKeys answers GET /v1/sinks/{sink}/public-keys: it returns
	// the public keys of the sink's Ed25519 signing keys, and false for a
	// sink that is not configured or cannot have any; nil: every sink
	// answers 404.
	SinkPublicKeys func(name string) ([]signing.PublicKey, bool)
	// NotReady, when set, lists the components that cannot work yet, each
	// as "component: reason" (a plugin sink still initialising). While it
	// lists any, /readyz answers 503 naming them.
	NotReady func() []string
	// Admin, when set, serves POST /v1/admin/reload and GET /v1/admin/status.
	Admin Admin
	// Pprof serves the Go runtime profiles under /debug/pprof/, behind
	// the API keys (server.pprof).
	Pprof bool

	// Subscriptions, when set, serves the applications, their tokens and
	// their subscriptions under /v1/applications, and checks application
	// tokens.
	Subscriptions subscription.Store
	// TestSend makes one delivery attempt of ev to sub now, outside the
	// queue (POST …/test); nil: test sends answer 503.
	TestSend func(ctx context.Context, sub subscription.Subscription, ev sdk.Event) (subscription.TestResult, error)
	// AllowPrivateNetworks reports whether subscription URLs may point at
	// loopback, private, link-local and metadata addresses (a
	// subscriptions sink allows them); nil: never.
	AllowPrivateNetworks func() bool
	// SubscriptionMaxTimeout bounds a subscription's own timeout (the
	// subscriptions sink's max_timeout); nil or 0:
	// subscription.DefaultMaxTimeout.
	SubscriptionMaxTimeout func() time.Duration
	// CompileFilter checks a subscription's filter script, naming the line
	// of a syntax error; nil: compiled with the default script limits.
	CompileFilter func(src string) error

	// Attempts, when set, serves the delivery log: the attempt lists, one
	// attempt, the events on record and the stats routes (the
	// application-scoped ones need Subscriptions too).
	Attempts attempt.Store
	// Resender, when set, serves POST /v1/resend and /v1/recover (and, with
	// Subscriptions, their application-scoped forms).
	Resender attempt.Resender

	// PortalBaseURL is the base of portal links (console.public_url, like
	// "https://hooks.example.com"); empty: the scheme and Host of the
	// request that made the link.
	PortalBaseURL string
	// PortalLinkTTL is a portal link's lifetime when the request gives
	// none (console.portal.link_ttl); 0: subscription.DefaultPortalLinkTTL.
	PortalLinkTTL time.Duration
	// Now is the clock tokens expire by; nil: time.Now. Tests set it.
	Now func() time.Time
}

// Server is the HTTP handler of a hookbus instance.
type Server struct {
	opts    Options
	mux     *http.ServeMux
	metrics http.Handler
	ready   atomic.Bool
	// keys are the API keys; a reload may replace them.
	keys   atomic.Pointer[[]string]
	tokens tokenCache
}

// New builds the handler.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.SetAPIKeys(opts.APIKeys)
	if opts.Registry != nil {
		s.metrics = promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{})
	}
	s.register()
	if opts.Pprof {
		s.routePprof()
	}
	return s
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "starting", "ready": false})
		return
	}
	if s.opts.NotReady != nil {
		if nr := s.opts.NotReady(); len(nr) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "degraded", "ready": false, "not_ready": nr})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "ready": true})
}

// now is the time by the server's clock.
func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

// SetReady marks the instance ready (or not) for /readyz.
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// ServeHTTP implements http.Handler. Requests no route takes get the
// mux's 404 or 405 as problem details.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		w = &fallbackWriter{ResponseWriter: w, r: r}
	}
	s.mux.ServeHTTP(w, r)
}

// SetAPIKeys replaces the API keys (none: /v1/* is open, as with no
// server.api_keys).
func (s *Server) SetAPIKeys(keys []string) {
	k := slices.Clone(keys)
	s.keys.Store(&k)
}

// bearerToken returns the credentials of a Bearer Authorization header. The
// scheme name is case-insensitive (RFC 7235 section 2.1), so "bearer" and
// "BEARER" work as well as "Bearer"; spaces around the token are ignored.
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// DeadLetterJSON is the API form of a dead letter.
type DeadLetterJSON struct {
	ID       string `json:"id"`
	Sink     string `json:"sink"`
	Pipeline string `json:"pipeline"`
	Source   string `json:"source,omitempty"`
	// Application and Subscription name the (event, subscription) pair of
	// a subscriptions sink's dead letter; absent for other sinks.
	Application  string `json:"application,omitempty"`
	Subscription string `json:"subscription,omitempty"`
	Kind         string `json:"kind"`
	Reason       string `json:"reason"`
	Attempts     int    `json:"attempts"`
	DeadAt       string `json:"dead_at"`
	Event        any    `json:"event"`
}

// ToJSON converts a dead letter to its API form.
func ToJSON(dl deadletter.DeadLetter) DeadLetterJSON {
	return DeadLetterJSON{ID: dl.ID, Sink: dl.Sink, Pipeline: dl.Pipeline, Source: dl.Source,
		Application: dl.Application, Subscription: dl.Subscription, Kind: string(dl.Kind), Reason: dl.Reason,
		Attempts: dl.Attempts, DeadAt: dl.DeadAt.Format("2006-01-02T15:04:05.000Z07:00"), Event: dl.Event}
}

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			problem.Write(w, problem.New(http.StatusBadRequest, "query parameter limit: must be an integer between 1 and 10000"))
			return
		}
		limit = n
	}
	dls, err := s.opts.Store.ListDeadLetters(r.Context(), deadletter.Filter{Sink: r.URL.Query().Get("sink"), Limit: limit})
	if err != nil {
		s.internal(w, err)
		return
	}
	out := make([]DeadLetterJSON, 0, len(dls))
	for _, dl := range dls {
		out = append(out, ToJSON(dl))
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out})
}

func (s *Server) getDeadLetter(w http.ResponseWriter, r *http.Request) {
	dl, err := s.opts.Store.GetDeadLetter(r.Context(), r.PathValue("id"))
	if errors.Is(err, deadletter.ErrNotFound) {
		deadLetterNotFound(w, r.PathValue("id"))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ToJSON(dl))
}

func deadLetterNotFound(w http.ResponseWriter, id string) {
	problem.Write(w, problem.New(http.StatusNotFound, "no dead letter with id "+strconv.Quote(id)))
}

func (s *Server) replayOne(w http.ResponseWriter, r *http.Request) {
	n, err := ReplayDeadLetters(r.Context(), s.opts.Store, s.opts.Queue, ReplayRequest{IDs: []string{r.PathValue("id")}}, s.opts.SinkKnown)
	if errors.Is(err, ErrSkipped) {
		problem.Write(w, problem.New(http.StatusConflict, err.Error()))
		return
	}
	if errors.Is(err, deadletter.ErrNotFound) {
		deadLetterNotFound(w, r.PathValue("id"))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"replayed": n})
}

// ReplayRequest selects dead letters to replay: by ids, by sink, or all.
type ReplayRequest struct {
	IDs  []string `json:"ids,omitempty"`
	Sink string   `json:"sink,omitempty"`
	All  bool     `json:"all,omitempty"`
}

func (s *Server) replayMany(w http.ResponseWriter, r *http.Request) {
	var req ReplayRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		problem.Write(w, problem.New(http.StatusBadRequest, "request body: "+err.Error()))
		return
	}
	if len(req.IDs) == 0 && req.Sink == "" && !req.All {
		problem.Write(w, problem.New(http.StatusBadRequest, `say what to replay: "ids", "sink" or "all": true`))
		return
	}
	n, err := ReplayDeadLetters(r.Context(), s.opts.Store, s.opts.Queue, req, s.opts.SinkKnown)
	if errors.Is(err, ErrSkipped) {
		writeJSON(w, http.StatusAccepted, map[string]any{"replayed": n, "skipped": err.Error()})
		return
	}
	if errors.Is(err, deadletter.ErrNotFound) {
		problem.Write(w, problem.New(http.StatusNotFound, err.Error()))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"replayed": n})
}

// internal logs err and answers 500 without its text (which may carry
// internal details).
func (s *Server) internal(w http.ResponseWriter, err error) {
	s.opts.Logger.Error("api request failed", "error", err)
	problem.Write(w, problem.New(http.StatusInternalServerError, "internal error"))
}

// listError answers a list's store error: a cursor the store did not
// make is the caller's mistake (400 naming cursor), anything else internal.
func (s *Server) listError(w http.ResponseWriter, err error) {
	if errors.Is(err, subscription.ErrBadCursor) {
		problem.Write(w, problem.New(http.StatusBadRequest, "invalid query parameter").WithErrors(
			problem.FieldError{Field: "cursor", Message: "is not a cursor of this list; pass the next_cursor of the previous page"}))
		return
	}
	s.internal(w, err)
}

// ReplayDeadLetters queues the selected dead letters again (attempt count
// restarts at 1) and removes each from the store once queued. Dead letters
// whose sink is not configured (known returns false) or that cannot be
// replayed are skipped and reported in the error; the others are replayed.
func ReplayDeadLetters(ctx context.Context, st deadletter.Store, q deadletter.Publisher, req ReplayRequest, known func(sink string) bool) (int, error) {
	n := 0
	var skipped []error
	replay := func(dl deadletter.DeadLetter) error {
		if known != nil && !known(dl.Sink) {
			skipped = append(skipped, fmt.Errorf("%s: sink %q is not configured", dl.ID, dl.Sink))
			return nil
		}
		if err := deadletter.Replay(ctx, q, dl); err != nil {
			if errors.Is(err, deadletter.ErrNotReplayable) {
				skipped = append(skipped, err)
				return nil
			}
			return err
		}
		if err := st.DeleteDeadLetter(ctx, dl.ID); err != nil && !errors.Is(err, deadletter.ErrNotFound) {
			return err
		}
		n++
		return nil
	}
	if len(req.IDs) > 0 {
		for _, id := range req.IDs {
			dl, err := st.GetDeadLetter(ctx, id)
			if err != nil {
				if errors.Is(err, deadletter.ErrNotFound) {
					return n, errors.Join(deadletter.ErrNotFound, errors.New("no dead letter with id "+strconv.Quote(id)))
				}
				return n, err
			}
			if err := replay(dl); err != nil {
				return n, err
			}
		}
	} else {
		// Page through, so a large backlog is never loaded at once.
		after := ""
		for {
			page, err := st.ListDeadLetters(ctx, deadletter.Filter{Sink: req.Sink, Limit: 500, After: after})
			if err != nil {
				return n, err
			}
			for _, dl := range page {
				if err := replay(dl); err != nil {
					return n, err
				}
			}
			if len(page) < 500 {
				break
			}
			after = page[len(page)-1].ID
		}
	}
	if len(skipped) > 0 {
		return n, fmt.Errorf("%w: %w", ErrSkipped, errors.Join(skipped...))
	}
	return n, nil
}

// ErrSkipped wraps the reasons some dead letters were not replayed.
var ErrSkipped = errors.New("some dead letters were not replayed")
