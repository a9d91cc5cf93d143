package queue_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/core/queue/queuetest"
	"github.com/hookbus/hookbus/internal/testenv"
)

// Every driver runs the queue contract (queuetest.Run): Watermill's
// universal suite and hookbus's own.

const (
	natsURL     = "nats://127.0.0.1:4222"
	redisURL    = "redis://127.0.0.1:6379/0"
	postgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

func TestMemoryContract(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q := queue.NewMemoryWith(queue.MemoryOptions{CloseGrace: 2 * time.Second})
		t.Cleanup(func() { q.Close() })
		return q
	}, queuetest.Features{SingleInstance: true})
}

func TestJetStreamContract(t *testing.T) {
	dir := t.TempDir()
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := queue.NewEmbeddedJetStream(context.Background(), queue.JetStreamOptions{DataDir: dir, CloseGrace: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}, queuetest.Features{SingleInstance: true, PrepareRetryTopic: legacyRetryStream("HOOKBUS")})
}

func TestNATSContract(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:4222")
	ns := queuetest.Namespace()
	dropAfter(t, "nats", natsURL, ns)
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := queue.NewJetStream(context.Background(), queue.JetStreamOptions{
			URL: natsURL, Prefix: queue.JetStreamPrefix(ns), CloseGrace: 200 * time.Millisecond,
			// Nacks and hand-backs of a stopping subscription now come
			// back at once, but a message the server was sending to its
			// last pull request as it stopped still comes back only after
			// AckWait (late, never lost: README "Changing a running hookbus"); the suite
			// waits 15 s for it (TestSubscribeCtx), so not the default 30 s.
			AckWait: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}, queuetest.Features{PrepareRetryTopic: legacyRetryStream(queue.JetStreamPrefix(ns))})
}

func TestRedisContract(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:6379")
	ns := queuetest.Namespace()
	dropAfter(t, "redis", redisURL, ns)
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := queue.NewRedis(context.Background(), queue.RedisOptions{
			URL: redisURL, Namespace: ns, ClaimIdle: 2 * time.Second, ClaimInterval: 300 * time.Millisecond, CloseGrace: 2 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}, queuetest.Features{
		// In order only with one consumer and maxInFlight 1.
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		UniversalMaxInFlight:                1,
	})
}

func TestPostgresContract(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:5432")
	ns := queuetest.Namespace()
	dropAfter(t, "postgres", postgresURL, ns)
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := queue.NewPostgres(context.Background(), queue.PostgresOptions{
			URL: postgresURL, Namespace: ns, PollInterval: 50 * time.Millisecond, AckDeadline: 5 * time.Second, CloseGrace: 2 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}, queuetest.Features{
		// A group's position is locked while a message is in flight, so
		// messages are in order even with many consumers.
		GuaranteedOrder:      true,
		UniversalMaxInFlight: 1,
	})
}

// dropAfter removes what the namespace left on a shared server once the
// test (and every queue it opened) is done.
func dropAfter(t *testing.T, driver, url, ns string) {
	t.Cleanup(func() {
		if err := queue.DropNamespace(context.Background(), driver, url, ns); err != nil {
			t.Error(err)
		}
	})
}

// legacyRetryStream creates the retry stream as versions that pumped
// retries through it did (NewJetStream no longer does).
func legacyRetryStream(prefix string) func(*testing.T, queue.Queue) {
	return func(t *testing.T, q queue.Queue) {
		js, err := jetstream.New(q.(interface{ Conn() *nats.Conn }).Conn())
		if err != nil {
			t.Fatal(err)
		}
		subject := "hookbus.retry.>"
		if prefix != "HOOKBUS" {
			subject = strings.ToLower(prefix) + "." + subject
		}
		if _, err := js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{
			Name: prefix + "_RETRY", Subjects: []string{subject},
			Storage: jetstream.FileStorage, Retention: jetstream.InterestPolicy, Duplicates: 2 * time.Minute,
		}); err != nil {
			t.Fatal(err)
		}
	}
}
