package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/statuspolicy"
)

// subForm is what a subscription's form holds, as the user typed it (kept
// when the API refuses it).
type subForm struct {
	URL, EventTypes, Description, RateLimit, MaxInFlight, Headers, Filter string
	// Format is the delivery format ("" in a new form: the default).
	Format   string
	Disabled bool
	// Ed25519: an Ed25519 key signs too (the API's signing "ed25519").
	Ed25519 bool
	// Timeout, RetrySchedule, RetryOn and PermanentOn are the delivery
	// options as typed (empty: the sink's); NoRetry asks for a single
	// attempt (an empty schedule).
	Timeout, RetrySchedule, RetryOn, PermanentOn string
	NoRetry                                      bool
	// Gzip asks for compression gzip; Batch for batched delivery, with
	// its limits as typed (empty: the defaults).
	Gzip, Batch                                 bool
	BatchMaxEvents, BatchMaxBytes, BatchMaxWait string
}

// readSubForm reads the fields of a subscription's form.
func readSubForm(f url.Values) subForm {
	return subForm{URL: strings.TrimSpace(f.Get("url")), EventTypes: strings.TrimSpace(f.Get("event_types")),
		Description: strings.TrimSpace(f.Get("description")), RateLimit: strings.TrimSpace(f.Get("rate_limit")),
		MaxInFlight: strings.TrimSpace(f.Get("max_in_flight")), Headers: f.Get("headers"), Filter: f.Get("filter"),
		Format: strings.TrimSpace(f.Get("format")), Disabled: f.Get("disabled") != "", Ed25519: f.Get("ed25519") != "",
		Timeout: strings.TrimSpace(f.Get("timeout")), RetrySchedule: strings.TrimSpace(f.Get("retry_schedule")),
		RetryOn: strings.TrimSpace(f.Get("retry_on")), PermanentOn: strings.TrimSpace(f.Get("permanent_on")),
		NoRetry: f.Get("no_retry") != "", Gzip: f.Get("compression") == "gzip", Batch: f.Get("batch") != "",
		BatchMaxEvents: strings.TrimSpace(f.Get("batch_max_events")), BatchMaxBytes: strings.TrimSpace(f.Get("batch_max_bytes")),
		BatchMaxWait: strings.TrimSpace(f.Get("batch_max_wait"))}
}

// subFormOf fills the edit form with a subscription's values.
func subFormOf(s api.SubscriptionJSON) subForm {
	f := subForm{URL: s.URL, EventTypes: strings.Join(s.EventTypes, ", "), Description: s.Description,
		Filter: s.Filter, Format: s.Format, Disabled: s.Disabled, Ed25519: s.Signing == api.SigningEd25519}
	if s.RateLimit != 0 {
		f.RateLimit = strconv.FormatFloat(s.RateLimit, 'f', -1, 64)
	}
	if s.MaxInFlight != 0 {
		f.MaxInFlight = strconv.Itoa(s.MaxInFlight)
	}
	names := make([]string, 0, len(s.Headers))
	for k := range s.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		v := s.Headers[k]
		if attempt.Sensitive(k) {
			v = hiddenValue
		}
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	f.Headers = b.String()
	if s.Timeout != nil {
		f.Timeout = *s.Timeout
	}
	f.NoRetry = s.RetrySchedule != nil && len(s.RetrySchedule) == 0
	f.RetrySchedule = strings.Join(s.RetrySchedule, ", ")
	f.RetryOn, f.PermanentOn = joinList(s.RetryOn), joinList(s.PermanentOn)
	f.Gzip = s.Compression != nil && *s.Compression == "gzip"
	if b := s.Batch; b != nil && b.On() {
		f.Batch = true
		f.BatchMaxEvents, f.BatchMaxBytes, f.BatchMaxWait = strconv.Itoa(b.MaxEvents), strconv.Itoa(b.MaxBytes), b.MaxWait.String()
	}
	return f
}

// joinList is a status list as the form and the page show it ("401, 5xx";
// "" for none).
func joinList(l *statuspolicy.List) string {
	if l == nil {
		return ""
	}
	parts := make([]string, len(*l))
	for i, e := range *l {
		parts[i] = e.String()
	}
	return strings.Join(parts, ", ")
}

// hiddenValue stands in the edit form for the value of a header that may
// carry a credential: saved as it is, it keeps the stored value.
const hiddenValue = "[hidden: unchanged]"

// maskHeader is a header's value as a page shows it.
func maskHeader(name, value string) string {
	if attempt.Sensitive(name) {
		return "[hidden]"
	}
	return value
}

// keepHidden puts the stored values back into the headers of an edit
// form whose lines still read hiddenValue.
func keepHidden(form string, stored map[string]string) string {
	lines := strings.Split(form, "\n")
	for i, line := range lines {
		name, value, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(value) != hiddenValue {
			continue
		}
		for k, v := range stored {
			if strings.EqualFold(k, strings.TrimSpace(name)) {
				lines[i] = strings.TrimSpace(name) + ": " + v
			}
		}
	}
	return strings.Join(lines, "\n")
}

// splitTypes splits event types separated by commas or white space.
func splitTypes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// parseHeaders reads one "Name: value" a line; blank lines are skipped.
func parseHeaders(s string) (map[string]string, string) {
	out := map[string]string{}
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Sprintf("line %d is not of the form Name: value", i+1)
		}
		out[name] = strings.TrimSpace(value)
	}
	return out, ""
}

// body is the API body of the form: every field (so a cleared field
// clears), filter only in the console (withFilter). Fields the console
// cannot read as their type are errors by field.
func (f subForm) body(withFilter, create bool) (map[string]any, map[string]string) {
	errs := map[string]string{}
	b := map[string]any{"url": f.URL, "event_types": splitTypes(f.EventTypes), "description": f.Description,
		"disabled": f.Disabled}
	if b["event_types"] == nil {
		b["event_types"] = []string{}
	}
	b["signing"] = api.SigningHMAC
	if f.Ed25519 {
		b["signing"] = api.SigningEd25519
	}
	b["rate_limit"] = 0.0
	if f.RateLimit != "" {
		v, err := strconv.ParseFloat(f.RateLimit, 64)
		if err != nil {
			errs["rate_limit"] = "must be a number of deliveries per second (such as 5 or 0.5), or empty for no limit"
		}
		b["rate_limit"] = v
	}
	b["max_in_flight"] = 0
	if f.MaxInFlight != "" {
		v, err := strconv.Atoi(f.MaxInFlight)
		if err != nil {
			errs["max_in_flight"] = "must be a whole number, or empty for the sink's default"
		}
		b["max_in_flight"] = v
	}
	b["format"] = "json"
	if f.Format != "" {
		b["format"] = f.Format
	}
	h, msg := parseHeaders(f.Headers)
	if msg != "" {
		errs["headers"] = msg
	}
	b["headers"] = h
	if withFilter && (!create || strings.TrimSpace(f.Filter) != "") {
		b["filter"] = f.Filter
	}
	f.deliveryBody(b, errs)
	return b, errs
}

// deliveryBody adds the delivery options to b: an empty field is null
// (the sink's), so an emptied field goes back to the sink's; the API
// checks the values themselves.
func (f subForm) deliveryBody(b map[string]any, errs map[string]string) {
	b["timeout"] = nil
	if f.Timeout != "" {
		b["timeout"] = f.Timeout
	}
	waits := splitTypes(f.RetrySchedule)
	switch {
	case f.NoRetry && len(waits) > 0:
		errs["retry_schedule"] = `must be empty when "single attempt, no retries" is checked`
	case f.NoRetry:
		b["retry_schedule"] = []string{}
	case len(waits) > 0:
		b["retry_schedule"] = waits
	default:
		b["retry_schedule"] = nil
	}
	for key, v := range map[string]string{"retry_on": f.RetryOn, "permanent_on": f.PermanentOn} {
		b[key] = nil
		if items := splitTypes(v); len(items) > 0 {
			b[key] = items
		}
	}
	b["compression"] = nil
	if f.Gzip {
		b["compression"] = "gzip"
	}
	b["batch"] = nil
	if f.Batch {
		batch := map[string]any{}
		for key, v := range map[string]string{"max_events": f.BatchMaxEvents, "max_bytes": f.BatchMaxBytes} {
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				errs["batch."+key] = "must be a whole number, or empty for the default"
			}
			batch[key] = n
		}
		if f.BatchMaxWait != "" {
			batch["max_wait"] = f.BatchMaxWait
		}
		b["batch"] = batch
	}
}

// listFields are the form's fields the API names by item
// ("retry_schedule[1]").
var listFields = []string{"retry_schedule", "retry_on", "permanent_on"}

// subFields maps the API's field names to the form's: a header's error
// ("headers.X-Name") goes next to the headers box, an item's
// ("retry_on[2]") next to its list, saying which item.
func subFields(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if name, ok := strings.CutPrefix(k, "headers."); ok {
			k, v = "headers", name+": "+v
		}
		for _, list := range listFields {
			if idx, ok := strings.CutPrefix(k, list+"["); ok {
				if n, err := strconv.Atoi(strings.TrimSuffix(idx, "]")); err == nil {
					v = fmt.Sprintf("entry %d: %s", n+1, v)
				}
				k = list
			}
		}
		if old, ok := out[k]; ok {
			v = old + "; " + v
		}
		out[k] = v
	}
	return out
}

// subFormView is what the subscription form's fields partial needs.
type subFormView struct {
	Form   subForm
	Fields map[string]string
	// Portal leaves out the filter (application tokens cannot set it);
	// ID prefixes the inputs' ids.
	Portal bool
	ID     string
}

// Err is the error of field name.
func (v subFormView) Err(name string) string { return v.Fields[name] }

// Formats are the delivery formats the form offers, the default first.
func (v subFormView) Formats() []string {
	return []string{"json", "cloudevents-structured", "cloudevents-binary"}
}

// appHome is an application's page: the portal's start page, or the
// console's page of the application.
func (rq *request) appHome(app string) string {
	if rq.portal {
		return "/portal/"
	}
	return rq.appBase(app)
}

// subAPI is the API path of subscription sub of application app.
func subAPI(app, sub string) string { return appAPI(app) + "/subscriptions/" + esc(sub) }

// subPath is the page of subscription sub.
func (rq *request) subPath(app, sub string) string {
	return rq.appBase(app) + "/subscriptions/" + url.PathEscape(sub)
}

// secretData is the page showing a secret once.
type secretData struct {
	Sub api.SubscriptionJSON
	// Secret is the signing secret; Kind says why it is shown: "created",
	// "rotated" or "revealed".
	Secret, Kind string
	// Link is the subscription's page.
	Link string
}

// renderSecret shows a subscription's secret, as the answer of the POST
// that made or asked for it (never through a redirect).
func (rq *request) renderSecret(d secretData) {
	d.Link = rq.subPath(rq.appOf(), d.Sub.ID)
	titles := map[string]string{"created": "Endpoint created", "rotated": "Secret rotated", "revealed": "Signing secret"}
	rq.render("secret", page{Title: titles[d.Kind], Nav: rq.appNav(), Data: d, AppBase: rq.appBase(rq.appOf())})
}

// appNav is the menu entry of an application's pages.
func (rq *request) appNav() string {
	if rq.portal {
		return "subscriptions"
	}
	return "applications"
}

// createSubscription adds an endpoint from the "New endpoint" form and
// shows its secret once.
func (c *Console) createSubscription(rq *request) {
	app := rq.appOf()
	form := readSubForm(rq.r.PostForm)
	keep := func(d *applicationData) { d.Form, d.NameForm = form, d.App.Name }
	body, errs := form.body(!rq.portal, true)
	if len(errs) > 0 {
		c.renderApplicationErr(rq, http.StatusUnprocessableEntity, "The endpoint was not created: see the fields below.", errs, keep)
		return
	}
	var created api.SubscriptionJSON
	if err := rq.api.post(rq.r.Context(), appAPI(app)+"/subscriptions", body, &created); err != nil {
		if ae, ok := formError(err); ok {
			c.renderApplicationErr(rq, ae.Status, "The endpoint was not created: "+ae.Error(), subFields(ae.FieldErrors()), keep)
			return
		}
		rq.fail(err)
		return
	}
	secret := created.Secret
	created.Secret = ""
	rq.renderSecret(secretData{Sub: created, Secret: secret, Kind: "created"})
}

// statsView is a stats answer; Series is there when the API gives it.
type statsView struct {
	api.StatsJSON
	Series []seriesPoint `json:"series"`
}

// seriesPoint is one bucket of a stats series.
type seriesPoint struct {
	Start       string  `json:"start"`
	Attempts    int64   `json:"attempts"`
	Delivered   int64   `json:"delivered"`
	Failed      int64   `json:"failed"`
	SuccessRate float64 `json:"success_rate"`
	DelayP99MS  float64 `json:"delay_p99_ms"`
}

// values picks one figure of every bucket.
func (s statsView) values(f func(seriesPoint) float64) []float64 {
	out := make([]float64, len(s.Series))
	for i, p := range s.Series {
		out[i] = f(p)
	}
	return out
}

// DeliveredSeries, FailedSeries, SuccessSeries and DelaySeries are the
// series' figures, oldest first, for the charts.
func (s statsView) DeliveredSeries() []float64 {
	return s.values(func(p seriesPoint) float64 { return float64(p.Delivered) })
}

func (s statsView) FailedSeries() []float64 {
	return s.values(func(p seriesPoint) float64 { return float64(p.Failed) })
}

func (s statsView) SuccessSeries() []float64 {
	return s.values(func(p seriesPoint) float64 { return p.SuccessRate })
}

func (s statsView) DelaySeries() []float64 {
	return s.values(func(p seriesPoint) float64 { return p.DelayP99MS })
}

// testResult is the answer of POST …/test.
type testResult struct {
	Outcome    string `json:"outcome"`
	StatusCode int    `json:"status_code"`
	LatencyMS  int64  `json:"latency_ms"`
	Response   string `json:"response"`
}

// subscriptionData is a subscription's page.
type subscriptionData struct {
	Sub   api.SubscriptionJSON
	Stats []statsView
	// StatsError says why the figures are missing.
	StatsError string
	// Form is the edit form; Overlap the rotation's; TestType and TestData
	// the test form's; Test the last test's result.
	Form               subForm
	Overlap            string
	TestType, TestData string
	Test               *testResult
	FormView           subFormView
	// LogLink is the delivery log filtered to the subscription.
	LogLink string
}

// TimeoutFact, ScheduleFact, RetryOnFact and PermanentOnFact are the
// delivery options as the page's facts show them.
func (d subscriptionData) TimeoutFact() string {
	if d.Sub.Timeout == nil {
		return sinkDefault
	}
	return *d.Sub.Timeout
}

func (d subscriptionData) ScheduleFact() string {
	switch {
	case d.Sub.RetrySchedule == nil:
		return sinkDefault
	case len(d.Sub.RetrySchedule) == 0:
		return "a single attempt, no retries"
	}
	return strings.Join(d.Sub.RetrySchedule, ", ")
}

func (d subscriptionData) RetryOnFact() string { return listFact(d.Sub.RetryOn) }

// CompressionFact and BatchFact are the body options as the facts show them.
func (d subscriptionData) CompressionFact() string {
	if d.Sub.Compression != nil && *d.Sub.Compression == "gzip" {
		return "gzip (bodies of 1 KiB or more)"
	}
	return "none"
}

func (d subscriptionData) BatchFact() string {
	b := d.Sub.Batch
	if b == nil || !b.On() {
		return "one request per event"
	}
	return fmt.Sprintf("up to %d events or %d bytes a request, waiting up to %s", b.MaxEvents, b.MaxBytes, b.MaxWait)
}

func (d subscriptionData) PermanentOnFact() string { return listFact(d.Sub.PermanentOn) }

// sinkDefault is what the facts show for an option the sink decides.
const sinkDefault = "the sink's"

func listFact(l *statuspolicy.List) string {
	if l == nil {
		return sinkDefault
	}
	if len(*l) == 0 {
		return "none"
	}
	return joinList(l)
}

// subscriptionPage shows a subscription, its figures and its actions.
func (c *Console) subscriptionPage(rq *request) {
	c.renderSubscription(rq, http.StatusOK, "", nil, nil)
}

// renderSubscription loads the page's subscription and its figures and
// renders the page; adjust (may be nil) changes the forms' contents.
func (c *Console) renderSubscription(rq *request, code int, msg string, fields map[string]string, adjust func(*subscriptionData)) {
	app, id := rq.appOf(), rq.r.PathValue("sub")
	ctx := rq.r.Context()
	d := subscriptionData{Overlap: "24h"}
	if err := rq.api.get(ctx, subAPI(app, id), nil, &d.Sub); err != nil {
		rq.fail(err)
		return
	}
	d.Form = subFormOf(d.Sub)
	for _, w := range []string{"1h", "24h"} {
		var st statsView
		err := rq.api.get(ctx, subAPI(app, id)+"/stats", url.Values{"window": {w}}, &st)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
			d.StatsError = "The figures are not available: " + ae.Error()
			d.Stats = nil
			break
		}
		if err != nil {
			rq.fail(err)
			return
		}
		d.Stats = append(d.Stats, st)
	}
	d.LogLink = rq.base() + "/attempts" + queryString("subscription", d.Sub.ID)
	if adjust != nil {
		adjust(&d)
	}
	d.FormView = subFormView{Form: d.Form, Fields: fields, Portal: rq.portal, ID: "edit"}
	title := "Endpoint " + d.Sub.URL
	rq.renderStatus(code, "subscription", page{Title: title, Nav: rq.appNav(), Data: d, Error: msg, Fields: fields,
		AppBase: rq.appBase(app)})
}

// editSubscription saves the edit form (PATCH with every field).
func (c *Console) editSubscription(rq *request) {
	app, id := rq.appOf(), rq.r.PathValue("sub")
	form := readSubForm(rq.r.PostForm)
	keep := func(d *subscriptionData) { d.Form = form }
	toSend := form
	if strings.Contains(form.Headers, hiddenValue) {
		var cur api.SubscriptionJSON
		if err := rq.api.get(rq.r.Context(), subAPI(app, id), nil, &cur); err != nil {
			rq.fail(err)
			return
		}
		toSend.Headers = keepHidden(form.Headers, cur.Headers)
	}
	body, errs := toSend.body(!rq.portal, false)
	if len(errs) > 0 {
		c.renderSubscription(rq, http.StatusUnprocessableEntity, "Not saved: see the fields below.", errs, keep)
		return
	}
	err := rq.api.do(rq.r.Context(), http.MethodPatch, subAPI(app, id), nil, body, nil)
	if ae, ok := formError(err); ok {
		c.renderSubscription(rq, ae.Status, "Not saved: "+ae.Error(), subFields(ae.FieldErrors()), keep)
		return
	}
	if err != nil {
		rq.fail(err)
		return
	}
	rq.redirect(rq.subPath(app, id), "Saved.")
}

// setDisabled disables or enables the subscription (disabled=true|false).
func (c *Console) setDisabled(rq *request) {
	app, id := rq.appOf(), rq.r.PathValue("sub")
	v := rq.r.PostForm.Get("disabled")
	if v != "true" && v != "false" {
		rq.status(http.StatusBadRequest, "disabled must be true or false.")
		return
	}
	err := rq.api.do(rq.r.Context(), http.MethodPatch, subAPI(app, id), nil, map[string]any{"disabled": v == "true"}, nil)
	if err != nil {
		rq.fail(err)
		return
	}
	flash := "Enabled: deliveries start again with the next event."
	if v == "true" {
		flash = "Disabled: no deliveries are made to this endpoint until it is enabled."
	}
	rq.redirect(rq.subPath(app, id), flash)
}

// rotateSecret makes a new secret (the old one keeps signing for the
// overlap) and shows it once.
func (c *Console) rotateSecret(rq *request) {
	app, id := rq.appOf(), rq.r.PathValue("sub")
	overlap := strings.TrimSpace(rq.r.PostForm.Get("overlap"))
	body := map[string]any{}
	if overlap != "" {
		body["overlap"] = overlap
	}
	var res struct {
		Secret string `json:"secret"`
	}
	err := rq.api.post(rq.r.Context(), subAPI(app, id)+"/rotate-secret", body, &res)
	if ae, ok := formError(err); ok {
		c.renderSubscription(rq, ae.Status, "Not rotated: "+ae.Error(), prefixFields("rotate_", ae.FieldErrors()),
			func(d *subscriptionData) { d.Overlap = overlap })
		return
	}
	if err != nil {
		rq.fail(err)
		return
	}
	var sub api.SubscriptionJSON
	if err := rq.api.get(rq.r.Context(), subAPI(app, id), nil, &sub); err != nil {
		rq.fail(err)
		return
	}
	rq.renderSecret(secretData{Sub: sub, Secret: res.Secret, Kind: "rotated"})
}

// revealSecret shows the current secret, asked for with a POST.
func (c *Console) revealSecret(rq *request) {
	app, id := rq.appOf(), rq.r.PathValue("sub")
	var sub api.SubscriptionJSON
	if err := rq.api.get(rq.r.Context(), subAPI(app, id), nil, &sub); err != nil {
		rq.fail(err)
		return
	}
	var res struct {
		Secret string `json:"secret"`
	}
	if err := rq.api.get(rq.r.Context(), subAPI(app, id)+"/secret", nil, &res); err != nil {
		rq.fail(err)
		return
	}
	rq.renderSecret(secretData{Sub: sub, Secret: res.Secret, Kind: "revealed"})
}

// testSubscription sends a test event now and shows what the endpoint answered.
func (c *Console) testSubscription(rq *request) {
	app, id := rq.appOf(), rq.r.PathValue("sub")
	typ, data := strings.TrimSpace(rq.r.PostForm.Get("type")), strings.TrimSpace(rq.r.PostForm.Get("data"))
	keep := func(res *testResult) func(*subscriptionData) {
		return func(d *subscriptionData) { d.TestType, d.TestData, d.Test = typ, data, res }
	}
	body := map[string]any{}
	if typ != "" {
		body["type"] = typ
	}
	if data != "" {
		if !json.Valid([]byte(data)) {
			c.renderSubscription(rq, http.StatusUnprocessableEntity, "Not sent: see the test form below.",
				map[string]string{"test_data": `must be JSON, such as {"order": 42}`}, keep(nil))
			return
		}
		body["data"] = json.RawMessage(data)
	}
	var res testResult
	err := rq.api.post(rq.r.Context(), subAPI(app, id)+"/test", body, &res)
	var ae *APIError
	if fe, ok := formError(err); ok {
		c.renderSubscription(rq, fe.Status, "Not sent: "+fe.Error(), prefixFields("test_", fe.FieldErrors()), keep(nil))
		return
	}
	if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
		c.renderSubscription(rq, ae.Status, "Not sent: "+ae.Error(), nil, keep(nil))
		return
	}
	if err != nil {
		rq.fail(err)
		return
	}
	c.renderSubscription(rq, http.StatusOK, "", nil, keep(&res))
}

// deleteSubscription deletes the subscription and goes back to its application.
func (c *Console) deleteSubscription(rq *request) {
	app, id := rq.appOf(), rq.r.PathValue("sub")
	if err := rq.api.do(rq.r.Context(), http.MethodDelete, subAPI(app, id), nil, nil, nil); err != nil {
		rq.fail(err)
		return
	}
	rq.redirect(rq.appHome(app), "Endpoint "+id+" deleted.")
}
