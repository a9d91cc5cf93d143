package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hookbus/hookbus/sdk"
	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
)

// Source is an sdk.Source served by a plugin process.
type Source struct {
	c   *Client
	rpc pluginv1.SourceClient
	// OnRejected, when set, is called with every batch refused for its
	// events (before the plugin gets the nack), e.g. to log it.
	OnRejected func(batch int, err *sdk.RejectedError)
}

// Source returns a proxy for the plugin's source. Call Init before Run.
func (c *Client) Source() *Source {
	return &Source{c: c, rpc: pluginv1.NewSourceClient(c.conn)}
}

// Init configures the plugin's source. A rejected configuration is an
// *Error with the plugin's own message.
func (s *Source) Init(ctx context.Context, config json.RawMessage) error {
	ctx, cancel := context.WithTimeout(ctx, s.c.callTimeout)
	defer cancel()
	resp, err := s.rpc.Init(ctx, &pluginv1.SourceInitRequest{Config: config})
	if err != nil {
		return transportError("Init", err)
	}
	return fromWire(resp.Error)
}

// Close closes the plugin's source.
func (s *Source) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.c.callTimeout)
	defer cancel()
	resp, err := s.rpc.Close(ctx, &pluginv1.CloseRequest{})
	if err != nil {
		return transportError("Close", err)
	}
	return fromWire(resp.Error)
}

// Run runs the plugin's source until ctx is done. Every batch the plugin
// sends goes through emit; the plugin gets an ack when Emit returned nil
// and a nack otherwise. A broken connection returns an error wrapping
// ErrUnavailable; the source's own failure returns an *Error.
func (s *Source) Run(ctx context.Context, emit sdk.Emitter) error {
	// The stream outlives ctx a little: when ctx is done the host half-closes
	// it, so the acks already sent reach the plugin before it stops, and
	// waits for the plugin's Done.
	streamCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := s.rpc.Run(streamCtx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return transportError("Run", err)
	}
	var sendMu sync.Mutex
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-stopped:
			return
		case <-ctx.Done():
		}
		sendMu.Lock()
		_ = st.CloseSend()
		sendMu.Unlock()
		t := time.NewTimer(s.c.callTimeout)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			cancel()
		}
	}()
	for {
		msg, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return transportError("Run stream", err)
		}
		switch m := msg.Msg.(type) {
		case *pluginv1.RunResponse_Done:
			if err := fromWire(m.Done.Error); err != nil && ctx.Err() == nil {
				return fmt.Errorf("source: %w", err)
			}
			return nil
		case *pluginv1.RunResponse_Batch:
			// Held across Emit and the answer, so a stop cannot slip in
			// between a durable Emit and its ack.
			sendMu.Lock()
			err := st.Send(s.handle(ctx, emit, m.Batch))
			sendMu.Unlock()
			if err != nil && ctx.Err() == nil {
				return transportError("Run send", err)
			}
		}
	}
}

// handle hands one batch to emit and answers it. Before emit it checks
// what only the wire shows (sdk.MaxBatchEvents, sdk.MaxEventBytes, a
// decodable envelope); emit checks the rest (sdk.CheckBatch). A
// *sdk.RejectedError, from either, goes back as a nack with
// ERROR_CODE_REJECTED and one rejection per problem; any other error as a
// nack with ERROR_CODE_INTERNAL (not queued: offer it again).
func (s *Source) handle(ctx context.Context, emit sdk.Emitter, b *pluginv1.Batch) *pluginv1.RunRequest {
	events, err := decodeBatch(b)
	if err == nil {
		err = emit.Emit(ctx, events)
	}
	if err == nil {
		return &pluginv1.RunRequest{Msg: &pluginv1.RunRequest_Ack{Ack: &pluginv1.Ack{Seq: b.Seq}}}
	}
	nack := &pluginv1.Nack{Seq: b.Seq, Error: &pluginv1.Error{Code: pluginv1.ErrorCode_ERROR_CODE_INTERNAL, Message: err.Error()}}
	var re *sdk.RejectedError
	if errors.As(err, &re) {
		if s.OnRejected != nil {
			s.OnRejected(len(b.Events), re)
		}
		nack.Error.Code = pluginv1.ErrorCode_ERROR_CODE_REJECTED
		for _, r := range re.Rejections {
			nack.Rejections = append(nack.Rejections, &pluginv1.Rejection{Index: int32(r.Index), Id: r.ID, Field: r.Field, Message: r.Reason})
		}
	}
	return &pluginv1.RunRequest{Msg: &pluginv1.RunRequest_Nack{Nack: nack}}
}

// decodeBatch decodes a batch's envelopes, or returns a *sdk.RejectedError
// naming every event too large or not an envelope, or the batch too large.
func decodeBatch(b *pluginv1.Batch) ([]sdk.Event, error) {
	if len(b.Events) > sdk.MaxBatchEvents {
		return nil, &sdk.RejectedError{Rejections: []sdk.Rejection{sdk.BatchTooLarge(len(b.Events))}}
	}
	events := make([]sdk.Event, len(b.Events))
	var rs []sdk.Rejection
	for i, e := range b.Events {
		if len(e.Json) > sdk.MaxEventBytes {
			rs = append(rs, sdk.EventTooLarge(i, "", len(e.Json)))
			continue
		}
		if err := json.Unmarshal(e.Json, &events[i]); err != nil {
			r := sdk.Rejection{Index: i, Reason: "not an event envelope: " + err.Error()}
			var fe *sdk.FieldError
			if errors.As(err, &fe) {
				r.Field, r.Reason = fe.Field, fe.Err.Error()
			}
			rs = append(rs, r)
		}
	}
	if len(rs) > 0 {
		return nil, &sdk.RejectedError{Rejections: rs}
	}
	return events, nil
}

var _ sdk.Source = (*Source)(nil)
