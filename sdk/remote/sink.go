package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbus/hookbus/sdk"
	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
)

// DefaultWindow is how many Deliver batches a Sink keeps in flight on its
// stream at once.
const DefaultWindow = 256

// Sink is an sdk.Sink served by a plugin process. Deliver pipelines batches
// on one bidirectional stream. When the stream breaks or an answer takes
// longer than the call timeout, every unanswered delivery is reported as
// sdk.Retry and OnBroken is called; the next Deliver opens a new stream.
type Sink struct {
	c   *Client
	rpc pluginv1.SinkClient
	// OnBroken, when set before the first Deliver, is called (once per
	// stream) when the plugin stopped answering or the connection broke.
	OnBroken func(error)

	nextID atomic.Uint64
	mu     sync.Mutex
	stream *deliverStream
}

// Sink returns a proxy for the plugin's sink. Call Init before Deliver.
func (c *Client) Sink() *Sink {
	return &Sink{c: c, rpc: pluginv1.NewSinkClient(c.conn)}
}

// Init configures the plugin's sink. A rejected configuration is an *Error
// with the plugin's own message.
func (s *Sink) Init(ctx context.Context, config json.RawMessage) (sdk.SinkInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.callTimeout)
	defer cancel()
	resp, err := s.rpc.Init(ctx, &pluginv1.SinkInitRequest{Config: config})
	if err != nil {
		return sdk.SinkInfo{}, transportError("Init", err)
	}
	if err := fromWire(resp.Error); err != nil {
		return sdk.SinkInfo{}, err
	}
	return sdk.SinkInfo{MaxInFlight: int(resp.MaxInFlight)}, nil
}

// Close ends the delivery stream and closes the plugin's sink.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	ds := s.stream
	s.stream = nil
	s.mu.Unlock()
	if ds != nil {
		ds.close()
	}
	ctx, cancel := context.WithTimeout(ctx, s.c.callTimeout)
	defer cancel()
	resp, err := s.rpc.Close(ctx, &pluginv1.CloseRequest{})
	if err != nil {
		return transportError("Close", err)
	}
	return fromWire(resp.Error)
}

// Deliver sends the batch to the plugin and waits for its answer.
func (s *Sink) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	if len(batch) == 0 {
		return nil
	}
	req := &pluginv1.DeliverRequest{Id: s.nextID.Add(1), Deliveries: make([]*pluginv1.Delivery, len(batch))}
	for i, d := range batch {
		b := d.Raw
		if len(b) == 0 {
			var err error
			if b, err = json.Marshal(d.Event); err != nil {
				return allResults(len(batch), sdk.Result{Outcome: sdk.Permanent, Reason: "encode event: " + err.Error()})
			}
		}
		req.Deliveries[i] = &pluginv1.Delivery{Event: &pluginv1.Event{Json: b}, Attempt: int32(d.Attempt), Pipeline: d.Pipeline}
	}
	ds, err := s.openStream()
	if err != nil {
		return retryAll(len(batch), err)
	}
	resp, err := ds.call(ctx, req, s.c.callTimeout)
	if err != nil {
		return retryAll(len(batch), err)
	}
	if err := fromWire(resp.Error); err != nil {
		return retryAll(len(batch), fmt.Errorf("plugin: %w", err))
	}
	if len(resp.Results) != len(batch) {
		return retryAll(len(batch), fmt.Errorf("plugin returned %d results for %d deliveries", len(resp.Results), len(batch)))
	}
	out := make([]sdk.Result, len(batch))
	for i, r := range resp.Results {
		out[i] = resultFromWire(r)
	}
	return out
}

func resultFromWire(r *pluginv1.Result) sdk.Result {
	res := sdk.Result{Reason: r.Reason, StatusCode: int(r.StatusCode)}
	switch r.Outcome {
	case pluginv1.Outcome_OUTCOME_OK:
		res.Outcome = sdk.OK
	case pluginv1.Outcome_OUTCOME_PERMANENT:
		res.Outcome = sdk.Permanent
	default:
		res.Outcome = sdk.Retry
		res.RetryAfter = time.Duration(r.RetryAfterMs) * time.Millisecond
	}
	return res
}

func allResults(n int, r sdk.Result) []sdk.Result {
	out := make([]sdk.Result, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func retryAll(n int, err error) []sdk.Result {
	return allResults(n, sdk.Result{Outcome: sdk.Retry, Reason: err.Error()})
}

func (s *Sink) openStream() (*deliverStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil {
		return s.stream, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := s.rpc.Deliver(ctx)
	if err != nil {
		cancel()
		err = transportError("Deliver", err)
		if s.OnBroken != nil {
			s.OnBroken(err)
		}
		return nil, err
	}
	ds := &deliverStream{
		sink:    s,
		stream:  st,
		cancel:  cancel,
		pending: map[uint64]chan *pluginv1.DeliverResponse{},
		done:    make(chan struct{}),
		window:  make(chan struct{}, DefaultWindow),
	}
	s.stream = ds
	go ds.receive()
	return ds, nil
}

// deliverStream is one open Deliver stream and its unanswered requests.
type deliverStream struct {
	sink   *Sink
	stream pluginv1.Sink_DeliverClient
	cancel context.CancelFunc
	sendMu sync.Mutex
	window chan struct{}

	mu      sync.Mutex
	pending map[uint64]chan *pluginv1.DeliverResponse
	err     error
	closed  bool
	done    chan struct{}
}

func (ds *deliverStream) receive() {
	for {
		resp, err := ds.stream.Recv()
		if err != nil {
			ds.fail(transportError("Deliver stream", err))
			return
		}
		ds.mu.Lock()
		ch := ds.pending[resp.Id]
		delete(ds.pending, resp.Id)
		ds.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

// fail marks the stream broken: every waiting call returns err.
func (ds *deliverStream) fail(err error) {
	ds.mu.Lock()
	if ds.err != nil {
		ds.mu.Unlock()
		return
	}
	ds.err = err
	closed := ds.closed
	close(ds.done)
	ds.mu.Unlock()
	ds.cancel()
	s := ds.sink
	s.mu.Lock()
	if s.stream == ds {
		s.stream = nil
	}
	s.mu.Unlock()
	if !closed && s.OnBroken != nil {
		s.OnBroken(err)
	}
}

// close ends the stream on purpose (Sink.Close).
func (ds *deliverStream) close() {
	ds.mu.Lock()
	ds.closed = true
	ds.mu.Unlock()
	ds.sendMu.Lock()
	_ = ds.stream.CloseSend()
	ds.sendMu.Unlock()
	ds.fail(fmt.Errorf("sink closed: %w", ErrUnavailable))
}

func (ds *deliverStream) call(ctx context.Context, req *pluginv1.DeliverRequest, timeout time.Duration) (*pluginv1.DeliverResponse, error) {
	select {
	case ds.window <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-ds.done:
		return nil, ds.err
	}
	defer func() { <-ds.window }()
	ch := make(chan *pluginv1.DeliverResponse, 1)
	ds.mu.Lock()
	if ds.err != nil {
		ds.mu.Unlock()
		return nil, ds.err
	}
	ds.pending[req.Id] = ch
	ds.mu.Unlock()
	forget := func() {
		ds.mu.Lock()
		delete(ds.pending, req.Id)
		ds.mu.Unlock()
	}
	ds.sendMu.Lock()
	err := ds.stream.Send(req)
	ds.sendMu.Unlock()
	if err != nil {
		forget()
		err = transportError("Deliver send", err)
		ds.fail(err)
		return nil, err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case resp := <-ch:
		return resp, nil
	case <-ds.done:
		forget()
		return nil, ds.err
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	case <-timer.C:
		forget()
		err := fmt.Errorf("plugin did not answer Deliver within %s: %w", timeout, ErrUnavailable)
		ds.fail(err)
		return nil, err
	}
}

var _ sdk.Sink = (*Sink)(nil)
