package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/hookbus/hookbus/core/api"
)

// The delivery log's pages: the list of attempts with its filters and the
// recover form, one attempt, one event, and the resend and recover
// actions. The console and the portal share the handlers; the portal
// calls only its application's routes (/v1/applications/{app}/…), whose
// tenancy checks keep it to its own deliveries.

// routesLog registers its pages.
func (c *Console) routesLog() {
	for _, portal := range []bool{false, true} {
		reg, base := c.console, "/console"
		if portal {
			reg, base = c.portalPage, "/portal"
		}
		reg("GET "+base+"/attempts", c.logList)
		reg("GET "+base+"/attempts/{id}", c.logAttempt)
		reg("GET "+base+"/events/{id}", c.logEvent)
		reg("POST "+base+"/resend", c.logResend)
		reg("POST "+base+"/recover", c.logRecover)
	}
}

// logPageSize is how many attempts one page of the log shows (unless
// the address says ?limit=).
const logPageSize = 50

// logAPI is the API path of the log's routes for rq: the admin routes in
// the console, the application's in the portal (rest is "/attempts", …).
func (rq *request) logAPI(rest string) string {
	if rq.portal {
		return appAPI(rq.app) + rest
	}
	return "/v1" + rest
}

// logFilterFields are the filters of the log page, in the form's order;
// the portal has neither application nor sink (its list is its
// application's, and which sinks the operator runs is not its business).
var logFilterFields = []string{"application", "subscription", "sink", "event_type", "event_id", "outcome", "status", "since", "until"}

func (rq *request) filterFields() []string {
	if !rq.portal {
		return logFilterFields
	}
	return slices.DeleteFunc(slices.Clone(logFilterFields), func(f string) bool { return f == "application" || f == "sink" })
}

// logTable is a table of attempts (the "logtable" partial), with what
// its links need.
type logTable struct {
	Attempts []api.AttemptJSON
	Portal   bool
	Base     string
}

func (rq *request) table(as []api.AttemptJSON) logTable {
	return logTable{Attempts: as, Portal: rq.portal, Base: rq.base()}
}

// logData is the log page's own data.
type logData struct {
	// Filter holds the filters as shown in the form (times as UTC
	// datetime-local values).
	Filter   map[string]string
	Filtered bool
	Table    logTable
	// Next is the link to the next page; empty on the last.
	Next string
	// Recover is the recover form's values; Subscriptions the portal's
	// choice of subscriptions for it.
	Recover       map[string]string
	Subscriptions []api.SubscriptionJSON
}

// localTime is the layout of a datetime-local input's value, in UTC here.
const localTime = "2006-01-02T15:04:05"

// parseFormTime reads a time the form gave: a datetime-local value (taken
// as UTC, with or without seconds) or an RFC 3339 time.
func parseFormTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, localTime, "2006-01-02T15:04", localTime + ".999999999"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("must be a date and time in UTC such as 2026-01-02T15:04, or RFC 3339")
}

// readTimes converts the time fields of a form (since, until) from what
// the user typed to RFC 3339 for the API (in q) and to datetime-local
// values for the form (in shown); a value that is no time is a field error.
func readTimes(in func(string) string, q url.Values, shown, fieldErrs map[string]string, prefix string) {
	for _, f := range []string{"since", "until"} {
		v := strings.TrimSpace(in(f))
		if v == "" {
			continue
		}
		t, err := parseFormTime(v)
		if err != nil {
			shown[f], fieldErrs[prefix+f] = v, err.Error()
			continue
		}
		shown[f] = t.Format(localTime)
		q.Set(f, t.Format(time.RFC3339Nano))
	}
}

// logList shows the delivery log: the filter form, a page of attempts,
// newest first, and the recover form.
func (c *Console) logList(rq *request) {
	in := rq.r.URL.Query()
	d := logData{Filter: map[string]string{}, Recover: map[string]string{"outcome": "failed"}}
	fields := map[string]string{}
	q := url.Values{}
	for _, f := range rq.filterFields() {
		if f == "since" || f == "until" {
			continue
		}
		if v := strings.TrimSpace(in.Get(f)); v != "" {
			d.Filter[f] = v
			q.Set(f, v)
		}
	}
	readTimes(in.Get, q, d.Filter, fields, "")
	d.Filtered = len(d.Filter) > 0
	p := page{Title: "Delivery log", Nav: "attempts", Data: &d, Fields: fields}
	c.recoverChoices(rq, &d)
	if len(fields) > 0 {
		p.Error = "Check the filters below."
		rq.render("attempts", p)
		return
	}
	// limit is not a filter of the form; a link may set the page size
	// (the API checks it) and the next page keeps it.
	if lim := strings.TrimSpace(in.Get("limit")); lim != "" {
		q.Set("limit", lim)
	}
	filter := q.Encode()
	if !q.Has("limit") {
		q.Set("limit", itoa(logPageSize))
	}
	if cur := in.Get("cursor"); cur != "" {
		q.Set("cursor", cur)
	}
	var res struct {
		Data       []api.AttemptJSON `json:"data"`
		NextCursor *string           `json:"next_cursor"`
	}
	err := rq.api.get(rq.r.Context(), rq.logAPI("/attempts"), q, &res)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity:
		p.Error, p.Fields = "Check the filters below: "+ae.Error(), ae.FieldErrors()
		rq.render("attempts", p)
		return
	case err != nil:
		rq.fail(err)
		return
	}
	d.Table = rq.table(res.Data)
	if res.NextCursor != nil {
		next, _ := url.ParseQuery(filter)
		next.Set("cursor", *res.NextCursor)
		d.Next = rq.base() + "/attempts?" + next.Encode()
	}
	rq.render("attempts", p)
}

// recoverChoices fills the portal's subscriptions for the recover form
// (an error leaves the list empty: the form then takes a typed id).
func (c *Console) recoverChoices(rq *request, d *logData) {
	if !rq.portal {
		return
	}
	var subs struct {
		Data []api.SubscriptionJSON `json:"data"`
	}
	if err := rq.api.get(rq.r.Context(), appAPI(rq.app)+"/subscriptions", url.Values{"limit": {"100"}}, &subs); err == nil {
		d.Subscriptions = subs.Data
	}
}

// attemptData is the attempt page's own data.
type attemptData struct {
	A api.AttemptJSON
	// Body is the response body excerpt; HasBody tells whether one was
	// recorded at all.
	Body    string
	HasBody bool
	// Back is the path the resend form returns to.
	Back string
}

// logAttempt shows one attempt: what was sent, what came back, and a
// resend of its event to the same subscription or sink.
func (c *Console) logAttempt(rq *request) {
	id := rq.r.PathValue("id")
	var a api.AttemptJSON
	if err := rq.api.get(rq.r.Context(), rq.logAPI("/attempts/"+esc(id)), nil, &a); err != nil {
		rq.fail(err)
		return
	}
	d := attemptData{A: a, Back: rq.base() + "/attempts/" + url.PathEscape(a.ID)}
	if a.ResponseBody != nil {
		d.Body, d.HasBody = *a.ResponseBody, true
	}
	rq.render("attempt", page{Title: "Attempt " + a.ID, Nav: "attempts", Data: d})
}

// target is where an event can be sent again: a subscription (with the
// sink that delivers to it) or a sink.
type target struct {
	Sink, Subscription string
	// Last is the outcome of its newest attempt.
	Last string
}

// eventData is the event page's own data.
type eventData struct {
	E       api.EventJSON
	Table   logTable
	Targets []target
	Back    string
	// More links to the rest of its attempts, when there are more.
	More string
}

// logEvent shows an event as recorded, its attempts, and resend buttons
// for every subscription or sink it was delivered to.
func (c *Console) logEvent(rq *request) {
	id := rq.r.PathValue("id")
	var ev api.EventJSON
	if err := rq.api.get(rq.r.Context(), rq.logAPI("/events/"+esc(id)), nil, &ev); err != nil {
		rq.fail(err)
		return
	}
	d := eventData{E: ev, Table: rq.table(ev.Attempts), Back: rq.base() + "/events/" + url.PathEscape(ev.ID)}
	seen := map[target]bool{}
	for _, a := range ev.Attempts { // newest first: the first seen is the last outcome
		t := target{Sink: a.Sink, Subscription: a.Subscription}
		if seen[t] || (rq.portal && t.Subscription == "") {
			continue
		}
		seen[t] = true
		t.Last = a.Outcome
		d.Targets = append(d.Targets, t)
	}
	if ev.AttemptsNextCursor != nil {
		d.More = rq.base() + "/attempts" + queryString("event_id", ev.ID)
	}
	rq.render("event", page{Title: "Event " + ev.ID, Nav: "attempts", Data: d})
}

// backTo is where an action returns: the form's back path when it is one
// of rq's own pages, else the delivery log.
func (rq *request) backTo(back string) string {
	p, _, _ := strings.Cut(back, "?")
	clean := path.Clean(p) == p || path.Clean(p)+"/" == p
	if clean && strings.HasPrefix(back, rq.base()+"/") && !strings.HasPrefix(back, "//") && !strings.Contains(back, "\\") {
		if u, err := url.Parse(back); err == nil && u.Scheme == "" && u.Host == "" {
			return back
		}
	}
	return rq.base() + "/attempts"
}

// logResend sends one event again to one subscription or sink (the
// portal: one of its subscriptions) and returns to the page it came from.
func (c *Console) logResend(rq *request) {
	f := rq.r.PostForm
	back := rq.backTo(f.Get("back"))
	body := map[string]any{"event_ids": []string{f.Get("event_id")}}
	if sub := f.Get("subscription"); sub != "" {
		body["subscription"] = sub
	} else if sink := f.Get("sink"); sink != "" && !rq.portal {
		body["sink"] = sink
	}
	var res api.ResendJSON
	err := rq.api.post(rq.r.Context(), rq.logAPI("/resend"), body, &res)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Status != http.StatusUnauthorized && ae.Status < 500:
		rq.redirect(back, "Not resent: "+ae.Error())
	case err != nil:
		rq.fail(err)
	default:
		rq.redirect(back, fmt.Sprintf("Queued for delivery: %d", res.Queued))
	}
}

// Recover pages: one click runs up to maxRecoverPages calls of the API
// (each looks at up to api.DefaultRecoverLimit deliveries); a range with
// more shows its progress and a Continue button that goes on from the
// cursor, so no request runs for long.
const maxRecoverPages = 10

// recoverFields are the recover form's fields.
var recoverFields = []string{"subscription", "application", "sink", "since", "until", "outcome"}

// recoverProgress is a recover that has more pages to go.
type recoverProgress struct {
	Form            map[string]string
	Cursor          string
	Queued, Scanned int
}

// logRecover sends again the failed (or all) deliveries of a time range
// to a subscription, an application or a sink (the portal: one of its
// subscriptions).
func (c *Console) logRecover(rq *request) {
	f := rq.r.PostForm
	form := map[string]string{}
	fieldErrs := map[string]string{}
	q := url.Values{}
	for _, k := range []string{"subscription", "application", "sink", "outcome"} {
		if rq.portal && (k == "application" || k == "sink") {
			continue
		}
		if v := strings.TrimSpace(f.Get(k)); v != "" {
			form[k] = v
			q.Set(k, v)
		}
	}
	readTimes(f.Get, q, form, fieldErrs, "recover_")
	if len(fieldErrs) > 0 {
		c.recoverFailed(rq, form, fieldErrs, "Not recovered: check the recover form.")
		return
	}
	body := map[string]any{}
	for k := range q {
		body[k] = q.Get(k)
	}
	prog := recoverProgress{Form: form, Cursor: f.Get("cursor")}
	prog.Queued, prog.Scanned = atoiOr(f.Get("queued")), atoiOr(f.Get("scanned"))
	for range maxRecoverPages {
		if prog.Cursor != "" {
			body["cursor"] = prog.Cursor
		}
		var res api.RecoverJSON
		err := rq.api.post(rq.r.Context(), rq.logAPI("/recover"), body, &res)
		var ae *APIError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity:
			fe := map[string]string{}
			for k, m := range ae.FieldErrors() {
				fe["recover_"+k] = m
			}
			c.recoverFailed(rq, form, fe, "Not recovered: "+ae.Error())
			return
		case errors.As(err, &ae) && ae.Status != http.StatusUnauthorized && ae.Status < 500:
			c.recoverFailed(rq, form, nil, "Not recovered: "+ae.Error())
			return
		case err != nil:
			rq.fail(err)
			return
		}
		prog.Queued += res.Queued
		prog.Scanned += res.Scanned
		if res.NextCursor == nil {
			rq.redirect(rq.base()+"/attempts", fmt.Sprintf("Recover done: queued for delivery: %d (of %d deliveries looked at).",
				prog.Queued, prog.Scanned))
			return
		}
		prog.Cursor = *res.NextCursor
	}
	rq.render("recover", page{Title: "Recover in progress", Nav: "attempts", Data: prog,
		Flash: fmt.Sprintf("Queued for delivery so far: %d (of %d deliveries looked at). The range has more: continue.", prog.Queued, prog.Scanned)})
}

// recoverFailed shows the delivery log (unfiltered) with the recover form
// as the user filled it and the API's messages next to its fields.
func (c *Console) recoverFailed(rq *request, form, fieldErrs map[string]string, msg string) {
	d := logData{Filter: map[string]string{}, Recover: form}
	c.recoverChoices(rq, &d)
	var res struct {
		Data       []api.AttemptJSON `json:"data"`
		NextCursor *string           `json:"next_cursor"`
	}
	if err := rq.api.get(rq.r.Context(), rq.logAPI("/attempts"), url.Values{"limit": {itoa(logPageSize)}}, &res); err != nil {
		rq.fail(err)
		return
	}
	d.Table = rq.table(res.Data)
	if res.NextCursor != nil {
		d.Next = rq.base() + "/attempts" + queryString("cursor", *res.NextCursor)
	}
	rq.renderStatus(http.StatusUnprocessableEntity, "attempts", page{Title: "Delivery log", Nav: "attempts", Data: &d,
		Fields: fieldErrs, Error: msg})
}

// atoiOr reads a count a form carried on (0 when it is none).
func atoiOr(s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || n < 0 {
		return 0
	}
	return n
}
