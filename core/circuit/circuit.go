// Package circuit is the circuit breaker of a sink: after a run of failed
// attempts the sink's endpoint is taken for dead, and its deliveries wait
// instead of being attempted, for a cooldown that doubles each time a probe
// fails. The terms are those of the subscriptions sink's per-subscription
// circuit: closed (attempts go), open (they wait), half-open (one probe goes;
// its outcome closes or re-opens the circuit).
//
// The state lives in the process: a restart starts closed, and the first
// attempts find out again.
package circuit

import (
	"sync"
	"time"
)

// Settings configure a Breaker. The zero value turns it off.
type Settings struct {
	// Failures is how many failed attempts in a row open the circuit;
	// 0 turns the breaker off.
	Failures int
	// Cooldown is how long the circuit stays open the first time.
	Cooldown time.Duration
	// MaxCooldown caps the cooldown, which doubles after each failed probe.
	MaxCooldown time.Duration
}

// On tells whether the settings turn the breaker on.
func (s Settings) On() bool { return s.Failures > 0 }

// Verdict is what an attempt says of its endpoint's health.
type Verdict int

const (
	// None: the attempt says nothing (it was not made, or was cut short).
	None Verdict = iota
	// Healthy: the endpoint answered (a 2xx, or a 4xx it chose).
	Healthy
	// Failing: it did not answer in time, could not be reached, or
	// answered with an error worth a retry (5xx, 408, 429).
	Failing
)

// Transition is a change of the circuit that its owner reports (a log
// line, a gauge): once per change, not per attempt.
type Transition int

const (
	// Unchanged: nothing to report.
	Unchanged Transition = iota
	// Opened: the circuit was closed and opened.
	Opened
	// Reopened: a probe failed; the circuit is open again, for longer.
	Reopened
	// Closed: the circuit was open and closed (a probe succeeded, or the
	// breaker was turned off).
	Closed
)

// Ticket is Admit's answer.
type Ticket struct {
	// Go: make the attempt now, then call Done with Probe.
	Go bool
	// Probe: the attempt is the one probe of a half-open circuit.
	Probe bool
	// Until, when Go is false, is when the cooldown ends (zero while a
	// probe is out), and Changed is closed at the next change of the
	// circuit (the probe's outcome): ask again then.
	Until   time.Time
	Changed <-chan struct{}
	// Transition is a change Admit made (Closed: the breaker was turned
	// off while open).
	Transition Transition
}

// Breaker is one sink's circuit. The zero value is a closed circuit, ready
// to use; it is safe for concurrent use.
type Breaker struct {
	mu       sync.Mutex
	failures int // failing attempts in a row
	open     bool
	until    time.Time     // end of the cooldown, when open
	cooldown time.Duration // the current cooldown, when open
	probing  bool
	changed  chan struct{}
}

// Admit tells whether an attempt may be made at now under s.
func (b *Breaker) Admit(now time.Time, s Settings) Ticket {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !s.On() {
		if b.open {
			b.reset()
			return Ticket{Go: true, Transition: Closed}
		}
		b.failures = 0
		return Ticket{Go: true}
	}
	if !b.open {
		return Ticket{Go: true}
	}
	if !b.probing && !now.Before(b.until) {
		b.probing = true
		return Ticket{Go: true, Probe: true}
	}
	t := Ticket{Changed: b.changedChan()}
	if !b.probing {
		t.Until = b.until
	}
	return t
}

// Done learns from an attempt Admit let go (probe: its ticket's Probe),
// ended at now, and reports the change it made.
func (b *Breaker) Done(probe bool, v Verdict, now time.Time, s Settings) Transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch v {
	case Healthy:
		b.failures = 0
		if b.open {
			b.reset()
			return Closed
		}
	case Failing:
		b.failures++
		switch {
		case !s.On():
		case probe && b.open:
			b.cooldown = min(max(b.cooldown*2, s.Cooldown), max(s.MaxCooldown, s.Cooldown))
			b.until = now.Add(b.cooldown)
			b.wake()
			return Reopened
		case !b.open && b.failures >= s.Failures:
			b.open, b.cooldown = true, s.Cooldown
			b.until = now.Add(b.cooldown)
			return Opened
		}
	default:
		if probe {
			// The probe said nothing: the next to ask probes instead.
			b.wake()
		}
	}
	return Unchanged
}

// Open tells whether the circuit is open (or half-open), and since its
// last failing attempt how many failed in a row.
func (b *Breaker) Open() (open bool, failures int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open, b.failures
}

// Cooldown is the current cooldown of an open circuit (0 when closed).
func (b *Breaker) Cooldown() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return 0
	}
	return b.cooldown
}

// reset closes the circuit and wakes its waiters. Callers hold b.mu.
func (b *Breaker) reset() {
	b.failures, b.open, b.until, b.cooldown, b.probing = 0, false, time.Time{}, 0, false
	b.wake()
}

// changedChan is the channel the next change closes. Callers hold b.mu.
func (b *Breaker) changedChan() chan struct{} {
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.changed
}

// wake tells the waiters of Admit that the circuit changed. Callers hold
// b.mu.
func (b *Breaker) wake() {
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}
