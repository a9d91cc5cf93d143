package console

import (
	"github.com/hookbus/hookbus/core/api"
)

// portalLinkData is the page that shows a new portal link, once.
type portalLinkData struct {
	App  string
	Link api.PortalLinkJSON
}

// createPortalLink makes a portal link for the application through the
// API and shows it on the answer (not through a redirect: the link is a
// credential, and is not kept anywhere to be shown again).
func (c *Console) createPortalLink(rq *request) {
	app := rq.appOf()
	var body map[string]any
	if ttl := rq.r.PostForm.Get("ttl"); ttl != "" {
		body = map[string]any{"ttl": ttl}
	}
	var link api.PortalLinkJSON
	if err := rq.api.post(rq.r.Context(), appAPI(app)+"/portal", body, &link); err != nil {
		rq.fail(err)
		return
	}
	rq.render("portallink", page{Title: "Portal link for " + app, Nav: "applications", AppBase: rq.appBase(app),
		Data: portalLinkData{App: app, Link: link}})
}
