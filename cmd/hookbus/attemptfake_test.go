package main

// TEMPORARY: an in-memory attempt.Store used until core/store implements
// it (h-store); removed then.

import (
	"context"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/store"
)

type memAttempts struct {
	mu       sync.Mutex
	attempts map[string]attempt.Attempt
	events   map[string][]attempt.Event
	dels     map[attempt.DeliveryKey]*attempt.Delivery
}

var (
	memMu  sync.Mutex
	memFor = map[*store.Store]*memAttempts{}
)

func attemptsOf(st *store.Store) attempt.Store {
	memMu.Lock()
	defer memMu.Unlock()
	if m, ok := memFor[st]; ok {
		return m
	}
	m := &memAttempts{attempts: map[string]attempt.Attempt{}, events: map[string][]attempt.Event{}, dels: map[attempt.DeliveryKey]*attempt.Delivery{}}
	memFor[st] = m
	return m
}

func (m *memAttempts) WriteAttempts(ctx context.Context, es []attempt.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range es {
		a := e.Attempt
		if _, ok := m.attempts[a.ID]; ok {
			continue
		}
		m.attempts[a.ID] = a
		if e.Event != nil {
			found := false
			for _, ev := range m.events[e.Event.ID] {
				found = found || ev.Sink == e.Event.Sink
			}
			if !found {
				m.events[e.Event.ID] = append(m.events[e.Event.ID], *e.Event)
			}
		}
		k := attempt.DeliveryKey{EventID: a.EventID, Sink: a.Sink, Subscription: a.Subscription}
		d := m.dels[k]
		if d == nil {
			d = &attempt.Delivery{DeliveryKey: k, Application: a.Application, EventType: a.EventType, ReceivedAt: a.ReceivedAt}
			m.dels[k] = d
		}
		d.Attempts++
		d.LastOutcome, d.LastAttempt, d.Queued = a.Outcome, a.StartedAt, false
	}
	return nil
}

func (m *memAttempts) ListAttempts(ctx context.Context, f attempt.Filter) ([]attempt.Attempt, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []attempt.Attempt
	for _, a := range m.attempts {
		if (f.Application != "" && a.Application != f.Application) || (f.Subscription != "" && a.Subscription != f.Subscription) ||
			(f.Sink != "" && a.Sink != f.Sink) || (f.EventID != "" && a.EventID != f.EventID) || (f.EventType != "" && a.EventType != f.EventType) ||
			(f.Outcome != "" && a.Outcome != f.Outcome) || (f.Status != 0 && a.StatusCode != f.Status) ||
			(!f.Since.IsZero() && a.StartedAt.Before(f.Since)) || (!f.Until.IsZero() && !a.StartedAt.Before(f.Until)) ||
			(f.Cursor != "" && a.ID >= f.Cursor) || (f.SubscriptionsOnly && a.Subscription == "") {
			continue
		}
		out = append(out, a)
	}
	if f.Cursor != "" && len(f.Cursor) != 26 {
		return nil, "", attempt.ErrBadCursor
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	if len(out) > f.Limit {
		return out[:f.Limit], out[f.Limit-1].ID, nil
	}
	return out, "", nil
}

func (m *memAttempts) GetAttempt(ctx context.Context, id string) (attempt.Attempt, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.attempts[id]
	if !ok {
		return a, attempt.ErrNotFound
	}
	return a, nil
}

func (m *memAttempts) GetEvent(ctx context.Context, id string) ([]attempt.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	evs := m.events[id]
	if len(evs) == 0 {
		return nil, attempt.ErrNotFound
	}
	return slices.Clone(evs), nil
}

func (m *memAttempts) Stats(ctx context.Context, sc attempt.Scope, window time.Duration) (attempt.Stats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := attempt.Stats{Window: window}
	var lat, delay []time.Duration
	for _, a := range m.attempts {
		if (sc.Sink != "" && a.Sink != sc.Sink) || (sc.Subscription != "" && a.Subscription != sc.Subscription) || a.StartedAt.Before(time.Now().Add(-window)) {
			continue
		}
		st.Attempts++
		lat = append(lat, a.Duration)
		switch a.Outcome {
		case attempt.Delivered:
			st.Delivered++
			delay = append(delay, a.Delay())
		case attempt.Retry:
			st.Retried++
		case attempt.Failed:
			st.Failed++
		}
	}
	if st.Attempts > 0 {
		st.SuccessRate = float64(st.Delivered) / float64(st.Attempts)
	}
	if st.Delivered+st.Failed > 0 {
		st.DeliverySuccessRate = float64(st.Delivered) / float64(st.Delivered+st.Failed)
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		slices.Sort(ds)
		return ds[max(0, int(math.Ceil(p*float64(len(ds))))-1)]
	}
	st.LatencyP50, st.LatencyP99, st.DelayP50, st.DelayP99 = pct(lat, .5), pct(lat, .99), pct(delay, .5), pct(delay, .99)
	for _, d := range m.dels {
		if (sc.Sink != "" && d.Sink != sc.Sink) || (sc.Subscription != "" && d.Subscription != sc.Subscription) || d.LastOutcome != attempt.Retry {
			continue
		}
		if st.OldestWaiting.IsZero() || d.ReceivedAt.Before(st.OldestWaiting) {
			st.OldestWaiting = d.ReceivedAt
		}
	}
	return st, nil
}

func (m *memAttempts) OldestWaiting(ctx context.Context) (map[string]time.Time, error) {
	return nil, nil
}

func (m *memAttempts) Deliveries(ctx context.Context, q attempt.RecoverQuery) ([]attempt.Delivery, []attempt.Event, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []attempt.Delivery
	for _, d := range m.dels {
		if (q.Application != "" && d.Application != q.Application) || (q.Subscription != "" && d.Subscription != q.Subscription) ||
			(q.Sink != "" && d.Sink != q.Sink) || d.ReceivedAt.Before(q.Since) || (!q.Until.IsZero() && !d.ReceivedAt.Before(q.Until)) ||
			d.Queued || (!q.All && d.LastOutcome != attempt.Failed) {
			continue
		}
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].EventID+out[i].Sink+out[i].Subscription < out[j].EventID+out[j].Sink+out[j].Subscription
	})
	next := ""
	if q.Cursor != "" {
		i := slices.IndexFunc(out, func(d attempt.Delivery) bool { return d.EventID+d.Sink+d.Subscription > q.Cursor })
		if i < 0 {
			i = len(out)
		}
		out = out[i:]
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
		d := out[len(out)-1]
		next = d.EventID + d.Sink + d.Subscription
	}
	var evs []attempt.Event
	for _, d := range out {
		for _, ev := range m.events[d.EventID] {
			if ev.Sink == d.Sink {
				evs = append(evs, ev)
			}
		}
	}
	return out, evs, next, nil
}

func (m *memAttempts) MarkQueued(ctx context.Context, ds []attempt.Delivery) ([]attempt.DeliveryKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []attempt.DeliveryKey
	for _, d := range ds {
		cur := m.dels[d.DeliveryKey]
		if cur == nil {
			cur = &attempt.Delivery{DeliveryKey: d.DeliveryKey}
			m.dels[d.DeliveryKey] = cur
		} else if cur.Queued {
			continue
		}
		cur.Queued = true
		out = append(out, d.DeliveryKey)
	}
	return out, nil
}

func (m *memAttempts) Prune(ctx context.Context, e, a time.Time, batch int) (int, error) {
	return 0, nil
}
