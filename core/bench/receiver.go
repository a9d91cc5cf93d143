package bench

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Receiver behaviours.
const (
	answerOK   int32 = iota // 204 and count the event
	answer503               // 503: not delivered, the sender retries
	answerHang              // never answers until the receiver closes
)

// receiver is the local endpoint events are delivered to. It takes a single
// event (a webhook body) or an array of them (a direct batch), counts each
// id once and records the latency from the event's data.sent.
type receiver struct {
	ln    net.Listener
	srv   *http.Server
	want  int64
	mode  atomic.Int32
	stop  chan struct{} // closed on close: releases hanging requests
	done  chan struct{} // closed when want distinct events arrived
	once  sync.Once
	mu    sync.Mutex
	seen  map[string]struct{}
	lat   []time.Duration
	dups  int
	count atomic.Int64
	last  atomic.Int64 // unix ns of the last new event
	// rejected counts requests answered 503 (or left hanging).
	rejected atomic.Int64
	// delay, when positive, is how long each delivery waits for its answer.
	delay time.Duration

	// perApp, when set, makes the receiver one endpoint of many
	// subscriptions, told apart by the request path: an event counts once
	// it arrived on as many paths as perApp gives its application, and
	// pairs counts every (path, event) that arrived.
	perApp  map[string]int
	arrived map[string]int // event id -> paths it arrived on
	pairs   atomic.Int64
	closed  sync.Once
}

func newReceiver(want int, mode int32) (*receiver, error) { return startReceiver(want, mode, nil) }

// newPairReceiver returns a receiver for many subscriptions (see perApp):
// want events, each to perApp[its application] paths.
func newPairReceiver(want int, perApp map[string]int) (*receiver, error) {
	return startReceiver(want, answerOK, perApp)
}

func startReceiver(want int, mode int32, perApp map[string]int) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{ln: ln, want: int64(want), stop: make(chan struct{}), done: make(chan struct{}),
		seen: make(map[string]struct{}, want), lat: make([]time.Duration, 0, want), perApp: perApp}
	if perApp != nil {
		r.arrived = make(map[string]int, want)
	}
	r.mode.Store(mode)
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: time.Minute}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) url() string { return "http://" + r.ln.Addr().String() + "/" }

type benchEvent struct {
	ID          string `json:"id"`
	Application string `json:"application"`
	Data        struct {
		Sent int64 `json:"sent"`
	} `json:"data"`
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	switch r.mode.Load() {
	case answer503:
		r.rejected.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case answerHang:
		r.rejected.Add(1)
		select {
		case <-req.Context().Done():
		case <-r.stop:
		}
		return
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	var evs []benchEvent
	if len(body) > 0 && body[0] == '[' {
		_ = json.Unmarshal(body, &evs)
	} else {
		var ev benchEvent
		_ = json.Unmarshal(body, &ev)
		evs = []benchEvent{ev}
	}
	now := time.Now()
	if r.perApp != nil {
		r.pair(req.URL.Path, evs, now)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	r.mu.Lock()
	for _, ev := range evs {
		if _, ok := r.seen[ev.ID]; ok {
			r.dups++
			continue
		}
		r.seen[ev.ID] = struct{}{}
		r.lat = append(r.lat, now.Sub(time.Unix(0, ev.Data.Sent)))
		r.last.Store(now.UnixNano())
		if r.count.Add(1) == r.want {
			r.once.Do(func() { close(r.done) })
		}
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// pair records events that arrived on path.
func (r *receiver) pair(path string, evs []benchEvent, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range evs {
		key := path + "\x00" + ev.ID
		if _, ok := r.seen[key]; ok {
			r.dups++
			continue
		}
		r.seen[key] = struct{}{}
		r.pairs.Add(1)
		r.lat = append(r.lat, now.Sub(time.Unix(0, ev.Data.Sent)))
		r.last.Store(now.UnixNano())
		r.arrived[ev.ID]++
		if r.arrived[ev.ID] == r.perApp[ev.Application] {
			if r.count.Add(1) == r.want {
				r.once.Do(func() { close(r.done) })
			}
		}
	}
}

// snapshot returns a sorted copy of the latencies and the duplicate count.
func (r *receiver) snapshot() ([]time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := append([]time.Duration(nil), r.lat...)
	sortDurations(lat)
	return lat, r.dups
}

// close stops the receiver and releases hanging requests; it may be
// called more than once.
func (r *receiver) close() {
	r.closed.Do(func() {
		close(r.stop)
		_ = r.srv.Close()
	})
}
