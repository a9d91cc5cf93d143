package circuit

import (
	"testing"
	"time"
)

// The circuit opens after Failures failed attempts in a row, lets one
// probe go once the cooldown is over, doubles the cooldown (up to
// MaxCooldown) when the probe fails, and closes when one succeeds.
func TestBreaker(t *testing.T) {
	t.Parallel()
	s := Settings{Failures: 3, Cooldown: time.Second, MaxCooldown: 3 * time.Second}
	var b Breaker
	now := time.Unix(1000, 0)
	fail := func(probe bool) Transition { return b.Done(probe, Failing, now, s) }

	for i := range 2 {
		if tk := b.Admit(now, s); !tk.Go || tk.Probe {
			t.Fatalf("closed circuit, attempt %d: %+v", i+1, tk)
		}
		if tr := fail(false); tr != Unchanged {
			t.Fatalf("failure %d: %v", i+1, tr)
		}
	}
	// A 4xx (healthy) in between starts the count again.
	b.Done(false, Healthy, now, s)
	fail(false)
	fail(false)
	if tr := fail(false); tr != Opened {
		t.Fatalf("third failure in a row: %v, want Opened", tr)
	}
	if tr := fail(false); tr != Unchanged {
		t.Fatalf("a failure of an attempt in flight when it opened: %v", tr)
	}
	tk := b.Admit(now.Add(999*time.Millisecond), s)
	if tk.Go || !tk.Until.Equal(now.Add(time.Second)) || tk.Changed == nil {
		t.Fatalf("open circuit: %+v", tk)
	}
	// Cooldowns: 1s, then 2s, 3s (the cap), 3s.
	for i, cd := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
		now = now.Add(cd)
		probe := b.Admit(now, s)
		if !probe.Go || !probe.Probe {
			t.Fatalf("after cooldown %d (%v): %+v, want the probe", i+1, cd, probe)
		}
		if other := b.Admit(now, s); other.Go || !other.Until.IsZero() {
			t.Fatalf("while the probe is out: %+v, want a wait for its outcome", other)
		}
		if tr := fail(true); tr != Reopened {
			t.Fatalf("failed probe %d: %v", i+1, tr)
		}
		select {
		case <-tk.Changed:
		default:
			t.Fatal("the probe's outcome did not wake the waiters")
		}
		tk = b.Admit(now, s)
	}
	now = now.Add(3 * time.Second)
	if probe := b.Admit(now, s); !probe.Probe {
		t.Fatalf("want a probe: %+v", probe)
	}
	if tr := b.Done(true, Healthy, now, s); tr != Closed {
		t.Fatalf("successful probe: %v, want Closed", tr)
	}
	if open, failures := b.Open(); open || failures != 0 {
		t.Fatalf("after the probe: open %v failures %d", open, failures)
	}
	if tk := b.Admit(now, s); !tk.Go || tk.Probe {
		t.Fatalf("closed again: %+v", tk)
	}
}

// A probe that says nothing (cut short) lets the next delivery probe; a
// breaker turned off while open closes.
func TestBreakerProbeWithoutVerdictAndOff(t *testing.T) {
	t.Parallel()
	s := Settings{Failures: 1, Cooldown: time.Second, MaxCooldown: time.Second}
	var b Breaker
	now := time.Unix(1000, 0)
	b.Done(false, Failing, now, s)
	now = now.Add(time.Second)
	if !b.Admit(now, s).Probe {
		t.Fatal("want a probe")
	}
	b.Done(true, None, now, s)
	if !b.Admit(now, s).Probe {
		t.Fatal("after a probe without verdict, want another probe")
	}
	if tk := b.Admit(now, Settings{}); !tk.Go || tk.Transition != Closed {
		t.Fatalf("turned off while open: %+v, want Go and Closed", tk)
	}
}
