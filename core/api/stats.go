package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/problem"
)

// StatsWindows are the windows the stats routes take, by their name in
// ?window=.
var StatsWindows = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

// DefaultStatsWindow is the window without ?window=.
const DefaultStatsWindow = "24h"

// StatsJSON is the API form of a sink's, an application's or a
// subscription's figures over a window (computed from the attempt log).
type StatsJSON struct {
	Window    string `json:"window"`
	Attempts  int64  `json:"attempts"`
	Delivered int64  `json:"delivered"`
	Retried   int64  `json:"retried"`
	Failed    int64  `json:"failed"`
	// SuccessRate is delivered / attempts; DeliverySuccessRate delivered /
	// (delivered + failed), the share of finished deliveries that arrived.
	SuccessRate         float64 `json:"success_rate"`
	DeliverySuccessRate float64 `json:"delivery_success_rate"`
	LatencyP50MS        float64 `json:"latency_p50_ms"`
	LatencyP99MS        float64 `json:"latency_p99_ms"`
	DelayP50MS          float64 `json:"delay_p50_ms"`
	DelayP99MS          float64 `json:"delay_p99_ms"`
	// OldestWaiting is the ingest time of the oldest event still waiting
	// for a retry; null when none waits.
	OldestWaiting *string `json:"oldest_waiting"`
	// Series are the figures step by step over the window, oldest first:
	// a point per minute for 1h, per hour for 24h and 7d, every step
	// present, the last one the current step so far.
	Series []PointJSON `json:"series"`
}

// PointJSON is one step of a series: the attempts started in
// [start, start + step).
type PointJSON struct {
	Start     string `json:"start"`
	Attempts  int64  `json:"attempts"`
	Delivered int64  `json:"delivered"`
	Failed    int64  `json:"failed"`
	// SuccessRate is delivered / attempts, 0 with no attempt.
	SuccessRate float64 `json:"success_rate"`
	DelayP99MS  float64 `json:"delay_p99_ms"`
}

// SeriesToJSON converts the points of a series to their API form (an
// empty series is an empty array, never null).
func SeriesToJSON(points []attempt.Point) []PointJSON {
	out := make([]PointJSON, len(points))
	for i, p := range points {
		out[i] = PointJSON{Start: timeJSON(p.Start), Attempts: p.Attempts, Delivered: p.Delivered, Failed: p.Failed,
			DelayP99MS: millis(p.DelayP99)}
		if p.Attempts > 0 {
			out[i].SuccessRate = float64(p.Delivered) / float64(p.Attempts)
		}
	}
	return out
}

// StatsToJSON converts figures and their series to their API form.
func StatsToJSON(st attempt.Stats, series []attempt.Point, window string) StatsJSON {
	out := StatsJSON{Window: window, Series: SeriesToJSON(series), Attempts: st.Attempts, Delivered: st.Delivered, Retried: st.Retried, Failed: st.Failed,
		SuccessRate: st.SuccessRate, DeliverySuccessRate: st.DeliverySuccessRate,
		LatencyP50MS: millis(st.LatencyP50), LatencyP99MS: millis(st.LatencyP99),
		DelayP50MS: millis(st.DelayP50), DelayP99MS: millis(st.DelayP99)}
	if !st.OldestWaiting.IsZero() {
		t := timeJSON(st.OldestWaiting)
		out.OldestWaiting = &t
	}
	return out
}

// statsWindow reads ?window= (the only parameter the stats routes take).
func statsWindow(r *http.Request) (string, time.Duration, *problem.Problem) {
	q := r.URL.Query()
	var errs queryErrors
	errs.unknownParams(q, []string{"window"})
	name := DefaultStatsWindow
	if _, ok := q["window"]; ok {
		name = errs.text(q, "window")
		if _, ok := StatsWindows[name]; !ok && name != "" {
			errs.add("window", "must be 1h, 24h or 7d")
		}
	}
	if len(errs) > 0 {
		return "", 0, problem.Validation("invalid query parameter", errs...)
	}
	return name, StatsWindows[name], nil
}

// writeStats answers the figures of scope and their series.
func (s *Server) writeStats(w http.ResponseWriter, r *http.Request, scope attempt.Scope, name string, window time.Duration) {
	st, err := s.opts.Attempts.Stats(r.Context(), scope, window)
	if err != nil {
		s.internal(w, err)
		return
	}
	series, err := s.opts.Attempts.Series(r.Context(), scope, window)
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, StatsToJSON(st, series, name))
}

// applicationStats serves GET /v1/applications/{app}/stats: the figures
// of all the application's subscriptions (not of the other sinks its
// events reached, which are the operator's).
func (s *Server) applicationStats(w http.ResponseWriter, r *http.Request) {
	name, window, p := statsWindow(r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	app, ok := s.application(w, r)
	if !ok {
		return
	}
	s.writeStats(w, r, attempt.Scope{Application: app.ID}, name, window)
}

// subscriptionStats serves GET /v1/applications/{app}/subscriptions/{sub}/stats.
func (s *Server) subscriptionStats(w http.ResponseWriter, r *http.Request) {
	name, window, p := statsWindow(r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	sub, ok := s.subscription(w, r)
	if !ok {
		return
	}
	s.writeStats(w, r, attempt.Scope{Subscription: sub.ID}, name, window)
}

// sinkStats serves GET /v1/sinks/{sink}/stats: a sink that is not
// configured is not found.
func (s *Server) sinkStats(w http.ResponseWriter, r *http.Request) {
	name, window, p := statsWindow(r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	sink := r.PathValue("sink")
	if s.opts.SinkKnown != nil && !s.opts.SinkKnown(sink) {
		problem.Write(w, problem.New(http.StatusNotFound, "no sink named "+strconv.Quote(sink)+" is configured"))
		return
	}
	s.writeStats(w, r, attempt.Scope{Sink: sink}, name, window)
}
