package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hookbus/hookbus/internal/workers"
	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
)

// deliverWindow bounds the batches a plugin works on at once per stream.
const deliverWindow = 1024

type pluginServer struct {
	pluginv1.UnimplementedPluginServer
	opts     ServeOptions
	manifest Manifest
}

func (s *pluginServer) Describe(context.Context, *pluginv1.DescribeRequest) (*pluginv1.DescribeResponse, error) {
	return &pluginv1.DescribeResponse{
		Name:         s.manifest.Name,
		Kinds:        s.manifest.Kinds,
		ConfigSchema: s.manifest.ConfigSchema,
		Version:      s.manifest.Version,
	}, nil
}

func (s *pluginServer) ValidateConfig(_ context.Context, req *pluginv1.ValidateConfigRequest) (*pluginv1.ValidateConfigResponse, error) {
	var impl any
	switch req.Kind {
	case KindSink:
		impl = s.opts.Sink
	case KindSource:
		impl = s.opts.Source
	}
	if impl == nil {
		return &pluginv1.ValidateConfigResponse{Error: &pluginv1.Error{
			Code:    pluginv1.ErrorCode_ERROR_CODE_UNIMPLEMENTED,
			Message: fmt.Sprintf("plugin %q does not serve a %s", s.manifest.Name, req.Kind),
		}}, nil
	}
	if v, ok := impl.(ConfigValidator); ok {
		if err := v.ValidateConfig(req.Config); err != nil {
			return &pluginv1.ValidateConfigResponse{Error: wireError(pluginv1.ErrorCode_ERROR_CODE_INVALID_CONFIG, err)}, nil
		}
	}
	return &pluginv1.ValidateConfigResponse{}, nil
}

type sinkServer struct {
	pluginv1.UnimplementedSinkServer
	sink   Sink
	inited atomic.Bool
}

func (s *sinkServer) Init(ctx context.Context, req *pluginv1.SinkInitRequest) (*pluginv1.SinkInitResponse, error) {
	info, err := s.sink.Init(ctx, req.Config)
	if err != nil {
		return &pluginv1.SinkInitResponse{Error: wireError(pluginv1.ErrorCode_ERROR_CODE_INVALID_CONFIG, err)}, nil
	}
	s.inited.Store(true)
	return &pluginv1.SinkInitResponse{MaxInFlight: int32(info.MaxInFlight)}, nil
}

func (s *sinkServer) Close(ctx context.Context, _ *pluginv1.CloseRequest) (*pluginv1.CloseResponse, error) {
	if !s.inited.Swap(false) {
		return &pluginv1.CloseResponse{}, nil
	}
	if err := s.sink.Close(ctx); err != nil {
		return &pluginv1.CloseResponse{Error: wireError(pluginv1.ErrorCode_ERROR_CODE_INTERNAL, err)}, nil
	}
	return &pluginv1.CloseResponse{}, nil
}

// Deliver works on up to deliverWindow batches at once and answers each as
// soon as it is done.
func (s *sinkServer) Deliver(stream pluginv1.Sink_DeliverServer) error {
	ctx := stream.Context()
	var (
		sendMu  sync.Mutex
		wg      sync.WaitGroup
		sendErr error
	)
	defer wg.Wait()
	sem := make(chan struct{}, deliverWindow)
	pool := workers.New()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		pool.Go(func() {
			defer func() { <-sem; wg.Done() }()
			resp := s.deliver(ctx, req)
			sendMu.Lock()
			defer sendMu.Unlock()
			if sendErr == nil {
				sendErr = stream.Send(resp)
			}
		})
	}
}

func (s *sinkServer) deliver(ctx context.Context, req *pluginv1.DeliverRequest) *pluginv1.DeliverResponse {
	resp := &pluginv1.DeliverResponse{Id: req.Id}
	if !s.inited.Load() {
		resp.Error = &pluginv1.Error{Code: pluginv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Message: "Deliver before Init"}
		return resp
	}
	results := make([]*pluginv1.Result, len(req.Deliveries))
	batch := make([]Delivery, 0, len(req.Deliveries))
	index := make([]int, 0, len(req.Deliveries))
	for i, d := range req.Deliveries {
		var ev Event
		raw := d.GetEvent().GetJson()
		if err := ev.UnmarshalJSON(raw); err != nil {
			results[i] = &pluginv1.Result{Outcome: pluginv1.Outcome_OUTCOME_PERMANENT, Reason: "event envelope: " + err.Error()}
			continue
		}
		batch = append(batch, Delivery{Event: ev, Attempt: int(d.Attempt), Pipeline: d.Pipeline, Raw: raw})
		index = append(index, i)
	}
	if len(batch) > 0 {
		out := s.sink.Deliver(ctx, batch)
		if len(out) != len(batch) {
			resp.Error = &pluginv1.Error{
				Code:    pluginv1.ErrorCode_ERROR_CODE_INTERNAL,
				Message: fmt.Sprintf("sink returned %d results for %d deliveries", len(out), len(batch)),
			}
			return resp
		}
		for j, r := range out {
			results[index[j]] = wireResult(r)
		}
	}
	resp.Results = results
	return resp
}

func wireResult(r Result) *pluginv1.Result {
	w := &pluginv1.Result{Reason: r.Reason, StatusCode: int32(r.StatusCode)}
	switch r.Outcome {
	case OK:
		w.Outcome = pluginv1.Outcome_OUTCOME_OK
	case Permanent:
		w.Outcome = pluginv1.Outcome_OUTCOME_PERMANENT
	default:
		w.Outcome = pluginv1.Outcome_OUTCOME_RETRY
		w.RetryAfterMs = r.RetryAfter.Milliseconds()
	}
	return w
}

type sourceServer struct {
	pluginv1.UnimplementedSourceServer
	src    Source
	inited atomic.Bool
}

func (s *sourceServer) Init(ctx context.Context, req *pluginv1.SourceInitRequest) (*pluginv1.SourceInitResponse, error) {
	if err := s.src.Init(ctx, req.Config); err != nil {
		return &pluginv1.SourceInitResponse{Error: wireError(pluginv1.ErrorCode_ERROR_CODE_INVALID_CONFIG, err)}, nil
	}
	s.inited.Store(true)
	return &pluginv1.SourceInitResponse{}, nil
}

func (s *sourceServer) Close(ctx context.Context, _ *pluginv1.CloseRequest) (*pluginv1.CloseResponse, error) {
	if !s.inited.Swap(false) {
		return &pluginv1.CloseResponse{}, nil
	}
	if err := s.src.Close(ctx); err != nil {
		return &pluginv1.CloseResponse{Error: wireError(pluginv1.ErrorCode_ERROR_CODE_INTERNAL, err)}, nil
	}
	return &pluginv1.CloseResponse{}, nil
}

// Run runs the source with an Emitter that sends each batch to hookbus and
// waits for its ack or nack.
func (s *sourceServer) Run(stream pluginv1.Source_RunServer) error {
	if !s.inited.Load() {
		return stream.Send(&pluginv1.RunResponse{Msg: &pluginv1.RunResponse_Done{Done: &pluginv1.Done{Error: &pluginv1.Error{
			Code: pluginv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Message: "Run before Init",
		}}}})
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	em := &streamEmitter{stream: stream, pending: map[uint64]chan error{}, broken: make(chan struct{})}
	go func() {
		defer cancel()
		em.receive()
	}()
	runErr := s.src.Run(ctx, em)
	done := &pluginv1.Done{}
	if runErr != nil && stream.Context().Err() == nil {
		done.Error = wireError(pluginv1.ErrorCode_ERROR_CODE_INTERNAL, runErr)
	}
	em.sendMu.Lock()
	defer em.sendMu.Unlock()
	return stream.Send(&pluginv1.RunResponse{Msg: &pluginv1.RunResponse_Done{Done: done}})
}

// streamEmitter is the Emitter a served Source gets.
type streamEmitter struct {
	stream  pluginv1.Source_RunServer
	sendMu  sync.Mutex
	seq     atomic.Uint64
	mu      sync.Mutex
	pending map[uint64]chan error
	broken  chan struct{}
	err     error
}

// ErrNotQueued is wrapped by the error Emit returns when hookbus could not
// queue a batch (a transient failure, such as the queue being unavailable):
// nothing of it was queued, offer it again later. A batch refused for its
// events gets ErrRejected instead.
var ErrNotQueued = errors.New("hookbus did not queue the batch")

// nackError turns a nack into Emit's error: a *RejectedError when hookbus
// refused the batch for its events, else one wrapping ErrNotQueued.
func nackError(n *pluginv1.Nack) error {
	if n.GetError().GetCode() != pluginv1.ErrorCode_ERROR_CODE_REJECTED && len(n.Rejections) == 0 {
		return fmt.Errorf("%w: %s", ErrNotQueued, n.GetError().GetMessage())
	}
	re := &RejectedError{Rejections: make([]Rejection, 0, len(n.Rejections))}
	for _, r := range n.Rejections {
		re.Rejections = append(re.Rejections, Rejection{Index: int(r.Index), ID: r.Id, Field: r.Field, Reason: r.Message})
	}
	if len(re.Rejections) == 0 {
		re.Rejections = append(re.Rejections, Rejection{Index: -1, Reason: n.GetError().GetMessage()})
	}
	return re
}

func (e *streamEmitter) receive() {
	for {
		msg, err := e.stream.Recv()
		if err != nil {
			e.mu.Lock()
			e.err = fmt.Errorf("connection to hookbus: %w", err)
			e.mu.Unlock()
			close(e.broken)
			return
		}
		var seq uint64
		var result error
		switch m := msg.Msg.(type) {
		case *pluginv1.RunRequest_Ack:
			seq = m.Ack.Seq
		case *pluginv1.RunRequest_Nack:
			seq = m.Nack.Seq
			result = nackError(m.Nack)
		default:
			continue
		}
		e.mu.Lock()
		ch := e.pending[seq]
		delete(e.pending, seq)
		e.mu.Unlock()
		if ch != nil {
			ch <- result
		}
	}
}

// Emit sends the batch and returns once hookbus acked (nil) or nacked it.
func (e *streamEmitter) Emit(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	batch := &pluginv1.Batch{Seq: e.seq.Add(1), Events: make([]*pluginv1.Event, len(events))}
	for i, ev := range events {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		batch.Events[i] = &pluginv1.Event{Json: b}
	}
	ch := make(chan error, 1)
	e.mu.Lock()
	if e.err != nil {
		err := e.err
		e.mu.Unlock()
		return err
	}
	e.pending[batch.Seq] = ch
	e.mu.Unlock()
	e.sendMu.Lock()
	err := e.stream.Send(&pluginv1.RunResponse{Msg: &pluginv1.RunResponse_Batch{Batch: batch}})
	e.sendMu.Unlock()
	if err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	select {
	case err := <-ch:
		return err
	case <-e.broken:
		select {
		case err := <-ch: // answered just before the stream ended
			return err
		default:
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.err
	case <-ctx.Done():
		e.mu.Lock()
		delete(e.pending, batch.Seq)
		e.mu.Unlock()
		return ctx.Err()
	}
}

// wireError encodes err for the protocol, keeping every ConfigError joined
// into it as a field error.
func wireError(code pluginv1.ErrorCode, err error) *pluginv1.Error {
	w := &pluginv1.Error{Code: code, Message: err.Error()}
	for _, ce := range configErrors(err) {
		w.Fields = append(w.Fields, &pluginv1.FieldError{Field: ce.Field, Message: ce.Message})
	}
	return w
}

func configErrors(err error) []*ConfigError {
	var out []*ConfigError
	var walk func(error)
	walk = func(err error) {
		if ce, ok := err.(*ConfigError); ok {
			out = append(out, ce)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		}
	}
	walk(err)
	return slices.Clip(out)
}
