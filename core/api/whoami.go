package api

import (
	"net/http"
)

// WhoamiJSON is the answer of GET /v1/whoami for an application token;
// an admin key gets {"admin": true} alone.
type WhoamiJSON struct {
	Admin       bool   `json:"admin"`
	Application string `json:"application"`
	TokenID     string `json:"token_id"`
	// TokenKind is "api" or "portal".
	TokenKind string `json:"token_kind"`
	// ExpiresAt is null for a token that never expires.
	ExpiresAt *string `json:"expires_at"`
}

// whoami answers who the credential is (any valid credential): an admin,
// or an application token with its application, id, kind and expiry.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r.Context())
	w.Header().Set("Cache-Control", "no-store")
	if p.admin {
		writeJSON(w, http.StatusOK, struct {
			Admin bool `json:"admin"`
		}{Admin: true})
		return
	}
	out := WhoamiJSON{Application: p.app, TokenID: p.token, TokenKind: p.kind}
	if !p.expires.IsZero() {
		e := timeJSON(p.expires)
		out.ExpiresAt = &e
	}
	writeJSON(w, http.StatusOK, out)
}
