package queue

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/testenv"
)

func openEmbedded(t *testing.T, dir string) *JetStream {
	t.Helper()
	q, err := NewJetStream(context.Background(), JetStreamOptions{DataDir: dir, CloseGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func withID(uuid, id string) *message.Message {
	m := message.NewMessage(uuid, []byte(`{}`))
	m.Metadata.Set(MetaDedupID, id)
	return m
}

// drain reads topic as group g until the sentinel arrives and returns the
// UUIDs before it.
func drainUntil(t *testing.T, q *JetStream, topic, sentinel string, want int) []string {
	t.Helper()
	s, _ := q.Subscriber("g", 8)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	// Until the sentinel and at least want messages came: a message handed
	// to a pull that was lost comes back only after the ack wait (30s),
	// after the sentinel (a known delay, see README "Queue drivers").
	var got []string
	sentinelSeen := false
	deadline := time.After(testenv.Timeout(90 * time.Second))
	for !sentinelSeen || len(got) < want {
		select {
		case m := <-ch:
			m.Ack()
			if m.UUID == sentinel {
				sentinelSeen = true
				continue
			}
			got = append(got, m.UUID)
		case <-deadline:
			t.Fatalf("sentinel seen %v, got %d of %d: %v", sentinelSeen, len(got), want, got)
		}
	}
	return got
}

// On the embedded server producer ids live in an SQLite file, not in the
// server's memory: an id accepted before a restart is still dropped
// after it, and no id bucket is created.
func TestEmbeddedProducerIDsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	topic := SourceTopic("ids")
	q := openEmbedded(t, dir)
	s, _ := q.Subscriber("g", 8)
	if err := s.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(topic, withID("first", "src/a")); err != nil {
		t.Fatal(err)
	}
	if _, err := q.js.KeyValue(context.Background(), "HOOKBUS_IDS"); err != jetstream.ErrBucketNotFound {
		t.Errorf("the embedded driver created an id bucket: %v", err)
	}
	s.Close()
	q.Close()
	if _, err := os.Stat(sqliteIDsFile(q.storeDir(), "HOOKBUS")); err != nil {
		t.Fatalf("no producer-id file: %v", err)
	}

	q = openEmbedded(t, dir)
	defer q.Close()
	if err := q.Publish(topic, withID("again", "src/a"), withID("other", "src/b")); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(topic, message.NewMessage("sentinel", []byte(`{}`))); err != nil {
		t.Fatal(err)
	}
	// In any order: the consumer hands out up to 8 at once.
	got := drainUntil(t, q, topic, "sentinel", 2)
	slices.Sort(got)
	if fmt.Sprint(got) != "[first other]" {
		t.Fatalf("delivered %v, want [first other]: src/a was accepted before the restart", got)
	}
}

// One id published by many requests at once, and twice within one batch,
// is delivered once: the claims serialise the lookup and the record.
func TestEmbeddedProducerIDPublishedAtOnce(t *testing.T) {
	q := openEmbedded(t, t.TempDir())
	defer q.Close()
	topic := SourceTopic("race")
	s, _ := q.Subscriber("g", 8)
	if err := s.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			// Each batch also holds an id of its own, twice.
			own := fmt.Sprintf("src/own-%d", i)
			if err := q.Publish(topic, withID(fmt.Sprintf("shared-%d", i), "src/shared"), withID(fmt.Sprintf("own-%d", i), own), withID(fmt.Sprintf("own-copy-%d", i), own)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := q.Publish(topic, message.NewMessage("sentinel", []byte(`{}`))); err != nil {
		t.Fatal(err)
	}
	got := drainUntil(t, q, topic, "sentinel", 17)
	shared, own := 0, 0
	for _, u := range got {
		switch {
		case strings.HasPrefix(u, "shared-"):
			shared++
		case strings.HasPrefix(u, "own-") && !strings.HasPrefix(u, "own-copy-"):
			own++
		default:
			t.Errorf("delivered %s: a second copy of an id within its batch", u)
		}
	}
	if shared != 1 || own != 16 {
		t.Fatalf("delivered %d copies of the shared id (want 1) and %d own ids (want 16): %v", shared, own, got)
	}
}

// Ids are forgotten after the window; a data dir of a version that kept
// them in the id bucket has that bucket consulted while it holds ids.
func TestEmbeddedProducerIDsExpireAndLegacyBucket(t *testing.T) {
	dir := t.TempDir()
	q := openEmbedded(t, dir)
	ctx := context.Background()
	ids := q.ids.(*sqliteIDs)
	if err := ids.remember(ctx, []string{"src/old"}); err != nil {
		t.Fatal(err)
	}
	if got := ids.seen(ctx, []string{"src/old", "src/new"}); !got[0] || got[1] {
		t.Fatalf("seen %v, want [true false]", got)
	}
	// A window on, a new generation starts; the first is kept, its ids
	// not yet a window old.
	start := ids.gens[len(ids.gens)-1].started
	if err := ids.rotate(ctx, start.Add(q.opts.DedupWindow)); err != nil {
		t.Fatal(err)
	}
	if err := ids.remember(ctx, []string{"src/later"}); err != nil {
		t.Fatal(err)
	}
	if got := ids.seen(ctx, []string{"src/old", "src/later"}); !got[0] || !got[1] || len(ids.gens) != 2 {
		t.Fatalf("after one rotation: seen %v in %d generations, want both in 2", got, len(ids.gens))
	}
	// Another window on, the first generation's ids are all older than it.
	if err := ids.rotate(ctx, start.Add(2*q.opts.DedupWindow)); err != nil {
		t.Fatal(err)
	}
	if got := ids.seen(ctx, []string{"src/old", "src/later"}); got[0] || !got[1] {
		t.Fatalf("after two rotations: seen %v, want [false true]", got)
	}
	// The bucket an older version wrote.
	kv, err := q.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "HOOKBUS_IDS", History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, idKey("src/legacy"), nil); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q = openEmbedded(t, dir)
	defer q.Close()
	if got := q.ids.seen(ctx, []string{"src/legacy", "src/new"}); !got[0] || got[1] {
		t.Fatalf("with an older version's bucket: seen %v, want [true false]", got)
	}
}
