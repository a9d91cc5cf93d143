// Package console serves hookbus' web pages: the operator console at
// /console (signed in with an admin key) and the application portal at
// /portal (opened with a portal link, for one application).
//
// Both are rendered on the server from templates embedded in the binary,
// with one small script and one style sheet, also embedded: no build step,
// no CDN, nothing fetched at run time. Every page is made from answers of
// the /v1 API, called in process with the session's credential (client),
// so the pages can do exactly what that credential can do through the API,
// and nothing more. Forms carry a per-session CSRF token, every answer has
// a strict Content-Security-Policy, and templates escape what they show.
package console

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Options configure the console and the portal.
type Options struct {
	// API is the /v1 handler the pages are made from.
	API http.Handler
	// Logger gets the console's own errors (never a credential).
	Logger *slog.Logger
	// SessionTTL is how long a console sign-in lasts (default 12h).
	SessionTTL time.Duration
	// SessionKey seals session cookies; empty: a random key per process.
	SessionKey string
	// PortalTTL bounds a portal session (default 1h); it ends earlier at
	// its link's expiry, or at the first request after the link's token
	// is revoked.
	PortalTTL time.Duration
	// FrameAncestors are the origins allowed to embed the portal in a
	// frame (CSP frame-ancestors); empty: none. A reload may change them
	// (SetFrameAncestors).
	FrameAncestors []string
	// PublicURL is console.public_url: when https, cookies are Secure
	// even over plain HTTP from a proxy, and its host is an accepted
	// Origin of forms.
	PublicURL string
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// Console is the handler of /console/ and /portal/.
type Console struct {
	opts      Options
	seal      *sealer
	mux       *http.ServeMux
	ancestors atomic.Pointer[[]string]
	logins    *loginLimiter
	public    *url.URL
	// ended are the sessions signed out before their expiry.
	ended *endedSessions
}

// Cookie names. The console's is strict same-site; the portal's is lax
// (it is opened from a link on another site), or, when the portal may be
// framed by another site, SameSite=None and Secure (browsers send no other
// cookie to a cross-site frame). portalSwitchCookie (portal_login.go)
// holds a portal link waiting for the switch page's answer.
const (
	consoleCookie = "hookbus_console"
	portalCookie  = "hookbus_portal"
	loginCookie   = "hookbus_login"
	flashCookie   = "hookbus_flash"
)

// New builds the console.
func New(opts Options) (*Console, error) {
	if opts.API == nil {
		return nil, errors.New("console: no API handler")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.PortalTTL <= 0 {
		opts.PortalTTL = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	seal, err := newSealer(opts.SessionKey)
	if err != nil {
		return nil, err
	}
	public, err := url.Parse(opts.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("console: public URL: %w", err)
	}
	c := &Console{opts: opts, seal: seal, mux: http.NewServeMux(), logins: newLoginLimiter(), public: public, ended: newEndedSessions()}
	c.SetFrameAncestors(opts.FrameAncestors)
	c.routes()
	return c, nil
}

// SetFrameAncestors replaces the origins that may frame the portal.
func (c *Console) SetFrameAncestors(origins []string) {
	o := append([]string(nil), origins...)
	c.ancestors.Store(&o)
}

// Owns reports whether path is the console's or the portal's.
func Owns(path string) bool {
	for _, p := range []string{"/console", "/portal"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	portal := r.URL.Path == "/portal" || strings.HasPrefix(r.URL.Path, "/portal/")
	c.secure(w, portal)
	c.mux.ServeHTTP(w, r)
}

// secure sets the headers every answer carries.
func (c *Console) secure(w http.ResponseWriter, portal bool) {
	h := w.Header()
	frame := "'none'"
	if anc := *c.ancestors.Load(); portal && len(anc) > 0 {
		frame = strings.Join(anc, " ")
	} else {
		h.Set("X-Frame-Options", "DENY")
	}
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors "+frame)
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer browsers send "Origin: null"
	// on the pages' own form posts, which sameOrigin refuses.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// portalCookieSpec is the portal's cookie, by whether it may be framed.
func (c *Console) portalCookieSpec(r *http.Request) cookieSpec {
	if len(*c.ancestors.Load()) > 0 {
		return cookieSpec{name: portalCookie, path: "/portal", sameSite: http.SameSiteNoneMode, secure: true, partitioned: true}
	}
	return cookieSpec{name: portalCookie, path: "/portal", sameSite: http.SameSiteLaxMode, secure: c.https(r)}
}

func (c *Console) consoleCookieSpec(r *http.Request) cookieSpec {
	return cookieSpec{name: consoleCookie, path: "/console", sameSite: http.SameSiteStrictMode, secure: c.https(r)}
}

// https reports whether the browser reached r over HTTPS: the request
// came over TLS, or console.public_url is https (a proxy in front
// terminates TLS). Cookies are Secure then.
func (c *Console) https(r *http.Request) bool { return r.TLS != nil || c.public.Scheme == "https" }

// request is one page request of a signed-in session.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	c    *Console
	sess session
	api  *client
	// portal is set in the application portal; app is then its application.
	portal bool
	app    string
}

// handler is a page of a signed-in session.
type handler func(rq *request)

// sameOrigin reports whether a state-changing request comes from the
// console's own pages: browsers send Sec-Fetch-Site (and Origin) with
// every POST; a request that says another site (or an opaque origin,
// "null") sent it is refused even with a valid CSRF token. The origin's
// host is the request's Host or console.public_url's (a proxy may
// rewrite Host).
func (c *Console) sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || o == "null" || (u.Host != r.Host && (c.public.Host == "" || u.Host != c.public.Host)) {
			return false
		}
	}
	return true
}

// maxForm bounds a form's body.
const maxForm = 1 << 20

// signedIn wraps a page of the console (portal false) or the portal: it
// needs a session, and a POST needs the session's CSRF token and a
// same-origin request.
func (c *Console) signedIn(portal bool, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		spec := c.consoleCookieSpec(r)
		if portal {
			spec = c.portalCookieSpec(r)
		}
		var sess session
		ck, err := r.Cookie(spec.name)
		if err == nil {
			sess, err = c.seal.open(spec.name, ck.Value, c.opts.Now())
		}
		if err == nil && c.ended.has(sess.ID) {
			err = errBadSession
		}
		if err != nil || (portal && sess.App == "") || (!portal && sess.App != "") {
			if ck != nil {
				spec.clear(w)
			}
			if portal {
				c.portalExpired(w)
				return
			}
			next := r.URL.Path
			if r.Method != http.MethodGet {
				next = "/console/"
			}
			http.Redirect(w, r, "/console/login?next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		rq := &request{w: w, r: r, c: c, sess: sess, portal: portal, app: sess.App,
			api: &client{api: c.opts.API, bearer: sess.Bearer, from: r}}
		if portal {
			// Every portal request asks the API about the link's token, so
			// a revoked or expired link ends the session at the next
			// request, whatever the page does.
			if _, why, err := c.checkPortalToken(r, sess.Bearer, sess.App); err != nil {
				c.opts.Logger.Error("console: portal link check failed", "application", sess.App, "error", err)
				rq.status(http.StatusServiceUnavailable, "The portal cannot check its link just now; try again in a moment.")
				return
			} else if why != refusedNone {
				spec.clear(w)
				c.portalRefused(w, why)
				return
			}
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				rq.status(http.StatusBadRequest, "The form could not be read: "+err.Error())
				return
			}
			if !c.sameOrigin(r) || !sameToken(r.PostForm.Get("csrf"), sess.CSRF) {
				rq.status(http.StatusForbidden, "This form is stale or did not come from this site (CSRF check). Reload the page and try again.")
				return
			}
		}
		h(rq)
	})
}

// base is the path pages of rq's kind start with.
func (rq *request) base() string {
	if rq.portal {
		return "/portal"
	}
	return "/console"
}

// appBase is where the pages of application app start: the portal's
// root, or the console's page of that application.
func (rq *request) appBase(app string) string {
	if rq.portal {
		return "/portal"
	}
	return "/console/applications/" + url.PathEscape(app)
}

// appAPI is the API path of application app's routes.
func appAPI(app string) string { return "/v1/applications/" + esc(app) }

// redirect answers a POST with a redirect to a page (POST, redirect, GET),
// showing flash there once.
func (rq *request) redirect(path, flash string) {
	if flash != "" {
		http.SetCookie(rq.w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(flash), Path: rq.base(), MaxAge: 60,
			HttpOnly: true, Secure: rq.c.https(rq.r), SameSite: http.SameSiteLaxMode})
	}
	http.Redirect(rq.w, rq.r, path, http.StatusSeeOther)
}

// takeFlash returns the message a redirect left, and clears it.
func (rq *request) takeFlash() string {
	ck, err := rq.r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(rq.w, &http.Cookie{Name: flashCookie, Value: "", Path: rq.base(), MaxAge: -1, HttpOnly: true,
		Secure: rq.c.https(rq.r), SameSite: http.SameSiteLaxMode})
	msg, err := url.QueryUnescape(ck.Value)
	if err != nil || len(msg) > 500 {
		return ""
	}
	return msg
}

// fail answers an error of an API call: a session the API no longer takes
// ends (sign in again, or the portal link expired); other errors are shown
// on an error page with the API's status.
func (rq *request) fail(err error) {
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Status == http.StatusUnauthorized {
			if rq.portal {
				rq.c.portalCookieSpec(rq.r).clear(rq.w)
				rq.c.portalExpired(rq.w)
				return
			}
			rq.c.consoleCookieSpec(rq.r).clear(rq.w)
			http.Redirect(rq.w, rq.r, "/console/login?expired=1", http.StatusSeeOther)
			return
		}
		rq.status(ae.Status, ae.Error())
		return
	}
	rq.c.opts.Logger.Error("console: page failed", "path", rq.r.URL.Path, "error", err)
	rq.status(http.StatusInternalServerError, "Something went wrong on the server; the log has the details.")
}

// status renders the error page.
func (rq *request) status(code int, msg string) {
	rq.renderStatus(code, "error", page{Title: http.StatusText(code), Error: msg})
}
