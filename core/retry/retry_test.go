package retry

import (
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	t.Parallel()
	s := Default()
	want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
	if len(s.Delays) != len(want) {
		t.Fatalf("Delays = %v", s.Delays)
	}
	for i := range want {
		if s.Delays[i] != want[i] {
			t.Fatalf("Delays = %v, want %v", s.Delays, want)
		}
	}
	if s.MaxAttempts() != 8 || s.Jitter != 0.2 || s.MaxRetryAfter != time.Hour {
		t.Fatalf("Default() = %+v", s)
	}
	s.Delays[0] = 0
	if DefaultDelays[0] != 5*time.Second {
		t.Fatal("Default() shares its slice with DefaultDelays")
	}
}

func TestNextJitterBounds(t *testing.T) {
	t.Parallel()
	s := Default()
	for attempt := 1; attempt <= len(s.Delays); attempt++ {
		base := s.Delays[attempt-1]
		lo, hi := scale(base, 0.8), scale(base, 1.2)
		var sawLow, sawHigh bool
		for range 2000 {
			d, ok := s.Next(attempt, 0)
			if !ok {
				t.Fatalf("attempt %d: exhausted early", attempt)
			}
			if d < lo || d > hi {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, lo, hi)
			}
			sawLow = sawLow || d < base
			sawHigh = sawHigh || d > base
		}
		if !sawLow || !sawHigh {
			t.Fatalf("attempt %d: jitter not spread both ways (low %v high %v)", attempt, sawLow, sawHigh)
		}
	}
}

func TestNextExhausted(t *testing.T) {
	t.Parallel()
	s := Default()
	tests := []struct {
		attempt int
		ok      bool
	}{{0, false}, {-1, false}, {1, true}, {7, true}, {8, false}, {100, false}}
	for _, tt := range tests {
		if _, ok := s.Next(tt.attempt, 0); ok != tt.ok {
			t.Errorf("Next(%d) ok = %v, want %v", tt.attempt, ok, tt.ok)
		}
	}
	if _, ok := (Schedule{}).Next(1, time.Minute); ok {
		t.Error("empty schedule must allow no retry")
	}
}

func TestNextNoJitter(t *testing.T) {
	t.Parallel()
	s := Schedule{Delays: []time.Duration{time.Second, time.Minute}}
	if d, _ := s.Next(2, 0); d != time.Minute {
		t.Fatalf("Next(2) = %v, want 1m exactly", d)
	}
	for _, j := range []float64{-1, math.NaN()} {
		s.Jitter = j
		if d, _ := s.Next(1, 0); d != time.Second {
			t.Fatalf("Jitter %v: Next(1) = %v, want 1s", j, d)
		}
	}
}

func TestNextRetryAfter(t *testing.T) {
	t.Parallel()
	s := Schedule{Delays: []time.Duration{5 * time.Second, time.Hour}, Jitter: 0.2, MaxRetryAfter: 10 * time.Minute}
	tests := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{"longer retry-after wins, jittered upwards only", 1, time.Minute, time.Minute, 72 * time.Second},
		{"retry-after capped", 1, 5 * time.Hour, 10 * time.Minute, 12 * time.Minute},
		{"shorter retry-after ignored", 2, time.Minute, 48 * time.Minute, 72 * time.Minute},
		{"zero retry-after ignored", 1, 0, 4 * time.Second, 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 500 {
				d, ok := s.Next(tt.attempt, tt.retryAfter)
				if !ok || d < tt.lo || d > tt.hi {
					t.Fatalf("Next(%d, %v) = %v, %v; want within [%v, %v]", tt.attempt, tt.retryAfter, d, ok, tt.lo, tt.hi)
				}
			}
		})
	}
	// No cap when MaxRetryAfter is zero.
	s.MaxRetryAfter = 0
	s.Jitter = 0
	if d, _ := s.Next(1, 5*time.Hour); d != 5*time.Hour {
		t.Fatalf("uncapped Next = %v, want 5h", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7", 7 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"Saturday, 01-Mar-25 12:05:00 GMT", 5 * time.Minute, true}, // RFC 850
		{"Sat Mar  1 12:00:30 2025", 30 * time.Second, true},        // asctime
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},      // past
		{"99999999999999999999999", math.MaxInt64, true},
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"7s", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// NextFor gives one delay per key and attempt, within the jitter, and
// other keys other delays.
func TestNextForIsStablePerKey(t *testing.T) {
	s := Schedule{Delays: []time.Duration{10 * time.Second, time.Minute}, Jitter: 0.2}
	a, ok := s.NextFor("batch_x", 1, 0)
	if !ok || a < 8*time.Second || a > 12*time.Second {
		t.Fatalf("NextFor = %v, %v", a, ok)
	}
	for range 10 {
		if b, _ := s.NextFor("batch_x", 1, 0); b != a {
			t.Fatalf("NextFor gave %v then %v for one key", a, b)
		}
	}
	differ := false
	for i := range 10 {
		if b, _ := s.NextFor(fmt.Sprint("batch_", i), 1, 0); b != a {
			differ = true
		}
	}
	if !differ {
		t.Fatal("ten other keys all got the same delay")
	}
	if _, ok := s.NextFor("batch_x", 3, 0); ok {
		t.Fatal("NextFor past the schedule")
	}
}
