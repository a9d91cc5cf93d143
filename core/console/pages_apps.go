package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/hookbus/hookbus/core/api"
)

// routesApps registers the pages of applications and their subscriptions:
// the console's list of applications, an application's page (the portal's
// start page for its own application), and a subscription's page with its
// actions, in both the console and the portal.
func (c *Console) routesApps() {
	c.console("GET /console/applications", c.applicationsPage)
	c.console("POST /console/applications", c.createApplication)
	c.console("GET /console/applications/{app}", c.applicationPage)
	c.portalPage("GET /portal/{$}", c.applicationPage)
	c.console("POST /console/applications/{app}/edit", c.editApplication)
	c.console("POST /console/applications/{app}/delete", c.deleteApplication)
	c.console("POST /console/applications/{app}/portal", c.createPortalLink)

	c.both("POST", "/subscriptions", c.createSubscription)
	c.both("GET", "/subscriptions/{sub}", c.subscriptionPage)
	c.both("POST", "/subscriptions/{sub}/edit", c.editSubscription)
	c.both("POST", "/subscriptions/{sub}/disabled", c.setDisabled)
	c.both("POST", "/subscriptions/{sub}/rotate", c.rotateSecret)
	c.both("POST", "/subscriptions/{sub}/reveal", c.revealSecret)
	c.both("POST", "/subscriptions/{sub}/test", c.testSubscription)
	c.both("POST", "/subscriptions/{sub}/delete", c.deleteSubscription)
}

// listJSON is a page of a list answer of the API.
type listJSON[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// appForm is what the create-application form holds, as typed.
type appForm struct {
	ID, Name, Metadata string
}

// applicationsData is the list page's.
type applicationsData struct {
	Apps []api.ApplicationJSON
	// Cursor is the page shown (empty: the first); Next the next one's.
	Cursor, Next string
	Form         appForm
}

// applicationsPage lists the applications, a page at a time, with the
// form that creates one.
func (c *Console) applicationsPage(rq *request) {
	c.renderApplications(rq, http.StatusOK, appForm{}, "", nil)
}

func (c *Console) renderApplications(rq *request, code int, form appForm, msg string, fields map[string]string) {
	cursor := rq.r.URL.Query().Get("cursor")
	q := url.Values{"limit": {"50"}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var l listJSON[api.ApplicationJSON]
	if err := rq.api.get(rq.r.Context(), "/v1/applications", q, &l); err != nil {
		rq.fail(err)
		return
	}
	d := applicationsData{Apps: l.Data, Cursor: cursor, Form: form}
	if l.NextCursor != nil {
		d.Next = *l.NextCursor
	}
	rq.renderStatus(code, "applications", page{Title: "Applications", Nav: "applications", Data: d, Error: msg, Fields: fields})
}

// createApplication creates an application from the form and opens its page.
func (c *Console) createApplication(rq *request) {
	f := rq.r.PostForm
	form := appForm{ID: strings.TrimSpace(f.Get("id")), Name: strings.TrimSpace(f.Get("name")), Metadata: strings.TrimSpace(f.Get("metadata"))}
	body := map[string]any{"name": form.Name}
	if form.ID != "" {
		body["id"] = form.ID
	}
	if form.Metadata != "" {
		var md map[string]any
		if err := json.Unmarshal([]byte(form.Metadata), &md); err != nil || md == nil {
			c.renderApplications(rq, http.StatusUnprocessableEntity, form, "The application was not created: see the fields below.",
				map[string]string{"metadata": `must be a JSON object, such as {"plan": "pro"}`})
			return
		}
		body["metadata"] = md
	}
	var created api.ApplicationJSON
	if err := rq.api.post(rq.r.Context(), "/v1/applications", body, &created); err != nil {
		if ae, ok := formError(err); ok {
			c.renderApplications(rq, ae.Status, form, "The application was not created: "+ae.Error(), ae.FieldErrors())
			return
		}
		rq.fail(err)
		return
	}
	rq.redirect(rq.appBase(created.ID), "Application "+created.ID+" created. Add its endpoints below.")
}

// formError tells whether err is an answer a form shows next to its
// fields (a validation error or a conflict) rather than on the error page.
func formError(err error) (*APIError, bool) {
	var ae *APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusUnprocessableEntity ||
		ae.Status == http.StatusConflict || (ae.Status == http.StatusForbidden && len(ae.Errors) > 0)) {
		return ae, true
	}
	return nil, false
}

// applicationData is an application's page.
type applicationData struct {
	App  api.ApplicationJSON
	Subs []api.SubscriptionJSON
	// Cursor is the page of subscriptions shown; Next the next one's.
	Cursor, Next string
	// Form is the "New endpoint" form; NameForm the rename form.
	Form     subForm
	NameForm string
	FormView subFormView
	// Home is this page's path (the pager's links).
	Home string
}

// applicationPage shows an application, its subscriptions and the form
// that adds one. It is the portal's start page, for its application.
func (c *Console) applicationPage(rq *request) {
	c.renderApplication(rq, http.StatusOK, func(d *applicationData) { d.NameForm = d.App.Name })
}

// renderApplication loads the application of the page and renders it;
// adjust (may be nil) sets the forms' contents.
func (c *Console) renderApplication(rq *request, code int, adjust func(*applicationData)) {
	c.renderApplicationErr(rq, code, "", nil, adjust)
}

func (c *Console) renderApplicationErr(rq *request, code int, msg string, fields map[string]string, adjust func(*applicationData)) {
	app := rq.appOf()
	ctx := rq.r.Context()
	var d applicationData
	if err := rq.api.get(ctx, appAPI(app), nil, &d.App); err != nil {
		rq.fail(err)
		return
	}
	d.Cursor = rq.r.URL.Query().Get("cursor")
	q := url.Values{"limit": {"50"}}
	if d.Cursor != "" && rq.r.Method == http.MethodGet {
		q.Set("cursor", d.Cursor)
	}
	var l listJSON[api.SubscriptionJSON]
	if err := rq.api.get(ctx, appAPI(app)+"/subscriptions", q, &l); err != nil {
		rq.fail(err)
		return
	}
	d.Subs = l.Data
	if l.NextCursor != nil {
		d.Next = *l.NextCursor
	}
	if adjust != nil {
		adjust(&d)
	}
	d.FormView = subFormView{Form: d.Form, Fields: fields, Portal: rq.portal, ID: "new"}
	d.Home = rq.appHome(app)
	title := d.App.Name
	if !rq.portal {
		title = "Application " + d.App.Name
	}
	nav := "applications"
	if rq.portal {
		nav = "subscriptions"
	}
	rq.renderStatus(code, "application", page{Title: title, Nav: nav, Data: d, Error: msg, Fields: fields, AppBase: rq.appBase(app)})
}

// editApplication renames the application.
func (c *Console) editApplication(rq *request) {
	app := rq.appOf()
	name := strings.TrimSpace(rq.r.PostForm.Get("name"))
	err := rq.api.do(rq.r.Context(), http.MethodPatch, appAPI(app), nil, map[string]any{"name": name}, nil)
	if ae, ok := formError(err); ok {
		c.renderApplicationErr(rq, ae.Status, "Not renamed: "+ae.Error(), prefixFields("app_", ae.FieldErrors()),
			func(d *applicationData) { d.NameForm = name })
		return
	}
	if err != nil {
		rq.fail(err)
		return
	}
	rq.redirect(rq.appBase(app), "Renamed.")
}

// deleteApplication deletes the application with its subscriptions and tokens.
func (c *Console) deleteApplication(rq *request) {
	app := rq.appOf()
	if err := rq.api.do(rq.r.Context(), http.MethodDelete, appAPI(app), nil, nil, nil); err != nil {
		rq.fail(err)
		return
	}
	rq.redirect("/console/applications", "Application "+app+" deleted, with its endpoints and tokens.")
}

// prefixFields renames the keys of field errors (forms of one page whose
// fields share names).
func prefixFields(prefix string, m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[prefix+k] = v
	}
	return out
}
