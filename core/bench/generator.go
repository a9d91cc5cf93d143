package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// generator POSTs o.Events events in requests of o.Batch, either as fast as
// o.Concurrency producers can (closed loop) or, with o.Rate, at a steady
// rate whatever the answers (open loop). Each event's data.sent is the time
// its request was due: in the open loop that is the scheduled time, so a
// request delayed behind slow answers counts its wait (no coordinated
// omission).
type generator struct {
	url      string
	o        Options
	client   *http.Client
	pad      string
	accepted atomic.Int64 // events answered 2xx
	mu       sync.Mutex
	ingest   []time.Duration // time to the answer, per request
}

func newGenerator(url string, o Options) *generator {
	return &generator{url: url, o: o, pad: strings.Repeat("x", o.Payload),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency, MaxConnsPerHost: o.Concurrency}},
		ingest: make([]time.Duration, 0, o.Events/o.Batch+1)}
}

func (g *generator) requests() int { return (g.o.Events + g.o.Batch - 1) / g.o.Batch }

// run sends every event and returns the first failure (a refused request
// or a transport error); ctx stops it early.
func (g *generator) run(ctx context.Context) error {
	defer g.client.CloseIdleConnections()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan job, g.requests())
	var wg sync.WaitGroup
	for range g.o.Concurrency {
		wg.Go(func() {
			var buf bytes.Buffer
			for j := range jobs {
				if ctx.Err() != nil {
					return
				}
				if err := g.send(ctx, &buf, j); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	if g.o.Rate > 0 {
		g.schedule(ctx, jobs)
	} else {
		for k := range g.requests() {
			jobs <- job{k: k}
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}

// job is one request: events k*Batch... and, in the open loop, when it is due.
type job struct {
	k   int
	due time.Time
}

// schedule hands out the requests at o.Rate events/s, never waiting for
// answers: a request that finds every producer busy waits in the channel,
// and that wait is part of its latency.
func (g *generator) schedule(ctx context.Context, jobs chan<- job) {
	interval := time.Duration(float64(time.Second) * float64(g.o.Batch) / g.o.Rate)
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for k := range g.requests() {
		due := start.Add(time.Duration(k) * interval)
		if d := time.Until(due); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		jobs <- job{k: k, due: due}
	}
}

func (g *generator) send(ctx context.Context, buf *bytes.Buffer, j job) error {
	first := j.k * g.o.Batch
	n := min(g.o.Batch, g.o.Events-first)
	sent := j.due
	if sent.IsZero() {
		sent = time.Now()
	}
	ns := strconv.FormatInt(sent.UnixNano(), 10)
	buf.Reset()
	buf.WriteByte('[')
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"id":"ev-`)
		buf.WriteString(strconv.Itoa(first + i))
		buf.WriteString(`","type":"bench.event",`)
		if g.o.Keys > 0 && g.o.Scenario == Ordered {
			buf.WriteString(`"subject":"key-`)
			buf.WriteString(strconv.Itoa((first + i) % g.o.Keys))
			buf.WriteString(`",`)
		}
		if apps := g.o.applications; len(apps) > 0 {
			buf.WriteString(`"application":"`)
			buf.WriteString(apps[(first+i)%len(apps)])
			buf.WriteString(`",`)
		}
		buf.WriteString(`"data":{"sent":`)
		buf.WriteString(ns)
		buf.WriteString(`,"pad":"`)
		buf.WriteString(g.pad)
		buf.WriteString(`"}}`)
	}
	buf.WriteByte(']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(buf.Bytes()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("ingest: HTTP %d", resp.StatusCode)
	}
	d := time.Since(sent)
	g.accepted.Add(int64(n))
	g.mu.Lock()
	g.ingest = append(g.ingest, d)
	g.mu.Unlock()
	return nil
}

func (g *generator) ingestTimes() []time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := append([]time.Duration(nil), g.ingest...)
	sortDurations(s)
	return s
}
