// Package retry computes when a failed delivery is tried again: a fixed
// schedule of delays with random jitter, stretched by a receiver's
// Retry-After when it asks for more time.
package retry

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultDelays is the default schedule: 8 attempts over about 27½ hours.
var DefaultDelays = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

const (
	// DefaultJitter spreads retries by ±20% so failures that happened
	// together do not retry together.
	DefaultJitter = 0.2
	// DefaultMaxRetryAfter caps how long a receiver's Retry-After may
	// postpone a retry.
	DefaultMaxRetryAfter = time.Hour
)

// Schedule says how long to wait before each retry.
type Schedule struct {
	// Delays[i] is the wait after attempt i+1 failed; there are
	// len(Delays)+1 attempts in all. Empty means a single attempt.
	Delays []time.Duration
	// Jitter is the random spread applied to each delay, as a fraction:
	// 0.2 gives a delay uniformly within ±20% of the scheduled one.
	Jitter float64
	// MaxRetryAfter caps the receiver's Retry-After; zero means no cap.
	MaxRetryAfter time.Duration
}

// Default returns the default schedule (DefaultDelays, DefaultJitter,
// DefaultMaxRetryAfter).
func Default() Schedule {
	return Schedule{
		Delays:        append([]time.Duration(nil), DefaultDelays...),
		Jitter:        DefaultJitter,
		MaxRetryAfter: DefaultMaxRetryAfter,
	}
}

// MaxAttempts is the total number of attempts the schedule allows.
func (s Schedule) MaxAttempts() int { return len(s.Delays) + 1 }

// Next returns the delay before attempt+1, after attempt number attempt
// (counting from 1) failed. ok is false when the schedule is exhausted (the
// event should be dead-lettered) or attempt < 1.
//
// The scheduled delay is jittered by ±Jitter. A positive retryAfter (the
// receiver's Retry-After, capped at MaxRetryAfter) wins when it is longer:
// the retry then happens no sooner than the receiver asked, plus up to
// Jitter of extra spread so that receivers are not hit by a herd at the
// exact second they named.
func (s Schedule) Next(attempt int, retryAfter time.Duration) (time.Duration, bool) {
	return s.next(attempt, retryAfter, rand.Float64)
}

// NextFor is Next with the jitter drawn from key (and attempt) instead of
// at random: every failure with the same key and attempt gets the same
// delay. A batch's events use their batch's id, so that a batch that
// failed comes back whole, at one moment.
func (s Schedule) NextFor(key string, attempt int, retryAfter time.Duration) (time.Duration, bool) {
	h := fnv.New64a()
	h.Write([]byte(key))
	r := rand.New(rand.NewPCG(h.Sum64(), uint64(attempt)))
	return s.next(attempt, retryAfter, r.Float64)
}

func (s Schedule) next(attempt int, retryAfter time.Duration, random func() float64) (time.Duration, bool) {
	if attempt < 1 || attempt > len(s.Delays) {
		return 0, false
	}
	j := s.jitter()
	d := scale(s.Delays[attempt-1], 1+j*(2*random()-1))
	if retryAfter > 0 {
		if s.MaxRetryAfter > 0 && retryAfter > s.MaxRetryAfter {
			retryAfter = s.MaxRetryAfter
		}
		if retryAfter > d {
			d = scale(retryAfter, 1+j*random())
		}
	}
	if d < 0 {
		d = 0
	}
	return d, true
}

func (s Schedule) jitter() float64 {
	switch {
	case s.Jitter < 0 || math.IsNaN(s.Jitter):
		return 0
	case s.Jitter > 1:
		return 1
	}
	return s.Jitter
}

func scale(d time.Duration, f float64) time.Duration {
	v := float64(d) * f
	if v >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(v)
}

// ParseRetryAfter reads an HTTP Retry-After value: delay-seconds ("120") or
// an HTTP-date, taken relative to now (a date in the past gives 0). ok is
// false for an empty or malformed value.
func ParseRetryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if h[0] >= '0' && h[0] <= '9' {
		n, err := strconv.ParseUint(h, 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return math.MaxInt64, true
			}
			return 0, false
		}
		if n > uint64(math.MaxInt64/int64(time.Second)) {
			return math.MaxInt64, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(h)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}
