package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/internal/testenv"
)

// clusterPrefix is a stream prefix of the test's own.
func clusterPrefix(name string) string {
	return fmt.Sprintf("%s%d", name, time.Now().UnixNano()%1e9)
}

// TestJetStreamReplicasNeedACluster: more than one replica on a server
// that is not part of a cluster is refused before anything is created,
// naming queue.replicas.
func TestJetStreamReplicasNeedACluster(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:4222")
	prefix := clusterPrefix("NOCLU")
	_, err := NewJetStream(context.Background(), JetStreamOptions{URL: "nats://127.0.0.1:4222", Prefix: prefix, Replicas: 3})
	if err == nil || !strings.Contains(err.Error(), "queue.replicas: 3 replicas need a NATS JetStream cluster") || !strings.Contains(err.Error(), "not part of a cluster") {
		t.Fatalf("err = %v, want a queue.replicas error saying the server is not clustered", err)
	}
	// Nothing was created.
	q, err := NewJetStream(context.Background(), JetStreamOptions{URL: "nats://127.0.0.1:4222", Prefix: prefix + "X"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dropJetStream(context.Background(), "nats://127.0.0.1:4222", prefix+"X"); q.Close() }()
	if _, err := q.js.Stream(context.Background(), prefix+"_IN"); err == nil {
		t.Errorf("stream %s_IN was created", prefix)
	}
}

// TestJetStreamReplicasRaisedOnExistingStreams: a namespace created with
// one replica is moved to three when it is opened with queue.replicas 3:
// its streams and buckets are updated, their consumers follow, and a
// message queued before is still delivered.
func TestJetStreamReplicasRaisedOnExistingStreams(t *testing.T) {
	cl := testenv.StartNATSCluster(t, 3)
	ctx := context.Background()
	prefix := clusterPrefix("RAISE")
	open := func(replicas int) *JetStream {
		t.Helper()
		q, err := NewJetStream(ctx, JetStreamOptions{URL: cl.URLs(), Prefix: prefix, Replicas: replicas, CloseGrace: time.Second})
		if err != nil {
			t.Fatalf("replicas %d: %v", replicas, err)
		}
		return q
	}
	topic := SourceTopic("shop")
	q := open(1)
	sub, _ := q.Subscriber("g", 8)
	if err := sub.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(topic, message.NewMessage("before", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	q.Close()

	q = open(3)
	defer q.Close()
	for _, s := range []string{"_IN", "_OUT", "_DEAD", "_IDS", "_NACKS"} {
		name := prefix + s
		if s == "_IDS" || s == "_NACKS" {
			name = "KV_" + name
		}
		testenv.Eventually(t, time.Minute, name+" on three servers", func() bool {
			st, err := q.js.Stream(ctx, name)
			if err != nil {
				return false
			}
			info := st.CachedInfo()
			return info.Config.Replicas == 3 && info.Cluster != nil && len(info.Cluster.Replicas) == 2
		})
	}
	sub, _ = q.Subscriber("g", 8)
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if m.UUID != "before" {
			t.Errorf("got %s, want the message queued before", m.UUID)
		}
		m.Ack()
	case <-time.After(testenv.Timeout(30 * time.Second)):
		t.Fatal("the message queued before the change was not delivered")
	}
	// The consumer (replicas 0: its stream's) follows the stream.
	testenv.Eventually(t, time.Minute, "the consumer on three servers", func() bool {
		c, err := q.js.Consumer(ctx, prefix+"_IN", consumerName(prefix, "g", topic))
		if err != nil {
			return false
		}
		ci := c.CachedInfo().Cluster
		return ci != nil && ci.Leader != "" && len(ci.Replicas) == 2
	})
}

// TestJetStreamUnavailableWithoutLeader: with two of three nodes gone the
// streams have no leader: Publish fails with an error that wraps
// ErrUnavailable (with a retry hint) and Health reports it; once the nodes
// are back both recover by themselves.
func TestJetStreamUnavailableWithoutLeader(t *testing.T) {
	cl := testenv.StartNATSCluster(t, 3)
	ctx := context.Background()
	q, err := NewJetStream(ctx, JetStreamOptions{URL: cl.URLs(), Prefix: clusterPrefix("NOLEAD"), Replicas: 3, CloseGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	topic := SourceTopic("shop")
	if err := q.Publish(topic, message.NewMessage("ok", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	if err := q.Health(ctx); err != nil {
		t.Fatalf("Health before the fault: %v", err)
	}
	cl.Kill(0)
	cl.Kill(1)
	var perr error
	testenv.Eventually(t, time.Minute, "Publish refused as unavailable", func() bool {
		perr = q.Publish(topic, message.NewMessage("during", []byte("x")))
		return perr != nil
	})
	wait, ok := RetryAfter(perr)
	if !errors.Is(perr, ErrUnavailable) || !ok || wait <= 0 {
		t.Errorf("Publish error %v: not an ErrUnavailable with a retry hint (%v, %v)", perr, wait, ok)
	}
	testenv.Eventually(t, 30*time.Second, "Health reporting the queue unavailable", func() bool {
		return errors.Is(q.Health(ctx), ErrUnavailable)
	})
	t.Logf("publish: %v; health: %v", perr, q.Health(ctx))
	cl.Start(0)
	cl.Start(1)
	testenv.Eventually(t, 2*time.Minute, "Publish accepted again", func() bool {
		return q.Publish(topic, message.NewMessage("after", []byte("x"))) == nil
	})
	testenv.Eventually(t, time.Minute, "Health ok again", func() bool { return q.Health(ctx) == nil })
}

// TestJSUnavailableSortsErrors: the errors of a cluster without a leader
// (or of no server at all) are unavailable; a request the server refuses
// is not.
func TestJSUnavailableSortsErrors(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("publish: %w", errNoAck), true},
		{context.DeadlineExceeded, true},
		{errors.New("invalid subject"), false},
		{nil, false},
	} {
		if got := jsUnavailable(tt.err); got != tt.want {
			t.Errorf("jsUnavailable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if err := unavailable(errNoAck); !errors.Is(err, ErrUnavailable) || !errors.Is(err, errNoAck) {
		t.Errorf("unavailable(errNoAck) = %v: wraps neither ErrUnavailable nor the cause", err)
	}
}
