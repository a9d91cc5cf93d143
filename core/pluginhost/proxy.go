package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/remote"
)

// Sink initialises the plugin's sink with config and returns a proxy for
// it. The proxy survives restarts of the plugin: deliveries in flight when
// the plugin crashed or hung come back as sdk.Retry, and the next Deliver
// waits for the restarted process and initialises it again with the same
// config. A Plugin serves at most one sink.
func (p *Plugin) Sink(ctx context.Context, config json.RawMessage) (sdk.Sink, sdk.SinkInfo, error) {
	if err := p.claim(sdk.KindSink); err != nil {
		return nil, sdk.SinkInfo{}, err
	}
	s := &sinkProxy{p: p}
	info, err := s.Init(ctx, config)
	if err != nil {
		p.release(sdk.KindSink)
		return nil, sdk.SinkInfo{}, err
	}
	return s, info, nil
}

// Source initialises the plugin's source with config and returns a proxy
// for it. When the plugin crashes, Run waits for the restarted process,
// initialises it again and runs it again; batches the plugin had not got
// an ack for are offered again by the plugin. A Plugin serves at most one source.
func (p *Plugin) Source(ctx context.Context, config json.RawMessage) (sdk.Source, error) {
	if err := p.claim(sdk.KindSource); err != nil {
		return nil, err
	}
	s := &sourceProxy{p: p}
	if err := s.Init(ctx, config); err != nil {
		p.release(sdk.KindSource)
		return nil, err
	}
	return s, nil
}

func (p *Plugin) release(kind string) {
	p.mu.Lock()
	delete(p.served, kind)
	p.mu.Unlock()
}

// callError names the plugin and marks inst broken on transport failures.
func callError(p *Plugin, inst *instance, err error) error {
	if errors.Is(err, remote.ErrUnavailable) {
		inst.markBroken(err)
	}
	return fmt.Errorf("plugin %q: %w", p.name, err)
}

type sinkProxy struct {
	p *Plugin

	mu     sync.Mutex
	config json.RawMessage
	inited bool
	inst   *instance
	sess   *remote.Sink
}

// session returns the sink session on the running instance, opening and
// initialising one after a restart. Callers hold s.mu.
func (s *sinkProxy) session(ctx context.Context) (*remote.Sink, sdk.SinkInfo, error) {
	inst, err := s.p.current(ctx)
	if err != nil {
		return nil, sdk.SinkInfo{}, err
	}
	if s.inst == inst && s.sess != nil {
		return s.sess, sdk.SinkInfo{}, nil
	}
	sess := inst.client.Sink()
	sess.OnBroken = inst.markBroken
	info, err := sess.Init(ctx, s.config)
	if err != nil {
		return nil, sdk.SinkInfo{}, callError(s.p, inst, err)
	}
	s.inst, s.sess = inst, sess
	return sess, info, nil
}

func (s *sinkProxy) Init(ctx context.Context, config json.RawMessage) (sdk.SinkInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.config = config
	s.inst, s.sess = nil, nil
	_, info, err := s.session(ctx)
	s.inited = err == nil
	return info, err
}

func (s *sinkProxy) Deliver(ctx context.Context, batch []sdk.Delivery) []sdk.Result {
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	var sess *remote.Sink
	var inst *instance
	err := errors.New("sink is not initialised")
	if s.inited {
		sess, _, err = s.session(ctx)
		inst = s.inst
	}
	s.mu.Unlock()
	if err != nil {
		out := make([]sdk.Result, len(batch))
		for i := range out {
			out[i] = sdk.Result{Outcome: sdk.Retry, Reason: err.Error()}
		}
		return out
	}
	res := sess.Deliver(ctx, batch)
	for _, r := range res {
		if r.Outcome == sdk.OK {
			if inst != nil {
				inst.progress.Store(true)
			}
			break
		}
	}
	return res
}

func (s *sinkProxy) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.p.release(sdk.KindSink)
	s.inited = false
	sess, inst := s.sess, s.inst
	s.sess, s.inst = nil, nil
	if sess == nil {
		return nil
	}
	select {
	case <-inst.broken: // the process is gone or going: nothing to close
		return nil
	default:
	}
	if err := sess.Close(ctx); err != nil {
		return callError(s.p, inst, err)
	}
	return nil
}

type sourceProxy struct {
	p *Plugin

	mu     sync.Mutex
	config json.RawMessage
	inst   *instance
	sess   *remote.Source
}

func (s *sourceProxy) session(ctx context.Context) (*remote.Source, *instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, err := s.p.current(ctx)
	if err != nil {
		return nil, nil, err
	}
	if s.inst == inst && s.sess != nil {
		return s.sess, inst, nil
	}
	sess := inst.client.Source()
	sess.OnRejected = s.logRejected
	if err := sess.Init(ctx, s.config); err != nil {
		return nil, nil, callError(s.p, inst, err)
	}
	s.inst, s.sess = inst, sess
	return sess, inst, nil
}

// logRejected logs a batch refused for its events, at warn: the source's
// author must fix it, and it is the source's only sign of the problem
// besides its own handling of the error.
func (s *sourceProxy) logRejected(events int, err *sdk.RejectedError) {
	s.p.logger.Warn("source batch rejected; nothing of it was queued",
		"events", events, "rejected", len(err.Rejections), "error", err.Error())
}

func (s *sourceProxy) Init(ctx context.Context, config json.RawMessage) error {
	s.mu.Lock()
	s.config = config
	s.inst, s.sess = nil, nil
	s.mu.Unlock()
	_, _, err := s.session(ctx)
	return err
}

// Run runs the plugin's source, running it again on the restarted process
// after a crash, until ctx is done.
func (s *sourceProxy) Run(ctx context.Context, emit sdk.Emitter) error {
	for {
		sess, inst, err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, remote.ErrUnavailable) {
				continue // marked broken; wait for the restart
			}
			return err
		}
		err = sess.Run(ctx, emit)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, remote.ErrUnavailable) {
			inst.markBroken(err)
			s.p.logger.Warn("source stream broke; running it again after the restart", "error", err)
			continue
		}
		if err != nil {
			return fmt.Errorf("plugin %q: %w", s.p.name, err)
		}
		return nil
	}
}

func (s *sourceProxy) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.p.release(sdk.KindSource)
	sess, inst := s.sess, s.inst
	s.sess, s.inst = nil, nil
	if sess == nil {
		return nil
	}
	select {
	case <-inst.broken:
		return nil
	default:
	}
	if err := sess.Close(ctx); err != nil {
		return callError(s.p, inst, err)
	}
	return nil
}

var (
	_ sdk.Sink   = (*sinkProxy)(nil)
	_ sdk.Source = (*sourceProxy)(nil)
)
