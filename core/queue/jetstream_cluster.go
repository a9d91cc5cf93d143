package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// What the JetStream driver does on a cluster: replicas checked and
// applied, errors that mean "no leader for now" told apart from the
// others, and a health check for /readyz.

// JetStream API error codes the driver reads (nats-server's errors.json).
const (
	jsErrClusterNotAvail       jetstream.ErrorCode = 10008 // JetStream system temporarily unavailable
	jsErrClusterNotLeader      jetstream.ErrorCode = 10009 // JetStream cluster can not handle request
	jsErrStreamOffline         jetstream.ErrorCode = 10118 // stream is offline
	jsErrClusterNoPeers        jetstream.ErrorCode = 10005 // no suitable peers for placement
	jsErrInsufficientResources jetstream.ErrorCode = 10023 // insufficient resources
	jsErrReplicasNotSupported  jetstream.ErrorCode = 10074 // replicas > 1 not supported in non-clustered mode
)

// errNoAck is the error of a publish whose acknowledgement did not come in
// time (waitAcks): the stream may have lost its leader meanwhile.
var errNoAck = errors.New("no acknowledgement in time")

// jsUnavailable reports whether err, from a publish or a JetStream API
// call, means the cluster cannot take the request for now (no server
// reachable, no stream leader, an election under way) rather than that
// the request is wrong.
func jsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []error{nats.ErrNoResponders, jetstream.ErrNoStreamResponse, nats.ErrTimeout,
		jetstream.ErrAsyncPublishTimeout, errNoAck, context.DeadlineExceeded, nats.ErrConnectionClosed,
		nats.ErrConnectionReconnecting, nats.ErrReconnectBufExceeded, nats.ErrDisconnected,
		nats.ErrConnectionDraining, nats.ErrNoServers} {
		if errors.Is(err, e) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jsErrClusterNotAvail, jsErrClusterNotLeader, jsErrStreamOffline:
			return true
		}
		// Placement errors are 503s too, but retrying does not mend them.
		return apiErr.Code == 503 && apiErr.ErrorCode != jsErrInsufficientResources
	}
	return false
}

// unavailable wraps err as an *UnavailableError when jsUnavailable says
// so, else returns it as it is.
func unavailable(err error) error {
	if !jsUnavailable(err) {
		return err
	}
	return &UnavailableError{Err: err}
}

// replicas is the replica count of the namespace's streams and buckets.
func (q *JetStream) replicas() int { return max(1, q.opts.Replicas) }

// checkReplicas refuses a replica count the server cannot hold, before
// anything is created: more than one on a server that is not part of a
// cluster. (A cluster with fewer servers than replicas is refused by the
// server when the streams are created; replicaError words that.)
func (q *JetStream) checkReplicas() error {
	n := q.replicas()
	if n == 1 {
		return nil
	}
	if q.ns != nil {
		return fmt.Errorf("queue.replicas: %d replicas need a NATS JetStream cluster; the embedded queue is one server", n)
	}
	if q.nc.ConnectedClusterName() == "" {
		return fmt.Errorf("queue.replicas: %d replicas need a NATS JetStream cluster of at least %d servers, but the server at %s is not part of a cluster; set queue.replicas: 1 or point queue.url at the cluster",
			n, n, q.nc.ConnectedUrlRedacted())
	}
	return nil
}

// replicaError words a stream or bucket creation refused for want of
// servers, naming queue.replicas; other errors are returned as they are.
func (q *JetStream) replicaError(what string, err error) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return err
	}
	switch apiErr.ErrorCode {
	case jsErrInsufficientResources, jsErrClusterNoPeers, jsErrReplicasNotSupported:
		return fmt.Errorf("queue.replicas: the NATS cluster %q cannot hold %s with %d replicas (%v): it needs at least %d JetStream servers up, with room to spare; lower queue.replicas or add servers",
			q.nc.ConnectedClusterName(), what, q.replicas(), apiErr.Description, q.replicas())
	}
	return err
}

// jsHealth is the last health check's result, reused for a second.
type jsHealth struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// healthTTL is how long a health check's result is reused.
const healthTTL = time.Second

// Health implements HealthChecker: the queue works when the connection is
// up and every stream of the namespace answers (on a cluster: has a
// leader).
func (q *JetStream) Health(ctx context.Context) error {
	q.health.mu.Lock()
	defer q.health.mu.Unlock()
	if !q.health.at.IsZero() && time.Since(q.health.at) < healthTTL {
		return q.health.err
	}
	q.health.err = q.checkHealth(ctx)
	q.health.at = time.Now()
	return q.health.err
}

func (q *JetStream) checkHealth(ctx context.Context) error {
	if st := q.nc.Status(); st != nats.CONNECTED {
		return &UnavailableError{Err: fmt.Errorf("NATS connection %s", st)}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, s := range jsStreams {
		if s.retired {
			continue
		}
		name := q.opts.Prefix + s.suffix
		st, err := q.js.Stream(ctx, name)
		if err != nil {
			return &UnavailableError{Err: fmt.Errorf("stream %s: %w", name, err)}
		}
		if ci := st.CachedInfo().Cluster; ci != nil && ci.Leader == "" && q.nc.ConnectedClusterName() != "" {
			return &UnavailableError{Err: fmt.Errorf("stream %s has no leader", name)}
		}
	}
	return nil
}
