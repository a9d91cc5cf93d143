// Package httpsource is hookbus' built-in http source: the ingest endpoint
// POST /v1/sources/{source}/events.
//
// A request body is one of:
//
//   - application/json (or no Content-Type): one event envelope
//     {"id","type","source","subject","time","datacontenttype","data","metadata", ...extensions}
//     or a JSON array of them;
//   - application/cloudevents+json: one CloudEvent in structured mode;
//   - application/cloudevents-batch+json: a JSON array of CloudEvents;
//   - any content type with ce-* headers (ce-specversion, ce-type, ce-id,
//     ce-source, ce-subject, ce-time; other ce-* headers become extension
//     attributes): one CloudEvent in binary mode whose data is the body. A
//     JSON body (application/json, */*+json) becomes the data as is; any other
//     body becomes a JSON string when it is valid UTF-8 (its text), otherwise
//     the data_base64 member (its standard base64). datacontenttype is the
//     Content-Type, as sent.
//
// A structured CloudEvent's data_base64 is kept as it came, a member of
// the event in place of data, as the CloudEvents JSON format has it.
//
// Every event needs a type; specversion, when present, must be "1.0". The
// handler answers 202 Accepted with {"ids": [...]} (in request order) only
// after the Publisher durably queued the whole batch; invalid requests get an
// RFC 9457 problem (see core/problem) naming each offending field with its
// index, e.g. "[1].type", and nothing of them is published.
package httpsource

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/sdk"
)

// Publisher durably queues a batch for a source; it returns only after the
// queue confirmed every event (or an error, then nothing counts).
// Publish must be safe to call concurrently.
type Publisher interface {
	Publish(ctx context.Context, source string, events []sdk.Event) error
}

// ProducerIDPublisher is a Publisher that can be told which events came
// with an id of their producer (an idempotency key, remembered for the
// dedup window) and which got a new one from Fill (unique already:
// nothing to remember). The handler uses it when the Publisher has it.
type ProducerIDPublisher interface {
	PublishProducerIDs(ctx context.Context, source string, events []sdk.Event, producerID []bool) error
}

// PublisherFunc adapts a function to the Publisher interface.
type PublisherFunc func(ctx context.Context, source string, events []sdk.Event) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, source string, events []sdk.Event) error {
	return f(ctx, source, events)
}

// DefaultMaxBody is the default largest request body, in bytes (1 MiB):
// sdk.MaxEventBytes, the limit a plugin source's events get too.
const DefaultMaxBody int64 = sdk.MaxEventBytes

// Options configures the ingest handler. The zero value is usable.
type Options struct {
	// MaxBody is the largest request body in bytes; larger bodies get 413.
	// Default 1 MiB.
	MaxBody int64
	// MaxBatch is the largest number of events in one request; more get 413.
	// Default 1000.
	MaxBatch int
	// Logger receives publish failures (error) and rejected requests (debug).
	// Default slog.Default().
	Logger *slog.Logger
	// Sources reports whether name is a configured http source; unknown
	// sources get 404. Nil accepts every source name.
	Sources func(name string) bool
}

func (o *Options) setDefaults() {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Pattern is the http.ServeMux pattern the handler serves.
const Pattern = "/v1/sources/{source}/events"

// NewHandler returns the ingest handler. Mount it at Pattern (any method:
// the handler answers 405 itself, as a problem). It reads the source name
// from r.PathValue("source") and, when the request did not come through such
// a pattern, from a path ending in /sources/{source}/events.
func NewHandler(pub Publisher, opts Options) http.Handler {
	opts.setDefaults()
	return &handler{pub: pub, opts: opts}
}

type handler struct {
	pub  Publisher
	opts Options
}

// accepted is the body of a 202 answer.
type accepted struct {
	IDs []string `json:"ids"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, r, problem.New(http.StatusMethodNotAllowed,
			fmt.Sprintf("method %s is not allowed; send events with POST", r.Method)))
		return
	}
	source, ok := sourceName(r)
	if !ok || (h.opts.Sources != nil && !h.opts.Sources(source)) {
		h.reject(w, r, problem.New(http.StatusNotFound, fmt.Sprintf("unknown source %q: no http source of that name is configured and used by a pipeline", source)))
		return
	}
	if p := decodeBody(w, r, h.opts.MaxBody); p != nil {
		h.reject(w, r, p)
		return
	}
	events, err := Parse(r, h.opts.MaxBatch)
	if err != nil {
		h.reject(w, r, problem.From(err))
		return
	}
	producerID := make([]bool, len(events))
	for i := range events {
		producerID[i] = events[i].ID != ""
	}
	ids := Fill(events, source, time.Now())
	if pp, ok := h.pub.(ProducerIDPublisher); ok {
		err = pp.PublishProducerIDs(r.Context(), source, events, producerID)
	} else {
		err = h.pub.Publish(r.Context(), source, events)
	}
	if err != nil {
		h.unavailable(w, r, source, len(events), err)
		return
	}
	body, _ := json.Marshal(accepted{IDs: ids})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(append(body, '\n'))
}

// retryAfterError is an error that says how long to wait before a retry:
// core/queue's UnavailableError (a JetStream stream without a leader, no
// server reachable), found without importing the queue drivers.
type retryAfterError interface {
	error
	RetryAfter() time.Duration
}

// unavailable answers a request whose events the queue did not take: 503
// with Retry-After and a problem body. Nothing of the request counts as
// accepted; a producer's retry with the same ids is deduplicated. A queue
// that is unavailable for now (a cluster electing a leader) is logged as a
// warning, any other publish error as an error.
func (h *handler) unavailable(w http.ResponseWriter, r *http.Request, source string, events int, err error) {
	wait, detail := time.Second, "queue unavailable, nothing accepted; retry"
	var ra retryAfterError
	if errors.As(err, &ra) {
		wait = max(time.Second, ra.RetryAfter())
		// The broker's own words stay in the log.
		detail = fmt.Sprintf("queue unavailable for now (a cluster electing a leader, or no server reachable), nothing accepted; retry after %s", wait.Round(time.Second))
		h.opts.Logger.WarnContext(r.Context(), "ingest: queue unavailable; nothing accepted",
			slog.String("source", source), slog.Int("events", events), slog.Any("error", err))
	} else {
		h.opts.Logger.ErrorContext(r.Context(), "ingest: publish failed; nothing accepted",
			slog.String("source", source), slog.Int("events", events), slog.Any("error", err))
	}
	w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
	p := problem.New(http.StatusServiceUnavailable, detail)
	p.Instance = r.URL.Path
	problem.Write(w, p)
}

func (h *handler) reject(w http.ResponseWriter, r *http.Request, p *problem.Problem) {
	p.Instance = r.URL.Path
	h.opts.Logger.DebugContext(r.Context(), "ingest: request rejected",
		slog.String("path", r.URL.Path), slog.Int("status", p.Status), slog.String("problem", p.Error()))
	if p.Status == http.StatusRequestEntityTooLarge {
		// The rest of an oversized body is not read: do not reuse the connection.
		w.Header().Set("Connection", "close")
	}
	problem.Write(w, p)
}

// decodeBody bounds r.Body to maxBody and, for a body sent with
// Content-Encoding gzip, replaces it with the decoded stream, bounded to
// maxBody too: the limit holds for the body as sent and after
// decompression, and the decoder is read through the bound, so a small
// body that inflates to gigabytes costs maxBody of memory at most before
// it gets 413. Any other coding gets a 415 problem (with Accept-Encoding
// naming gzip, RFC 9110 section 15.5.16).
func decodeBody(w http.ResponseWriter, r *http.Request, maxBody int64) *problem.Problem {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	var codings []string
	for _, v := range r.Header.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	switch {
	case len(codings) == 0:
		return nil
	case len(codings) == 1 && (codings[0] == "gzip" || codings[0] == "x-gzip"):
	default:
		w.Header().Set("Accept-Encoding", "gzip")
		return problem.New(http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Encoding %q is not supported: send the body as it is, or compressed with gzip alone", strings.Join(codings, ", ")))
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than the limit of %d bytes", mbe.Limit))
		}
		return problem.New(http.StatusBadRequest, "Content-Encoding gzip: the body is not gzip data: "+err.Error())
	}
	r.Body = http.MaxBytesReader(w, gzipBody{zr, r.Body}, maxBody)
	return nil
}

// gzipBody reads a gzip decoder and closes the body it decodes.
type gzipBody struct {
	*gzip.Reader
	wire io.Closer
}

// Read reads decoded bytes; corrupt gzip data is an error Parse reports as
// a bad body (400).
func (g gzipBody) Read(p []byte) (int, error) {
	n, err := g.Reader.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		if _, ok := errors.AsType[*http.MaxBytesError](err); !ok {
			err = fmt.Errorf("decoding gzip body: %w", err)
		}
	}
	return n, err
}

func (g gzipBody) Close() error {
	_ = g.Reader.Close()
	return g.wire.Close()
}

// sourceName returns the {source} path value, or parses it from a path
// ending in /sources/{source}/events.
func sourceName(r *http.Request) (string, bool) {
	if s := r.PathValue("source"); s != "" {
		return s, true
	}
	parts := strings.Split(strings.TrimSuffix(r.URL.Path, "/"), "/")
	n := len(parts)
	if n < 3 || parts[n-1] != "events" || parts[n-3] != "sources" || parts[n-2] == "" {
		return "", false
	}
	return parts[n-2], true
}

// Fill completes parsed events for source: an event without an id gets a
// new ULID, one without a source gets source, one without a time gets now.
// Producer-given ids are kept (they are idempotency keys). Fill returns the
// ids in order. It is safe for concurrent use.
func Fill(events []sdk.Event, source string, now time.Time) []string {
	now = now.UTC()
	ids := make([]string, len(events))
	for i := range events {
		ev := &events[i]
		if ev.ID == "" {
			// ulid.Make draws from a process-wide monotonic source under a
			// lock: unique and sortable across concurrent requests.
			ev.ID = ulid.Make().String()
		}
		if ev.Source == "" {
			ev.Source = source
		}
		if ev.Time.IsZero() {
			ev.Time = now
		}
		ids[i] = ev.ID
	}
	return ids
}

var _ http.Handler = (*handler)(nil)
