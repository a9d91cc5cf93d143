package api

import (
	"net/http"

	"github.com/hookbus/hookbus/core/problem"
)

// access says who may call a route.
type access int

const (
	// public routes need no credentials: health, readiness, metrics and
	// the API's own documentation.
	public access = iota
	// adminOnly routes need an admin key (server.api_keys); an application
	// token gets 403.
	adminOnly
	// appScoped routes live under /v1/applications/{app}/: an admin key or
	// a token of that application; another application's token gets 404.
	appScoped
	// anyCredential routes take an admin key or any application's token
	// (GET /v1/whoami).
	anyCredential
)

// route is one entry of the route table: the mux registers exactly these,
// and the OpenAPI document must describe exactly these (a test holds them
// to each other).
type route struct {
	method string
	// path is the mux pattern's path, in the OpenAPI document's syntax too
	// ("/v1/applications/{app}").
	path    string
	access  access
	handler http.Handler
}

// routes returns the routes this server serves with its options.
func (s *Server) routes() []route {
	o := s.opts
	var rs []route
	add := func(method, path string, a access, h http.HandlerFunc) {
		rs = append(rs, route{method: method, path: path, access: a, handler: h})
	}
	if o.Ingest != nil {
		rs = append(rs, route{method: http.MethodPost, path: "/v1/sources/{source}/events", access: adminOnly, handler: o.Ingest})
	}
	add(http.MethodGet, "/v1/dead-letters", adminOnly, s.listDeadLetters)
	add(http.MethodGet, "/v1/dead-letters/{id}", adminOnly, s.getDeadLetter)
	add(http.MethodPost, "/v1/dead-letters/{id}/replay", adminOnly, s.replayOne)
	add(http.MethodPost, "/v1/dead-letters/replay", adminOnly, s.replayMany)
	if o.Admin != nil {
		add(http.MethodPost, "/v1/admin/reload", adminOnly, s.reload)
		add(http.MethodGet, "/v1/admin/status", adminOnly, s.status)
	}
	if o.Subscriptions != nil {
		add(http.MethodPost, "/v1/applications", adminOnly, s.createApplication)
		add(http.MethodGet, "/v1/applications", adminOnly, s.listApplications)
		add(http.MethodGet, "/v1/applications/{app}", appScoped, s.getApplicationRoute)
		add(http.MethodPatch, "/v1/applications/{app}", adminOnly, s.updateApplication)
		add(http.MethodDelete, "/v1/applications/{app}", adminOnly, s.deleteApplication)

		add(http.MethodPost, "/v1/applications/{app}/tokens", adminOnly, s.createToken)
		add(http.MethodGet, "/v1/applications/{app}/tokens", adminOnly, s.listTokens)
		add(http.MethodDelete, "/v1/applications/{app}/tokens/{token}", adminOnly, s.deleteToken)
		add(http.MethodPost, "/v1/applications/{app}/portal", adminOnly, s.createPortalLink)
		add(http.MethodGet, "/v1/whoami", anyCredential, s.whoami)

		add(http.MethodPost, "/v1/applications/{app}/subscriptions", appScoped, s.createSubscription)
		add(http.MethodGet, "/v1/applications/{app}/subscriptions", appScoped, s.listSubscriptions)
		add(http.MethodGet, "/v1/applications/{app}/subscriptions/{sub}", appScoped, s.getSubscription)
		add(http.MethodPatch, "/v1/applications/{app}/subscriptions/{sub}", appScoped, s.updateSubscription)
		add(http.MethodDelete, "/v1/applications/{app}/subscriptions/{sub}", appScoped, s.deleteSubscription)
		add(http.MethodGet, "/v1/applications/{app}/subscriptions/{sub}/secret", appScoped, s.getSecret)
		add(http.MethodPost, "/v1/applications/{app}/subscriptions/{sub}/rotate-secret", appScoped, s.rotateSecret)
		add(http.MethodPost, "/v1/applications/{app}/subscriptions/{sub}/test", appScoped, s.testSubscription)
		add(http.MethodGet, "/v1/applications/{app}/subscriptions/{sub}/public-keys", appScoped, s.subscriptionPublicKeys)
		add(http.MethodPost, "/v1/applications/{app}/subscriptions/{sub}/rotate-signing-key", appScoped, s.rotateSigningKey)
	}
	if o.Attempts != nil {
		add(http.MethodGet, "/v1/attempts", adminOnly, s.listAttempts)
		add(http.MethodGet, "/v1/attempts/{id}", adminOnly, s.getAttempt)
		add(http.MethodGet, "/v1/events/{id}", adminOnly, s.getEvent)
		add(http.MethodGet, "/v1/sinks/{sink}/stats", adminOnly, s.sinkStats)
		if o.Subscriptions != nil {
			add(http.MethodGet, "/v1/applications/{app}/attempts", appScoped, s.listAttempts)
			add(http.MethodGet, "/v1/applications/{app}/attempts/{id}", appScoped, s.getAttempt)
			add(http.MethodGet, "/v1/applications/{app}/events/{id}", appScoped, s.getEvent)
			add(http.MethodGet, "/v1/applications/{app}/subscriptions/{sub}/stats", appScoped, s.subscriptionStats)
			add(http.MethodGet, "/v1/applications/{app}/stats", appScoped, s.applicationStats)
		}
	}
	if o.Resender != nil {
		add(http.MethodPost, "/v1/resend", adminOnly, s.resend)
		add(http.MethodPost, "/v1/recover", adminOnly, s.recoverDeliveries)
		if o.Subscriptions != nil {
			add(http.MethodPost, "/v1/applications/{app}/resend", appScoped, s.resend)
			add(http.MethodPost, "/v1/applications/{app}/recover", appScoped, s.recoverDeliveries)
		}
	}
	add(http.MethodGet, "/v1/sinks/{sink}/public-keys", public, s.sinkPublicKeys)
	add(http.MethodGet, "/v1/openapi.json", public, s.openAPI)
	add(http.MethodGet, "/healthz", public, s.healthz)
	add(http.MethodGet, "/readyz", public, s.readyz)
	if o.Registry != nil {
		add(http.MethodGet, "/metrics", public, s.metrics.ServeHTTP)
	}
	return rs
}

// register puts the route table on the mux, each route behind the check
// its access asks for.
func (s *Server) register() {
	for _, rt := range s.routes() {
		h := rt.handler
		switch rt.access {
		case adminOnly, appScoped, anyCredential:
			h = s.auth(h, rt.access)
		}
		s.mux.Handle(rt.method+" "+rt.path, h)
	}
}

// fallbackWriter turns the mux's own plain-text answers (404 for a path no
// route has, 405 for a method a path does not take) into problem details.
type fallbackWriter struct {
	http.ResponseWriter
	r        *http.Request
	answered bool
}

func (w *fallbackWriter) WriteHeader(code int) {
	if w.answered {
		return
	}
	var p *problem.Problem
	switch code {
	case http.StatusNotFound:
		p = problem.New(code, "no such endpoint: "+w.r.Method+" "+w.r.URL.Path)
	case http.StatusMethodNotAllowed:
		allow := w.Header().Get("Allow")
		p = problem.New(code, "method "+w.r.Method+" is not allowed on "+w.r.URL.Path+"; allowed: "+allow)
	default:
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.answered = true
	p.Instance = w.r.URL.Path
	problem.Write(w.ResponseWriter, p)
}

func (w *fallbackWriter) Write(b []byte) (int, error) {
	if w.answered {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}
