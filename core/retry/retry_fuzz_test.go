package retry

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseRetryAfter: any header value is either refused (0, false) or
// gives a non-negative delay; delay-seconds and HTTP-dates mean what RFC
// 9110 says.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, h := range []string{"120", " 0 ", "", "-1", "1.5", "99999999999999999999", "9223372036854775807",
		now.Add(90 * time.Second).Format(http.TimeFormat), "Sun, 06 Nov 1994 08:49:37 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Fri, 31 Dec 9999 23:59:59 GMT", "0x10", "+5"} {
		f.Add(h, now.Unix())
	}
	f.Fuzz(func(t *testing.T, h string, nowUnix int64) {
		now := time.Unix(nowUnix, 0)
		d, ok := ParseRetryAfter(h, now)
		if !ok {
			if d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v, false; want 0 when refused", h, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, a negative delay", h, d)
		}
		v := strings.TrimSpace(h)
		if n, err := strconv.ParseUint(v, 10, 64); err == nil && v[0] != '+' {
			want := time.Duration(math.MaxInt64)
			if n <= uint64(math.MaxInt64/int64(time.Second)) {
				want = time.Duration(n) * time.Second
			}
			if d != want {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %v", h, d, want)
			}
		}
	})
}

// FuzzParseRetryAfterDate: an HTTP-date n seconds after now reads back as
// n seconds (0 when in the past).
func FuzzParseRetryAfterDate(f *testing.F) {
	f.Add(int64(1_764_590_400), int64(90))
	f.Add(int64(0), int64(-5))
	f.Add(int64(253_402_300_799), int64(1))
	f.Fuzz(func(t *testing.T, nowUnix, n int64) {
		if nowUnix < 0 || nowUnix > 253_402_300_799 || n < -1e9 || n > 1e9 {
			return // four-digit years only, as HTTP-dates have
		}
		now := time.Unix(nowUnix, 0).UTC()
		at := now.Add(time.Duration(n) * time.Second)
		if at.Year() > 9999 || at.Year() < 1 {
			return
		}
		d, ok := ParseRetryAfter(at.Format(http.TimeFormat), now)
		want := max(time.Duration(n)*time.Second, 0)
		if !ok || d != want {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v; want %v", at.Format(http.TimeFormat), d, ok, want)
		}
	})
}

// FuzzNext: a retry is never scheduled before the receiver's (capped)
// Retry-After nor with a negative delay, whatever the schedule.
func FuzzNext(f *testing.F) {
	f.Add(int64(5*time.Second), 0.2, int64(time.Hour), 1, int64(2*time.Hour))
	f.Add(int64(-1), math.NaN(), int64(0), 1, int64(math.MaxInt64))
	f.Add(int64(math.MaxInt64), 5.0, int64(-1), 1, int64(-1))
	f.Add(int64(0), math.Inf(1), int64(time.Second), 2, int64(time.Minute))
	f.Fuzz(func(t *testing.T, delay int64, jitter float64, maxRA int64, attempt int, retryAfter int64) {
		s := Schedule{Delays: []time.Duration{time.Duration(delay)}, Jitter: jitter, MaxRetryAfter: time.Duration(maxRA)}
		d, ok := s.Next(attempt, time.Duration(retryAfter))
		if ok != (attempt == 1) {
			t.Fatalf("Next(%d) ok = %v with one delay", attempt, ok)
		}
		if !ok {
			return
		}
		if d < 0 {
			t.Fatalf("Next = %v, negative", d)
		}
		floor := time.Duration(retryAfter)
		if s.MaxRetryAfter > 0 && floor > s.MaxRetryAfter {
			floor = s.MaxRetryAfter
		}
		// Within float64 precision (2^-52 relative): no sooner than asked.
		if floor > 0 && float64(d) < float64(floor)*(1-1e-15) {
			t.Fatalf("Next = %v, sooner than the Retry-After %v (schedule %+v)", d, floor, s)
		}
	})
}
