package console

import (
	"net/http"
)

// routes registers every page. The pages of each area register themselves
// (routesOverview, routesApps, routesLog, routesDeadLetters), each in its
// own file.
func (c *Console) routes() {
	m := c.mux
	m.Handle("GET /console/static/", c.serveStatic("/console/static/"))
	m.Handle("GET /portal/static/", c.serveStatic("/portal/static/"))
	m.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
	m.HandleFunc("GET /portal", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/portal/", http.StatusSeeOther)
	})
	m.HandleFunc("GET /console/login", c.loginPage)
	m.HandleFunc("POST /console/login", c.login)
	c.console("POST /console/logout", c.logout)
	m.HandleFunc("GET /portal/login", c.portalLogin)
	m.HandleFunc("GET /portal/login/switch", c.portalSwitchPage)
	m.HandleFunc("POST /portal/login/switch", c.portalSwitch)
	c.portalPage("POST /portal/logout", c.portalLogout)

	c.routesOverview()
	c.routesApps()
	c.routesLog()
	c.routesDeadLetters()

	// Anything else under the two roots: a 404 page, for a session only
	// (no one learns which pages exist without signing in).
	notFound := func(rq *request) { rq.status(http.StatusNotFound, "There is no such page.") }
	c.console("/console/", notFound)
	c.portalPage("/portal/", notFound)
}

// console registers a page of the operator console.
func (c *Console) console(pattern string, h handler) { c.mux.Handle(pattern, c.signedIn(false, h)) }

// portalPage registers a page of the application portal.
func (c *Console) portalPage(pattern string, h handler) { c.mux.Handle(pattern, c.signedIn(true, h)) }

// both registers a page of one application in the console and in the
// portal: method and path are the part after the application's root, as
// in both("GET", "/subscriptions/{sub}", h), served at
// /console/applications/{app}/subscriptions/{sub} and
// /portal/subscriptions/{sub}. The handler finds the application with
// rq.appOf().
func (c *Console) both(method, path string, h handler) {
	c.console(method+" /console/applications/{app}"+path, h)
	c.portalPage(method+" /portal"+path, h)
}

// appOf is the application a page is about: the portal's own, or the
// console's {app} path value.
func (rq *request) appOf() string {
	if rq.portal {
		return rq.app
	}
	return rq.r.PathValue("app")
}
