package console

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/core/subscription"
)

// The portal's sign-in. A portal link (/portal/login?app=…&token=…, made
// by POST /v1/applications/{app}/portal) opens a session of its
// application when the API says (GET /v1/whoami, asked with the token)
// that the token is of kind "portal" and of that very application: an
// ordinary application token or an admin key opens nothing. The session
// ends at the token's expiry at the latest, and on the first request
// after the API stops taking the token (signedIn asks again on every
// portal request).
//
// Opening a link of application B while a portal session of A is open
// does not silently replace A: B's token waits, sealed, in a short-lived
// cookie, and a confirm page (POST /portal/login/switch) switches or
// keeps A. Every answer to a link redirects, so the token leaves the
// address bar after the first request and is in no page.

const (
	// portalSwitchCookie holds the link waiting for the switch's answer.
	portalSwitchCookie = "hookbus_portal_switch"
	// portalSwitchTTL is how long a switch waits for its answer.
	portalSwitchTTL = 5 * time.Minute
)

// portalRefusal says why a credential does not open an application's
// portal; empty, it does. The values travel in the refusal page's address
// (/portal/login?refused=…).
type portalRefusal string

const (
	refusedNone portalRefusal = ""
	// refusedInvalid: the API does not take the token (expired, revoked
	// or mistyped), or the link lacks its token or application.
	refusedInvalid portalRefusal = "invalid"
	// refusedKind: an application's API token or an admin key, not a
	// portal link's token.
	refusedKind portalRefusal = "kind"
	// refusedApp: the portal link of another application than the one
	// the address names.
	refusedApp portalRefusal = "app"
	// refusedUnavailable: the API could not check the token now.
	refusedUnavailable portalRefusal = "unavailable"
)

// checkPortalToken asks the API, with token, who token is: refusedNone
// (with the token's expiry, zero for none) when it is a portal link's
// token of application app. err is set, with refusedUnavailable, when the
// API could not answer.
func (c *Console) checkPortalToken(r *http.Request, token, app string) (expires time.Time, why portalRefusal, err error) {
	if token == "" || app == "" {
		return time.Time{}, refusedInvalid, nil
	}
	var who api.WhoamiJSON
	err = (&client{api: c.opts.API, bearer: token, from: r}).get(r.Context(), "/v1/whoami", nil, &who)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return time.Time{}, refusedInvalid, nil
	case err != nil:
		return time.Time{}, refusedUnavailable, err
	case who.Admin || who.TokenKind != subscription.TokenKindPortal:
		return time.Time{}, refusedKind, nil
	case who.Application != app:
		return time.Time{}, refusedApp, nil
	}
	if who.ExpiresAt != nil {
		if expires, err = time.Parse(time.RFC3339Nano, *who.ExpiresAt); err != nil {
			return time.Time{}, refusedUnavailable, fmt.Errorf("console: expires_at %q of GET /v1/whoami: %w", *who.ExpiresAt, err)
		}
	}
	return expires, refusedNone, nil
}

// portalSwitchSpec is the cookie of a waiting switch: the portal's cookie
// (path /portal, Lax, or None when the portal may be framed) under its
// own name.
func (c *Console) portalSwitchSpec(r *http.Request) cookieSpec {
	spec := c.portalCookieSpec(r)
	spec.name = portalSwitchCookie
	return spec
}

// openCookie opens the sealed cookie name of r: a session this key sealed
// under that name, not expired and not signed out.
func (c *Console) openCookie(r *http.Request, name string) (session, bool) {
	ck, err := r.Cookie(name)
	if err != nil {
		return session{}, false
	}
	s, err := c.seal.open(name, ck.Value, c.opts.Now())
	if err != nil || s.App == "" || c.ended.has(s.ID) {
		return session{}, false
	}
	return s, true
}

// currentPortal is r's portal session, when it has one that still works:
// the API still takes its token (an API that cannot answer now counts as
// taking it: the visitor is asked rather than signed out).
func (c *Console) currentPortal(r *http.Request) (session, bool) {
	s, ok := c.openCookie(r, portalCookie)
	if !ok {
		return session{}, false
	}
	if _, why, _ := c.checkPortalToken(r, s.Bearer, s.App); why != refusedNone && why != refusedUnavailable {
		return session{}, false
	}
	return s, true
}

// portalLogin reads a portal link (/portal/login?app=…&token=…) and
// redirects at once: to the portal when the link opens a session, to the
// switch page when a session of another application is open, or to the
// refusal (/portal/login?refused=…). Without a token it shows the refusal
// its address names.
func (c *Console) portalLogin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("token") {
		why := portalRefusal(q.Get("refused"))
		if why == refusedNone {
			why = refusedInvalid
		}
		c.portalRefused(w, why)
		return
	}
	app, token := q.Get("app"), q.Get("token")
	expires, why, err := c.checkPortalToken(r, token, app)
	if err != nil {
		c.opts.Logger.Error("console: portal link check failed", "application", app, "error", err)
	}
	if why != refusedNone {
		if why != refusedUnavailable {
			c.opts.Logger.Warn("console: portal link refused", "application", app, "reason", string(why), "remote", r.RemoteAddr)
		}
		http.Redirect(w, r, "/portal/login?refused="+string(why), http.StatusSeeOther)
		return
	}
	now := c.opts.Now()
	cur, open := c.currentPortal(r)
	if open && cur.App != app {
		// Keep the new link, sealed, for the switch page's answer.
		exp := now.Add(portalSwitchTTL)
		val, err := c.seal.seal(portalSwitchCookie, session{Bearer: token, App: app, CSRF: randomToken(), Expires: exp.Unix(), ID: randomToken()})
		if err != nil {
			c.portalError(w, http.StatusInternalServerError, "The portal could not be opened.")
			return
		}
		c.portalSwitchSpec(r).set(w, val, now, exp)
		http.Redirect(w, r, "/portal/login/switch", http.StatusSeeOther)
		return
	}
	if open {
		// A new link of the same application replaces its session.
		c.ended.end(cur, now)
	}
	c.startPortal(w, r, token, app, expires)
}

// startPortal opens the portal session of a checked link and redirects to
// the portal. The session ends after PortalTTL or at the token's expiry,
// whichever comes first.
func (c *Console) startPortal(w http.ResponseWriter, r *http.Request, token, app string, tokenExpires time.Time) {
	now := c.opts.Now()
	exp := now.Add(c.opts.PortalTTL)
	if !tokenExpires.IsZero() && tokenExpires.Before(exp) {
		exp = tokenExpires
	}
	// Expires is in whole seconds, rounded down: never after the token's.
	val, err := c.seal.seal(portalCookie, session{Bearer: token, App: app, CSRF: randomToken(), Expires: exp.Unix(), ID: randomToken()})
	if err != nil {
		c.portalError(w, http.StatusInternalServerError, "The portal could not be opened.")
		return
	}
	c.portalCookieSpec(r).set(w, val, now, exp)
	http.Redirect(w, r, "/portal/", http.StatusSeeOther)
}

// appLabel names an application on the switch page.
type appLabel struct{ ID, Name string }

// label asks the API for app's name with bearer; the id alone when it
// cannot.
func (c *Console) label(r *http.Request, bearer, app string) appLabel {
	var a api.ApplicationJSON
	if err := (&client{api: c.opts.API, bearer: bearer, from: r}).get(r.Context(), appAPI(app), nil, &a); err != nil {
		return appLabel{ID: app}
	}
	return appLabel{ID: app, Name: a.Name}
}

// switchData is the switch page's: From is the open session's
// application (empty when it has ended meanwhile), To the link's.
type switchData struct{ From, To appLabel }

// portalSwitchPage asks whether to leave the open session's application
// for the waiting link's.
func (c *Console) portalSwitchPage(w http.ResponseWriter, r *http.Request) {
	pend, ok := c.openCookie(r, portalSwitchCookie)
	if !ok {
		c.noSwitch(w)
		return
	}
	d := switchData{To: c.label(r, pend.Bearer, pend.App)}
	title := "Open the portal of " + pend.App + "?"
	if cur, open := c.currentPortal(r); open {
		d.From = c.label(r, cur.Bearer, cur.App)
		title = "Switch to " + pend.App + "?"
	}
	c.write(w, http.StatusOK, "switch", page{Title: title, Portal: true, Base: "/portal", CSRF: pend.CSRF, Data: d})
}

// portalSwitch answers the switch page: choice=switch ends the open
// session and opens the waiting link's (checked again with the API); any
// other choice keeps the open session. Either way the waiting link is
// forgotten. The form needs the switch's CSRF token and a same-origin
// request.
func (c *Console) portalSwitch(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.portalError(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	pend, ok := c.openCookie(r, portalSwitchCookie)
	if !ok {
		c.noSwitch(w)
		return
	}
	if !c.sameOrigin(r) || !sameToken(r.PostForm.Get("csrf"), pend.CSRF) {
		c.portalError(w, http.StatusForbidden, "This form is stale or did not come from this site (CSRF check). Open the portal link again.")
		return
	}
	c.portalSwitchSpec(r).clear(w)
	if r.PostForm.Get("choice") != "switch" {
		http.Redirect(w, r, "/portal/", http.StatusSeeOther)
		return
	}
	expires, why, err := c.checkPortalToken(r, pend.Bearer, pend.App)
	if err != nil {
		c.opts.Logger.Error("console: portal link check failed", "application", pend.App, "error", err)
	}
	if why != refusedNone {
		http.Redirect(w, r, "/portal/login?refused="+string(why), http.StatusSeeOther)
		return
	}
	if cur, open := c.openCookie(r, portalCookie); open {
		c.ended.end(cur, c.opts.Now())
	}
	c.startPortal(w, r, pend.Bearer, pend.App, expires)
}

// noSwitch answers a switch that is not (or no longer) waiting.
func (c *Console) noSwitch(w http.ResponseWriter) {
	c.portalError(w, http.StatusConflict, fmt.Sprintf("No portal link is waiting to be opened (one waits %s): open the link again.", portalSwitchTTL))
}

// portalRefused shows why a portal link opens nothing.
func (c *Console) portalRefused(w http.ResponseWriter, why portalRefusal) {
	switch why {
	case refusedKind:
		c.write(w, http.StatusForbidden, "expired", page{Title: "Not a portal link", Portal: true, Base: "/portal",
			Error: "This link does not carry a portal link's token: the portal opens only with a link made for it " +
				"(POST /v1/applications/{app}/portal, or hookbus apps portal APP), not with an application's API token or an admin key."})
	case refusedApp:
		c.write(w, http.StatusForbidden, "expired", page{Title: "Portal link of another application", Portal: true, Base: "/portal",
			Error: "This portal link is not for the application its address names."})
	case refusedUnavailable:
		c.portalError(w, http.StatusServiceUnavailable, "The portal link could not be checked just now: open it again in a moment.")
	default:
		c.portalExpired(w)
	}
}

// portalError shows msg on the portal's page for visitors without a
// session.
func (c *Console) portalError(w http.ResponseWriter, code int, msg string) {
	c.write(w, code, "expired", page{Title: http.StatusText(code), Portal: true, Base: "/portal", Error: msg})
}

// portalExpired tells the visitor the link is not (or no longer) valid.
func (c *Console) portalExpired(w http.ResponseWriter) {
	c.write(w, http.StatusUnauthorized, "expired", page{Title: "Portal link expired", Portal: true, Base: "/portal"})
}

// portalLogout ends the portal session.
func (c *Console) portalLogout(rq *request) {
	rq.c.ended.end(rq.sess, rq.c.opts.Now())
	rq.c.portalCookieSpec(rq.r).clear(rq.w)
	rq.c.write(rq.w, http.StatusOK, "expired", page{Title: "Signed out", Portal: true, Base: "/portal",
		Flash: "You left the portal. Open a new portal link to come back."})
}
