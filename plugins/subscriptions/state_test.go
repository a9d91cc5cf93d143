package subscriptions

import (
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
)

// TestWindowWaitFollowsAHangingAttempt: while the only attempt to a
// subscription runs far longer than its average, the pairs that find its
// window full are deferred for about as long as it has been running, not
// for the average latency: an endpoint that stopped answering sees its
// pairs come back ever more rarely until its attempt ends.
func TestWindowWaitFollowsAHangingAttempt(t *testing.T) {
	st := newSubState(&subscription.Subscription{ID: "sub_1", URL: "http://example.test/"}, Config{SubscriptionMaxInFlight: 8})
	t0 := time.Now()
	adm := st.admit(t0, "p0")
	if adm.defer_ != 0 || adm.notTried != "" || !adm.started.Equal(t0) {
		t.Fatalf("first pair: %+v", adm)
	}
	// Just after it started: the window (one place) is full, and the
	// estimate is the initial latency.
	if d := st.admit(t0.Add(time.Millisecond), "p1").defer_; d < initialLatency || d > 2*initialLatency {
		t.Errorf("deferral just after the attempt started = %s, want about %s", d, initialLatency)
	}
	// Two seconds on, the attempt still runs: the next pair waits at
	// least that long.
	now := t0.Add(2 * time.Second)
	if d := st.admit(now, "p2").defer_; d < 2*time.Second {
		t.Errorf("deferral while the attempt has run 2s = %s, want at least 2s", d)
	}
	// Once it ended (the sink's timeout), the wait follows the average
	// again, which the long attempt raised.
	st.done(adm.started, t0.Add(5*time.Second), 5*time.Second, outcomeFailing)
	if len(st.started) != 0 || st.inFlight != 0 {
		t.Fatalf("after done: started %v, in flight %d", st.started, st.inFlight)
	}
	next := st.admit(t0.Add(20*time.Second), "p3")
	if next.defer_ != 0 {
		t.Fatalf("a place is free: %+v", next)
	}
	st.windowAt = time.Time{} // forget the line of the pairs deferred above
	if d := st.admit(t0.Add(20*time.Second+time.Millisecond), "p4").defer_; d < st.latency || d > st.latency+st.latency/5 {
		t.Errorf("deferral behind a fresh attempt = %s, want about the average %s", d, st.latency)
	}
	st.done(next.started, t0.Add(21*time.Second), time.Second, outcomeHealthy)
	if len(st.started) != 0 {
		t.Errorf("started %v after every attempt ended", st.started)
	}
}
