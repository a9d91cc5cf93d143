package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EmbeddedJetStream is the embedded driver: JetStream in this process,
// which also holds retries back on disk (Delayer). A delayed nack keeps
// the message in its consumer's pending state in the server's memory until
// it is due, and the server reviews every pending message each time one is
// nacked: a million retries waiting for a dead endpoint would cost about
// 100 MB and a scan of a million entries per nack. The delay stream keeps
// them in its files instead, at the cost of one more write and read per
// retry.
//
// The external nats driver keeps delayed nacks: there several instances
// share the consumers, and the memory is the NATS server's.
type EmbeddedJetStream struct {
	*JetStream
}

// NewEmbeddedJetStream starts the embedded server under opts.DataDir (opts.URL
// must be empty) and returns the embedded driver.
func NewEmbeddedJetStream(ctx context.Context, opts JetStreamOptions) (*EmbeddedJetStream, error) {
	if opts.URL != "" {
		return nil, errors.New("embedded queue: no URL: the server runs in this process")
	}
	q, err := NewJetStream(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &EmbeddedJetStream{q}, nil
}

// PublishAt implements Delayer: msgs are stored on the delay stream now,
// under the second they are due in, and the mover publishes them to topic
// within delayMoveEvery of that second.
func (q *EmbeddedJetStream) PublishAt(topic string, due time.Time, msgs ...*message.Message) error {
	if q.delay == nil {
		return errors.New("queue: no delay stream")
	}
	return q.delay.publishAt(topic, due, msgs)
}

// The delay stream: a subject per due second and topic (delayPrefix +
// Unix seconds + "." + topic), the topic in a header too. Limits
// retention: a second's subjects are purged once its messages were moved.
const (
	delayPrefix    = "hookbus.delay."
	hdrDelayTopic  = "hookbus_delay_topic"
	delayMoveEvery = 200 * time.Millisecond
	// delayFetch is how many messages a move reads and publishes at once.
	delayFetch = 1000
)

// jsDelay is the delay stream and its mover.
type jsDelay struct {
	q      *JetStream
	stream jetstream.Stream
	// mu is held shared by each PublishAt while it publishes, and
	// exclusively by the mover while it advances horizon: once the mover
	// holds it, no publish into a second up to horizon is under way, and
	// every later one goes past it, so a second being moved gets no more
	// messages.
	mu      sync.RWMutex
	horizon int64
	bmu     sync.Mutex
	buckets map[int64]struct{} // seconds with messages waiting
	stop    chan struct{}
	done    chan struct{}
}

// openDelay creates the delay stream, learns which seconds hold messages
// (left by the last run) and starts the mover.
func (q *JetStream) openDelay(ctx context.Context) error {
	cfg := jetstream.StreamConfig{
		Name:      q.opts.Prefix + "_DELAY",
		Subjects:  []string{q.subject(delayPrefix + ">")},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		// Nothing is published with a message id here.
		Duplicates: time.Second,
	}
	st, err := q.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return fmt.Errorf("queue: create stream %s: %w", cfg.Name, err)
	}
	d := &jsDelay{q: q, stream: st, buckets: map[int64]struct{}{}, stop: make(chan struct{}), done: make(chan struct{})}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(q.subject(delayPrefix+">")))
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", cfg.Name, err)
	}
	for subj := range info.State.Subjects {
		if sec, _, ok := d.parse(subj); ok {
			d.buckets[sec] = struct{}{}
		}
	}
	q.delay = d
	go d.run()
	return nil
}

// subject is where messages for topic due in second sec wait.
func (d *jsDelay) subject(sec int64, topic string) string {
	return d.q.subject(delayPrefix + strconv.FormatInt(sec, 10) + "." + topic)
}

// secondFilter matches every subject of second sec.
func (d *jsDelay) secondFilter(sec int64) string {
	return d.q.subject(delayPrefix + strconv.FormatInt(sec, 10) + ".>")
}

// parse reads the second and topic of a delay subject.
func (d *jsDelay) parse(subj string) (sec int64, topic string, ok bool) {
	rest, found := strings.CutPrefix(subj, d.q.subject(delayPrefix))
	if !found {
		return 0, "", false
	}
	secs, topic, found := strings.Cut(rest, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	return sec, topic, found && err == nil
}

// waiting counts the messages waiting for each topic.
func (d *jsDelay) waiting(ctx context.Context) (map[string]uint64, error) {
	info, err := d.stream.Info(ctx, jetstream.WithSubjectFilter(d.q.subject(delayPrefix+">")))
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		if _, topic, ok := d.parse(subj); ok {
			out[topic] += n
		}
	}
	return out, nil
}

// discard removes what waits for topic (a sink removed from the
// configuration) and returns how many.
func (d *jsDelay) discard(ctx context.Context, topic string) (uint64, error) {
	w, err := d.waiting(ctx)
	if err != nil || w[topic] == 0 {
		return 0, err
	}
	return w[topic], d.stream.Purge(ctx, jetstream.WithPurgeSubject(d.q.subject(delayPrefix+"*."+topic)))
}

func (d *jsDelay) publishAt(topic string, due time.Time, msgs []*message.Message) error {
	// A second is moved once it has begun: never sooner than due.
	sec := due.Unix()
	if due.After(time.Unix(sec, 0)) {
		sec++
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if sec <= d.horizon {
		sec = d.horizon + 1
	}
	subj := d.subject(sec, topic)
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, msg := range msgs {
		m := natsMsg(subj, msg)
		m.Header.Set(hdrDelayTopic, topic)
		f, err := d.q.js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("queue: publish for later to %s: %w", topic, err)
		}
		futures = append(futures, f)
	}
	if err := waitAcks(futures); err != nil {
		return fmt.Errorf("queue: publish for later to %s: %w", topic, err)
	}
	d.bmu.Lock()
	d.buckets[sec] = struct{}{}
	d.bmu.Unlock()
	return nil
}

func (d *jsDelay) run() {
	defer close(d.done)
	t := time.NewTicker(delayMoveEvery)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case now := <-t.C:
			d.moveDue(now)
		}
	}
}

// close stops the mover; what it has not moved stays on the stream for the
// next start.
func (d *jsDelay) close() {
	close(d.stop)
	<-d.done
}

// moveDue moves every second that has begun by now, in order.
func (d *jsDelay) moveDue(now time.Time) {
	sec := now.Unix()
	if !d.anyDue(sec) {
		return
	}
	d.mu.Lock()
	d.horizon = max(d.horizon, sec)
	d.mu.Unlock()
	d.bmu.Lock()
	var due []int64
	for b := range d.buckets {
		if b <= d.horizon {
			due = append(due, b)
		}
	}
	d.bmu.Unlock()
	slices.Sort(due)
	for _, b := range due {
		select {
		case <-d.stop:
			return
		default:
		}
		if err := d.move(b); err != nil {
			d.q.log.Warn("queue: moving due messages failed; trying again", "due", time.Unix(b, 0).UTC(), "error", err)
			return
		}
		d.bmu.Lock()
		delete(d.buckets, b)
		d.bmu.Unlock()
	}
}

func (d *jsDelay) anyDue(sec int64) bool {
	d.bmu.Lock()
	defer d.bmu.Unlock()
	for b := range d.buckets {
		if b <= sec {
			return true
		}
	}
	return false
}

// move publishes the messages of second sec to their topics and then
// purges them. A crash in between publishes them again at the next start
// (at-least-once); none is lost.
func (d *jsDelay) move(sec int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	subj := d.secondFilter(sec)
	info, err := d.stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return err
	}
	var left uint64
	for _, n := range info.State.Subjects {
		left += n
	}
	if left == 0 {
		return nil
	}
	cons, err := d.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return err
	}
	var last uint64
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, delayFetch)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		futures := make([]jetstream.PubAckFuture, 0, delayFetch)
		got := uint64(0)
		pending := uint64(1)
		for jm := range batch.Messages() {
			got++
			if md, err := jm.Metadata(); err == nil {
				last, pending = md.Sequence.Stream, md.NumPending
			}
			f, err := d.publishDue(jm)
			if err != nil {
				return err
			}
			if f != nil {
				futures = append(futures, f)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if err := waitAcks(futures); err != nil {
			return err
		}
		if got == 0 || pending == 0 {
			break
		}
		left -= min(left, got)
	}
	if last == 0 {
		return nil
	}
	return d.stream.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(last+1))
}

// publishDue publishes one delayed message to its topic; one without a
// topic (not written by this driver) is logged and left to the purge.
func (d *jsDelay) publishDue(jm jetstream.Msg) (jetstream.PubAckFuture, error) {
	topic := jm.Headers().Get(hdrDelayTopic)
	if topic == "" {
		d.q.log.Error("queue: a delayed message names no topic; dropping it", "subject", jm.Subject(), "uuid", jm.Headers().Get("hookbus_uuid"))
		return nil, nil
	}
	m := nats.NewMsg(d.q.subject(topic))
	m.Data = jm.Data()
	for k, vs := range jm.Headers() {
		if k != hdrDelayTopic && !strings.HasPrefix(k, "Nats-") {
			m.Header[k] = vs
		}
	}
	return d.q.js.PublishMsgAsync(m)
}

var _ Delayer = (*EmbeddedJetStream)(nil)
