package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/internal/testenv"
)

const testPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// newTestPostgres opens a PostgreSQL queue in a new namespace and drops
// the namespace's tables when the test ends.
func newTestPostgres(t *testing.T) *Postgres {
	t.Helper()
	testenv.NeedService(t, "127.0.0.1:5432")
	ns := testNamespace()
	cleanPostgres(t, ns) // registered first: runs after q.Close
	q, err := NewPostgres(context.Background(), PostgresOptions{
		URL: testPostgresURL, Namespace: ns, PollInterval: 50 * time.Millisecond, AckDeadline: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// cleanPostgres drops what namespace ns left on the server, after the test.
func cleanPostgres(t *testing.T, ns string) {
	t.Cleanup(func() {
		if err := DropNamespace(context.Background(), "postgres", testPostgresURL, ns); err != nil {
			t.Error(err)
		}
	})
}

// Rows every group acknowledged are deleted; a group that is behind keeps
// them.
func TestPostgresPrune(t *testing.T) {
	t.Parallel()
	q := newTestPostgres(t)
	topic := SinkTopic("prune")
	ctx := context.Background()
	if err := q.Provision(ctx, []string{topic}); err != nil {
		t.Fatal(err)
	}
	a, _ := q.Subscriber("a", 1)
	b, _ := q.Subscriber("b", 1)
	for _, s := range []message.Subscriber{a, b} {
		if err := s.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
			t.Fatal(err)
		}
	}
	publishN(t, q, topic, 10)
	rows := func() int {
		var n int
		if err := q.db.QueryRow(`SELECT count(*) FROM ` + q.schema.MessagesTable(topic)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	consumeAll(t, a, topic, 10)
	q.prune(ctx)
	if n := rows(); n != 10 {
		t.Fatalf("group b has not consumed yet, table has %d rows, want 10", n)
	}
	consumeAll(t, b, topic, 10)
	testenv.Eventually(t, 10*time.Second, "table pruned to 0 rows", func() bool {
		q.prune(ctx)
		return rows() == 0
	})
}

// Topic names escaped by topicSafe and names beyond PostgreSQL's 63-byte
// identifier limit map to distinct tables.
func TestPostgresTopicNames(t *testing.T) {
	t.Parallel()
	q := newTestPostgres(t)
	long := strings.Repeat("x", 80)
	topics := []string{SinkTopic("a b/ü"), SinkTopic(long + "1"), SinkTopic(long + "2")}
	s, _ := q.Subscriber("g", 1)
	defer s.Close()
	for _, topic := range topics {
		if err := s.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
	}
	for _, topic := range topics {
		want := publishN(t, q, topic, 1)
		got := consumeAll(t, s, topic, 1)
		for id := range want {
			if !got[id] {
				t.Fatalf("%s: got %v, want %v", topic, got, want)
			}
		}
	}
	if _, err := sqlTopic(`x"; DROP TABLE y`); err == nil {
		t.Fatal("a topic with quotes was accepted")
	}
}

func TestPostgresOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    PostgresOptions
		want string
	}{
		{"no url", PostgresOptions{}, "queue.url"},
		{"bad namespace", PostgresOptions{URL: testPostgresURL, Namespace: "a.b"}, "queue.namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPostgres(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestPostgresPublishAt checks delayed messages (testPublishAt), and that
// two instances moving due messages of one namespace publish each once.
func TestPostgresPublishAt(t *testing.T) {
	q := newTestPostgres(t)
	const topic = "hookbus.out.delayed"
	ch := testPublishAt(t, q, q, topic)

	other, err := NewPostgres(context.Background(), PostgresOptions{URL: testPostgresURL, Namespace: q.opts.Namespace, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const n = 300
	var msgs []*message.Message
	for i := range n {
		msgs = append(msgs, message.NewMessage(fmt.Sprint("m", i), []byte(`{}`)))
	}
	if err := q.PublishAt(topic, time.Now(), msgs...); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	timeout := time.After(testenv.Timeout(30 * time.Second))
	for len(got) < n {
		select {
		case m := <-ch:
			got[m.UUID]++
			m.Ack()
		case <-timeout:
			t.Fatalf("got %d of %d", len(got), n)
		}
	}
	// Anything published twice would arrive within a few move intervals.
	extra := time.After(time.Second)
	for done := false; !done; {
		select {
		case m := <-ch:
			got[m.UUID]++
			m.Ack()
		case <-extra:
			done = true
		}
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("%s arrived %d times", id, c)
		}
	}
	if left, err := q.Delayed(context.Background()); err != nil || left != 0 {
		t.Errorf("delayed left: %d (%v)", left, err)
	}
}

// TestPostgresMoverSetsUpTopicsBeforeLocking: a due message for a topic
// this process has not set up, while another instance holds the schema
// lock and waits for the delayed table. The mover must not hold the
// table's rows while it waits for that lock, or every PublishAt stalls.
func TestPostgresMoverSetsUpTopicsBeforeLocking(t *testing.T) {
	q := newTestPostgres(t)
	ctx := context.Background()
	if err := q.Provision(ctx, []string{"hookbus.out.known"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "delayed table", q.delayReady.Load)
	// Another instance starting: it holds the schema lock.
	conn, err := q.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('hookbus queue schema'))`); err != nil {
		t.Fatal(err)
	}
	if _, err := q.db.ExecContext(ctx, `INSERT INTO `+q.delayTable()+` (id, topic, due_at, payload, metadata) VALUES ('x', 'hookbus.out.fresh', now(), '\x7b7d', '{}')`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * pgDelayMoveInterval) // the mover meets the new topic
	// Meanwhile the other instance touches the delayed table, as its
	// CREATE INDEX IF NOT EXISTS would, then lets go of the lock.
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := tx.ExecContext(lctx, `LOCK TABLE `+q.delayTable()+` IN SHARE MODE`); err != nil {
		t.Fatalf("the mover holds the delayed table's rows while waiting for the schema lock: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the message for the new topic moved", func() bool {
		n, err := q.Delayed(ctx)
		return err == nil && n == 0
	})
}

// TestPostgresDropNamespaceKeepsLongerOnes: dropping "ns" leaves "ns_eu".
func TestPostgresDropNamespaceKeepsLongerOnes(t *testing.T) {
	testenv.NeedService(t, "127.0.0.1:5432")
	ns := testNamespace()
	cleanPostgres(t, ns+"_eu")
	other, err := NewPostgres(context.Background(), PostgresOptions{URL: testPostgresURL, Namespace: ns + "_eu"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.PublishAt("hookbus.out.s", time.Now().Add(time.Hour), message.NewMessage("r1", []byte(`{}`))); err != nil {
		t.Fatal(err)
	}
	if err := DropNamespace(context.Background(), "postgres", testPostgresURL, ns); err != nil {
		t.Fatal(err)
	}
	if n, err := other.Delayed(context.Background()); err != nil || n != 1 {
		t.Errorf("dropping namespace %q touched %q: delayed %d, %v", ns, ns+"_eu", n, err)
	}
}

// TestPostgresRetireDropsTables: a drained retry topic leaves no table,
// unless another group still reads it.
func TestPostgresRetireDropsTables(t *testing.T) {
	t.Parallel()
	q := newTestPostgres(t)
	ctx := context.Background()
	topic := RetryTopic("x")
	for _, g := range []string{RetryGroup("x"), "other"} {
		s, _ := q.Subscriber(g, 1)
		if err := s.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
			t.Fatal(err)
		}
	}
	publishN(t, q, topic, 3)
	exists := func() bool {
		var ok bool
		if err := q.db.QueryRow(`SELECT to_regclass($1) IS NOT NULL`, q.schema.MessagesTable(topic)).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	drain := func(want int) {
		if n, err := DrainRetryTopic(ctx, q, "x", func(*message.Message) error { return nil }); n != want || err != nil {
			t.Fatalf("drain: %d, %v; want %d", n, err, want)
		}
	}
	drain(3)
	if !exists() {
		t.Fatal("the table was dropped while another group reads it")
	}
	if _, err := q.db.Exec(`DELETE FROM `+q.offsets.MessagesOffsetsTable(topic)+` WHERE consumer_group = $1`, q.opts.Namespace+".other"); err != nil {
		t.Fatal(err)
	}
	// A new retry group starts at the table's start: it gets the three
	// rows the other group kept, and three more.
	s, _ := q.Subscriber(RetryGroup("x"), 1)
	if err := s.(message.SubscribeInitializer).SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	publishN(t, q, topic, 3)
	drain(6)
	if exists() {
		t.Fatal("the retry topic's table is left after the drain")
	}
}
