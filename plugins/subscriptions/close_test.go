package subscriptions

import (
	"context"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/internal/testenv"
)

// Close while the live index is telling a change: the change holds the
// Changes lock (a listener is still running) when Close starts; Close must
// not hold the sink's lock while it waits for that one, or the change,
// which takes the sink's lock next, and Close wait for each other for good.
func TestCloseWhileAChangeIsTold(t *testing.T) {
	h := start(t, setup{})
	inside, release := make(chan struct{}), make(chan struct{})
	stop := h.changes.listen(func(old, new *subscription.Subscription) {
		close(inside)
		<-release
	})
	defer stop()
	sub := &subscription.Subscription{ID: "sub_x", App: "acme"}
	h.sink.state(sub) // the sink keeps a state for it, so changed takes its lock
	told := make(chan struct{})
	go func() {
		h.changes.OnChange(sub, &subscription.Subscription{ID: "sub_x", App: "acme", URL: "http://127.0.0.1:1/"})
		close(told)
	}()
	<-inside
	closed := make(chan error, 1)
	go func() { closed <- h.sink.Close(context.Background()) }()
	// Close has marked the sink closed and let go of its lock while it
	// waits for the change to end.
	testenv.Eventually(t, 10*time.Second, "Close waiting without the sink's lock", func() bool {
		if !h.sink.mu.TryLock() {
			return false
		}
		defer h.sink.mu.Unlock()
		return h.sink.closed
	})
	close(release)
	select {
	case <-told:
	case <-time.After(testenv.Timeout(10 * time.Second)):
		t.Fatal("the change never ended: Close and the change wait for each other")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testenv.Timeout(10 * time.Second)):
		t.Fatal("Close never returned")
	}
}
