package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamOptions configure the NATS JetStream driver.
type JetStreamOptions struct {
	// URL of an external NATS server or cluster; empty starts an embedded
	// server with file storage under DataDir and no TCP listener.
	URL     string
	DataDir string
	// DedupWindow is how long producer ids are remembered (default 24h).
	DedupWindow time.Duration
	// AckWait is how long a delivered message may stay unacknowledged
	// before the server redelivers it (default 30s). Handlers that run
	// longer are kept alive with in-progress signals.
	AckWait time.Duration
	// CloseGrace is how long a closing subscription lets handlers finish
	// messages already handed out (default 30s).
	CloseGrace time.Duration
	// Prefix namespaces stream and consumer names (default "HOOKBUS"), so
	// several hookbus deployments (or tests) can share one NATS server.
	Prefix string
	// Replicas is how many servers of a cluster hold each stream and
	// key-value bucket (queue.replicas; default 1). Consumers follow
	// their stream's count. Existing streams and buckets are updated to
	// it at start.
	Replicas int
	Logger   *slog.Logger
}

// JetStream is the NATS JetStream driver: the embedded default and the
// external `nats` driver. Streams and consumers are created up front rather
// than checked on every publish.
type JetStream struct {
	opts      JetStreamOptions
	consConns []*nats.Conn          // connections consumers pull and ack on
	consJS    []jetstream.JetStream // one per consConns
	nextCons  int
	ids       producerIDs        // producer ids accepted within the dedup window
	claims    idClaims           // producer ids being published by this process
	nacks     jetstream.KeyValue // delivery count at the last explicit nack, per consumer and message
	ownNacks  ownNacks           // the nack records this process wrote, until their redelivery
	health    jsHealth           // the last Health result
	delay     *jsDelay           // embedded only: messages published for later
	ns        *server.Server     // embedded only
	nc        *nats.Conn
	js        jetstream.JetStream
	log       *slog.Logger
	mu        sync.Mutex
	subs      []*jsSubscriber
	closed    bool
	// groups maps durable consumer names to what they consume, for Backlog.
	groups map[string]Backlog
}

// consumerConns is how many connections consumers spread over.
const consumerConns = 2

// Stream layout. Every stream has a short duplicate window, as the server
// holds each id of a window in memory (about 85 bytes an id, and objects
// the collector scans: at 8,000 events/s, 83 MB for two minutes, 7 MB for
// 10s). Producer ids are remembered for the long
// window apart (producerIDs), so on ingest the window only covers two
// instances on a shared server publishing one id at once; on the internal
// topics it absorbs a handler's republishing after an error (a second
// later, infraRetryDelay in the engine). After a crash it helps only
// while the first copies are still queued (the server rebuilds its window
// from the messages it holds), so a copy delivered before a crash may be
// delivered again (at-least-once). A retired stream is no longer created; one left by an older version is
// still mapped, so DrainRetryTopic can empty and delete it.
var jsStreams = []struct {
	suffix, prefix string
	retired        bool
}{
	{"_IN", "hookbus.in.", false},
	{"_OUT", "hookbus.out.", false},
	// Retries wait on the delay stream or as delayed nacks; this held the
	// retry topics of versions that pumped them.
	{"_RETRY", "hookbus.retry.", true},
	{"_DEAD", "hookbus.dead.", false},
}

// streamDupWindow is the duplicate window of the streams.
const streamDupWindow = 10 * time.Second

// NewJetStream connects to (or embeds) NATS and creates the streams.
func NewJetStream(ctx context.Context, opts JetStreamOptions) (*JetStream, error) {
	opts.setDefaults()
	q := &JetStream{opts: opts, log: opts.Logger}
	if opts.URL == "" {
		if err := q.startEmbedded(); err != nil {
			return nil, err
		}
	}
	if err := q.openConns(); err != nil {
		return nil, err
	}
	if err := q.checkReplicas(); err != nil {
		q.Close()
		return nil, err
	}
	if err := q.createStreams(ctx); err != nil {
		q.Close()
		return nil, err
	}
	if err := q.createBuckets(ctx); err != nil {
		q.Close()
		return nil, err
	}
	if q.ns != nil {
		if err := q.openDelay(ctx); err != nil {
			q.Close()
			return nil, err
		}
	}
	return q, nil
}

func (o *JetStreamOptions) setDefaults() {
	if o.DedupWindow <= 0 {
		o.DedupWindow = 24 * time.Hour
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.CloseGrace <= 0 {
		o.CloseGrace = 30 * time.Second
	}
	if o.Prefix == "" {
		o.Prefix = "HOOKBUS"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// startEmbedded starts the in-process server with file storage under
// DataDir and no TCP listener.
func (q *JetStream) startEmbedded() error {
	if q.opts.DataDir == "" {
		return errors.New("embedded queue: data_dir is required")
	}
	sopts := &server.Options{
		ServerName: "hookbus-embedded",
		JetStream:  true,
		StoreDir:   q.storeDir(),
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	}
	var err error
	q.ns, err = server.NewServer(sopts)
	if err != nil {
		return fmt.Errorf("embedded queue: %w", err)
	}
	go q.ns.Start()
	if !q.ns.ReadyForConnections(30 * time.Second) {
		q.ns.Shutdown()
		return errors.New("embedded queue: server did not start within 30s")
	}
	return nil
}

// storeDir is the embedded server's store directory under DataDir.
func (q *JetStream) storeDir() string { return filepath.Join(q.opts.DataDir, "queue") }

// connect opens one named connection to the embedded or external server.
func (q *JetStream) connect(name string) (*nats.Conn, error) {
	if q.ns != nil {
		return nats.Connect(q.ns.ClientURL(), nats.InProcessServer(q.ns), nats.Name(name))
	}
	return nats.Connect(q.opts.URL, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond))
}

// openConns opens the publishing connection and the consumers' ones.
// Publishing and each consumer group get connections of their own: one
// connection serialises everything through one read loop per side. On
// failure everything opened so far is closed.
func (q *JetStream) openConns() error {
	var err error
	if q.nc, err = q.connect("hookbus"); err != nil {
		q.shutdownServer()
		return fmt.Errorf("queue: connect to NATS: %w", err)
	}
	q.js, err = jetstream.New(q.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		q.Close()
		return err
	}
	for i := range consumerConns {
		nc, err := q.connect(fmt.Sprintf("hookbus-consume-%d", i))
		if err != nil {
			q.Close()
			return fmt.Errorf("queue: connect to NATS: %w", err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			q.Close()
			return err
		}
		q.consConns = append(q.consConns, nc)
		q.consJS = append(q.consJS, js)
	}
	return nil
}

// createStreams creates or updates the namespace's streams, except the
// retired ones.
func (q *JetStream) createStreams(ctx context.Context) error {
	for _, s := range jsStreams {
		if s.retired {
			continue
		}
		cfg := jetstream.StreamConfig{
			Name:       q.opts.Prefix + s.suffix,
			Subjects:   []string{s.prefix + ">"},
			Storage:    jetstream.FileStorage,
			Retention:  jetstream.InterestPolicy,
			Duplicates: streamDupWindow,
			Replicas:   q.replicas(),
		}
		if q.opts.Prefix != "HOOKBUS" {
			cfg.Subjects = []string{strings.ToLower(q.opts.Prefix) + "." + s.prefix + ">"}
		}
		err := q.whileStarting(ctx, "stream "+cfg.Name, func(ctx context.Context) error {
			_, err := q.js.CreateOrUpdateStream(ctx, cfg)
			return err
		})
		if err != nil {
			return fmt.Errorf("queue: create stream %s: %w", cfg.Name, q.replicaError("stream "+cfg.Name, err))
		}
	}
	return nil
}

// startWait bounds how long start-up waits for a cluster that cannot
// answer yet (a node just restarted, a leader being elected).
const startWait = 2 * time.Minute

// whileStarting runs fn (a stream's or bucket's creation) again while the
// server answers that it cannot for the moment (no leader, no quorum, no
// answer in time), for up to startWait: an instance started during a
// cluster's election waits for it instead of exiting. Other errors return
// at once.
func (q *JetStream) whileStarting(ctx context.Context, what string, fn func(context.Context) error) error {
	deadline := time.Now().Add(startWait)
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := fn(ctx)
		if err == nil || q.ns != nil || ctx.Err() != nil || time.Now().After(deadline) ||
			!(jsUnavailable(err) || errors.Is(err, context.DeadlineExceeded)) {
			return err
		}
		q.log.Warn("queue: the NATS cluster cannot answer yet; waiting", "for", what, "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// createBuckets opens the producer-id store and creates the key-value
// bucket of nack records.
func (q *JetStream) createBuckets(ctx context.Context) error {
	// The streams' own dedup forgets ids of deleted (delivered) messages
	// when the server restarts, and holds every id of its window in
	// memory: producer ids are kept apart, for the whole window.
	if err := q.openIDs(ctx); err != nil {
		return err
	}
	// NumDelivered counts every delivery, nacked or not. To tell the
	// deliveries that reached no outcome (a crash, a kill, an expired ack
	// deadline) from retries the handler asked for, an explicit nack of a
	// message records NumDelivered here; the next delivery subtracts it.
	// Only nacks write and only redeliveries read, so the common path
	// (delivered once, acked) costs nothing.
	err := q.whileStarting(ctx, "bucket "+q.opts.Prefix+"_NACKS", func(ctx context.Context) error {
		var err error
		q.nacks, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   q.opts.Prefix + "_NACKS",
			TTL:      nackRecordTTL,
			Storage:  jetstream.FileStorage,
			History:  1,
			Replicas: q.replicas(),
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: create nack bucket: %w", q.replicaError("bucket "+q.opts.Prefix+"_NACKS", err))
	}
	return nil
}

// ownNacks remembers the nack records this process wrote, so that the
// redelivery that follows its own nack (the next delivery of the message,
// to this process) reads the record here rather than from the server: a
// round trip less for every deferred or retried delivery. Any other
// redelivery (after a restart, or once another instance of the group had
// the message in between) reads the bucket, which stays the record. An
// entry goes at its redelivery; those of messages another instance took
// are dropped after ownNackMemory. The zero value is ready to use.
type ownNacks struct {
	mu    sync.Mutex
	m     map[ownNackKey]ownNack
	swept time.Time
}

type ownNackKey struct {
	consumer string
	seq      uint64
}

type ownNack struct {
	at      uint64 // NumDelivered of the nacked delivery
	written time.Time
}

// ownNackMemory is how long a nack this process wrote is remembered
// without a redelivery: longer than the waits of the default retry
// schedule (10h); a longer wait reads the bucket.
const ownNackMemory = 48 * time.Hour

// put remembers that this process nacked the delivery numDelivered of the
// message seq of consumer.
func (o *ownNacks) put(consumer string, seq, numDelivered uint64) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m, o.swept = map[ownNackKey]ownNack{}, now
	}
	o.m[ownNackKey{consumer, seq}] = ownNack{at: numDelivered, written: now}
	if now.Sub(o.swept) > time.Hour {
		for k, v := range o.m {
			if now.Sub(v.written) > ownNackMemory {
				delete(o.m, k)
			}
		}
		o.swept = now
	}
}

// take forgets the message's entry and returns its record when this
// process nacked the delivery just before numDelivered.
func (o *ownNacks) take(consumer string, seq, numDelivered uint64) (uint64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := ownNackKey{consumer, seq}
	e, ok := o.m[k]
	if !ok {
		return 0, false
	}
	delete(o.m, k)
	return e.at, e.at+1 == numDelivered
}

// nackRecordTTL is how long a nack record is kept, well beyond any retry
// schedule. Records are not deleted on ack: a stream sequence acked is
// never delivered to its consumer again (a handed-back copy has a new
// one), so the record is only dead weight until it expires.
const nackRecordTTL = 30 * 24 * time.Hour

// nackKeyPrefix is the key prefix of one consumer's nack records; a
// record's key is the prefix and the message's stream sequence.
func nackKeyPrefix(consumer string) string { return idKey(consumer) + "." }

// idKey maps a producer id to a KV key (ids may hold any character).
func idKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:20])
}

// admitIngest takes the producer ids of msgs (claims, see idClaims) and
// returns the messages to publish: those whose id was not accepted within
// the dedup window, also before a restart, and of ids repeated within msgs
// only the first. The caller publishes them, records their ids (remember)
// and then releases the claims.
func (q *JetStream) admitIngest(msgs []*message.Message) (out []*message.Message, ids []string, release func()) {
	first := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		if id := m.Metadata.Get(MetaDedupID); id != "" && !first[id] {
			first[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return msgs, nil, func() {}
	}
	release = q.claims.claim(ids)
	// Bounded as a whole: on a cluster that lost the bucket's leader every
	// lookup would otherwise wait out its own request timeout, one round
	// of 16 after the other. An id not looked up counts as unseen.
	lctx, cancel := context.WithTimeout(context.Background(), idLookupTimeout)
	seen := q.ids.seen(lctx, ids)
	cancel()
	drop := make(map[string]bool, len(ids))
	for i, id := range ids {
		drop[id] = seen[i]
	}
	out = msgs[:0:0]
	var fresh []string
	for _, m := range msgs {
		id := m.Metadata.Get(MetaDedupID)
		if id != "" {
			if drop[id] {
				continue
			}
			// Later copies of the id within msgs are dropped.
			drop[id] = true
			fresh = append(fresh, id)
		}
		out = append(out, m)
	}
	return out, fresh, release
}

// idLookupTimeout bounds the producer-id lookups of one ingest batch.
const idLookupTimeout = 5 * time.Second

// waitAcks waits for the acknowledgement of every future, at most
// embeddedAckTimeout in all (see waitAcksFor).
func waitAcks(futures []jetstream.PubAckFuture) error {
	return waitAcksFor(futures, embeddedAckTimeout)
}

// waitAcksFor waits for the acknowledgement of every future, at most d in
// all.
func waitAcksFor(futures []jetstream.PubAckFuture, d time.Duration) error {
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-timeout.C:
			return fmt.Errorf("%w (%s)", errNoAck, d)
		}
	}
	return nil
}

// Bounds of the wait for a batch's acknowledgements. An external server
// answers within milliseconds when healthy: no answer within
// externalAckTimeout means the message or its acknowledgement was lost
// with a server (a cluster node died), and the publish is refused as
// unavailable, to be retried. The embedded server loses nothing on the
// way; a slow answer there is load, given longer.
const (
	externalAckTimeout = 10 * time.Second
	embeddedAckTimeout = 30 * time.Second
)

// ackTimeout is the acknowledgement bound of this queue's server.
func (q *JetStream) ackTimeout() time.Duration {
	if q.ns != nil {
		return embeddedAckTimeout
	}
	return externalAckTimeout
}

func (q *JetStream) subject(topic string) string {
	if q.opts.Prefix == "HOOKBUS" {
		return topic
	}
	return strings.ToLower(q.opts.Prefix) + "." + topic
}

func (q *JetStream) streamFor(topic string) (string, error) {
	for _, s := range jsStreams {
		if strings.HasPrefix(topic, s.prefix) {
			return q.opts.Prefix + s.suffix, nil
		}
	}
	return "", fmt.Errorf("queue: topic %q belongs to no stream", topic)
}

// Features implements Queue.
func (q *JetStream) Features() Features {
	return Features{Durable: true, DelayedNack: true, Dedup: true, CountsDeliveries: true}
}

// Provision implements Queue: streams exist already; consumers are created
// per subscription.
func (q *JetStream) Provision(context.Context, []string) error { return nil }

// Publish implements message.Publisher: all messages are sent
// asynchronously, then every acknowledgement is awaited, so a batch costs
// one round trip. On ingest topics, messages whose producer id was seen
// within the dedup window are dropped (they were accepted before).
func (q *JetStream) Publish(topic string, msgs ...*message.Message) error {
	ingest := strings.HasPrefix(topic, "hookbus.in.")
	var ids []string
	if ingest {
		var release func()
		msgs, ids, release = q.admitIngest(msgs)
		defer release()
	}
	subj := q.subject(topic)
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, msg := range msgs {
		m := natsMsg(subj, msg)
		var popts []jetstream.PublishOpt
		// On the embedded server, producer ids need no stream dedup: this
		// process owns it, and the claims keep a second publish of an id
		// from passing the lookup before the first is recorded.
		if id := msg.Metadata.Get(MetaDedupID); id != "" && !(ingest && q.ns != nil) {
			popts = append(popts, jetstream.WithMsgID(id))
		}
		f, err := q.js.PublishMsgAsync(m, popts...)
		if err != nil {
			return fmt.Errorf("queue: publish to %s: %w", topic, unavailable(err))
		}
		futures = append(futures, f)
	}
	// Errors that mean "not now" (no stream leader, no server) wrap
	// ErrUnavailable: the caller refuses the whole batch for a retry.
	if err := waitAcksFor(futures, q.ackTimeout()); err != nil {
		return fmt.Errorf("queue: publish to %s: %w", topic, unavailable(err))
	}
	if ingest {
		// Only after the events are durable: a crash in between means the
		// producer's retry is queued again (at-least-once), never lost.
		if err := q.ids.remember(context.Background(), ids); err != nil {
			return fmt.Errorf("queue: record producer ids: %w", unavailable(err))
		}
	}
	return nil
}

// natsMsg is msg as published to subj: its metadata as headers, less the
// driver's own per-delivery keys.
func natsMsg(subj string, msg *message.Message) *nats.Msg {
	m := nats.NewMsg(subj)
	m.Data = msg.Payload
	for k, v := range msg.Metadata {
		if k == MetaAttempt || k == MetaNackDelay {
			continue
		}
		m.Header.Set(k, v)
	}
	m.Header.Set("hookbus_uuid", msg.UUID)
	return m
}

// Subscriber implements Queue.
func (q *JetStream) Subscriber(group string, maxInFlight int) (message.Subscriber, error) {
	if maxInFlight <= 0 {
		maxInFlight = 64
	}
	s := &jsSubscriber{q: q, group: group, maxInFlight: maxInFlight, closing: make(chan struct{})}
	q.mu.Lock()
	s.js = q.consJS[q.nextCons%len(q.consJS)]
	s.nc = q.consConns[q.nextCons%len(q.consConns)]
	q.nextCons++
	q.subs = append(q.subs, s)
	q.mu.Unlock()
	return s, nil
}

// OrderedSubscriber implements Orderer. Its consumers have a
// MaxAckPending of 1: the server hands out one message of the group at a
// time, to whichever instance pulls, and redelivers a nacked or expired
// message before any later one (its redelivery queue comes first, and
// nothing later can be handed out while it is pending). Retries wait as
// delayed nacks, at the head; at shutdown a message is nacked, never
// handed back as a copy (which would go to the end of the topic).
func (q *JetStream) OrderedSubscriber(group string) (message.Subscriber, error) {
	sub, err := q.Subscriber(group, 1)
	if err != nil {
		return nil, err
	}
	sub.(*jsSubscriber).ordered = true
	return sub, nil
}

// Close stops subscriptions, the connection and (embedded) the server.
func (q *JetStream) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	subs := q.subs
	q.mu.Unlock()
	if q.delay != nil {
		q.delay.close()
	}
	for _, s := range subs {
		_ = s.Close()
	}
	for _, nc := range q.consConns {
		// Acks are fire-and-forget writes: flush them before closing.
		_ = nc.FlushTimeout(2 * time.Second)
		nc.Close()
	}
	if q.nc != nil {
		_ = q.nc.Drain()
		deadline := time.Now().Add(5 * time.Second)
		for !q.nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		q.nc.Close()
	}
	q.shutdownServer()
	if q.ids != nil {
		if err := q.ids.close(); err != nil {
			q.log.Warn("queue: closing the producer-id store", "error", err)
		}
	}
	return nil
}

func (q *JetStream) shutdownServer() {
	if q.ns != nil {
		q.ns.Shutdown()
		q.ns.WaitForShutdown()
	}
}

// Backlog implements BacklogReporter for the consumer groups of this process.
func (q *JetStream) Backlog(ctx context.Context) ([]Backlog, error) {
	q.mu.Lock()
	groups := maps.Clone(q.groups)
	q.mu.Unlock()
	var delayed map[string]uint64
	if q.delay != nil {
		var err error
		if delayed, err = q.delay.waiting(ctx); err != nil {
			return nil, err
		}
	}
	var out []Backlog
	for name, b := range groups {
		stream, err := q.streamFor(b.Topic)
		if err != nil {
			continue
		}
		info, err := q.js.Consumer(ctx, stream, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			// Deleted since it was subscribed (a retired retry group, a
			// stale group dropped): it holds nothing any more.
			continue
		}
		if err != nil {
			return out, err
		}
		ci := info.CachedInfo()
		// Retries waiting on the delay stream are the group's, held back
		// as a delayed nack would hold them.
		b.Pending, b.Unacked = ci.NumPending, uint64(ci.NumAckPending)+delayed[b.Topic]
		out = append(out, b)
	}
	sortBacklog(out)
	return out, nil
}

// Retire implements TopicRetirer: it drains the group's durable consumer,
// deletes it and, on a retired stream (the retry stream) that has no
// consumer left, deletes the stream.
func (q *JetStream) Retire(ctx context.Context, group, topic string, fn func(*message.Message) error) (int, error) {
	stream, err := q.streamFor(topic)
	if err != nil {
		return 0, err
	}
	name := consumerName(q.opts.Prefix, group, topic)
	left := func(ctx context.Context) (uint64, bool, error) {
		c, err := q.js.Consumer(ctx, stream, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("queue: consumer %s of %s: %w", name, stream, err)
		}
		ci := c.CachedInfo()
		if k := ci.NumPending + uint64(ci.NumAckPending); k > 0 {
			return k, true, nil
		}
		// The server updates NumPending after a publish in the background,
		// so zero is checked against the topic's last message: left until
		// the group's ack floor has reached it.
		st, err := q.js.Stream(ctx, stream)
		if err != nil {
			return 0, true, fmt.Errorf("queue: stream %s: %w", stream, err)
		}
		last, err := st.GetLastMsgForSubject(ctx, q.subject(topic))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, true, nil
		}
		if err != nil {
			return 0, true, fmt.Errorf("queue: last message of %s: %w", topic, err)
		}
		if last.Sequence > ci.AckFloor.Stream {
			return 1, true, nil
		}
		return 0, true, nil
	}
	n, exists, err := drainGroup(ctx, q, group, topic, left, fn)
	if err != nil {
		return n, err
	}
	if exists {
		if err := q.js.DeleteConsumer(ctx, stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return n, fmt.Errorf("queue: delete consumer %s of %s: %w", name, stream, err)
		}
		q.mu.Lock()
		delete(q.groups, name)
		q.mu.Unlock()
	}
	return n, q.dropRetiredStream(ctx, stream)
}

// dropRetiredStream deletes stream when it is a retired one without
// consumers; with interest retention it then holds no message either.
func (q *JetStream) dropRetiredStream(ctx context.Context, stream string) error {
	retired := false
	for _, s := range jsStreams {
		retired = retired || s.retired && q.opts.Prefix+s.suffix == stream
	}
	if !retired {
		return nil
	}
	st, err := q.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	if info.State.Consumers > 0 {
		return nil
	}
	if err := q.js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("queue: delete retired stream %s: %w", stream, err)
	}
	return nil
}

// Conn exposes the NATS connection (for tests and tools).
func (q *JetStream) Conn() *nats.Conn { return q.nc }

// prefetch is how many messages a subscription buffers beyond those in
// flight. Buffered messages get no in-progress signal, so the buffer is kept
// to a quarter of the window: a buffered message waits for about a quarter
// of a handler's time, well within AckWait.
func prefetch(window int) int { return max(1, min(window/4, 500)) }

// pullHeartbeat is how often the server signals a waiting pull request
// alive. Two missed signals make the consume loop pull again: a request
// lost with a cluster node (or a consumer leader that moved) costs a pause
// of twice this, not the default 30s.
const pullHeartbeat = 3 * time.Second

// maxAckPending bounds the messages of one consumer that are delivered or
// waiting for a delayed redelivery.
const maxAckPending = 1_000_000

type jsSubscriber struct {
	q           *JetStream
	js          jetstream.JetStream // on one of q's consumer connections
	nc          *nats.Conn          // the connection of js
	group       string
	maxInFlight int
	// ordered: one message of the group out at a time (OrderedSubscriber).
	ordered bool
	mu      sync.Mutex
	closing chan struct{}
	wg      sync.WaitGroup
	closed  bool
}

// maxAckPending is the server-side bound of the subscriber's consumers.
func (s *jsSubscriber) maxAckPending() int {
	if s.ordered {
		return 1
	}
	return maxAckPending
}

func consumerName(prefix, group, topic string) string {
	r := strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_", "~", "_")
	return r.Replace(prefix + "_" + group + "__" + topic)
}

// SubscribeInitialize implements message.SubscribeInitializer: it creates
// the group's durable consumer, so messages published from now on are kept
// for the group even before it consumes them.
func (s *jsSubscriber) SubscribeInitialize(topic string) error {
	_, err := s.consumer(context.Background(), topic)
	return err
}

func (s *jsSubscriber) consumer(ctx context.Context, topic string) (jetstream.Consumer, error) {
	stream, err := s.q.streamFor(topic)
	if err != nil {
		return nil, err
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       consumerName(s.q.opts.Prefix, s.group, topic),
		FilterSubject: s.q.subject(topic),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.q.opts.AckWait,
		// Messages waiting out a NakWithDelay count as pending, so the
		// server-side limit must be far above the in-flight bound (which the
		// subscriber enforces itself) or a dead endpoint would stall its sink.
		// An ordered group has one message out at a time, waiting or not.
		MaxAckPending: s.maxAckPending(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: consumer for %s/%s: %w", s.group, topic, err)
	}
	// A subscription of the embedded server pauses its consumer while it
	// stops (see pauseForHandBack); the next one resumes it.
	if ci := cons.CachedInfo(); ci != nil && ci.Paused {
		if _, err := s.q.js.ResumeConsumer(ctx, stream, ci.Name); err != nil {
			return nil, fmt.Errorf("queue: resume consumer for %s/%s: %w", s.group, topic, err)
		}
	}
	s.q.mu.Lock()
	if s.q.groups == nil {
		s.q.groups = map[string]Backlog{}
	}
	s.q.groups[consumerName(s.q.opts.Prefix, s.group, topic)] = Backlog{Group: s.group, Topic: topic}
	s.q.mu.Unlock()
	return cons, nil
}

// Subscribe implements message.Subscriber: it consumes topic through the
// group's durable consumer, at most maxInFlight messages unacknowledged at
// once. The channel is closed when ctx is cancelled or the subscriber is
// closed, once every message handed out is settled or handed back.
func (s *jsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	cons, err := s.consumer(ctx, topic)
	if err != nil {
		return nil, err
	}
	consName := consumerName(s.q.opts.Prefix, s.group, topic)
	sub := &jsSubscription{
		s:          s,
		ctx:        ctx,
		topic:      topic,
		consName:   consName,
		nackPrefix: nackKeyPrefix(consName),
		out:        make(chan *message.Message),
		sem:        make(chan struct{}, s.maxInFlight),
		done:       make(chan struct{}),
	}
	buffer, heartbeat := prefetch(s.maxInFlight), pullHeartbeat
	if s.ordered {
		buffer = 1 // the server hands out one at a time anyway
		// The heartbeat must stay under half the pull's expiry.
		heartbeat = orderedPullExpiry / 3
	}
	sub.opts = []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(buffer), jetstream.PullHeartbeat(heartbeat), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			s.q.log.Debug("queue consume", "topic", topic, "error", err)
		}
	})}
	if s.ordered {
		sub.opts = append(sub.opts, jetstream.PullExpiry(orderedPullExpiry))
	}
	cc, err := cons.Consume(sub.handle, sub.opts...)
	if err != nil {
		return nil, fmt.Errorf("queue: consume %s: %w", topic, err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sub.stop(sub.supervise(cc))
	}()
	return sub.out, nil
}

// jsSubscription is one Subscribe call: the consume callback (handle), a
// goroutine per message in flight (await), and the goroutine that keeps
// the consume loop running and stops it (supervise, stop).
type jsSubscription struct {
	s          *jsSubscriber
	ctx        context.Context
	topic      string
	consName   string
	nackPrefix string
	opts       []jetstream.PullConsumeOpt
	out        chan *message.Message
	sem        chan struct{} // one slot per message in flight
	done       chan struct{} // closed when the subscription stops
	inflight   sync.WaitGroup

	sendMu    sync.RWMutex
	outClosed bool
	// Messages fetched but not handed to the handler at shutdown are
	// handed back once the consume loop has stopped, so it cannot fetch
	// the copies; and a nack the handler gives while the subscription
	// stops is sent then too, so the server cannot redeliver the message
	// to this subscription's last pull request (whose messages, sent as
	// the subscription goes, would be lost on the wire and come back
	// only after AckWait).
	backMu   sync.Mutex
	back     []jsFetched
	naks     []jsNak
	backDone bool // the consume loop has stopped: hand back and nak at once
}

// jsNak is a nack held until the consume loop has stopped.
type jsNak struct {
	jm  jetstream.Msg
	msg *message.Message
	d   jsDelivery
}

type jsFetched struct {
	jm         jetstream.Msg
	deliveries uint64
}

// jsDelivery is what handle learnt of a fetched message.
type jsDelivery struct {
	numDelivered, streamSeq uint64
	// deliveries without an outcome, this one included (MetaDeliveries).
	deliveries uint64
}

// later hands jm back once the consume loop has stopped (at once if it has).
func (sub *jsSubscription) later(jm jetstream.Msg, deliveries uint64) {
	sub.backMu.Lock()
	if sub.backDone {
		sub.backMu.Unlock()
		sub.s.handBack(jm, deliveries)
		return
	}
	sub.back = append(sub.back, jsFetched{jm, deliveries})
	sub.backMu.Unlock()
}

// stopping reports whether the subscription has begun to stop.
func (sub *jsSubscription) stopping() bool {
	select {
	case <-sub.done:
		return true
	default:
		return false
	}
}

// nakLater naks jm once the consume loop has stopped (at once if it has).
func (sub *jsSubscription) nakLater(jm jetstream.Msg, msg *message.Message, d jsDelivery) {
	sub.backMu.Lock()
	if sub.backDone {
		sub.backMu.Unlock()
		sub.nak(jm, msg, d)
		return
	}
	sub.naks = append(sub.naks, jsNak{jm, msg, d})
	sub.backMu.Unlock()
}

// handle is the consume callback: it takes a slot of the window (waiting
// for one), then hands jm to the handler, or back to the stream when the
// subscription stops first. The callback runs for one message after the
// other, so what may take a round trip to the server (a redelivered
// message's nack record, read by count) is done beside it, in the
// message's own goroutine: a stream of redeliveries (deferred or retried
// deliveries) does not hold up the messages behind them.
func (sub *jsSubscription) handle(jm jetstream.Msg) {
	hdr := jm.Headers()
	// A message handed back at shutdown is a copy for one group.
	if g := hdr.Get(hdrForGroup); g != "" && g != sub.s.group {
		_ = jm.Ack()
		return
	}
	select {
	case sub.sem <- struct{}{}:
	case <-sub.done:
		// Hand buffered messages back now instead of after AckWait.
		sub.later(jm, sub.count(jm).deliveries)
		return
	}
	// stop waits for inflight only once the consume loop (and so this
	// callback) has ended.
	sub.inflight.Add(1)
	go func() {
		defer sub.inflight.Done()
		defer func() { <-sub.sem }()
		sub.deliver(jm, sub.count(jm))
	}()
}

// deliver hands jm, which holds a slot of the window, to the handler and
// settles it, or hands it back when the subscription stops first.
func (sub *jsSubscription) deliver(jm jetstream.Msg, d jsDelivery) {
	sub.sendMu.RLock()
	if sub.outClosed {
		sub.sendMu.RUnlock()
		sub.later(jm, d.deliveries)
		return
	}
	msg := sub.message(jm, d)
	msgCtx, cancel := context.WithCancel(sub.ctx)
	defer cancel()
	msg.SetContext(msgCtx)
	select {
	case sub.out <- msg:
		sub.sendMu.RUnlock()
	case <-sub.done:
		sub.sendMu.RUnlock()
		sub.later(jm, d.deliveries)
		return
	}
	sub.await(jm, msg, d)
}

// count reads jm's delivery counts: the server's, less the deliveries
// before its last explicit nack (a nack record), plus those of the
// original when jm is a copy handed back at shutdown.
func (sub *jsSubscription) count(jm jetstream.Msg) jsDelivery {
	d := jsDelivery{deliveries: 1}
	// nacked: this message has a nack record.
	nacked := false
	if md, err := jm.Metadata(); err == nil {
		d.numDelivered, d.streamSeq, d.deliveries = md.NumDelivered, md.Sequence.Stream, md.NumDelivered
		if md.NumDelivered > 1 {
			if at, ok := sub.s.q.ownNacks.take(sub.consName, md.Sequence.Stream, md.NumDelivered); ok {
				// This process nacked the delivery just before: the
				// record is the one it wrote.
				nacked = true
				d.deliveries -= at
			} else {
				kctx, kcancel := context.WithTimeout(context.Background(), 5*time.Second)
				e, err := sub.s.q.nacks.Get(kctx, sub.nackPrefix+strconv.FormatUint(md.Sequence.Stream, 10))
				kcancel()
				if err == nil {
					nacked = true
					if at, err := strconv.ParseUint(string(e.Value()), 10, 64); err == nil && at < d.deliveries {
						d.deliveries -= at
					}
				}
			}
		}
	}
	// A copy handed back at shutdown carries the count of the original,
	// until an explicit nack of the copy starts it again.
	if v := jm.Headers().Get(hdrPriorDeliveries); v != "" && !nacked {
		if prior, err := strconv.ParseUint(v, 10, 64); err == nil {
			d.deliveries += prior
		}
	}
	return d
}

// message turns jm into the message the handler gets.
func (sub *jsSubscription) message(jm jetstream.Msg, d jsDelivery) *message.Message {
	hdr := jm.Headers()
	msg := message.NewMessage(hdr.Get("hookbus_uuid"), jm.Data())
	for k, vs := range hdr {
		if len(vs) > 0 && k != "hookbus_uuid" && k != hdrForGroup && k != hdrPriorDeliveries && !strings.HasPrefix(k, "Nats-") {
			msg.Metadata.Set(k, vs[0])
		}
	}
	if d.numDelivered > 0 {
		msg.Metadata.Set(MetaAttempt, strconv.FormatUint(d.numDelivered, 10))
	}
	msg.Metadata.Set(MetaDeliveries, strconv.FormatUint(d.deliveries, 10))
	return msg
}

// await settles one message in flight: it passes the handler's ack or
// nack on, keeps a long-running handler from being redelivered, and, when
// the subscription stops, gives the handler CloseGrace before it hands
// the message back.
func (sub *jsSubscription) await(jm jetstream.Msg, msg *message.Message, d jsDelivery) {
	q := sub.s.q
	// Keep long-running handlers from being redelivered.
	keepAlive := time.NewTicker(q.opts.AckWait / 3)
	defer keepAlive.Stop()
	done := sub.done
	var grace <-chan time.Time
	for {
		select {
		case <-msg.Acked():
			if err := jm.Ack(); err != nil {
				q.log.Warn("queue ack failed; message may be redelivered", "topic", sub.topic, "error", err)
			}
			return
		case <-msg.Nacked():
			if sub.stopping() {
				// See jsSubscription.naks.
				sub.nakLater(jm, msg, d)
				return
			}
			sub.nak(jm, msg, d)
			return
		case <-keepAlive.C:
			_ = jm.InProgress()
		case <-done:
			// The subscription is closing: the handler gets
			// CloseGrace to finish (kept alive meanwhile), then the
			// message goes back at once rather than after AckWait.
			done = nil
			grace = time.After(q.opts.CloseGrace)
		case <-grace:
			sub.later(jm, d.deliveries)
			return
		}
	}
}

// nak records the nack (before the nak, so the redelivery sees it) and
// naks jm, after MetaNackDelay when set.
func (sub *jsSubscription) nak(jm jetstream.Msg, msg *message.Message, d jsDelivery) {
	q := sub.s.q
	if d.numDelivered > 0 {
		q.ownNacks.put(sub.consName, d.streamSeq, d.numDelivered)
		kctx, kcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := q.nacks.Put(kctx, sub.nackPrefix+strconv.FormatUint(d.streamSeq, 10), []byte(strconv.FormatUint(d.numDelivered, 10)))
		kcancel()
		if err != nil {
			q.log.Warn("queue: recording a nack failed; its redelivery may count as one without an outcome", "topic", sub.topic, "error", err)
		}
	}
	if delay := NackDelay(msg); delay > 0 {
		_ = jm.NakWithDelay(delay)
	} else {
		_ = jm.Nak()
	}
}

// supervise keeps the consume loop running until the subscription's
// context ends or the subscriber closes, and returns the last loop. When
// the loop ends by itself (the consumer was deleted, or the server lost
// its state), it recreates it once a second rather than leave this group
// silently stopped.
func (sub *jsSubscription) supervise(cc jetstream.ConsumeContext) jetstream.ConsumeContext {
	s, log := sub.s, sub.s.q.log
	closed, retry := cc.Closed(), (<-chan time.Time)(nil)
	for {
		select {
		case <-sub.ctx.Done():
			return cc
		case <-s.closing:
			return cc
		case <-closed:
			log.Warn("queue consumer stopped; recreating it", "group", s.group, "topic", sub.topic)
			closed, retry = nil, time.After(time.Second)
		case <-retry:
			c, err := s.consumer(sub.ctx, sub.topic)
			var next jetstream.ConsumeContext
			if err == nil {
				next, err = c.Consume(sub.handle, sub.opts...)
			}
			if err != nil {
				log.Error("queue consumer cannot be recreated yet", "group", s.group, "topic", sub.topic, "error", err)
				retry = time.After(time.Second)
				continue
			}
			cc, closed, retry = next, next.Closed(), nil
		}
	}
}

// stop ends the subscription: no more fetches, buffered messages handed
// back, in-flight ones settled (or handed back after CloseGrace), then the
// channel closed.
func (sub *jsSubscription) stop(cc jetstream.ConsumeContext) {
	sub.s.pauseForHandBack(sub.topic, sub.consName)
	// Release a callback blocked on a full window before stopping.
	close(sub.done)
	cc.Drain()
	<-cc.Closed()
	sub.sendMu.Lock()
	sub.outClosed = true
	sub.sendMu.Unlock()
	sub.backMu.Lock()
	pending, naks := sub.back, sub.naks
	sub.back, sub.naks, sub.backDone = nil, nil, true
	sub.backMu.Unlock()
	for _, f := range pending {
		sub.s.handBack(f.jm, f.deliveries)
	}
	for _, n := range naks {
		sub.nak(n.jm, n.msg, n.d)
	}
	sub.inflight.Wait()
	close(sub.out)
}

// pauseForHandBack stops the server sending this subscription more
// messages before it drains. A pull request outlives the subscription that
// made it: a message the server sends after the client unsubscribed is lost
// on the wire and, counted as delivered, waits out AckWait. Paused, the
// server sends nothing more; the flush on the consumer connection then
// brings in what it sent before, which the drain hands back.
//
// Only on the embedded server: there this process is the consumer's only
// client (the data_dir lock), while on a shared server a pause would stop
// the other instances of the group too. The pause lapses by itself after
// handBackPause should this process die before the next start resumes it.
func (s *jsSubscriber) pauseForHandBack(topic, consName string) {
	if s.q.ns == nil {
		return
	}
	stream, err := s.q.streamFor(topic)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := s.q.js.PauseConsumer(ctx, stream, consName, time.Now().Add(handBackPause)); err != nil {
		s.q.log.Debug("queue: pausing the consumer before hand-back failed", "group", s.group, "topic", topic, "error", err)
		return
	}
	_ = s.nc.FlushTimeout(2 * time.Second)
}

// orderedPullExpiry is how long a pull request of an ordered
// subscription lives (the client's default is 30s): should one go
// unanswered, the next one is made this soon, and an ordered group, which
// has one message out at a time, waits no longer than that.
const orderedPullExpiry = 5 * time.Second

// orderedHandBackDelay is how long a message an ordered subscription
// hands back waits before it is redelivered (to any subscriber).
const orderedHandBackDelay = time.Second

// handBackPause is how long a stopping subscription pauses its consumer.
const handBackPause = time.Minute

// Headers of a message handed back at shutdown.
const (
	hdrForGroup        = "hookbus_for_group"        // the only group that handles the copy
	hdrPriorDeliveries = "hookbus_prior_deliveries" // deliveries without outcome before the copy
)

// handBack returns a message that will not be finished, for delivery at
// once after the next start. A nak would not do: the server keeps naks in
// memory only, so after a restart the message would wait out AckWait. The
// message is queued again instead, as a copy only this group handles (the
// others ack it unread), carrying its deliveries without an outcome so
// far; then the original is acknowledged. A crash in between delivers it
// twice, which at-least-once allows.
func (s *jsSubscriber) handBack(jm jetstream.Msg, deliveries uint64) {
	if s.ordered {
		// A copy would go behind the later messages. Nacked, the message
		// stays at the head: redelivered at once while the server runs,
		// after AckWait from its delivery once it restarted (its pending
		// state is on disk, and nothing behind it is handed out meanwhile).
		// The short delay keeps a subscription that is still draining from
		// being handed the message straight back. A delivery cut short
		// counts as one without an outcome, as after a crash.
		_ = jm.NakWithDelay(orderedHandBackDelay)
		return
	}
	m := nats.NewMsg(jm.Subject())
	m.Data = jm.Data()
	for k, vs := range jm.Headers() {
		if !strings.HasPrefix(k, "Nats-") {
			m.Header[k] = vs
		}
	}
	m.Header.Set(hdrForGroup, s.group)
	m.Header.Set(hdrPriorDeliveries, strconv.FormatUint(deliveries, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		s.q.log.Warn("queue: handing a message back failed; it is redelivered after the ack deadline", "group", s.group, "error", err)
		_ = jm.Nak()
		return
	}
	if err := jm.DoubleAck(ctx); err != nil {
		s.q.log.Warn("queue: ack of a handed-back message failed; it may be delivered twice", "group", s.group, "error", err)
	}
}

func (s *jsSubscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// JetStreamPrefix is the stream and consumer name prefix of a namespace.
func JetStreamPrefix(namespace string) string {
	if namespace == "" {
		return "HOOKBUS"
	}
	return strings.ToUpper(namespace)
}

// dropJetStream removes the streams, consumers and id bucket of one
// namespace from a NATS server.
func dropJetStream(ctx context.Context, url, namespace string) error {
	prefix := JetStreamPrefix(namespace)
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var errs []error
	for _, st := range jsStreams {
		if err := js.DeleteStream(ctx, prefix+st.suffix); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, err)
		}
	}
	for _, b := range []string{prefix + "_IDS", prefix + "_NACKS"} {
		if err := js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// StaleGroup is a durable consumer in this namespace's streams that no
// subscription of this process uses: left behind by a pipeline or sink
// removed from the configuration (or used by another instance running a
// different configuration). With interest retention it keeps every message
// it has not acknowledged, and on a source topic every new one too.
type StaleGroup struct {
	Stream, Name string
	// Topic is the topic the group reads.
	Topic string
	// Pending and Unacked are its undelivered messages (see Backlog; on
	// the embedded driver a sink's retries on the delay stream count as
	// unacked).
	Pending, Unacked uint64
}

// StaleGroups lists the durable consumers of this namespace's streams that
// this process has not subscribed with. Call it once every subscription is
// open.
func (q *JetStream) StaleGroups(ctx context.Context) ([]StaleGroup, error) {
	q.mu.Lock()
	used := maps.Clone(q.groups)
	q.mu.Unlock()
	var delayed map[string]uint64
	if q.delay != nil {
		var err error
		if delayed, err = q.delay.waiting(ctx); err != nil {
			return nil, err
		}
	}
	var out []StaleGroup
	for _, s := range jsStreams {
		stream, err := q.js.Stream(ctx, q.opts.Prefix+s.suffix)
		if s.retired && errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("queue: stream %s%s: %w", q.opts.Prefix, s.suffix, err)
		}
		list := stream.ListConsumers(ctx)
		for ci := range list.Info() {
			if _, ok := used[ci.Name]; ok || ci.Config.Durable == "" {
				continue
			}
			topic := q.topicOf(ci.Config.FilterSubject)
			out = append(out, StaleGroup{Stream: ci.Stream, Name: ci.Name, Topic: topic, Pending: ci.NumPending, Unacked: uint64(ci.NumAckPending)})
			if strings.HasPrefix(topic, "hookbus.out.") {
				// A sink's retries waiting on the delay stream go with it.
				out[len(out)-1].Unacked += delayed[topic]
			}
		}
		if err := list.Err(); err != nil {
			return out, fmt.Errorf("queue: list consumers of %s: %w", stream.CachedInfo().Config.Name, err)
		}
	}
	return out, nil
}

// DropGroup deletes a stale durable consumer; the messages only it held are
// discarded by the stream's interest retention.
func (q *JetStream) DropGroup(ctx context.Context, g StaleGroup) error {
	if err := q.js.DeleteConsumer(ctx, g.Stream, g.Name); err != nil {
		return fmt.Errorf("queue: delete consumer %s of %s: %w", g.Name, g.Stream, err)
	}
	// A sink topic has the one group: its retries waiting on the delay
	// stream would reach a topic nobody reads.
	if q.delay != nil && strings.HasPrefix(g.Topic, "hookbus.out.") {
		if _, err := q.delay.discard(ctx, g.Topic); err != nil {
			return fmt.Errorf("queue: discard the delayed messages of %s: %w", g.Topic, err)
		}
	}
	return nil
}

// topicOf is the topic of a subject of this namespace.
func (q *JetStream) topicOf(subject string) string {
	if q.opts.Prefix == "HOOKBUS" {
		return subject
	}
	return strings.TrimPrefix(subject, strings.ToLower(q.opts.Prefix)+".")
}
