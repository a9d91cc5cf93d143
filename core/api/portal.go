package api

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/subscription"
)

// PortalLoginPath is where a portal link points, under the base URL; the
// console package serves it and exchanges the token for a session.
const PortalLoginPath = "/portal/login"

// PortalLinkJSON is the answer of POST /v1/applications/{app}/portal.
type PortalLinkJSON struct {
	// URL opens the application's portal; it carries the token, so it is
	// a credential until it expires or its token is revoked.
	URL       string `json:"url"`
	ExpiresAt string `json:"expires_at"`
	// TokenID is the id of the link's token: DELETE …/tokens/{id} ends
	// the link and the portal sessions it opened.
	TokenID string `json:"token_id"`
}

// createPortalLink makes a portal link for an application (admin keys
// only): a token of kind "portal" that expires after ttl (the body's, or
// PortalLinkTTL), inside a URL to the portal's login page.
func (s *Server) createPortalLink(w http.ResponseWriter, r *http.Request) {
	ttl, p := s.portalTTL(w, r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	tok, value, ok := s.issueToken(w, r, subscription.Token{Name: "portal link", Kind: subscription.TokenKindPortal}, ttl)
	if !ok {
		return
	}
	link := s.portalBase(r) + PortalLoginPath + "?" + url.Values{"app": {tok.App}, "token": {value}}.Encode()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, PortalLinkJSON{URL: link, ExpiresAt: timeJSON(tok.ExpiresAt), TokenID: tok.ID})
}

// portalTTL reads the optional body {"ttl": "1h"}: a Go duration from
// PortalLinkMinTTL to PortalLinkMaxTTL; absent, PortalLinkTTL.
func (s *Server) portalTTL(w http.ResponseWriter, r *http.Request) (time.Duration, *problem.Problem) {
	o, p := readObject(w, r, true, "ttl")
	if p != nil {
		return 0, p
	}
	ttl := s.opts.PortalLinkTTL
	if ttl <= 0 {
		ttl = subscription.DefaultPortalLinkTTL
	}
	var raw string
	if o.get("ttl", &raw, `a duration string, like "1h" or "30m"`) && len(o.errs) == 0 && raw != "" {
		d, err := time.ParseDuration(raw)
		switch {
		case err != nil:
			o.fail("ttl", `must be a duration string, like "1h" or "30m"`)
		case d < subscription.PortalLinkMinTTL || d > subscription.PortalLinkMaxTTL:
			o.fail("ttl", "must be from 1m to 24h, got "+raw)
		default:
			ttl = d
		}
	}
	if len(o.errs) > 0 {
		return 0, problem.Validation("invalid portal link", o.errs...)
	}
	return ttl, nil
}

// portalBase is the base URL of portal links: PortalBaseURL when set,
// else the request's own scheme (https over TLS, otherwise http: behind a
// proxy set console.public_url) and Host.
func (s *Server) portalBase(r *http.Request) string {
	if b := s.opts.PortalBaseURL; b != "" {
		return strings.TrimRight(b, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
