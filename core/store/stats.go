package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
)

// Figures are kept per scope in hookbus_attempt_stats, in rows of a
// minute and rows of an hour, so Stats sums the minutes at the start of
// its window up to the first whole hour, then hours: at most 60 + 169 rows
// for 7 days, whatever the number of attempts. Each row holds the counts
// by outcome and two histograms, of attempt latency and of delay (ingest
// to the end of a delivered attempt), as one column per bucket.
// WriteAttempts adds to the rows with additive upserts (count = count +
// excluded.count), so instances writing at once never read-modify-write,
// and counts only the attempts it actually inserted, so an attempt written
// twice counts once.
//
// The buckets are fixed: bucket 0 is [0, 1ms), bucket i (1..histBuckets-2)
// is [1ms·r^(i-1), 1ms·r^i) with r = histRatio, and the last bucket holds
// everything from 1ms·r^(histBuckets-2) (about 26 h) up. They are part
// of the schema: changing them is a new migration.
const (
	histBuckets = 72
	histRatio   = 1.3
)

// The periods of the figures' rows, in seconds.
const (
	minutePeriod = 60
	hourPeriod   = 3600
)

// Kinds of the scopes figures are kept for.
const (
	scopeSink         = "sink"
	scopeSubscription = "subscription"
	scopeApplication  = "application"
)

// bucketBounds[i] is the upper bound of bucket i (the last bucket has none).
var bucketBounds = func() []time.Duration {
	b := make([]time.Duration, histBuckets-1)
	for i := range b {
		b[i] = time.Duration(float64(time.Millisecond) * math.Pow(histRatio, float64(i)))
	}
	return b
}()

// bucketOf is the bucket of histogram d falls in.
func bucketOf(d time.Duration) int {
	if d < time.Millisecond {
		return 0
	}
	i := min(histBuckets-1, 1+int(math.Floor(math.Log(float64(d)/float64(time.Millisecond))/math.Log(histRatio))))
	// Floating point may land one off at a bound: settle on the bounds.
	for i > 1 && d < bucketBounds[i-1] {
		i--
	}
	for i < histBuckets-1 && d >= bucketBounds[i] {
		i++
	}
	return i
}

// statColumns are the figure columns of hookbus_attempt_stats in order:
// the counts, then the latency buckets l00.., then the delay buckets d00...
func statColumns() []string {
	cols := []string{"attempts", "delivered", "retried", "failed"}
	for _, p := range []string{"l", "d"} {
		for i := range histBuckets {
			cols = append(cols, fmt.Sprintf("%s%02d", p, i))
		}
	}
	return cols
}

// rollup is one row of hookbus_attempt_stats being added to.
type rollup struct {
	attempts, delivered, retried, failed int64
	latency, delay                       [histBuckets]int64
}

type rollupKey struct {
	kind, name    string
	period, start int64
}

// add counts a in r.
func (r *rollup) add(a *attempt.Attempt) {
	r.attempts++
	switch a.Outcome {
	case attempt.Delivered:
		r.delivered++
		if !a.ReceivedAt.IsZero() {
			r.delay[bucketOf(a.Delay())]++
		}
	case attempt.Retry:
		r.retried++
	case attempt.Failed:
		r.failed++
	}
	r.latency[bucketOf(max(0, a.Duration))]++
}

// rollups sums the attempts inserted into one row per scope, period and
// period start of their start time: the sink's scope, and the
// subscription's and its application's when there is a subscription (an
// application's figures are those of its subscriptions, as its own view
// of the log shows only them).
func rollups(inserted []*attempt.Attempt) map[rollupKey]*rollup {
	out := map[rollupKey]*rollup{}
	keys := make([]rollupKey, 0, 4)
	for _, a := range inserted {
		at := a.StartedAt.Unix()
		keys = keys[:0]
		for _, p := range []int64{minutePeriod, hourPeriod} {
			start := floorTo(at, p)
			keys = append(keys, rollupKey{scopeSink, a.Sink, p, start})
			if a.Subscription != "" {
				keys = append(keys, rollupKey{scopeSubscription, a.Subscription, p, start})
				if a.Application != "" {
					keys = append(keys, rollupKey{scopeApplication, a.Application, p, start})
				}
			}
		}
		for _, k := range keys {
			r := out[k]
			if r == nil {
				r = &rollup{}
				out[k] = r
			}
			r.add(a)
		}
	}
	return out
}

// floorTo is the start of the period of p seconds that unix time t is in.
func floorTo(t, p int64) int64 {
	r := t % p
	if r < 0 {
		r += p
	}
	return t - r
}

// writeRollups adds rs to hookbus_attempt_stats inside tx.
func (s *Store) writeRollups(ctx context.Context, tx *sql.Tx, rs map[rollupKey]*rollup) error {
	if len(rs) == 0 {
		return nil
	}
	cols := append([]string{"kind", "name", "period", "start"}, statColumns()...)
	sets := make([]string, 0, len(cols)-3)
	for _, c := range cols[4:] {
		sets = append(sets, c+` = hookbus_attempt_stats.`+c+` + excluded.`+c)
	}
	suffix := ` ON CONFLICT (kind, name, period, start) DO UPDATE SET ` + strings.Join(sets, ", ")
	// In key order: instances adding to the same rows at once take their
	// row locks in one order, so they never deadlock (PostgreSQL).
	keys := slices.SortedFunc(maps.Keys(rs), func(a, b rollupKey) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name), cmp.Compare(a.period, b.period), cmp.Compare(a.start, b.start))
	})
	rows := make([][]any, 0, len(rs))
	for _, k := range keys {
		r := rs[k]
		row := make([]any, 0, len(cols))
		row = append(row, k.kind, k.name, k.period, k.start, r.attempts, r.delivered, r.retried, r.failed)
		for _, n := range r.latency {
			row = append(row, n)
		}
		for _, n := range r.delay {
			row = append(row, n)
		}
		rows = append(rows, row)
	}
	return s.insertRows(ctx, tx, "hookbus_attempt_stats", cols, rows, suffix, nil)
}

// statsScope is where the figures of a scope are kept: its rows' kind
// and name, and the condition on hookbus_deliveries that selects its
// deliveries (with one ? for name).
type statsScope struct {
	kind, name, deliveries string
}

// resolveScope picks the narrowest scope set: a subscription, then an
// application, then a sink.
func resolveScope(scope attempt.Scope) (statsScope, error) {
	switch {
	case scope.Subscription != "":
		return statsScope{scopeSubscription, scope.Subscription, `subscription = ?`}, nil
	case scope.Application != "":
		return statsScope{scopeApplication, scope.Application, `application = ? AND subscription <> ''`}, nil
	case scope.Sink != "":
		return statsScope{scopeSink, scope.Sink, `sink = ?`}, nil
	}
	return statsScope{}, fmt.Errorf("scope: sink, application or subscription is required")
}

// sumColumns are the SQL sums of cols, as BIGINT (0 with no row).
func sumColumns(cols []string) string {
	sums := make([]string, len(cols))
	for i, c := range cols {
		sums[i] = `CAST(COALESCE(SUM(` + c + `), 0) AS BIGINT)`
	}
	return strings.Join(sums, ", ")
}

// Stats computes the figures of scope (see resolveScope) over the window
// that ends now, from the figures' rows: the window starts at the
// beginning of the minute now-window falls in, so it may take in up to a
// minute more than asked. The counts are exact.
//
// Percentiles are read from the histograms, interpolating linearly within
// the bucket that holds them: as the buckets are 1.3× apart, a p50 or p99
// is off by less than 30% of its value (usually much less), and by less
// than 1 ms below 1 ms; above 26 h it reads 26 h. OldestWaiting is the
// ingest time of the oldest delivery in scope whose last attempt was a
// retry, whenever it was received.
func (s *Store) Stats(ctx context.Context, scope attempt.Scope, window time.Duration) (attempt.Stats, error) {
	st := attempt.Stats{Window: window}
	if window <= 0 {
		return st, fmt.Errorf("store: stats: window must be positive, not %v", window)
	}
	sc, err := resolveScope(scope)
	if err != nil {
		return st, fmt.Errorf("store: stats: %w", err)
	}
	cols := statColumns()
	// The minutes up to the first whole hour, then the hours (the current
	// one holds what happened in it so far).
	from := floorTo(s.now().Add(-window).Unix(), minutePeriod)
	hours := floorTo(from+hourPeriod-1, hourPeriod)
	vals := make([]int64, len(cols))
	part := make([]int64, len(cols))
	dest := make([]any, len(cols))
	for i := range part {
		dest[i] = &part[i]
	}
	query := s.q(`SELECT ` + sumColumns(cols) + ` FROM hookbus_attempt_stats WHERE kind = ? AND name = ? AND period = ? AND start >= ? AND start < ?`)
	for _, r := range []struct{ period, from, to int64 }{{minutePeriod, from, hours}, {hourPeriod, hours, math.MaxInt64}} {
		if r.from >= r.to {
			continue
		}
		if err := s.db.QueryRowContext(ctx, query, sc.kind, sc.name, r.period, r.from, r.to).Scan(dest...); err != nil {
			return st, fmt.Errorf("store: stats of %s %q: %w", sc.kind, sc.name, err)
		}
		for i, v := range part {
			vals[i] += v
		}
	}
	st.Attempts, st.Delivered, st.Retried, st.Failed = vals[0], vals[1], vals[2], vals[3]
	if st.Attempts > 0 {
		st.SuccessRate = float64(st.Delivered) / float64(st.Attempts)
	}
	if ended := st.Delivered + st.Failed; ended > 0 {
		st.DeliverySuccessRate = float64(st.Delivered) / float64(ended)
	}
	latency, delay := vals[4:4+histBuckets], vals[4+histBuckets:]
	st.LatencyP50, st.LatencyP99 = percentile(latency, 0.50), percentile(latency, 0.99)
	st.DelayP50, st.DelayP99 = percentile(delay, 0.50), percentile(delay, 0.99)

	var oldest sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT MIN(received_at) FROM hookbus_deliveries WHERE last_outcome = 'retry' AND `+sc.deliveries),
		sc.name).Scan(&oldest); err != nil {
		return st, fmt.Errorf("store: stats of %s %q: oldest waiting: %w", sc.kind, sc.name, err)
	}
	if oldest.Valid {
		st.OldestWaiting = fromNanos(oldest.Int64)
	}
	return st, nil
}

// seriesSteps is the step of the series of a window and how many steps
// it has: minutes up to an hour, hours above, enough to cover the window.
func seriesSteps(window time.Duration) (step int64, n int) {
	step = minutePeriod
	if window > time.Hour {
		step = hourPeriod
	}
	stepD := time.Duration(step) * time.Second
	return step, int((window + stepD - 1) / stepD)
}

// Series returns the figures of scope step by step over the window that
// ends now (see attempt.Store), read in one query from the rows of the
// step's period: the last point is the step now is in, the first n-1
// steps before it, so the points reach back between window-step and
// window from now. DelayP99 per point is read from its delay histogram,
// with Stats' precision.
func (s *Store) Series(ctx context.Context, scope attempt.Scope, window time.Duration) ([]attempt.Point, error) {
	if window <= 0 {
		return nil, fmt.Errorf("store: series: window must be positive, not %v", window)
	}
	sc, err := resolveScope(scope)
	if err != nil {
		return nil, fmt.Errorf("store: series: %w", err)
	}
	step, n := seriesSteps(window)
	last := floorTo(s.now().Unix(), step)
	first := last - int64(n-1)*step
	points := make([]attempt.Point, n)
	for i := range points {
		points[i].Start = time.Unix(first+int64(i)*step, 0).UTC()
	}
	cols := []string{"attempts", "delivered", "retried", "failed"}
	for i := range histBuckets {
		cols = append(cols, fmt.Sprintf("d%02d", i))
	}
	query := s.q(`SELECT start, ` + sumColumns(cols) + ` FROM hookbus_attempt_stats WHERE kind = ? AND name = ? AND period = ? AND start >= ? AND start <= ? GROUP BY start`)
	rows, err := s.db.QueryContext(ctx, query, sc.kind, sc.name, step, first, last)
	if err != nil {
		return nil, fmt.Errorf("store: series of %s %q: %w", sc.kind, sc.name, err)
	}
	defer rows.Close()
	var start int64
	vals := make([]int64, len(cols))
	dest := make([]any, 0, 1+len(cols))
	dest = append(dest, &start)
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("store: series of %s %q: %w", sc.kind, sc.name, err)
		}
		i := (start - first) / step
		if start%step != 0 || i < 0 || i >= int64(n) {
			continue // not a start of this period: never written so
		}
		p := &points[i]
		p.Attempts, p.Delivered, p.Retried, p.Failed = vals[0], vals[1], vals[2], vals[3]
		p.DelayP99 = percentile(vals[4:], 0.99)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: series of %s %q: %w", sc.kind, sc.name, err)
	}
	return points, nil
}

// percentile reads the p-quantile (0 < p < 1) of a histogram of
// bucketOf's buckets, interpolating within its bucket; 0 when empty.
func percentile(h []int64, p float64) time.Duration {
	var total int64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := p * float64(total)
	var below int64
	for i, n := range h {
		if n == 0 || float64(below+n) < rank {
			below += n
			continue
		}
		if i == len(h)-1 {
			return bucketBounds[len(bucketBounds)-1]
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = bucketBounds[i-1]
		}
		hi := bucketBounds[i]
		f := (rank - float64(below)) / float64(n)
		return lo + time.Duration(f*float64(hi-lo))
	}
	return bucketBounds[len(bucketBounds)-1]
}

// OldestWaiting returns, per sink, the ingest time of the oldest delivery
// whose last attempt was a retry (sinks with none are absent).
func (s *Store) OldestWaiting(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT sink, MIN(received_at) FROM hookbus_deliveries WHERE last_outcome = 'retry' GROUP BY sink`)
	if err != nil {
		return nil, fmt.Errorf("store: oldest waiting: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var sink string
		var at int64
		if err := rows.Scan(&sink, &at); err != nil {
			return nil, fmt.Errorf("store: oldest waiting: %w", err)
		}
		out[sink] = fromNanos(at)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: oldest waiting: %w", err)
	}
	return out, nil
}
