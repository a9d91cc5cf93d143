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
	Logger *slog.Logger
}

// JetStream is the NATS JetStream driver: the embedded default and the
// external `nats` driver. Streams and consumers are created up front rather
// than checked on every publish.
type JetStream struct {
	opts      JetStreamOptions
	consConns []*nats.Conn          // connections consumers pull and ack on
	consJS    []jetstream.JetStream // one per consConns
	nextCons  int
	ids       jetstream.KeyValue // producer ids seen within the dedup window
	nacks     jetstream.KeyValue // delivery count at the last explicit nack, per consumer and message
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

// Stream layout: ingest has the long dedup window for producer ids; the
// internal topics only need a short one to absorb republishing after a crash.
var jsStreams = []struct {
	suffix, prefix string
	long           bool
}{
	{"_IN", "hookbus.in.", true},
	{"_OUT", "hookbus.out.", false},
	{"_RETRY", "hookbus.retry.", false},
	{"_DEAD", "hookbus.dead.", false},
}

// NewJetStream connects to (or embeds) NATS and creates the streams.
func NewJetStream(ctx context.Context, opts JetStreamOptions) (*JetStream, error) {
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = 24 * time.Hour
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.CloseGrace <= 0 {
		opts.CloseGrace = 30 * time.Second
	}
	if opts.Prefix == "" {
		opts.Prefix = "HOOKBUS"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	q := &JetStream{opts: opts, log: opts.Logger}
	var err error
	if opts.URL == "" {
		if opts.DataDir == "" {
			return nil, errors.New("embedded queue: data_dir is required")
		}
		sopts := &server.Options{
			ServerName: "hookbus-embedded",
			JetStream:  true,
			StoreDir:   filepath.Join(opts.DataDir, "queue"),
			DontListen: true,
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: 8 << 20,
		}
		q.ns, err = server.NewServer(sopts)
		if err != nil {
			return nil, fmt.Errorf("embedded queue: %w", err)
		}
		go q.ns.Start()
		if !q.ns.ReadyForConnections(30 * time.Second) {
			q.ns.Shutdown()
			return nil, errors.New("embedded queue: server did not start within 30s")
		}
	}
	// Publishing and each consumer group get connections of their own: one
	// connection serialises everything through one read loop per side.
	connect := func(name string) (*nats.Conn, error) {
		if q.ns != nil {
			return nats.Connect(q.ns.ClientURL(), nats.InProcessServer(q.ns), nats.Name(name))
		}
		return nats.Connect(opts.URL, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond))
	}
	if q.nc, err = connect("hookbus"); err != nil {
		q.shutdownServer()
		return nil, fmt.Errorf("queue: connect to NATS: %w", err)
	}
	q.js, err = jetstream.New(q.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		q.Close()
		return nil, err
	}
	for i := range consumerConns {
		nc, err := connect(fmt.Sprintf("hookbus-consume-%d", i))
		if err != nil {
			q.Close()
			return nil, fmt.Errorf("queue: connect to NATS: %w", err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			q.Close()
			return nil, err
		}
		q.consConns = append(q.consConns, nc)
		q.consJS = append(q.consJS, js)
	}
	for _, s := range jsStreams {
		dup := 2 * time.Minute
		if s.long {
			dup = opts.DedupWindow
		}
		cfg := jetstream.StreamConfig{
			Name:       opts.Prefix + s.suffix,
			Subjects:   []string{s.prefix + ">"},
			Storage:    jetstream.FileStorage,
			Retention:  jetstream.InterestPolicy,
			Duplicates: dup,
		}
		if opts.Prefix != "HOOKBUS" {
			cfg.Subjects = []string{strings.ToLower(opts.Prefix) + "." + s.prefix + ">"}
		}
		if _, err := q.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			q.Close()
			return nil, fmt.Errorf("queue: create stream %s: %w", cfg.Name, err)
		}
	}
	// The streams' own dedup forgets ids of deleted (delivered) messages
	// when the server restarts; this bucket remembers them for the window.
	q.ids, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:  opts.Prefix + "_IDS",
		TTL:     opts.DedupWindow,
		Storage: jetstream.FileStorage,
		History: 1,
	})
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("queue: create id bucket: %w", err)
	}
	// NumDelivered counts every delivery, nacked or not. To tell the
	// deliveries that reached no outcome (a crash, a kill, an expired ack
	// deadline) from retries the handler asked for, an explicit nack of a
	// message records NumDelivered here; the next delivery subtracts it.
	// Only nacks write and only redeliveries read, so the common path
	// (delivered once, acked) costs nothing.
	q.nacks, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:  opts.Prefix + "_NACKS",
		TTL:     nackRecordTTL,
		Storage: jetstream.FileStorage,
		History: 1,
	})
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("queue: create nack bucket: %w", err)
	}
	return q, nil
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

// unseen drops messages whose producer id was already accepted within the
// dedup window, also before a restart. It returns the messages to publish.
func (q *JetStream) unseen(msgs []*message.Message) []*message.Message {
	out := msgs[:0:0]
	for _, m := range msgs {
		id := m.Metadata.Get(MetaDedupID)
		if id == "" {
			out = append(out, m)
			continue
		}
		if _, err := q.ids.Get(context.Background(), idKey(id)); err == nil {
			continue
		}
		out = append(out, m)
	}
	return out
}

// remember records the producer ids of published messages.
func (q *JetStream) remember(msgs []*message.Message) error {
	var futures []jetstream.PubAckFuture
	for _, m := range msgs {
		id := m.Metadata.Get(MetaDedupID)
		if id == "" {
			continue
		}
		f, err := q.js.PublishAsync("$KV."+q.opts.Prefix+"_IDS."+idKey(id), nil)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	return waitAcks(futures)
}

func waitAcks(futures []jetstream.PubAckFuture) error {
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-timeout.C:
			return errors.New("no acknowledgement within 30s")
		}
	}
	return nil
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
	if ingest {
		msgs = q.unseen(msgs)
	}
	subj := q.subject(topic)
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, msg := range msgs {
		m := nats.NewMsg(subj)
		m.Data = msg.Payload
		for k, v := range msg.Metadata {
			if k == MetaAttempt || k == MetaNackDelay {
				continue
			}
			m.Header.Set(k, v)
		}
		m.Header.Set("hookbus_uuid", msg.UUID)
		var popts []jetstream.PublishOpt
		if id := msg.Metadata.Get(MetaDedupID); id != "" {
			popts = append(popts, jetstream.WithMsgID(id))
		}
		f, err := q.js.PublishMsgAsync(m, popts...)
		if err != nil {
			return fmt.Errorf("queue: publish to %s: %w", topic, err)
		}
		futures = append(futures, f)
	}
	if err := waitAcks(futures); err != nil {
		return fmt.Errorf("queue: publish to %s: %w", topic, err)
	}
	if ingest {
		// Only after the events are durable: a crash in between means the
		// producer's retry is queued again (at-least-once), never lost.
		if err := q.remember(msgs); err != nil {
			return fmt.Errorf("queue: record producer ids: %w", err)
		}
	}
	return nil
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
	var out []Backlog
	for name, b := range groups {
		stream, err := q.streamFor(b.Topic)
		if err != nil {
			continue
		}
		info, err := q.js.Consumer(ctx, stream, name)
		if err != nil {
			return out, err
		}
		ci := info.CachedInfo()
		b.Pending, b.Unacked = ci.NumPending, uint64(ci.NumAckPending)
		out = append(out, b)
	}
	return out, nil
}

// Conn exposes the NATS connection (for tests and tools).
func (q *JetStream) Conn() *nats.Conn { return q.nc }

// prefetch is how many messages a subscription buffers beyond those in
// flight. Buffered messages get no in-progress signal, so the buffer is kept
// to a quarter of the window: a buffered message waits for about a quarter
// of a handler's time, well within AckWait.
func prefetch(window int) int { return max(1, min(window/4, 500)) }

// maxAckPending bounds the messages of one consumer that are delivered or
// waiting for a delayed redelivery.
const maxAckPending = 1_000_000

type jsSubscriber struct {
	q           *JetStream
	js          jetstream.JetStream // on one of q's consumer connections
	nc          *nats.Conn          // the connection of js
	group       string
	maxInFlight int
	mu          sync.Mutex
	closing     chan struct{}
	wg          sync.WaitGroup
	closed      bool
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
		MaxAckPending: maxAckPending,
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

func (s *jsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ackWait := s.q.opts.AckWait
	consName := consumerName(s.q.opts.Prefix, s.group, topic)
	nackPrefix := nackKeyPrefix(consName)
	cons, err := s.consumer(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	sem := make(chan struct{}, s.maxInFlight)
	done := make(chan struct{})
	var inflight sync.WaitGroup
	var sendMu sync.RWMutex
	outClosed := false
	// Messages fetched but not handed to the handler at shutdown are handed
	// back once the consume loop has stopped, so it cannot fetch the copies.
	type fetched struct {
		jm         jetstream.Msg
		deliveries uint64
	}
	var backMu sync.Mutex
	var back []fetched
	backDone := false // the consume loop has stopped: hand back at once
	later := func(jm jetstream.Msg, deliveries uint64) {
		backMu.Lock()
		if backDone {
			backMu.Unlock()
			s.handBack(jm, deliveries)
			return
		}
		back = append(back, fetched{jm, deliveries})
		backMu.Unlock()
	}
	handle := func(jm jetstream.Msg) {
		hdr := jm.Headers()
		// A message handed back at shutdown is a copy for one group.
		if g := hdr.Get(hdrForGroup); g != "" && g != s.group {
			_ = jm.Ack()
			return
		}
		// nacked: this message has a nack record.
		nacked, numDelivered, streamSeq, deliveries := false, uint64(0), uint64(0), uint64(1)
		if md, err := jm.Metadata(); err == nil {
			numDelivered, streamSeq, deliveries = md.NumDelivered, md.Sequence.Stream, md.NumDelivered
			if md.NumDelivered > 1 {
				kctx, kcancel := context.WithTimeout(context.Background(), 5*time.Second)
				e, err := s.q.nacks.Get(kctx, nackPrefix+strconv.FormatUint(md.Sequence.Stream, 10))
				kcancel()
				if err == nil {
					nacked = true
					if at, err := strconv.ParseUint(string(e.Value()), 10, 64); err == nil && at < deliveries {
						deliveries -= at
					}
				}
			}
		}
		// A copy handed back at shutdown carries the count of the original,
		// until an explicit nack of the copy starts it again.
		if v := hdr.Get(hdrPriorDeliveries); v != "" && !nacked {
			if prior, err := strconv.ParseUint(v, 10, 64); err == nil {
				deliveries += prior
			}
		}
		sendMu.RLock()
		defer sendMu.RUnlock()
		if outClosed {
			later(jm, deliveries)
			return
		}
		select {
		case sem <- struct{}{}:
		case <-done:
			// Hand buffered messages back now instead of after AckWait.
			later(jm, deliveries)
			return
		}
		msg := message.NewMessage(hdr.Get("hookbus_uuid"), jm.Data())
		for k, vs := range hdr {
			if len(vs) > 0 && k != "hookbus_uuid" && k != hdrForGroup && k != hdrPriorDeliveries && !strings.HasPrefix(k, "Nats-") {
				msg.Metadata.Set(k, vs[0])
			}
		}
		if numDelivered > 0 {
			msg.Metadata.Set(MetaAttempt, strconv.FormatUint(numDelivered, 10))
		}
		msg.Metadata.Set(MetaDeliveries, strconv.FormatUint(deliveries, 10))
		msgCtx, cancel := context.WithCancel(ctx)
		msg.SetContext(msgCtx)
		select {
		case out <- msg:
		case <-done:
			cancel()
			<-sem
			later(jm, deliveries)
			return
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			defer cancel()
			// Keep long-running handlers from being redelivered.
			keepAlive := time.NewTicker(ackWait / 3)
			defer keepAlive.Stop()
			done := done
			var grace <-chan time.Time
			for {
				select {
				case <-msg.Acked():
					if err := jm.Ack(); err != nil {
						s.q.log.Warn("queue ack failed; message may be redelivered", "topic", topic, "error", err)
					}
					return
				case <-msg.Nacked():
					// Recorded before the nak, so the redelivery sees it.
					if numDelivered > 0 {
						kctx, kcancel := context.WithTimeout(context.Background(), 5*time.Second)
						_, err := s.q.nacks.Put(kctx, nackPrefix+strconv.FormatUint(streamSeq, 10), []byte(strconv.FormatUint(numDelivered, 10)))
						kcancel()
						if err != nil {
							s.q.log.Warn("queue: recording a nack failed; its redelivery may count as one without an outcome", "topic", topic, "error", err)
						}
					}
					if d := NackDelay(msg); d > 0 {
						_ = jm.NakWithDelay(d)
					} else {
						_ = jm.Nak()
					}
					return
				case <-keepAlive.C:
					_ = jm.InProgress()
				case <-done:
					// The subscription is closing: the handler gets
					// CloseGrace to finish (kept alive meanwhile), then the
					// message goes back at once rather than after AckWait.
					done = nil
					grace = time.After(s.q.opts.CloseGrace)
				case <-grace:
					s.handBack(jm, deliveries)
					return
				}
			}
		}()
	}
	opts := []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(prefetch(s.maxInFlight)), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			s.q.log.Debug("queue consume", "topic", topic, "error", err)
		}
	})}
	cc, err := cons.Consume(handle, opts...)
	if err != nil {
		return nil, fmt.Errorf("queue: consume %s: %w", topic, err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// When the consume loop ends by itself (the consumer was deleted,
		// or the server lost its state), recreate it once a second rather
		// than leave this group silently stopped.
		closed, retry := cc.Closed(), (<-chan time.Time)(nil)
	run:
		for {
			select {
			case <-ctx.Done():
				break run
			case <-s.closing:
				break run
			case <-closed:
				s.q.log.Warn("queue consumer stopped; recreating it", "group", s.group, "topic", topic)
				closed, retry = nil, time.After(time.Second)
			case <-retry:
				c, err := s.consumer(ctx, topic)
				var next jetstream.ConsumeContext
				if err == nil {
					next, err = c.Consume(handle, opts...)
				}
				if err != nil {
					s.q.log.Error("queue consumer cannot be recreated yet", "group", s.group, "topic", topic, "error", err)
					retry = time.After(time.Second)
					continue
				}
				cc, closed, retry = next, next.Closed(), nil
			}
		}
		s.pauseForHandBack(topic, consName)
		// Release a callback blocked on a full window before stopping.
		close(done)
		cc.Drain()
		<-cc.Closed()
		sendMu.Lock()
		outClosed = true
		sendMu.Unlock()
		backMu.Lock()
		pending := back
		back, backDone = nil, true
		backMu.Unlock()
		for _, f := range pending {
			s.handBack(f.jm, f.deliveries)
		}
		inflight.Wait()
		close(out)
	}()
	return out, nil
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
	// Pending and Unacked are its undelivered messages (see Backlog).
	Pending, Unacked uint64
}

// StaleGroups lists the durable consumers of this namespace's streams that
// this process has not subscribed with. Call it once every subscription is
// open.
func (q *JetStream) StaleGroups(ctx context.Context) ([]StaleGroup, error) {
	q.mu.Lock()
	used := maps.Clone(q.groups)
	q.mu.Unlock()
	var out []StaleGroup
	for _, s := range jsStreams {
		stream, err := q.js.Stream(ctx, q.opts.Prefix+s.suffix)
		if err != nil {
			return out, fmt.Errorf("queue: stream %s%s: %w", q.opts.Prefix, s.suffix, err)
		}
		list := stream.ListConsumers(ctx)
		for ci := range list.Info() {
			if _, ok := used[ci.Name]; ok || ci.Config.Durable == "" {
				continue
			}
			out = append(out, StaleGroup{Stream: ci.Stream, Name: ci.Name, Pending: ci.NumPending, Unacked: uint64(ci.NumAckPending)})
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
	return nil
}
