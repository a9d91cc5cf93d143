package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/internal/testenv"
)

func openEmbeddedDelayer(t *testing.T, dir string) *EmbeddedJetStream {
	t.Helper()
	q, err := NewEmbeddedJetStream(context.Background(), JetStreamOptions{DataDir: dir, CloseGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// Messages published for later wait on the delay stream, not in the sink
// consumer's pending state (which the server keeps in memory), and reach
// the topic once due, also when the process stopped meanwhile.
func TestEmbeddedPublishAtWaitsOnDiskAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	topic := SinkTopic("later")
	q := openEmbeddedDelayer(t, dir)
	s, _ := q.Subscriber("g", 8)
	if err := s.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	s.Close()
	const n = 50
	var msgs []*message.Message
	for i := range n {
		m := message.NewMessage(fmt.Sprintf("m%d", i), []byte(`{}`))
		m.Metadata.Set("k", fmt.Sprint(i))
		msgs = append(msgs, m)
	}
	due := time.Now().Add(2 * time.Second)
	if err := q.PublishAt(topic, due, msgs...); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cons, err := q.js.Consumer(ctx, q.opts.Prefix+"_OUT", consumerName(q.opts.Prefix, "g", topic))
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumPending != 0 || ci.NumAckPending != 0 {
		t.Fatalf("messages due later are on the sink's consumer: %d pending, %d unacknowledged", ci.NumPending, ci.NumAckPending)
	}
	info, err := q.delay.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("delay stream holds %d messages, want %d", info.State.Msgs, n)
	}
	q.Close()

	q = openEmbeddedDelayer(t, dir)
	defer q.Close()
	s, _ = q.Subscriber("g", 64)
	defer s.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Subscribe(sctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for len(got) < n {
		select {
		case m := <-ch:
			if now := time.Now(); now.Before(due) {
				t.Errorf("%s arrived %v before it was due", m.UUID, due.Sub(now))
			}
			if m.Metadata.Get(hdrDelayTopic) != "" {
				t.Errorf("%s carries the delay stream's topic header", m.UUID)
			}
			got[m.UUID] = m.Metadata.Get("k")
			m.Ack()
		case <-time.After(testenv.Timeout(30 * time.Second)):
			t.Fatalf("%d of %d delayed messages arrived after the restart", len(got), n)
		}
	}
	for i := range n {
		if got[fmt.Sprintf("m%d", i)] != fmt.Sprint(i) {
			t.Errorf("m%d arrived with k=%q", i, got[fmt.Sprintf("m%d", i)])
		}
	}
	testenv.Eventually(t, 10*time.Second, "moved messages purged from the delay stream", func() bool {
		info, err := q.delay.stream.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
}

// A message published for a second the mover is moving, or has moved,
// goes into a later second and is not lost with the purge.
func TestEmbeddedPublishAtDuringAMove(t *testing.T) {
	q := openEmbeddedDelayer(t, t.TempDir())
	defer q.Close()
	topic := SinkTopic("during")
	s, _ := q.Subscriber("g", 64)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	const rounds, per = 20, 20
	go func() {
		// Paced over several of the mover's rounds.
		pace := time.NewTicker(30 * time.Millisecond)
		defer pace.Stop()
		for r := range rounds {
			<-pace.C
			var msgs []*message.Message
			for i := range per {
				msgs = append(msgs, message.NewMessage(fmt.Sprintf("r%d-%d", r, i), []byte(`{}`)))
			}
			// Due now or just past: the second the mover is at.
			if err := q.PublishAt(topic, time.Now().Add(-time.Duration(r%3)*100*time.Millisecond), msgs...); err != nil {
				t.Error(err)
			}
		}
	}()
	got := map[string]bool{}
	for len(got) < rounds*per {
		select {
		case m := <-ch:
			got[m.UUID] = true
			m.Ack()
		case <-time.After(testenv.Timeout(30 * time.Second)):
			t.Fatalf("%d of %d messages arrived", len(got), rounds*per)
		}
	}
}
