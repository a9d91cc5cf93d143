package pipeline

import (
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/hookbus/hookbus/core/circuit"
	"github.com/hookbus/hookbus/sdk"
)

// A sink's circuit (Sink.Circuit) works on its consumer, not on the HTTP
// request alone: while it is open, a delivery that comes off the queue is
// held before its attempt, unacknowledged, so the sink's window fills with
// held deliveries and its subscriber takes nothing more off the queue. No
// attempt is made, none is logged and none counts on the event's schedule;
// the rest of the sink's events stay durably queued.
//
// A delivery is held for circuitHold at most, then handed back (a nack
// without delay, so the same few come back at once): a broker's ack
// deadline and a driver's prefetch buffer (JetStream's, which gets no
// in-progress signal while the window is full) never run out while the
// circuit stays open for minutes. The driver counts the hand-backs as
// deliveries; heldBack takes them off the attempt again (in this process:
// after a restart, the few held at the time count one attempt per
// hand-back).
//
// Fan-out sinks have a circuit per target instead (their Fanout's own), so
// that one dead subscription does not hold up the others.

// circuitHold is the longest a delivery is held by an open circuit before
// it is handed back: well inside JetStream's ack deadline (30s by
// default) and the heartbeat its pull consumer expects (every 15s).
const circuitHold = 5 * time.Second

// circuitSettings are the circuit settings of r's current version.
func (r *sinkRunner) circuitSettings() circuit.Settings {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.state == nil {
		return circuit.Settings{}
	}
	return r.state.spec.Circuit
}

// awaitCircuit returns once r's circuit lets msg's attempt go (probe: as
// the probe of a half-open circuit), or with ok false when it did not
// within circuitHold, or msg's subscription or the engine stops first:
// the message is then to be handed back unattempted.
func (e *Engine) awaitCircuit(r *sinkRunner, msg *message.Message) (probe, ok bool) {
	var hold *time.Timer
	defer func() {
		if hold != nil {
			hold.Stop()
		}
	}()
	for {
		s := r.circuitSettings()
		tk := r.breaker.Admit(time.Now(), s)
		e.circuitChanged(r, tk.Transition, s)
		if tk.Go {
			return tk.Probe, true
		}
		if hold == nil {
			hold = time.NewTimer(e.circuitHold)
		}
		var due <-chan time.Time
		var dueT *time.Timer
		if !tk.Until.IsZero() {
			dueT = time.NewTimer(time.Until(tk.Until))
			due = dueT.C
		}
		ok := true
		select {
		case <-tk.Changed:
		case <-due:
		case <-hold.C:
			ok = false
		case <-msg.Context().Done():
			ok = false
		case <-e.closing:
			ok = false
		}
		if dueT != nil {
			dueT.Stop()
		}
		if !ok {
			return false, false
		}
	}
}

// holdBack hands back a delivery the open circuit held, without an
// attempt: redelivered at once, its hand-back taken off its attempt count.
func (e *Engine) holdBack(msg *message.Message) error {
	e.heldBack.add(msg.UUID)
	return nackLater(msg, 0)
}

// judgeCircuit tells r's circuit what an attempt's result says of the
// endpoint.
func (e *Engine) judgeCircuit(r *sinkRunner, probe bool, res sdk.Result) {
	s := r.circuitSettings()
	if !s.On() && !probe {
		return
	}
	e.circuitChanged(r, r.breaker.Done(probe, verdict(res), time.Now(), s), s)
}

// verdict is what a result says of the endpoint: a permanent failure is
// an answer the endpoint chose (a 4xx), so it is alive.
func verdict(res sdk.Result) circuit.Verdict {
	switch res.Outcome {
	case sdk.OK, sdk.Permanent:
		return circuit.Healthy
	case sdk.Retry:
		return circuit.Failing
	}
	return circuit.None
}

// circuitChanged reports a change of r's circuit: the gauge, and one log
// line per change.
func (e *Engine) circuitChanged(r *sinkRunner, t circuit.Transition, s circuit.Settings) {
	switch t {
	case circuit.Opened:
		r.circuitOpen.Set(1)
		e.log.Warn("sink circuit opened: its endpoint keeps failing; its events wait in the queue, unattempted, until a probe succeeds",
			"sink", r.name, "failures", s.Failures, "probe_in", r.breaker.Cooldown())
	case circuit.Reopened:
		e.log.Info("sink circuit probe failed; open again", "sink", r.name, "probe_in", r.breaker.Cooldown())
	case circuit.Closed:
		r.circuitOpen.Set(0)
		e.log.Info("sink circuit closed: delivering again", "sink", r.name)
	}
}
