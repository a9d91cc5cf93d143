// Package webhook is hookbus' built-in webhook sink: it POSTs each event
// (or, with `batch`, each batch of events as a JSON array) to one URL,
// signed the Standard Webhooks way over the body before any compression,
// and tells hookbus whether to count it delivered, retry it or
// dead-letter it.
//
// The sink never retries on its own; hookbus keeps the retry schedule
// (Config.Schedule) durable. The block's description is Config's tags; the
// package registers the type `webhook` in core/registry. Outbound connections go through the SSRF guard
// of core/netguard unless allow_private_networks is set.
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/deliveryformat"
	"github.com/hookbus/hookbus/core/netguard"
	"github.com/hookbus/hookbus/core/registry"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/core/statuspolicy"
	"github.com/hookbus/hookbus/internal/workers"
	"github.com/hookbus/hookbus/sdk"
)

// Name is the sink type in configuration (`type: webhook`).
const Name = "webhook"

// UserAgent is sent with every request.
const UserAgent = "hookbus/1"

// ReasonGone is the Reason of the Permanent result for an HTTP 410 answer:
// the receiver says the endpoint is gone for good (the subscriptions sink
// disables the subscription).
const ReasonGone = "HTTP 410 Gone"

const (
	// maxDrain is how much of a response body is read so the connection
	// can be reused; a longer body costs a new connection.
	maxDrain = 64 << 10
	// keepBody is how much of the response body an Attempt keeps: what
	// the delivery log keeps of it.
	keepBody = attempt.MaxResponseBody
	// reasonBody is how much of the response body goes into a Reason.
	reasonBody = 200
)

// Header names, as sent (Go canonicalises them; HTTP header names are
// case-insensitive).
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
)

// Webhook is the webhook sink. Use it through Init (as hookbus does) or
// New; the zero value is not ready until Init succeeds. It is safe for
// concurrent use.
type Webhook struct {
	cfg       Config
	secrets   []signing.Secret
	keys      []signing.SigningKey // Ed25519, for v1a entries
	header    http.Header          // custom headers plus content-type and user-agent
	transport *http.Transport
	client    *http.Client
	sem       chan struct{}
	workers   *workers.Pool
	// shared, when set, holds the shared sink settings hookbus took out of
	// the block before Init (see NewSink); they replace the block's.
	shared *sinkopts.Settings
}

func init() {
	registry.RegisterSink(registry.Sink{Name: Name, Spec: configSpec, New: NewSink})
}

// NewSink returns a sink for hookbus to Init with the block's rest, sized
// to the shared settings hookbus took out of it (its registered
// constructor).
func NewSink(s sinkopts.Settings) sdk.Sink { return &Webhook{shared: &s} }

// Attempt is the detail of one HTTP attempt, for delivery logs and metrics.
type Attempt struct {
	// Result is the sink's verdict; Result.StatusCode is the HTTP status
	// (0 when no response arrived).
	Result sdk.Result
	// Latency is the time from sending the request to the end of the
	// response body, or to the failure.
	Latency time.Duration
	// Err is the transport error when no response arrived (connection
	// refused, timeout, refused by the SSRF guard, ...).
	Err error
	// ResponseBody holds the first 4 KiB (attempt.MaxResponseBody) of the
	// response body.
	ResponseBody []byte
	// URL is where the request went and WebhookID its webhook-id (both
	// empty when no request was built).
	URL       string
	WebhookID string
	// RequestHeader is the request's header as sent, credentials
	// included: redact it (attempt.Redact) before it is shown or kept.
	RequestHeader http.Header
	// ResponseHeader is the response's header (nil without a response).
	ResponseHeader http.Header
}

// Detail is the attempt as the delivery log records it. Its headers are
// those sent and received, not yet redacted (the engine redacts them
// before it records them).
func (a Attempt) Detail() *attempt.Detail {
	d := &attempt.Detail{URL: a.URL, WebhookID: a.WebhookID, RequestHeaders: a.RequestHeader, ResponseHeaders: a.ResponseHeader,
		ResponseBody: a.ResponseBody}
	if a.Err != nil {
		d.Err = a.Result.Reason
	}
	return d
}

// New returns a ready sink for cfg. Zero optional fields get their defaults.
func New(cfg Config) (*Webhook, error) {
	w := &Webhook{}
	if err := w.setup(cfg); err != nil {
		return nil, err
	}
	return w, nil
}

// Init configures the sink from its `config` block (see Config).
func (w *Webhook) Init(_ context.Context, raw json.RawMessage) (sdk.SinkInfo, error) {
	cfg, err := ParseConfig(raw)
	if err != nil {
		return sdk.SinkInfo{}, err
	}
	if w.shared != nil {
		cfg.Settings = *w.shared
	}
	if err := w.setup(cfg); err != nil {
		return sdk.SinkInfo{}, err
	}
	return sdk.SinkInfo{MaxInFlight: cfg.MaxInFlight}, nil
}

// ValidateConfig checks a `config` block without opening anything.
func (w *Webhook) ValidateConfig(raw json.RawMessage) error {
	_, err := ParseConfig(raw)
	return err
}

// Describe returns the sink's manifest, with the JSON Schema of Config.
func (w *Webhook) Describe() sdk.Manifest {
	return sdk.Manifest{
		Name:         Name,
		Kinds:        []string{"sink"},
		ConfigSchema: configSpec.Schema(),
		Version:      "1",
	}
}

// Config returns the configuration in use, defaults applied.
func (w *Webhook) Config() Config { return w.cfg }

func (w *Webhook) setup(cfg Config) error {
	if err := configSpec.Complete(&cfg); err != nil {
		return err
	}
	secrets, err := cfg.secrets()
	if err != nil {
		return err
	}
	keys, err := cfg.signingKeys()
	if err != nil {
		return err
	}
	h := make(http.Header, len(cfg.Headers)+2)
	for k, v := range cfg.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", UserAgent)
	tr := &http.Transport{
		// No proxy: the SSRF guard must see the real target address.
		Proxy:                 nil,
		DialContext:           netguard.Dialer(cfg.AllowPrivateNetworks).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          cfg.MaxInFlight,
		MaxIdleConnsPerHost:   cfg.MaxInFlight,
		MaxConnsPerHost:       cfg.MaxInFlight,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	*w = Webhook{
		cfg:       cfg,
		secrets:   secrets,
		keys:      keys,
		header:    h,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			// A redirect is reported, never followed: following it would
			// resend a signed event to a URL nobody configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sem:     make(chan struct{}, cfg.MaxInFlight),
		workers: workers.New(),
		shared:  w.shared,
	}
	return nil
}

// Schedule is the retry schedule hookbus should use for this sink.
func (w *Webhook) Schedule() retry.Schedule { return w.cfg.Schedule() }

// Deliver POSTs every delivery of the batch, at most max_in_flight
// requests at once (shared by all concurrent calls), and returns their
// results in order. With `batch` set, the deliveries go in as few
// requests as batch.max_events and batch.max_bytes allow (see
// DeliverBatchDetailed). When ctx ends, deliveries not finished are Retry.
func (w *Webhook) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	if w.cfg.Batch.On() {
		res, _ := w.DeliverBatchDetailed(ctx, batch)
		return res
	}
	results := make([]sdk.Result, len(batch))
	var wg sync.WaitGroup
	for i := range batch {
		if !w.acquire(ctx) {
			for j := i; j < len(batch); j++ {
				results[j] = interrupted(ctx)
			}
			break
		}
		if len(batch) == 1 {
			results[i] = w.attempt(ctx, batch[i]).Result
			w.release()
			break
		}
		wg.Add(1)
		w.workers.Go(func() {
			defer wg.Done()
			defer w.release()
			results[i] = w.attempt(ctx, batch[i]).Result
		})
	}
	wg.Wait()
	return results
}

// BatchPolicy is the sink's `batch` block (off without one): the engine
// gathers deliveries for the sink by it (pipeline.BatchingSink).
func (w *Webhook) BatchPolicy() batching.Policy { return w.cfg.Batch }

// DeliverBatchDetailed delivers ds and tells, per delivery, the result and
// the detail of the request that carried it (see DeliverBatch).
func (w *Webhook) DeliverBatchDetailed(ctx context.Context, ds []sdk.Delivery) ([]sdk.Result, []*attempt.Detail) {
	as := w.DeliverBatch(ctx, ds)
	results := make([]sdk.Result, len(ds))
	details := make([]*attempt.Detail, len(ds))
	var last *Attempt
	for i := range as {
		results[i] = as[i].Result
		if as[i].URL == "" {
			continue // no request was made
		}
		if last != nil && as[i].WebhookID == last.WebhookID {
			details[i] = details[i-1] // the same request
			continue
		}
		last, details[i] = &as[i], as[i].Detail()
	}
	return results, details
}

// DeliverBatch delivers ds and returns, per delivery, the attempt of the
// request that carried it. With `batch` set, the deliveries go as JSON
// arrays, in order, each request holding up to batch.max_events of them
// and batch.max_bytes of body (an event bigger than that alone); a
// request's attempt is that of every event it carried, its webhook-id
// batching.ID of their ids. An event the format cannot carry is
// Permanent on its own, not sent. Without `batch`, each delivery is a
// request of its own, as Deliver sends it.
func (w *Webhook) DeliverBatch(ctx context.Context, ds []sdk.Delivery) []Attempt {
	out := make([]Attempt, len(ds))
	var wg sync.WaitGroup
	run := func(f func()) {
		wg.Add(1)
		w.workers.Go(func() {
			defer wg.Done()
			defer w.release()
			f()
		})
	}
	if !w.cfg.Batch.On() || w.client == nil {
		for i := range ds {
			if !w.acquire(ctx) {
				out[i] = Attempt{Result: interrupted(ctx), Err: ctx.Err()}
				continue
			}
			run(func() { out[i] = w.attempt(ctx, ds[i]) })
		}
		wg.Wait()
		return out
	}
	for _, chunk := range w.chunks(ds, out) {
		if !w.acquire(ctx) {
			for _, i := range chunk.index {
				out[i] = Attempt{Result: interrupted(ctx), Err: ctx.Err()}
			}
			continue
		}
		run(func() {
			msg, err := deliveryformat.JoinBatch(deliveryformat.Format(w.cfg.Format), chunk.items)
			var a Attempt
			if err != nil {
				a = permanent(err.Error())
			} else {
				a = w.send(ctx, batching.ID(chunk.ids), msg)
			}
			for _, i := range chunk.index {
				out[i] = a
			}
		})
	}
	wg.Wait()
	return out
}

// chunk is one request of a batch: the indexes of its deliveries, their
// event ids and their encoded items.
type chunk struct {
	index []int
	ids   []string
	items [][]byte
	bytes int
}

// chunks encodes ds and cuts them, in order, into requests within
// batch.max_events and batch.max_bytes. A delivery that cannot be sent
// gets its Permanent attempt in out and is in no chunk.
func (w *Webhook) chunks(ds []sdk.Delivery, out []Attempt) []*chunk {
	p := w.cfg.Batch
	f := deliveryformat.Format(w.cfg.Format)
	var chunks []*chunk
	var cur *chunk
	for i, d := range ds {
		if d.Event.ID == "" {
			out[i] = permanent("event has no id; a batch's webhook-id needs it")
			continue
		}
		msg, err := deliveryformat.Encode(f, d.Event, d.Raw)
		if err != nil {
			out[i] = permanent(err.Error())
			continue
		}
		if cur != nil && (len(cur.index) >= p.MaxEvents ||
			deliveryformat.BatchSize(len(cur.index)+1, cur.bytes+len(msg.Body)) > p.MaxBytes) {
			cur = nil
		}
		if cur == nil {
			cur = &chunk{}
			chunks = append(chunks, cur)
		}
		cur.index = append(cur.index, i)
		cur.ids = append(cur.ids, d.Event.ID)
		cur.items = append(cur.items, msg.Body)
		cur.bytes += len(msg.Body)
	}
	return chunks
}

// DeliverOne POSTs one delivery (within max_in_flight) and returns its result.
func (w *Webhook) DeliverOne(ctx context.Context, d sdk.Delivery) sdk.Result {
	return w.DeliverAttempt(ctx, d).Result
}

// DeliverAttempt is DeliverOne with the detail of the attempt.
func (w *Webhook) DeliverAttempt(ctx context.Context, d sdk.Delivery) Attempt {
	if !w.acquire(ctx) {
		return Attempt{Result: interrupted(ctx), Err: ctx.Err()}
	}
	defer w.release()
	return w.attempt(ctx, d)
}

// DeliverDetailed POSTs one delivery (within max_in_flight) and returns
// its result with the detail of the attempt (pipeline.DetailedSink).
func (w *Webhook) DeliverDetailed(ctx context.Context, d sdk.Delivery) (sdk.Result, *attempt.Detail) {
	a := w.DeliverAttempt(ctx, d)
	return a.Result, a.Detail()
}

// Close releases idle connections.
func (w *Webhook) Close(context.Context) error {
	if w.transport != nil {
		w.transport.CloseIdleConnections()
	}
	return nil
}

func (w *Webhook) acquire(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	if w.sem == nil {
		return true // not initialised; attempt reports it
	}
	select {
	case w.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *Webhook) release() {
	if w.sem != nil {
		<-w.sem
	}
}

func interrupted(ctx context.Context) sdk.Result {
	return sdk.Result{Outcome: sdk.Retry, Reason: "delivery interrupted: " + context.Cause(ctx).Error()}
}

func permanent(reason string) Attempt {
	return Attempt{Result: sdk.Result{Outcome: sdk.Permanent, Reason: reason}}
}

// attempt sends one request. webhook-id is the event ID, so it is the same
// on every retry of the event (receivers deduplicate on it).
func (w *Webhook) attempt(ctx context.Context, d sdk.Delivery) Attempt {
	if w.client == nil {
		return permanent("webhook sink used before Init")
	}
	if d.Event.ID == "" {
		return permanent("event has no id; webhook-id needs one")
	}
	// Raw is the event as hookbus holds it: the same bytes json.Marshal
	// would produce, sent as is in the json format.
	msg, err := deliveryformat.Encode(deliveryformat.Format(w.cfg.Format), d.Event, d.Raw)
	if err != nil {
		return permanent(err.Error())
	}
	return w.send(ctx, d.Event.ID, msg)
}

// send POSTs msg with webhook-id id, signed over msg.Body (before
// compression: what the receiver reads once it decoded the request).
func (w *Webhook) send(ctx context.Context, id string, msg deliveryformat.Message) Attempt {
	body := msg.Body
	wire, encoding := deliveryformat.Compress(deliveryformat.Compression(w.cfg.Compression), body)
	reqCtx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, w.cfg.URL, bytes.NewReader(wire))
	if err != nil {
		return permanent("building request: " + err.Error())
	}
	req.Header = w.header.Clone()
	if msg.ContentType != deliveryformat.MediaJSON {
		if msg.ContentType == "" {
			req.Header.Del("Content-Type")
		} else {
			req.Header["Content-Type"] = []string{msg.ContentType}
		}
	}
	for k, v := range msg.Header {
		req.Header[k] = v
	}
	if encoding != "" {
		req.Header["Content-Encoding"] = []string{encoding}
	}
	now := time.Now()
	req.Header[HeaderID] = []string{id}
	req.Header[HeaderTimestamp] = []string{strconv.FormatInt(now.Unix(), 10)}
	req.Header[HeaderSignature] = []string{signing.SignAll(w.secrets, w.keys, id, now, body)}

	start := time.Now()
	resp, err := w.client.Do(req)
	a := Attempt{URL: w.cfg.URL, WebhookID: id, RequestHeader: req.Header}
	if err != nil {
		a.Latency, a.Err = time.Since(start), err
		a.Result = w.transportFailure(ctx, reqCtx, err)
		return a
	}
	kept, _ := drain(resp.Body)
	resp.Body.Close()
	a.Latency, a.ResponseBody, a.ResponseHeader = time.Since(start), kept, resp.Header
	a.Result = w.judge(resp, kept, now)
	return a
}

// drain reads up to maxDrain bytes of body and returns the first keepBody.
func drain(body io.Reader) ([]byte, error) {
	var kept bytes.Buffer
	_, err := io.CopyN(&kept, body, keepBody)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return kept.Bytes(), err
	}
	_, err = io.CopyN(io.Discard, body, maxDrain-keepBody)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return kept.Bytes(), err
}

func (w *Webhook) judge(resp *http.Response, body []byte, now time.Time) sdk.Result {
	code := resp.StatusCode
	r := sdk.Result{StatusCode: code}
	withBody := func(prefix string) string {
		if s := snippet(body, reasonBody); s != "" {
			return prefix + ": " + s
		}
		return prefix
	}
	switch {
	case code >= 200 && code < 300:
		r.Outcome = sdk.OK
	case code >= 300 && code < 400:
		r.Outcome = sdk.Permanent
		r.Reason = fmt.Sprintf("HTTP %d: redirect not followed", code)
		if loc := resp.Header.Get("Location"); loc != "" {
			r.Reason += " (Location: " + snippet([]byte(loc), reasonBody) + ")"
		}
	case code >= 400 && code < 600:
		if w.cfg.Policy().Judge(code) == statuspolicy.Retry {
			r.Outcome = sdk.Retry
			r.Reason = withBody("HTTP " + strconv.Itoa(code))
			if ra, ok := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
				r.RetryAfter = min(ra, w.cfg.MaxRetryAfter)
			}
			break
		}
		r.Outcome = sdk.Permanent
		if code == http.StatusGone {
			r.Reason = ReasonGone
		} else {
			r.Reason = withBody("HTTP " + strconv.Itoa(code))
		}
	default:
		r.Outcome = sdk.Permanent
		r.Reason = fmt.Sprintf("HTTP %d: unexpected status", code)
	}
	return r
}

func (w *Webhook) transportFailure(parent, reqCtx context.Context, err error) sdk.Result {
	var blocked *netguard.BlockedError
	switch {
	case errors.As(err, &blocked):
		return sdk.Result{Outcome: sdk.Permanent, Reason: blocked.Error()}
	case parent.Err() != nil:
		return interrupted(parent)
	case errors.Is(reqCtx.Err(), context.DeadlineExceeded):
		return sdk.Result{Outcome: sdk.Retry, Reason: "timeout after " + w.cfg.Timeout.String()}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // drop the `Post "url":` prefix
	}
	return sdk.Result{Outcome: sdk.Retry, Reason: err.Error()}
}

// snippet makes a short, single-line, valid UTF-8 excerpt of b.
func snippet(b []byte, limit int) string {
	if len(b) > limit {
		b = b[:limit]
		// Drop a rune cut in half at the end.
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0; i++ {
			if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size != 1 {
				break
			}
			b = b[:len(b)-1]
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

var (
	_ sdk.Sink            = (*Webhook)(nil)
	_ sdk.ConfigValidator = (*Webhook)(nil)
	_ sdk.Describer       = (*Webhook)(nil)
)
