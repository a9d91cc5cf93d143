package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
)

// expectedSeries computes from the attempts what Series must say of the
// attempts of scope over window at now, and the exact delays per point.
func expectedSeries(entries []attempt.Entry, in func(a *attempt.Attempt) bool, now time.Time, window time.Duration) ([]attempt.Point, [][]time.Duration) {
	step := time.Minute
	if window > time.Hour {
		step = time.Hour
	}
	n := int((window + step - 1) / step)
	first := now.Truncate(step).Add(-time.Duration(n-1) * step)
	points := make([]attempt.Point, n)
	delays := make([][]time.Duration, n)
	for i := range points {
		points[i].Start = first.Add(time.Duration(i) * step)
	}
	for i := range entries {
		a := &entries[i].Attempt
		if !in(a) || a.StartedAt.Before(first) || !a.StartedAt.Before(now.Truncate(step).Add(step)) {
			continue
		}
		k := int(a.StartedAt.Sub(first) / step)
		p := &points[k]
		p.Attempts++
		switch a.Outcome {
		case attempt.Delivered:
			p.Delivered++
			delays[k] = append(delays[k], a.Delay())
		case attempt.Retry:
			p.Retried++
		case attempt.Failed:
			p.Failed++
		}
	}
	for _, d := range delays {
		slices.Sort(d)
	}
	return points, delays
}

// TestSeries checks every point of the series of several scopes over the
// three windows against the attempts written, over 8 days of traffic.
func TestSeries(t *testing.T) {
	ctx := context.Background()
	// Within a minute and an hour: the last point is partial.
	now := time.Date(2026, 3, 1, 12, 17, 30, 0, time.UTC)
	entries := traffic(now, 5000, 8*24*time.Hour, 7)
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		s.now = func() time.Time { return now }
		for b := range slices.Chunk(entries, 700) {
			mustWrite(t, s, b...)
		}
		for _, c := range []struct {
			scope attempt.Scope
			in    func(a *attempt.Attempt) bool
		}{
			{attempt.Scope{Sink: "subs"}, func(a *attempt.Attempt) bool { return a.Sink == "subs" }},
			{attempt.Scope{Subscription: "sub_t"}, func(a *attempt.Attempt) bool { return a.Subscription == "sub_t" }},
			{attempt.Scope{Application: "app_1"}, ofApp1},
			{attempt.Scope{Sink: "nothing"}, func(*attempt.Attempt) bool { return false }},
		} {
			for _, w := range []struct {
				window time.Duration
				points int
			}{{time.Hour, 60}, {30 * time.Minute, 30}, {24 * time.Hour, 24}, {7 * 24 * time.Hour, 168}, {90 * time.Minute, 2}} {
				what := fmt.Sprintf("%+v over %v", c.scope, w.window)
				got, err := s.Series(ctx, c.scope, w.window)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				want, delays := expectedSeries(entries, c.in, now, w.window)
				if len(got) != w.points || len(want) != w.points {
					t.Fatalf("%s: %d points, want %d", what, len(got), w.points)
				}
				var total, zeros int64
				for i, p := range got {
					wp := want[i]
					if !p.Start.Equal(wp.Start) || p.Attempts != wp.Attempts || p.Delivered != wp.Delivered || p.Retried != wp.Retried || p.Failed != wp.Failed {
						t.Errorf("%s: point %d = %+v, want %+v", what, i, p, wp)
					}
					if len(delays[i]) == 0 {
						if p.DelayP99 != 0 {
							t.Errorf("%s: point %d delay p99 %v with no delivery", what, i, p.DelayP99)
						}
					} else {
						checkPercentile(t, fmt.Sprintf("%s: point %d delay p99", what, i), p.DelayP99, exactPercentile(delays[i], 0.99))
					}
					total += p.Attempts
					if p.Attempts == 0 {
						zeros++
					}
				}
				if c.scope.Sink != "nothing" && (total < 10 || zeros == 0 && w.window == time.Hour) {
					// The checks need traffic, and empty minutes to fill.
					t.Fatalf("%s: the traffic does not fit the test: %d attempts, %d empty steps", what, total, zeros)
				}
			}
		}

		if _, err := s.Series(ctx, attempt.Scope{}, time.Hour); err == nil {
			t.Error("Series of no scope: no error")
		}
		if _, err := s.Series(ctx, attempt.Scope{Sink: "subs"}, 0); err == nil {
			t.Error("Series of a zero window: no error")
		}
	})
}

// TestSeriesSteps writes attempts at chosen times and reads the points
// they fall in and the empty ones around them, as the clock moves on.
func TestSeriesSteps(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 17, 30, 0, time.UTC)
	ids := newAttemptIDs()
	at := func(ago time.Duration, outcome attempt.Outcome, delay time.Duration) attempt.Entry {
		started := now.Add(-ago)
		return attempt.Entry{Attempt: attempt.Attempt{ID: ids.at(started), EventID: "evt_" + ids.at(started), EventType: "t", Sink: "subs",
			Application: "app_z", Subscription: "sub_z", Number: 1, StartedAt: started, ReceivedAt: started.Add(-delay), Outcome: outcome}}
	}
	eachStore(t, func(t *testing.T, db testDB, s *Store) {
		clock := now
		s.now = func() time.Time { return clock }
		mustWrite(t, s,
			at(0, attempt.Delivered, 2*time.Second), // the current minute
			at(30*time.Minute, attempt.Delivered, 10*time.Millisecond),
			at(30*time.Minute-10*time.Second, attempt.Retry, 0),
			at(30*time.Minute-20*time.Second, attempt.Failed, 0),
			at(2*time.Hour, attempt.Delivered, time.Minute), // out of the hour, in the day
			at(3*24*time.Hour, attempt.Retry, 0),            // in the week only
			at(8*24*time.Hour, attempt.Retry, 0),            // in none
		)
		series := func(window time.Duration) []attempt.Point {
			t.Helper()
			ps, err := s.Series(ctx, attempt.Scope{Application: "app_z"}, window)
			if err != nil {
				t.Fatal(err)
			}
			return ps
		}
		nonzero := func(ps []attempt.Point) map[int]attempt.Point {
			out := map[int]attempt.Point{}
			for i, p := range ps {
				if p != (attempt.Point{Start: p.Start}) {
					out[i] = p
				}
			}
			return out
		}
		hour := series(time.Hour)
		if len(hour) != 60 || !hour[59].Start.Equal(now.Truncate(time.Minute)) || !hour[0].Start.Equal(now.Truncate(time.Minute).Add(-59*time.Minute)) {
			t.Fatalf("hour: %d points from %v to %v", len(hour), hour[0].Start, hour[len(hour)-1].Start)
		}
		for i := 1; i < len(hour); i++ {
			if hour[i].Start.Sub(hour[i-1].Start) != time.Minute {
				t.Fatalf("hour: point %d starts at %v after %v", i, hour[i].Start, hour[i-1].Start)
			}
		}
		got := nonzero(hour)
		// 12:17:30 - 30m = 11:47:30 (minute 29), -20s and -10s: 11:47:40,
		// 11:47:50, the same minute.
		if len(got) != 2 || got[59].Attempts != 1 || got[59].Delivered != 1 ||
			got[29].Attempts != 3 || got[29].Delivered != 1 || got[29].Retried != 1 || got[29].Failed != 1 {
			t.Fatalf("hour: points with attempts %+v", got)
		}
		checkPercentile(t, "current minute delay p99", got[59].DelayP99, 2*time.Second)
		checkPercentile(t, "minute 29 delay p99", got[29].DelayP99, 10*time.Millisecond)

		day := series(24 * time.Hour)
		got = nonzero(day)
		if len(day) != 24 || !day[23].Start.Equal(now.Truncate(time.Hour)) || len(got) != 3 ||
			got[23].Attempts != 1 || got[22].Attempts != 3 || got[21].Attempts != 1 || got[21].Delivered != 1 {
			t.Fatalf("day: %d points, with attempts %+v", len(day), got)
		}
		week := series(7 * 24 * time.Hour)
		got = nonzero(week)
		if len(week) != 168 || len(got) != 4 || got[167-72].Retried != 1 {
			t.Fatalf("week: %d points, with attempts %+v", len(week), got)
		}

		// An hour later the current minute is empty and the attempts of
		// the past hour have left the hour's series.
		clock = now.Add(time.Hour)
		if got := nonzero(series(time.Hour)); len(got) != 0 {
			t.Errorf("an hour later: points with attempts %+v", got)
		}
		if got := nonzero(series(24 * time.Hour)); len(got) != 3 || got[22].Attempts != 1 || got[21].Attempts != 3 {
			t.Errorf("an hour later, the day: %+v", got)
		}
		if got := nonzero(series(7 * 24 * time.Hour)); len(got) != 4 {
			t.Errorf("a week, an hour later: %+v", got)
		}
		// Another application has none of it.
		other, err := s.Series(ctx, attempt.Scope{Application: "app_y"}, 7*24*time.Hour)
		if err != nil || len(nonzero(other)) != 0 || len(other) != 168 {
			t.Errorf("another application's series: %d points, %+v, %v", len(other), nonzero(other), err)
		}
	})
}
