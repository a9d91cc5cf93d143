package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hookbus/hookbus/core/api"
)

// routesOverview registers the overview and the configuration pages.
func (c *Console) routesOverview() {
	c.console("GET /console/{$}", c.overview)
	c.console("GET /console/status", c.statusPage)
	c.console("POST /console/reload", c.reload)
}

func itoa(n int) string { return strconv.Itoa(n) }

// overviewApps is how many applications the overview shows (the first
// page of the list).
const overviewApps = 50

// Thresholds that make a card "failing": any failed delivery, or a
// success rate below failingRate, in the last hour.
const failingRate = 0.99

// chartWindows are the windows the overview's charts can show: the
// overview reads the figures of both anyway.
var chartWindows = map[string]bool{"1h": true, "24h": true}

// overviewData is the overview page's.
type overviewData struct {
	// Config is the running configuration (nil when the status could not
	// be read, ConfigError then says why).
	Config      *statusJSON
	ConfigError string
	Sinks       []statsCard
	Apps        []statsCard
	// AppsMore is set when there are more applications than shown;
	// AppsError says why there are none to show.
	AppsMore  bool
	AppsError string
	AppsLimit int
	// Chart is the window the charts show ("1h" or "24h").
	Chart string
	// Quiet is set when no card had an attempt in the last hour; Curl is
	// then a command that sends an event.
	Quiet bool
	Curl  string
}

// statsCard is a sink's or an application's figures.
type statsCard struct {
	// Name is the sink's name or the application's; ID the application's
	// id (empty for a sink).
	Name, ID string
	// Link is the card's page, FailedLink its failed deliveries.
	Link, FailedLink string
	// Hour and Day are the figures of the last hour and day (nil when
	// NoFigures says why there are none).
	Hour, Day *api.StatsJSON
	NoFigures string
	// Failing is set by failures in the last hour, Why says what they
	// are in words.
	Failing bool
	Why     string
	// Waiting is how long the oldest waiting event has waited ("" when
	// none waits).
	Waiting string
	// Oldest is the oldest waiting event's ingest time.
	Oldest *string
	// The charts: delivered, success rate and p99 delay per step of the
	// chart window (Chart), oldest first.
	Chart                     string
	Delivered, Success, Delay []float64
}

// overview is the console's start page: the figures of every sink and of
// the first applications, and the running configuration in one line.
func (c *Console) overview(rq *request) {
	ctx := rq.r.Context()
	d := overviewData{Chart: rq.r.URL.Query().Get("chart"), AppsLimit: overviewApps}
	if d.Chart == "" {
		d.Chart = "24h"
	}
	if !chartWindows[d.Chart] {
		rq.status(http.StatusBadRequest, "Query parameter chart: must be 1h or 24h.")
		return
	}
	var st statusJSON
	if err := rq.api.get(ctx, "/v1/admin/status", nil, &st); err != nil {
		if !shownInCard(err) {
			rq.fail(err)
			return
		}
		d.ConfigError = err.Error()
	} else {
		d.Config = &st
	}
	now := rq.c.opts.Now()
	for _, sink := range st.Sinks {
		card := statsCard{Name: sink,
			Link:       "/console/attempts" + queryString("sink", sink),
			FailedLink: "/console/attempts" + queryString("sink", sink, "outcome", "failed")}
		if err := card.load(rq, "/v1/sinks/"+esc(sink)+"/stats", d.Chart, now); err != nil {
			rq.fail(err)
			return
		}
		d.Sinks = append(d.Sinks, card)
	}
	if err := d.loadApps(rq, now); err != nil {
		rq.fail(err)
		return
	}
	d.Quiet = quiet(d.Sinks, d.Apps)
	if d.Quiet {
		d.Curl = "curl -X POST " + hostURL(rq.r) + "/v1/sources/SOURCE/events -H 'Authorization: Bearer $KEY' " +
			`-H 'Content-Type: application/json' -d '{"type":"order.paid","data":{"id":"1001"}}'`
	}
	rq.render("overview", page{Title: "Overview", Nav: "overview", Data: d})
}

// quiet tells whether no card had an attempt in the last hour, while
// there are figures to tell (without any, sending an event shows nothing).
func quiet(cards ...[]statsCard) bool {
	figures := false
	for _, cs := range cards {
		for _, card := range cs {
			if card.Hour != nil {
				figures = true
				if card.Hour.Attempts > 0 {
					return false
				}
			}
		}
	}
	return figures
}

// loadApps adds the cards of the first applications.
func (d *overviewData) loadApps(rq *request, now time.Time) error {
	var apps struct {
		Data       []api.ApplicationJSON `json:"data"`
		NextCursor *string               `json:"next_cursor"`
	}
	err := rq.api.get(rq.r.Context(), "/v1/applications", url.Values{"limit": {itoa(overviewApps)}}, &apps)
	if err != nil {
		if !shownInCard(err) {
			return err
		}
		d.AppsError = err.Error()
		return nil
	}
	d.AppsMore = apps.NextCursor != nil
	for _, a := range apps.Data {
		name := a.Name
		if name == "" {
			name = a.ID
		}
		card := statsCard{Name: name, ID: a.ID,
			Link:       "/console/applications/" + url.PathEscape(a.ID),
			FailedLink: "/console/attempts" + queryString("application", a.ID, "outcome", "failed")}
		if err := card.load(rq, appAPI(a.ID)+"/stats", d.Chart, now); err != nil {
			return err
		}
		d.Apps = append(d.Apps, card)
	}
	return nil
}

// shownInCard tells the API errors a page shows in place of figures
// (the route is off, the store is not there) from those that end it (the
// session is over) or are the server's own.
func shownInCard(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status == http.StatusUnauthorized {
		return false
	}
	return ae.Status < 500 || ae.Status == http.StatusServiceUnavailable
}

// load reads the card's figures of the last hour and day from path (a
// stats route), and the series of the chart window. An answer the page
// can show in place of the figures (404, 503…) fills NoFigures.
func (card *statsCard) load(rq *request, path, chart string, now time.Time) error {
	var hour, day api.StatsJSON
	for _, w := range []struct {
		name string
		out  *api.StatsJSON
	}{{"1h", &hour}, {"24h", &day}} {
		if err := rq.api.get(rq.r.Context(), path, url.Values{"window": {w.name}}, w.out); err != nil {
			if !shownInCard(err) {
				return err
			}
			card.NoFigures = noFiguresReason(err)
			return nil
		}
	}
	card.Hour, card.Day = &hour, &day
	card.Failing, card.Why = judge(hour)
	if hour.OldestWaiting != nil {
		card.Oldest = hour.OldestWaiting
		if t, err := time.Parse(time.RFC3339Nano, *hour.OldestWaiting); err == nil {
			card.Waiting = age(now.Sub(t))
		}
	}
	series := day.Series
	if chart == "1h" {
		series = hour.Series
	}
	card.Chart = chart
	card.Delivered, card.Success, card.Delay = charts(series)
	return nil
}

// noFiguresReason says why a stats route gave no figures.
func noFiguresReason(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusNotFound:
			return "No figures: this instance keeps no delivery log for it (" + ae.Error() + ")."
		case http.StatusServiceUnavailable:
			return "No figures: the delivery log cannot be read right now (" + ae.Error() + ")."
		}
	}
	return "No figures: " + err.Error()
}

// judge tells whether the figures of the last hour are failing, and why
// in words (the card says "Failing" and why, not with colour only).
func judge(hour api.StatsJSON) (bool, string) {
	switch {
	case hour.Failed == 1:
		return true, "1 delivery failed in the last hour"
	case hour.Failed > 0:
		return true, fmt.Sprintf("%d deliveries failed in the last hour", hour.Failed)
	case hour.Attempts > 0 && hour.SuccessRate < failingRate:
		return true, fmt.Sprintf("Success rate %s in the last hour (below %s)",
			formatPct(hour.SuccessRate), formatPct(failingRate))
	case hour.Attempts == 0:
		return false, "No deliveries in the last hour"
	default:
		return false, "Healthy in the last hour"
	}
}

// charts turns a series into the values of the three charts. A step
// without attempts has no success rate: it repeats the one before (100%
// before the first attempt), so a quiet minute does not look like an
// outage.
func charts(series []api.PointJSON) (delivered, success, delay []float64) {
	rate := 1.0
	for _, p := range series {
		if p.Attempts > 0 {
			rate = p.SuccessRate
		}
		delivered = append(delivered, float64(p.Delivered))
		success = append(success, rate)
		delay = append(delay, p.DelayP99MS)
	}
	return delivered, success, delay
}

// age says a duration the way a person would ("3 min", "2 h 5 min").
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", max(0, int(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
}

// hostURL is the address the browser reached the console at.
func hostURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
