package queue

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hookbus/hookbus/core/registry"
)

// OpenOptions are what a driver may need to open, from the queue.*
// configuration keys (and the few others a driver reads).
type OpenOptions struct {
	// DataDir is where the embedded driver keeps its files (data_dir).
	DataDir string
	// URL locates an external broker (queue.url).
	URL string
	// DedupWindow is queue.dedup_window.
	DedupWindow time.Duration
	// Namespace is queue.namespace.
	Namespace string
	// Replicas is queue.replicas (the nats driver's replica count; 0 or 1:
	// one copy).
	Replicas int
	// AckWait is queue.ack_wait (0: the driver's default).
	AckWait time.Duration
	// CloseGrace bounds the drain at Close (server.shutdown_timeout).
	CloseGrace time.Duration
	// Logger receives the driver's logs.
	Logger *slog.Logger
}

// Opener is a queue driver's constructor, registered as
// registry.QueueDriver.Open.
type Opener func(ctx context.Context, o OpenOptions) (Queue, error)

// The drivers register in this order, which `unknown driver` messages
// keep: the default first.
func init() {
	jetstream := func(ctx context.Context, o OpenOptions, url string) (Queue, error) {
		opts := JetStreamOptions{DataDir: o.DataDir, URL: url, DedupWindow: o.DedupWindow,
			Prefix: JetStreamPrefix(o.Namespace), Replicas: o.Replicas, AckWait: o.AckWait, CloseGrace: o.CloseGrace, Logger: o.Logger}
		if url != "" {
			opts.DataDir = ""
			return NewJetStream(ctx, opts)
		}
		return NewEmbeddedJetStream(ctx, opts)
	}
	for _, d := range []registry.QueueDriver{
		{Name: "embedded", UsesDataDir: true, Open: Opener(func(ctx context.Context, o OpenOptions) (Queue, error) {
			return jetstream(ctx, o, "")
		})},
		{Name: "nats", NeedsURL: true, Open: Opener(func(ctx context.Context, o OpenOptions) (Queue, error) {
			return jetstream(ctx, o, o.URL)
		})},
		{Name: "redis", NeedsURL: true, Open: Opener(func(ctx context.Context, o OpenOptions) (Queue, error) {
			return NewRedis(ctx, RedisOptions{URL: o.URL, Namespace: o.Namespace, CloseGrace: o.CloseGrace, Logger: o.Logger})
		})},
		{Name: "postgres", NeedsURL: true, Open: Opener(func(ctx context.Context, o OpenOptions) (Queue, error) {
			return NewPostgres(ctx, PostgresOptions{URL: o.URL, Namespace: o.Namespace, CloseGrace: o.CloseGrace, Logger: o.Logger})
		})},
		// A known name, so that a config asking for it is told why not.
		{Name: "kafka", Unsupported: "kafka is not supported yet; use embedded, nats, redis or postgres"},
		{Name: "memory", Open: Opener(func(_ context.Context, o OpenOptions) (Queue, error) {
			return NewMemoryWith(MemoryOptions{CloseGrace: o.CloseGrace}), nil
		})},
	} {
		registry.RegisterQueueDriver(d)
	}
}

// Open opens the queue driver registered in r (registry.Default when nil)
// under driver. An unknown or unsupported driver gives the registry's
// message ("unknown driver "x" (one of embedded, nats, …)").
func Open(ctx context.Context, r *registry.Registry, driver string, o OpenOptions) (Queue, error) {
	if r == nil {
		r = registry.Default
	}
	d, err := r.QueueDriver(driver)
	if err != nil {
		return nil, err
	}
	open, ok := d.Open.(Opener)
	if !ok {
		return nil, fmt.Errorf("queue driver %q: registered Open is a %T, not a queue.Opener", driver, d.Open)
	}
	return open(ctx, o)
}
