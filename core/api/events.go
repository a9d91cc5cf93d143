package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/problem"
)

// eventAttemptsPage is how many of an event's attempts GET …/events/{id}
// carries; the list (GET …/attempts?event_id=) goes on from
// attempts_next_cursor.
const eventAttemptsPage = MaxLimit

// EventJSON is the API form of an event on record: what it is, the
// payload each sink it reached was handed (Records, one per sink: a
// pipeline's transform may have changed it), and its attempts, newest
// first.
type EventJSON struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	Source      string `json:"source,omitempty"`
	Application string `json:"application,omitempty"`
	// ReceivedAt is the earliest ingest time of its records.
	ReceivedAt *string           `json:"received_at"`
	Records    []EventRecordJSON `json:"records"`
	Attempts   []AttemptJSON     `json:"attempts"`
	// AttemptsNextCursor, when not null, is the cursor of GET
	// …/attempts?event_id={id} that lists the attempts beyond these.
	AttemptsNextCursor *string `json:"attempts_next_cursor"`
}

// EventRecordJSON is an event as one sink was handed it.
type EventRecordJSON struct {
	Sink        string  `json:"sink"`
	Pipeline    string  `json:"pipeline,omitempty"`
	Source      string  `json:"source,omitempty"`
	Type        string  `json:"type"`
	Application string  `json:"application,omitempty"`
	ReceivedAt  *string `json:"received_at"`
	// Payload is the event envelope as JSON.
	Payload json.RawMessage `json:"payload"`
}

func eventNotFound(id string) *problem.Problem {
	return problem.New(http.StatusNotFound, "no event with id "+strconv.Quote(id)+" on record")
}

// getEvent serves GET /v1/events/{id} and its application-scoped form,
// which shows only the application's own: the attempts of deliveries to
// its subscriptions and the records of the sinks that made them (an
// event that reached none of its subscriptions is not found there).
func (s *Server) getEvent(w http.ResponseWriter, r *http.Request) {
	app, id := r.PathValue("app"), r.PathValue("id")
	if app != "" {
		if _, ok := s.application(w, r); !ok {
			return
		}
	}
	evs, err := s.opts.Attempts.GetEvent(r.Context(), id)
	if errors.Is(err, attempt.ErrNotFound) {
		problem.Write(w, eventNotFound(id))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	as, next, err := s.opts.Attempts.ListAttempts(r.Context(), attempt.Filter{EventID: id, Application: app,
		SubscriptionsOnly: app != "", Limit: eventAttemptsPage})
	if err != nil {
		s.internal(w, err)
		return
	}
	out := EventJSON{ID: id, Records: []EventRecordJSON{}, Attempts: make([]AttemptJSON, 0, len(as))}
	ownSinks := map[string]bool{}
	for _, a := range as {
		out.Attempts = append(out.Attempts, AttemptToJSON(a, true))
		ownSinks[a.Sink] = true
	}
	if next != "" {
		out.AttemptsNextCursor = &next
	}
	var first time.Time
	for _, ev := range evs {
		// An application sees the records of its own events, and of events
		// of no application (broadcast to every one) that reached it,
		// on the sinks that delivered to its subscriptions.
		if app != "" && (ev.Application != app && ev.Application != "" || !ownSinks[ev.Sink]) {
			continue
		}
		rec := EventRecordJSON{Sink: ev.Sink, Pipeline: ev.Pipeline, Source: ev.Source, Type: ev.Type,
			Application: ev.Application, Payload: ev.Payload}
		if !json.Valid(rec.Payload) {
			// Not JSON (a store holding what no sink produced): shown as a string, not dropped.
			rec.Payload, _ = json.Marshal(string(ev.Payload))
		}
		if !ev.ReceivedAt.IsZero() {
			t := timeJSON(ev.ReceivedAt)
			rec.ReceivedAt = &t
			if first.IsZero() || ev.ReceivedAt.Before(first) {
				first, out.ReceivedAt = ev.ReceivedAt, &t
			}
		}
		if out.Type == "" {
			out.Type, out.Source, out.Application = ev.Type, ev.Source, ev.Application
		}
		out.Records = append(out.Records, rec)
	}
	if len(out.Records) == 0 {
		problem.Write(w, eventNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, out)
}
