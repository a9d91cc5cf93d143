package console

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// loginLimiter slows down guessing admin keys: each client address gets
// a few sign-in attempts, then one every few seconds.
type loginLimiter struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

const (
	loginBurst   = 10
	loginEvery   = 3 * time.Second
	loginClients = 10000
)

func newLoginLimiter() *loginLimiter { return &loginLimiter{m: map[string]*rate.Limiter{}} }

func (l *loginLimiter) allow(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	// One bucket per IPv6 /64: one host usually holds all of it.
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		host = ip.Mask(net.CIDRMask(64, 128)).String()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[host]
	if !ok {
		if len(l.m) >= loginClients {
			l.m = map[string]*rate.Limiter{}
		}
		lim = rate.NewLimiter(rate.Every(loginEvery), loginBurst)
		l.m[host] = lim
	}
	return lim.Allow()
}

// loginData is the sign-in page's.
type loginData struct {
	Next    string
	Expired bool
}

// safeNext keeps a sign-in's destination to the console's own pages.
func safeNext(next string) string {
	if p, _, _ := strings.Cut(next, "?"); path.Clean(p) != p && path.Clean(p)+"/" != p {
		return "/console/"
	}
	if !strings.HasPrefix(next, "/console/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") ||
		strings.HasPrefix(next, "/console/login") {
		return "/console/"
	}
	return next
}

// loginSpec is the cookie holding the sign-in form's CSRF token before
// there is a session (a double-submit token: a page of another site can
// neither read it nor set it).
func (c *Console) loginSpec(r *http.Request) cookieSpec {
	return cookieSpec{name: loginCookie, path: "/console/login", sameSite: http.SameSiteStrictMode, secure: c.https(r)}
}

// loginPage shows the sign-in form.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.renderLogin(w, r, http.StatusOK, "", loginData{Next: safeNext(r.URL.Query().Get("next")), Expired: r.URL.Query().Get("expired") != ""})
}

func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg string, d loginData) {
	token := randomToken()
	now := c.opts.Now()
	c.loginSpec(r).set(w, token, now, now.Add(time.Hour))
	c.write(w, code, "login", page{Title: "Sign in", Base: "/console", CSRF: token, Error: msg, Data: d})
}

// login checks the key against the API and opens a session holding it.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.renderLogin(w, r, http.StatusBadRequest, "The form could not be read.", loginData{Next: "/console/"})
		return
	}
	d := loginData{Next: safeNext(r.PostForm.Get("next"))}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !c.sameOrigin(r) || !sameToken(r.PostForm.Get("csrf"), ck.Value) {
		c.renderLogin(w, r, http.StatusForbidden, "This form is stale or did not come from this site (CSRF check). Try again.", d)
		return
	}
	if !c.logins.allow(r.RemoteAddr) {
		w.Header().Set("Retry-After", "5")
		c.renderLogin(w, r, http.StatusTooManyRequests, "Too many sign-in attempts from this address; wait a few seconds.", d)
		return
	}
	key := strings.TrimSpace(r.PostForm.Get("key"))
	api := &client{api: c.opts.API, bearer: key, from: r}
	// An admin-only route that every configuration has: only an admin key
	// (or any, when the API has none) reads it.
	err = api.get(r.Context(), "/v1/dead-letters", url.Values{"limit": {"1"}}, nil)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		c.opts.Logger.Warn("console: sign-in refused", "remote", r.RemoteAddr)
		c.renderLogin(w, r, http.StatusUnauthorized, "That is not an admin key of this hookbus (server.api_keys).", d)
		return
	case err != nil:
		c.opts.Logger.Error("console: sign-in check failed", "error", err)
		c.renderLogin(w, r, http.StatusServiceUnavailable, "The key could not be checked now; try again.", d)
		return
	}
	now := c.opts.Now()
	exp := now.Add(c.opts.SessionTTL)
	val, err := c.seal.seal(consoleCookie, session{Bearer: key, CSRF: randomToken(), Expires: exp.Unix(), ID: randomToken()})
	if err != nil {
		c.renderLogin(w, r, http.StatusInternalServerError, "The session could not be opened.", d)
		return
	}
	c.loginSpec(r).clear(w)
	c.consoleCookieSpec(r).set(w, val, now, exp)
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

// logout ends the console session.
func (c *Console) logout(rq *request) {
	rq.c.ended.end(rq.sess, rq.c.opts.Now())
	rq.c.consoleCookieSpec(rq.r).clear(rq.w)
	http.Redirect(rq.w, rq.r, "/console/login", http.StatusSeeOther)
}
