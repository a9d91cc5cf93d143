package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// RedisOptions configure the Redis Streams driver.
type RedisOptions struct {
	// URL of the Redis server, e.g. redis://127.0.0.1:6379/0 (rediss:// for
	// TLS; go-redis URL parameters such as pool_size are honoured).
	URL string
	// Namespace prefixes every stream key and consumer group (default
	// "hookbus"), so several deployments or tests can share one server.
	Namespace string
	Logger    *slog.Logger
	// ClaimIdle is how long a message may stay pending with a consumer that
	// stopped refreshing it (a killed process) before another consumer of
	// the group takes it over (default 30s). Live consumers refresh their
	// in-flight messages, so slow handlers are not affected.
	ClaimIdle time.Duration
	// ClaimInterval is how often each subscription looks for such messages
	// (default 5s).
	ClaimInterval time.Duration
	// TrimInterval is how often streams are trimmed of entries every group
	// has acknowledged (default 1m, negative disables trimming).
	TrimInterval time.Duration
	// CloseGrace is how long a message handed out when its subscription
	// ends may still be acked or nacked (default DefaultCloseGrace, at most
	// half of ClaimIdle); after it, the message is left to be claimed again.
	CloseGrace time.Duration
}

// Redis is the Redis Streams driver (watermill-redisstream). A topic is the
// stream "<namespace>:<topic>" and a hookbus consumer group the Redis
// consumer group "<namespace>.<group>"; every subscription is a Redis
// consumer of its own, named host-pid-random.
//
// Guarantees and limits:
//   - Durable only as far as the server persists: with appendonly=no a Redis
//     restart loses queued messages. Run Redis with appendonly yes and
//     appendfsync always (or everysec, accepting up to a second of loss).
//   - A nack redelivers at once to the same subscription (after MetaNackDelay
//     when set, holding one in-flight slot meanwhile). For waits that must
//     not hold a slot, PublishAt keeps messages in a sorted set until due
//     (see redis_delay.go).
//   - redisstream hands out one message at a time, so a subscription runs
//     maxInFlight readers (at most 16), each a connection that blocks in
//     XREADGROUP for up to a second while idle. Order is kept only with
//     maxInFlight 1. The pool allows 512 connections unless the URL sets
//     pool_size.
//   - A killed process's in-flight messages go to the group's other
//     consumers after ClaimIdle; a cleanly closed subscription hands them
//     back at once.
//   - Acknowledged entries are trimmed (XTRIM MINID) once every group of
//     the stream has acknowledged them; a group that never consumes again
//     keeps the stream growing: delete it (XGROUP DESTROY).
//   - MetaAttempt counts redeliveries after nacks within a subscription;
//     a message taken over from another consumer starts again at 1.
//   - No deduplication.
type Redis struct {
	opts   RedisOptions
	client *redis.Client
	pub    *redisstream.Publisher
	log    *slog.Logger
	wlog   watermill.LoggerAdapter
	host   string // consumer name prefix

	mu     sync.Mutex
	topics map[string]struct{} // stream keys seen, for trimming
	groups knownGroups         // groups and topics subscribed, for Backlog
	subs   map[*redisSubscriber]struct{}
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

const (
	// redisMaxWorkers caps the readers of one subscription: each holds a
	// connection in a blocking XREADGROUP while idle.
	redisMaxWorkers = 16
	// redisBlock is how long an idle reader blocks on the server.
	redisBlock = time.Second
)

var namespaceRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func checkNamespace(ns string) (string, error) {
	if ns == "" {
		return "hookbus", nil
	}
	if !namespaceRe.MatchString(ns) || len(ns) > 32 {
		return "", fmt.Errorf("queue.namespace %q: use at most 32 letters, digits, '-' or '_'", ns)
	}
	return ns, nil
}

// NewRedis connects to Redis and checks the server answers.
func NewRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	ns, err := checkNamespace(o.Namespace)
	if err != nil {
		return nil, err
	}
	o.Namespace = ns
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ClaimIdle <= 0 {
		o.ClaimIdle = 30 * time.Second
	}
	if o.ClaimInterval <= 0 {
		o.ClaimInterval = 5 * time.Second
	}
	if o.TrimInterval == 0 {
		o.TrimInterval = time.Minute
	}
	if o.CloseGrace <= 0 {
		o.CloseGrace = DefaultCloseGrace
	}
	// A message held past ClaimIdle without the heartbeat (which stops
	// with the subscription) is claimed by another consumer: the grace
	// ends well before.
	o.CloseGrace = min(o.CloseGrace, o.ClaimIdle/2)
	if o.URL == "" {
		return nil, errors.New("queue.url: required for the redis driver (redis://host:6379/0)")
	}
	ropts, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("queue.url: %w", err)
	}
	if ropts.PoolSize == 0 {
		// Every reader holds a connection while it waits for messages
		// (see redisMaxWorkers).
		ropts.PoolSize = 512
	}
	client := redis.NewClient(ropts)
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("queue: connect to redis %s: %w", ropts.Addr, err)
	}
	q := &Redis{
		opts:   o,
		client: client,
		log:    o.Logger.With("queue", "redis"),
		topics: map[string]struct{}{},
		subs:   map[*redisSubscriber]struct{}{},
		done:   make(chan struct{}),
	}
	q.wlog = driverLogger(q.log)
	host, _ := os.Hostname()
	if host == "" {
		host = "hookbus"
	}
	q.host = host + "-" + strconv.Itoa(os.Getpid())
	q.pub, err = redisstream.NewPublisher(redisstream.PublisherConfig{Client: noCloseRedis{client}}, q.wlog)
	if err != nil {
		client.Close()
		return nil, err
	}
	// CONFIG may be disabled on managed servers; then we cannot tell.
	if v, err := client.ConfigGet(ctx, "appendonly").Result(); err == nil && v["appendonly"] == "no" {
		q.log.Warn("redis runs without appendonly: queued messages are lost if the Redis server restarts", "addr", ropts.Addr)
	}
	if o.TrimInterval > 0 {
		q.wg.Add(1)
		go every(&q.wg, q.done, o.TrimInterval, o.TrimInterval, q.trim)
	}
	q.wg.Add(1)
	go every(&q.wg, q.done, delayMoveInterval, delayLease, q.moveDue)
	return q, nil
}

// noCloseRedis shares the queue's client with redisstream, whose Close
// would close it.
type noCloseRedis struct{ redis.UniversalClient }

func (noCloseRedis) Close() error { return nil }

func (q *Redis) key(topic string) string { return q.opts.Namespace + ":" + topic }

func (q *Redis) group(group string) string { return q.opts.Namespace + "." + group }

func (q *Redis) remember(key string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return errClosed
	}
	q.topics[key] = struct{}{}
	return nil
}

// Features implements Queue.
func (q *Redis) Features() Features { return Features{Durable: true, CountsDeliveries: true} }

// claimCounts remembers the delivery counts of messages a subscription is
// about to take over from a stopped consumer. Redis counts a delivery on
// XREADGROUP and on each XCLAIM (refresh and release claim with JUSTID,
// which does not count), and a nack is redelivered in-process without
// either: so the count of a claimed message is its deliveries without an
// outcome.
type claimCounts struct{ m sync.Map } // message UUID -> deliveries including the claim

// note is called just before the driver claims xp. Its UUID is read from
// the entry: the claim hands the message over without its stream id.
func (c *claimCounts) note(client *redis.Client, key string, xp redis.XPendingExt) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	entries, err := client.XRange(ctx, key, xp.ID, xp.ID).Result()
	if err != nil || len(entries) == 0 {
		return
	}
	if uuid, ok := entries[0].Values[redisstream.UUIDHeaderKey].(string); ok {
		c.m.Store(uuid, int(xp.RetryCount)+1)
	}
}

// deliver implements deliveryCounter: 1 unless the message was just claimed.
func (c *claimCounts) deliver(uuid string, _ bool) int {
	if v, ok := c.m.LoadAndDelete(uuid); ok {
		return v.(int)
	}
	return 1
}

// deliveryCounter counts, for relay, the deliveries of a message that
// reached no outcome.
type deliveryCounter interface {
	// deliver is called on each delivery and returns the count, this
	// delivery included; afterNack tells that the message was explicitly
	// nacked just before, which starts the count again.
	deliver(uuid string, afterNack bool) int
}

// Provision implements Queue: it creates the streams, so trimming and
// XINFO see them before the first message.
func (q *Redis) Provision(ctx context.Context, topics []string) error {
	for _, t := range topics {
		key := q.key(t)
		if err := q.remember(key); err != nil {
			return err
		}
		// XADD+XDEL would leave a tombstone ID; creating and dropping a
		// throwaway group makes the stream without any entry.
		if err := createGroup(ctx, q.client, key, q.group("~provision")); err != nil {
			return fmt.Errorf("queue: provision %s: %w", t, err)
		}
		if err := q.client.XGroupDestroy(ctx, key, q.group("~provision")).Err(); err != nil {
			return fmt.Errorf("queue: provision %s: %w", t, err)
		}
	}
	return nil
}

func createGroup(ctx context.Context, c redis.UniversalClient, key, group string) error {
	err := c.XGroupCreateMkStream(ctx, key, group, "0").Err()
	if err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return nil
	}
	return err
}

// Publish implements message.Publisher: XADD per message; it returns once
// Redis has the messages (durable as the server's persistence settings).
func (q *Redis) Publish(topic string, msgs ...*message.Message) error {
	key := q.key(topic)
	if err := q.remember(key); err != nil {
		return err
	}
	if err := q.pub.Publish(key, msgs...); err != nil {
		return fmt.Errorf("queue: publish to %s: %w", topic, err)
	}
	return nil
}

// Subscriber implements Queue. Each subscription reads with up to
// maxInFlight (at most 16) concurrent readers of the group.
func (q *Redis) Subscriber(group string, maxInFlight int) (message.Subscriber, error) {
	if group == "" {
		return nil, errors.New("queue: consumer group name is empty")
	}
	if maxInFlight <= 0 {
		maxInFlight = 1
	}
	if maxInFlight > redisMaxWorkers {
		maxInFlight = redisMaxWorkers
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &redisSubscriber{q: q, name: group, group: q.group(group), workers: maxInFlight, ctx: ctx, cancel: cancel}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		cancel()
		return nil, errClosed
	}
	q.subs[s] = struct{}{}
	return s, nil
}

// Close stops every subscription, releases their pending messages to the
// other consumers of their groups and closes the connection pool.
func (q *Redis) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.done)
	subs := make([]*redisSubscriber, 0, len(q.subs))
	for s := range q.subs {
		subs = append(subs, s)
	}
	q.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	q.wg.Wait()
	q.pub.Close()
	return q.client.Close()
}

type redisSubscriber struct {
	q       *Redis
	name    string // the hookbus group
	group   string // the Redis group: namespace and name
	workers int
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// SubscribeInitialize implements message.SubscribeInitializer: it creates
// the consumer group (and the stream), so the group keeps every message
// published from now on. A new group starts at the oldest entry the stream
// still holds.
func (s *redisSubscriber) SubscribeInitialize(topic string) error {
	key := s.q.key(topic)
	if err := s.q.remember(key); err != nil {
		return err
	}
	s.q.groups.remember(s.name, topic)
	if err := createGroup(s.ctx, s.q.client, key, s.group); err != nil {
		return fmt.Errorf("queue: create group %s on %s: %w", s.group, topic, err)
	}
	return nil
}

// Subscribe implements message.Subscriber. The channel is closed when ctx
// is cancelled or the subscriber is closed; unacknowledged messages then
// go back to the group.
func (s *redisSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	q := s.q
	key := q.key(topic)
	if err := q.remember(key); err != nil {
		return nil, err
	}
	q.groups.remember(s.name, topic)
	if s.ctx.Err() != nil {
		return nil, errClosed
	}
	consumer := q.host + "-" + randomHex(4)
	claimed := &claimCounts{}
	inner, err := s.reader(key, consumer, claimed)
	if err != nil {
		return nil, err
	}
	subCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	innerCtx, innerCancel := context.WithCancel(context.WithoutCancel(ctx))
	ins := make([]<-chan *message.Message, 0, s.workers)
	for range s.workers {
		ch, err := inner.Subscribe(innerCtx, key)
		if err != nil {
			stop()
			cancel()
			innerCancel()
			inner.Close()
			return nil, fmt.Errorf("queue: subscribe %s to %s: %w", s.group, topic, err)
		}
		ins = append(ins, ch)
	}
	out := make(chan *message.Message)
	var relays sync.WaitGroup
	for _, ch := range ins {
		relays.Add(1)
		go func() {
			defer relays.Done()
			relay(subCtx, ch, out, claimed, q.opts.CloseGrace)
		}()
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		stop()
		cancel()
		innerCancel()
		inner.Close()
		return nil, errClosed
	}
	q.wg.Add(1)
	s.wg.Add(1)
	q.mu.Unlock()
	go func() {
		defer q.wg.Done()
		s.heartbeat(subCtx, key, consumer)
		stop()
		relays.Wait()
		close(out)
		s.stopReader(inner, innerCancel, key, consumer)
	}()
	return out, nil
}

// reader makes the watermill-redisstream subscriber of one subscription:
// consumer of the group, claiming what stopped consumers left (noting its
// delivery count in claimed first).
func (s *redisSubscriber) reader(key, consumer string, claimed *claimCounts) (*redisstream.Subscriber, error) {
	q := s.q
	return redisstream.NewSubscriber(redisstream.SubscriberConfig{
		ShouldClaimPendingMessage:     func(xp redis.XPendingExt) bool { claimed.note(q.client, key, xp); return true },
		Client:                        noCloseRedis{q.client},
		Consumer:                      consumer,
		ConsumerGroup:                 s.group,
		NackResendSleep:               redisstream.NoSleep,
		BlockTime:                     redisBlock,
		ClaimInterval:                 q.opts.ClaimInterval,
		MaxIdleTime:                   q.opts.ClaimIdle,
		OldestId:                      "0",
		DisableIndefiniteInitialBlock: true,
		ShouldStopOnReadErrors:        func(err error) bool { return errors.Is(err, redis.ErrClosed) },
	}, q.wlog.With(watermill.LogFields{"group": s.group}))
}

// heartbeat refreshes the consumer's in-flight messages until ctx ends.
func (s *redisSubscriber) heartbeat(ctx context.Context, key, consumer string) {
	hb := time.NewTicker(s.q.opts.ClaimIdle / 4)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			s.refresh(ctx, key, consumer)
		}
	}
}

// stopReader ends the reader once its relays have stopped: it lets the
// last acks through (ackGrace), closes it and releases what the consumer
// still holds to the group, then marks the subscription done.
func (s *redisSubscriber) stopReader(inner *redisstream.Subscriber, innerCancel context.CancelFunc, key, consumer string) {
	time.Sleep(ackGrace)
	innerCancel()
	inner.Close()
	s.release(key, consumer)
	s.wg.Done()
	// A reader blocked in XREADGROUP during Close may still take one
	// message for this consumer: release again once it returned, also
	// when the whole queue closes (its Close waits for this), so the
	// next start claims the message at once rather than after ClaimIdle.
	time.Sleep(redisBlock + 500*time.Millisecond)
	s.release(key, consumer)
}

// pending lists the entries the consumer holds.
func (s *redisSubscriber) pending(ctx context.Context, key, consumer string) ([]string, error) {
	ps, err := s.q.client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: key, Group: s.group, Start: "-", End: "+", Count: 10000, Consumer: consumer,
	}).Result()
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	return ids, nil
}

// refresh resets the idle time of the messages this live consumer holds,
// so other consumers claim them only after this process stops. MinIdle
// skips messages another consumer claimed in between.
func (s *redisSubscriber) refresh(ctx context.Context, key, consumer string) {
	ids, err := s.pending(ctx, key, consumer)
	if err != nil || len(ids) == 0 {
		if err != nil && ctx.Err() == nil {
			s.q.log.Warn("list pending messages", "stream", key, "group", s.group, "err", err)
		}
		return
	}
	err = s.q.client.XClaimJustID(ctx, &redis.XClaimArgs{
		Stream: key, Group: s.group, Consumer: consumer, MinIdle: s.q.opts.ClaimIdle / 8, Messages: ids,
	}).Err()
	if err != nil && ctx.Err() == nil {
		s.q.log.Warn("refresh pending messages", "stream", key, "group", s.group, "err", err)
	}
}

// release marks the messages a stopped consumer still holds as idle long
// enough for the group's other consumers to claim them at once.
func (s *redisSubscriber) release(key, consumer string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ids, err := s.pending(ctx, key, consumer)
	if err != nil || len(ids) == 0 {
		return
	}
	args := []any{"XCLAIM", key, s.group, consumer, 0}
	for _, id := range ids {
		args = append(args, id)
	}
	args = append(args, "IDLE", (s.q.opts.ClaimIdle + time.Hour).Milliseconds(), "JUSTID")
	if err := s.q.client.Do(ctx, args...).Err(); err != nil {
		s.q.log.Warn("release pending messages", "stream", key, "group", s.group, "err", err)
	}
}

// Close ends every subscription of this subscriber.
func (s *redisSubscriber) Close() error {
	s.cancel()
	s.wg.Wait()
	s.q.mu.Lock()
	delete(s.q.subs, s)
	s.q.mu.Unlock()
	return nil
}

// trim deletes, from every stream this process used, the entries each
// consumer group has acknowledged. Streams without groups keep everything
// for the groups to come.
func (q *Redis) trim(ctx context.Context) {
	q.mu.Lock()
	keys := make([]string, 0, len(q.topics))
	for k := range q.topics {
		keys = append(keys, k)
	}
	q.mu.Unlock()
	for _, key := range keys {
		if err := q.trimStream(ctx, key); err != nil && ctx.Err() == nil {
			q.log.Warn("trim stream", "stream", key, "err", err)
		}
	}
}

func (q *Redis) trimStream(ctx context.Context, key string) error {
	groups, err := q.client.XInfoGroups(ctx, key).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return nil
		}
		return err
	}
	var min streamID
	for i, g := range groups {
		bound, err := parseStreamID(g.LastDeliveredID)
		if err != nil {
			return err
		}
		bound.seq++ // everything delivered and not pending is acknowledged
		if g.Pending > 0 {
			p, err := q.client.XPending(ctx, key, g.Name).Result()
			if err != nil {
				return err
			}
			if p.Count > 0 {
				if bound, err = parseStreamID(p.Lower); err != nil {
					return err
				}
			}
		}
		if i == 0 || bound.less(min) {
			min = bound
		}
	}
	if len(groups) == 0 {
		return nil
	}
	return q.client.XTrimMinID(ctx, key, min.String()).Err()
}

type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, error) {
	ms, seq, _ := strings.Cut(s, "-")
	var id streamID
	var err error
	if id.ms, err = strconv.ParseUint(ms, 10, 64); err != nil {
		return id, fmt.Errorf("stream id %q: %w", s, err)
	}
	if seq != "" {
		if id.seq, err = strconv.ParseUint(seq, 10, 64); err != nil {
			return id, fmt.Errorf("stream id %q: %w", s, err)
		}
	}
	return id, nil
}

func (a streamID) less(b streamID) bool { return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq }

func (a streamID) String() string { return fmt.Sprintf("%d-%d", a.ms, a.seq) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// relay hands the messages of a Watermill driver subscription (which
// delivers one message at a time and redelivers a nacked one at once) to
// out until ctx is done. It sets MetaAttempt (counting redeliveries after nacks), honours
// MetaNackDelay before passing a nack on, and gives each delivery a context
// that is cancelled once it is acked, nacked or abandoned. Shared by the
// Redis and PostgreSQL drivers, which run the driver's subscription under
// a context of their own, cancelled only ackGrace after ctx, so that the
// driver still records acks given just before the subscription ended.
//
// counter counts deliveries without an outcome; relay sets its count as
// MetaDeliveries.
//
// A message handed out when ctx ends may still be acked or nacked for
// grace (the handler of a consumer being stopped finishes its work), and
// its outcome is passed on: relay returns after that.
func relay(ctx context.Context, in <-chan *message.Message, out chan<- *message.Message, counter deliveryCounter, grace time.Duration) {
	var nacked string // UUID of the last nacked message
	attempt := 0
	for {
		var msg *message.Message
		select {
		case m, ok := <-in:
			if !ok {
				return
			}
			msg = m
		case <-ctx.Done():
			return
		}
		afterNack := msg.UUID == nacked && nacked != ""
		if afterNack {
			attempt++
		} else {
			attempt = 1
		}
		nacked = ""
		d := msg.Copy()
		d.Metadata.Set(MetaAttempt, strconv.Itoa(attempt))
		d.Metadata.Set(MetaDeliveries, strconv.Itoa(counter.deliver(msg.UUID, afterNack)))
		dctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(msg.Context(), cancel)
		d.SetContext(dctx)
		select {
		case out <- d:
		case <-dctx.Done():
			stop()
			cancel()
			continue // the driver redelivers it
		}
		select {
		case <-d.Acked():
			msg.Ack()
		case <-d.Nacked():
			nacked = msg.UUID
			if delay := NackDelay(d); delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-dctx.Done():
				}
				t.Stop()
			}
			msg.Nack()
		case <-dctx.Done():
			if ctx.Err() != nil && msg.Context().Err() == nil {
				settleLate(d, msg, grace)
			}
		}
		stop()
		cancel()
	}
}

// settleLate waits up to grace for the outcome of d, handed out before its
// subscription ended, and passes it on to msg; without one in time, msg is
// left unsettled (the driver redelivers it).
func settleLate(d, msg *message.Message, grace time.Duration) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-d.Acked():
		msg.Ack()
	case <-d.Nacked():
		msg.Nack()
	case <-t.C:
	case <-msg.Context().Done():
	}
}

// driverLogger adapts slog for a Watermill driver: its routine Info lines
// become Debug, and errors caused by a subscription ending (a cancelled
// context, a closed client) become Debug too, so a clean shutdown logs no errors.
func driverLogger(l *slog.Logger) watermill.LoggerAdapter {
	return quietCancel{watermill.NewSlogLoggerWithLevelMapping(l, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})}
}

type quietCancel struct{ watermill.LoggerAdapter }

func (l quietCancel) Error(msg string, err error, fields watermill.LogFields) {
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, redis.ErrClosed) ||
		strings.Contains(err.Error(), context.Canceled.Error())) {
		l.Debug(msg, fields.Add(watermill.LogFields{"err": err.Error()}))
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l quietCancel) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return quietCancel{l.LoggerAdapter.With(fields)}
}

// ackGrace is how long a driver subscription outlives its hookbus
// subscription, to write the last acks.
const ackGrace = 100 * time.Millisecond
