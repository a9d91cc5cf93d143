package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/subscription"
)

// TokenJSON is the API form of an application token; Token (the value)
// is there only in the answer that created it.
type TokenJSON struct {
	ID          string `json:"id"`
	Token       string `json:"token,omitempty"`
	Application string `json:"application"`
	Name        string `json:"name"`
	CreatedAt   string `json:"created_at"`
	// LastUsedAt is null when the store does not know.
	LastUsedAt *string `json:"last_used_at"`
	// Kind is "api" (made with POST …/tokens) or "portal" (made for a
	// portal link).
	Kind string `json:"kind"`
	// ExpiresAt is null for a token that never expires.
	ExpiresAt *string `json:"expires_at"`
}

func tokenJSON(t subscription.Token) TokenJSON {
	out := TokenJSON{ID: t.ID, Application: t.App, Name: t.Name, CreatedAt: timeJSON(t.Created), Kind: t.Kind}
	if out.Kind == "" {
		out.Kind = subscription.TokenKindAPI
	}
	if !t.LastUsed.IsZero() {
		s := timeJSON(t.LastUsed)
		out.LastUsedAt = &s
	}
	if !t.ExpiresAt.IsZero() {
		s := timeJSON(t.ExpiresAt)
		out.ExpiresAt = &s
	}
	return out
}

// createToken makes an application token (admin keys only): 201 with the
// token, shown this once; the store keeps its SHA-256.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	o, p := readObject(w, r, true, "name")
	if p != nil {
		problem.Write(w, p)
		return
	}
	var name string
	o.get("name", &name, "a string")
	if msg := subscription.CheckTokenName(name); msg != "" {
		o.fail("name", msg)
	}
	if len(o.errs) > 0 {
		problem.Write(w, problem.Validation("invalid token", o.errs...))
		return
	}
	tok, value, ok := s.issueToken(w, r, subscription.Token{Name: name, Kind: subscription.TokenKindAPI}, 0)
	if !ok {
		return
	}
	out := tokenJSON(tok)
	out.Token = value
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, out)
}

// issueToken makes a new token of the request's application from tpl
// (its name and kind; it expires after ttl unless ttl is 0) and returns it
// with its value; when ok is false the answer (404, 500) is written.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request, tpl subscription.Token, ttl time.Duration) (tok subscription.Token, value string, ok bool) {
	a, ok := s.application(w, r)
	if !ok {
		return tok, "", false
	}
	value, hash, err := NewToken()
	if err != nil {
		s.internal(w, err)
		return tok, "", false
	}
	now := s.now().UTC()
	tpl.ID, tpl.App, tpl.Hash, tpl.Created = newID("tok_"), a.ID, hash, now
	if ttl > 0 {
		tpl.ExpiresAt = now.Add(ttl)
	}
	tok, err = s.opts.Subscriptions.CreateToken(r.Context(), tpl)
	if errors.Is(err, subscription.ErrNotFound) {
		problem.Write(w, applicationNotFound(a.ID))
		return tok, "", false
	}
	if err != nil {
		s.internal(w, err)
		return tok, "", false
	}
	return tok, value, true
}

// listTokens lists an application's tokens, without their values. The
// expired ones are deleted on the way (expired tokens are deleted lazily)
// and not listed.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	a, ok := s.application(w, r)
	if !ok {
		return
	}
	toks, err := s.opts.Subscriptions.ListTokens(r.Context(), a.ID)
	if err != nil {
		s.internal(w, err)
		return
	}
	now := s.now()
	out := make([]TokenJSON, 0, len(toks))
	for _, t := range toks {
		if t.Expired(now) {
			s.dropExpired(r.Context(), t)
			continue
		}
		out = append(out, tokenJSON(t))
	}
	writeJSON(w, http.StatusOK, newList(out, ""))
}

// deleteToken revokes a token: 204, then 404. The token stops working on
// this instance at once, on others sharing the store within tokenCacheTTL.
func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	app, id := r.PathValue("app"), r.PathValue("token")
	err := subscription.ErrNotFound
	if subscription.CouldBeID(app) && subscription.CouldBeID(id) {
		err = s.opts.Subscriptions.DeleteToken(r.Context(), app, id)
	}
	if errors.Is(err, subscription.ErrNotFound) {
		problem.Write(w, problem.New(http.StatusNotFound, "no token with id "+strconv.Quote(id)+" in application "+strconv.Quote(app)))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	s.tokens.forget(func(t subscription.Token) bool { return t.ID == id })
	w.WriteHeader(http.StatusNoContent)
}
