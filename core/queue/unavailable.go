package queue

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrUnavailable is what a driver's Publish error wraps when the broker
// could not take the messages for now and a retry later may succeed: no
// server reachable, a JetStream stream without a leader (a node died, an
// election is under way), no acknowledgement in time. Callers answer it as
// a temporary refusal (the ingest endpoint's 503 with Retry-After), not as
// a failure of the event.
var ErrUnavailable = errors.New("queue unavailable")

// UnavailableError is an ErrUnavailable with the broker's own error and a
// hint of how long to wait before retrying.
type UnavailableError struct {
	// Err is the broker's error.
	Err error
	// Wait is how long a caller should wait before it retries (0:
	// DefaultRetryAfter).
	Wait time.Duration
}

// RetryAfter is how long a caller should wait before it retries. Callers
// that do not import this package (the http source) find it through an
// interface with this one method.
func (e *UnavailableError) RetryAfter() time.Duration {
	if e.Wait > 0 {
		return e.Wait
	}
	return DefaultRetryAfter
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v: %v", ErrUnavailable, e.Err)
}

// Unwrap returns ErrUnavailable and the broker's error, so errors.Is
// finds either.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// DefaultRetryAfter is the wait suggested when the queue is unavailable and
// the driver gives no better figure: about the time a JetStream cluster
// takes to elect a new stream leader.
const DefaultRetryAfter = 2 * time.Second

// RetryAfter returns how long to wait before retrying after err, and
// whether err is an ErrUnavailable at all.
func RetryAfter(err error) (time.Duration, bool) {
	if !errors.Is(err, ErrUnavailable) {
		return 0, false
	}
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return ue.RetryAfter(), true
	}
	return DefaultRetryAfter, true
}

// HealthChecker is implemented by drivers that can tell whether the broker
// can take and hand out messages right now; /readyz reports the queue
// unavailable while Health returns an error.
type HealthChecker interface {
	// Health returns nil when the queue works, else an error (wrapping
	// ErrUnavailable) saying why not, in one line. It answers within
	// about two seconds and may reuse a result of the last second.
	Health(ctx context.Context) error
}
