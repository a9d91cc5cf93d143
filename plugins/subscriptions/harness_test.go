package subscriptions

import (
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookbus/hookbus/core/deadletter"
	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/retry"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/sinkopts"
	"github.com/hookbus/hookbus/core/store"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

const pgURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// openStore opens a fresh store: SQLite under a temporary directory, or a
// schema of its own on the machine's PostgreSQL, dropped at the end.
func openStore(t *testing.T, driver string) *store.Store {
	t.Helper()
	ctx := context.Background()
	dsn := ""
	if driver == "postgres" {
		testenv.NeedService(t, "127.0.0.1:5432")
		schema := fmt.Sprintf("hbsubs_%d", time.Now().UnixNano())
		admin, err := sql.Open("pgx", pgURL)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
			admin.Close()
		})
		dsn = pgURL + "&search_path=" + schema
	}
	st, err := store.Open(ctx, driver, dsn, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openQueue opens a queue driver: "memory", "embedded" (in dir), "redis"
// or "postgres" (in namespace ns, dropped at the end).
func openQueue(t *testing.T, driver, dir, ns string) queue.Queue {
	t.Helper()
	ctx := context.Background()
	var q queue.Queue
	var err error
	switch driver {
	case "memory":
		q = queue.NewMemoryWith(queue.MemoryOptions{CloseGrace: 50 * time.Millisecond})
	case "embedded":
		q, err = queue.NewJetStream(ctx, queue.JetStreamOptions{DataDir: dir, CloseGrace: 50 * time.Millisecond})
	case "redis":
		testenv.NeedService(t, "127.0.0.1:6379")
		t.Cleanup(func() { _ = queue.DropNamespace(context.Background(), "redis", "redis://127.0.0.1:6379/0", ns) })
		q, err = queue.NewRedis(ctx, queue.RedisOptions{URL: "redis://127.0.0.1:6379/0", Namespace: ns, ClaimIdle: time.Minute, ClaimInterval: 200 * time.Millisecond, CloseGrace: 50 * time.Millisecond})
	case "postgres":
		testenv.NeedService(t, "127.0.0.1:5432")
		t.Cleanup(func() { _ = queue.DropNamespace(context.Background(), "postgres", pgURL, ns) })
		q, err = queue.NewPostgres(ctx, queue.PostgresOptions{URL: pgURL, Namespace: ns, PollInterval: 50 * time.Millisecond, AckDeadline: time.Minute, CloseGrace: 50 * time.Millisecond})
	default:
		t.Fatalf("unknown queue driver %q", driver)
	}
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// setup is what a test runs the sink with.
type setup struct {
	store, queue string // drivers; default sqlite and embedded
	config       string // the sink's config block, JSON
	schedule     []time.Duration
	maxInFlight  int
	// wrap, when set, is the store the sink is given, around the real one.
	wrap func(subscription.Store) subscription.Store
}

// harness is one hookbus engine with pipeline "p" from source "src" to the
// subscriptions sink "partners", on a real store and queue.
type harness struct {
	t       *testing.T
	st      *store.Store
	live    *subscription.Live
	changes *Changes
	q       queue.Queue
	qdir    string
	qns     string // the queue's namespace, kept across a restart
	m       *metrics.Metrics
	sink    *Sink
	engine  *pipeline.Engine
	cancel  context.CancelFunc
	s       setup
}

func start(t *testing.T, s setup) *harness {
	t.Helper()
	if s.store == "" {
		s.store = "sqlite"
	}
	if s.queue == "" {
		s.queue = "embedded"
	}
	if s.config == "" {
		s.config = `{"allow_private_networks": true}`
	}
	if s.schedule == nil {
		s.schedule = []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}
	}
	h := &harness{t: t, st: openStore(t, s.store), changes: &Changes{}, qdir: t.TempDir(), qns: fmt.Sprintf("t%d", time.Now().UnixNano()%1e12), m: metrics.New(), s: s}
	h.live = subscription.NewLive(h.st, subscription.LiveOptions{Poll: 50 * time.Millisecond, OnChange: h.changes.OnChange})
	if err := h.live.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.live.Close)
	h.open()
	t.Cleanup(h.close)
	return h
}

// open opens the queue and starts a sink and an engine on it.
func (h *harness) open() {
	t := h.t
	t.Helper()
	h.q = openQueue(t, h.s.queue, h.qdir, h.qns)
	h.sink = NewSink(sinkopts.Defaults()).(*Sink)
	var st subscription.Store = h.st
	if h.s.wrap != nil {
		st = h.s.wrap(h.st)
	}
	h.sink.Provision(Host{Sink: "partners", Index: h.live, Store: st, Changes: h.changes, Metrics: h.m})
	info, err := h.sink.Init(context.Background(), json.RawMessage(h.s.config))
	if err != nil {
		t.Fatal(err)
	}
	window := h.s.maxInFlight
	if window == 0 {
		window = info.MaxInFlight
	}
	e, err := pipeline.New(pipeline.Options{
		Queue: h.q, Metrics: h.m, DeadLetters: h.st, CloseTimeout: 2 * time.Second,
		Pipelines: []pipeline.Pipeline{{Name: "p", From: []string{"src"}, To: []string{"partners"}}},
		Sinks: map[string]pipeline.Sink{"partners": {Name: "partners", Sink: h.sink, Fanout: h.sink, MaxInFlight: window,
			Schedule: retry.Schedule{Delays: h.s.schedule}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h.engine, h.cancel = e, cancel
}

// close stops the engine and the queue (a restart opens them again).
func (h *harness) close() {
	if h.engine == nil {
		return
	}
	_ = h.engine.Close()
	h.cancel()
	_ = h.sink.Close(context.Background())
	if c, ok := h.q.(interface{ Close() error }); ok {
		_ = c.Close()
	}
	h.engine = nil
}

func (h *harness) app(id string) {
	h.t.Helper()
	if _, err := h.st.CreateApplication(context.Background(), subscription.Application{ID: id, Name: id}); err != nil {
		h.t.Fatal(err)
	}
}

// subscribe creates a subscription of app to r for types and waits until
// the live index has it.
func (h *harness) subscribe(app string, r *receiver, types []string, edit ...func(*subscription.Subscription)) subscription.Subscription {
	h.t.Helper()
	sub := subscription.Subscription{App: app, URL: r.url, EventTypes: types, Secrets: []subscription.Secret{{Value: r.secrets[0].String(), Created: time.Now()}}}
	for _, f := range edit {
		f(&sub)
	}
	sub, err := h.st.CreateSubscription(context.Background(), sub)
	if err != nil {
		h.t.Fatal(err)
	}
	h.seen(sub)
	return sub
}

// seen waits until the live index holds sub as it is now, or a later
// version (the sink may have recorded failing_since since).
func (h *harness) seen(sub subscription.Subscription) {
	h.t.Helper()
	testenv.Eventually(h.t, 10*time.Second, "the live index has subscription "+sub.ID, func() bool {
		got, ok := h.live.Index().Get(sub.ID)
		return ok && !got.Updated.Before(sub.Updated) && got.Disabled == sub.Disabled
	})
}

// change reads sub as stored now, applies f and writes it, again on the
// newer version when the sink wrote one meanwhile (failing_since): a
// write replaces only the version it read.
func (h *harness) change(sub subscription.Subscription, f func(*subscription.Subscription)) subscription.Subscription {
	h.t.Helper()
	for range 20 {
		cur := h.get(sub)
		f(&cur)
		out, err := h.st.UpdateSubscription(context.Background(), cur)
		if errors.Is(err, subscription.ErrChanged) {
			continue
		}
		if err != nil {
			h.t.Fatal(err)
		}
		h.seen(out)
		return out
	}
	h.t.Fatalf("subscription %s kept changing", sub.ID)
	return sub
}

func (h *harness) get(sub subscription.Subscription) subscription.Subscription {
	h.t.Helper()
	got, err := h.st.GetSubscription(context.Background(), sub.App, sub.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return got
}

func (h *harness) publish(evs ...sdk.Event) {
	h.t.Helper()
	if err := h.engine.Publish(context.Background(), "src", evs); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) deadLetters() []deadletter.DeadLetter {
	h.t.Helper()
	dls, err := h.st.ListDeadLetters(context.Background(), deadletter.Filter{Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	return dls
}

// event is an event of type typ for application app ("": none).
func event(id, typ, app, data string) sdk.Event {
	ev := sdk.Event{ID: id, Type: typ, Source: "shop", Data: json.RawMessage(data)}
	if app != "" {
		b, _ := json.Marshal(app)
		ev.Extensions = map[string]json.RawMessage{"application": b}
	}
	return ev
}

// arrival is one request a receiver took.
type arrival struct {
	id string
	at time.Time
	// verified[i]: the signature checks with the receiver's secret i.
	verified []bool
	body     []byte
	header   http.Header
}

// receiver is a loopback endpoint that checks Standard Webhooks
// signatures twice, independently of the sender's code: with core/signing
// and with the Standard Webhooks reference library. A signature counts as
// verified only when both accept it.
type receiver struct {
	url      string
	secrets  []signing.Secret
	std      []*standardwebhooks.Webhook
	disagree int // requests the two verifiers judged differently

	mu     sync.Mutex
	got    []arrival
	status func(id string, n int) int // answer to the n-th request for id (0: 200)
	hang   chan struct{}              // when set, requests wait for it to close
	// starts are the arrival times of the requests that hung.
	starts []time.Time
}

// newReceiver listens on loopback; it answers 401 to a request its first
// secret does not verify.
func newReceiver(t *testing.T, secrets ...string) *receiver {
	t.Helper()
	if len(secrets) == 0 {
		s, err := signing.GenerateSecret()
		if err != nil {
			t.Fatal(err)
		}
		secrets = []string{s}
	}
	r := &receiver{}
	for _, s := range secrets {
		sec, err := signing.ParseSecret(s)
		if err != nil {
			t.Fatal(err)
		}
		r.secrets = append(r.secrets, sec)
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		r.std = append(r.std, wh)
	}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.disagree > 0 {
			t.Errorf("core/signing and the Standard Webhooks library disagreed on %d signatures", r.disagree)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r}
	go srv.Serve(ln)
	t.Cleanup(func() {
		r.mu.Lock()
		if r.hang != nil {
			select {
			case <-r.hang:
			default:
				close(r.hang)
			}
		}
		r.mu.Unlock()
		srv.Close()
	})
	r.url = "http://" + ln.Addr().String() + "/hooks"
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// As a receiver's middleware would: the signature is checked over the
	// decoded body.
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = zr
	}
	body, _ := io.ReadAll(req.Body)
	a := arrival{id: req.Header.Get("webhook-id"), at: time.Now(), body: body, header: req.Header.Clone()}
	disagree := 0
	for i, sec := range r.secrets {
		err := signing.Verify(sec, a.id, req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature"), body, 10*time.Minute, time.Now())
		stdErr := r.std[i].Verify(body, req.Header)
		if (err == nil) != (stdErr == nil) {
			disagree++
		}
		a.verified = append(a.verified, err == nil && stdErr == nil)
	}
	r.mu.Lock()
	r.disagree += disagree
	hang := r.hang
	if hang != nil {
		r.starts = append(r.starts, time.Now())
	}
	r.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-req.Context().Done():
		}
		return
	}
	r.mu.Lock()
	r.got = append(r.got, a)
	n := 0
	for _, g := range r.got {
		if g.id == a.id {
			n++
		}
	}
	status := r.status
	r.mu.Unlock()
	if !a.verified[0] {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if status != nil {
		if code := status(a.id, n); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// ids are the webhook-ids of the requests taken, in order.
func (r *receiver) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.got))
	for i, a := range r.got {
		out[i] = a.id
	}
	return out
}

func (r *receiver) arrivals() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// closestHangs returns the shortest time between the arrivals of two
// consecutive hanging requests, and how many arrived. The server learns
// that a client gave up on a request only when it sees the connection
// close, which a busy machine may delay past the client's next request:
// arrival times, unlike the count of handlers still running, show
// whether the client sent a request before its previous one timed out.
func (r *receiver) closestHangs() (time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	closest := time.Duration(-1)
	for i := 1; i < len(r.starts); i++ {
		if d := r.starts[i].Sub(r.starts[i-1]); closest < 0 || d < closest {
			closest = d
		}
	}
	return closest, len(r.starts)
}

func (r *receiver) setStatus(f func(id string, n int) int) {
	r.mu.Lock()
	r.status = f
	r.mu.Unlock()
}
