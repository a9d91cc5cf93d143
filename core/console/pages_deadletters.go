package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// routesDeadLetters registers its pages: the list of dead letters (with
// a sink filter and replay of the selected or of all shown), one dead
// letter with its event, and the two replay forms.
func (c *Console) routesDeadLetters() {
	c.console("GET /console/dead-letters", c.deadLetters)
	c.console("POST /console/dead-letters/replay", c.replayDeadLetters)
	c.console("GET /console/dead-letters/{id}", c.deadLetter)
	c.console("POST /console/dead-letters/{id}/replay", c.replayDeadLetter)
}

// deadLetterListLimit is how many dead letters the list shows (the API
// lists them oldest first).
const deadLetterListLimit = 100

// maxReplayIDs bounds the ids one replay form may carry.
const maxReplayIDs = 1000

// deadLetterJSON is a dead letter as the API gives it, its event kept as
// raw JSON (shown as it is, indented).
type deadLetterJSON struct {
	ID           string          `json:"id"`
	Sink         string          `json:"sink"`
	Pipeline     string          `json:"pipeline"`
	Source       string          `json:"source"`
	Application  string          `json:"application"`
	Subscription string          `json:"subscription"`
	Kind         string          `json:"kind"`
	Reason       string          `json:"reason"`
	Attempts     int             `json:"attempts"`
	DeadAt       string          `json:"dead_at"`
	Event        json.RawMessage `json:"event"`
}

// deadLetterRow is a dead letter with what its row and page show besides.
type deadLetterRow struct {
	deadLetterJSON
	// EventID and EventType are read from the event.
	EventID, EventType string
	// SinkGone is set when the sink is no longer configured (replay
	// skips such a dead letter).
	SinkGone bool
	// Replayable is false for the kinds replay refuses.
	Replayable bool
}

// newDeadLetterRow reads the event's id and type and what replay can do.
func newDeadLetterRow(dl deadLetterJSON, known map[string]bool) deadLetterRow {
	row := deadLetterRow{deadLetterJSON: dl, Replayable: dl.Kind != "discarded"}
	var head struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if json.Unmarshal(dl.Event, &head) == nil {
		row.EventID, row.EventType = head.ID, head.Type
	}
	if known != nil && !known[dl.Sink] {
		row.SinkGone = true
	}
	return row
}

// deadLettersData is the list page's.
type deadLettersData struct {
	// Sink is the filter ("" for all); Sinks the choices.
	Sink  string
	Sinks []string
	Rows  []deadLetterRow
	// IDs are the ids of the rows, for "Replay all shown".
	IDs []string
	// More is set when the list was cut at Limit.
	More  bool
	Limit int
}

// sinkNames reads the configured sinks from the status.
func sinkNames(rq *request) ([]string, error) {
	var st statusJSON
	if err := rq.api.get(rq.r.Context(), "/v1/admin/status", nil, &st); err != nil {
		return nil, err
	}
	return st.Sinks, nil
}

// knownSinks is names as a set.
func knownSinks(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// deadLetters lists the dead letters, oldest first, of one sink or all.
func (c *Console) deadLetters(rq *request) {
	ctx := rq.r.Context()
	sinks, err := sinkNames(rq)
	if err != nil {
		rq.fail(err)
		return
	}
	d := deadLettersData{Sink: rq.r.URL.Query().Get("sink"), Sinks: sinks, Limit: deadLetterListLimit}
	known := knownSinks(sinks)
	if d.Sink != "" && !known[d.Sink] {
		// A sink removed from the configuration keeps its dead letters.
		d.Sinks = append(append([]string(nil), sinks...), d.Sink)
	}
	q := url.Values{"limit": {itoa(deadLetterListLimit + 1)}}
	if d.Sink != "" {
		q.Set("sink", d.Sink)
	}
	var list struct {
		DeadLetters []deadLetterJSON `json:"dead_letters"`
	}
	if err := rq.api.get(ctx, "/v1/dead-letters", q, &list); err != nil {
		rq.fail(err)
		return
	}
	if len(list.DeadLetters) > deadLetterListLimit {
		list.DeadLetters, d.More = list.DeadLetters[:deadLetterListLimit], true
	}
	for _, dl := range list.DeadLetters {
		d.Rows = append(d.Rows, newDeadLetterRow(dl, known))
		d.IDs = append(d.IDs, dl.ID)
	}
	rq.render("deadletters", page{Title: "Dead letters", Nav: "dead-letters", Data: d})
}

// deadLetterData is the page of one dead letter.
type deadLetterData struct {
	deadLetterRow
	// Body is the event, indented.
	Body string
}

// deadLetter shows one dead letter, its reason in full and its event.
func (c *Console) deadLetter(rq *request) {
	ctx := rq.r.Context()
	id := rq.r.PathValue("id")
	var dl deadLetterJSON
	if err := rq.api.get(ctx, "/v1/dead-letters/"+esc(id), nil, &dl); err != nil {
		rq.fail(err)
		return
	}
	sinks, err := sinkNames(rq)
	if err != nil {
		rq.fail(err)
		return
	}
	d := deadLetterData{deadLetterRow: newDeadLetterRow(dl, knownSinks(sinks)), Body: prettyJSON(dl.Event)}
	rq.render("deadletter", page{Title: "Dead letter", Nav: "dead-letters", Data: d})
}

// replayAnswer is the API's answer to a replay.
type replayAnswer struct {
	Replayed int    `json:"replayed"`
	Skipped  string `json:"skipped"`
}

// replayDeadLetters replays the dead letters a form names (ids: the
// boxes checked, or every row shown) and goes back to the list.
func (c *Console) replayDeadLetters(rq *request) {
	form := rq.r.PostForm
	back := "/console/dead-letters" + queryString("sink", form.Get("sink"))
	var ids []string
	for _, id := range form["ids"] {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		rq.redirect(back, "Nothing replayed: select at least one dead letter (ids).")
		return
	}
	if len(ids) > maxReplayIDs {
		rq.redirect(back, fmt.Sprintf("Nothing replayed: at most %d dead letters at a time (ids).", maxReplayIDs))
		return
	}
	var res replayAnswer
	err := rq.api.post(rq.r.Context(), "/v1/dead-letters/replay", map[string]any{"ids": ids}, &res)
	var ae *APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusConflict) {
		// Another operator replayed one of them first, for instance: the
		// ones before it were queued; say so and show the list again.
		rq.redirect(back, "Replay stopped: "+shorten(ae.Error(), 300)+" Reload the list to see what is left.")
		return
	}
	if err != nil {
		rq.fail(err)
		return
	}
	rq.redirect(back, replayedFlash(res))
}

// replayDeadLetter replays one dead letter, from its page.
func (c *Console) replayDeadLetter(rq *request) {
	id := rq.r.PathValue("id")
	var res replayAnswer
	err := rq.api.post(rq.r.Context(), "/v1/dead-letters/"+esc(id)+"/replay", nil, &res)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusConflict:
		rq.redirect("/console/dead-letters/"+url.PathEscape(id), "Not replayed: "+shorten(ae.Error(), 300))
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		rq.redirect("/console/dead-letters", "Not replayed: "+shorten(ae.Error(), 300)+" (replayed already?)")
	case err != nil:
		rq.fail(err)
	default:
		rq.redirect("/console/dead-letters", replayedFlash(res))
	}
}

// replayedFlash says how many dead letters were queued again, and why
// the others were not.
func replayedFlash(res replayAnswer) string {
	msg := "Queued 1 dead letter for delivery again."
	if res.Replayed != 1 {
		msg = fmt.Sprintf("Queued %d dead letters for delivery again.", res.Replayed)
	}
	if res.Skipped != "" {
		msg += " Not replayed: " + shorten(res.Skipped, 300)
	}
	return msg
}

// shorten cuts s to at most n bytes (on a rune boundary), marking the
// cut: a flash message must fit its cookie.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
