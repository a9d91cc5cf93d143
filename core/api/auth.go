package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/subscription"
)

// TokenPrefix starts every application token.
const TokenPrefix = "hbat_"

// tokenCacheTTL is how long a looked-up application token is trusted
// without asking the store again: the delay after which a token revoked
// on another instance sharing the store stops working (on this instance
// a revocation takes effect at once).
const tokenCacheTTL = 500 * time.Millisecond

// tokenCacheMax bounds the cache; when full it starts over.
const tokenCacheMax = 10000

// principal is who a request acts for: an admin (an admin key, or anyone
// when no keys are configured) or an application token.
type principal struct {
	admin bool
	// app and token are the application and token ID of an application token.
	app, token string
	// kind and expires are the application token's kind ("api" or
	// "portal") and expiry (zero: never).
	kind    string
	expires time.Time
}

type principalKey struct{}

func principalOf(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// NewToken returns a new application token: "hbat_" and 32 random bytes
// (base64url), and the SHA-256 hash the store keeps.
func NewToken() (token string, hash []byte, err error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, err
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	return token, HashToken(token), nil
}

// HashToken returns the SHA-256 of an application token, as stored.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// tokenCache keeps recent application token lookups for tokenCacheTTL.
type tokenCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]cachedToken
	// gen counts the forgets: a lookup that read the store before one
	// (it may have read a token revoked since) does not put its answer in.
	gen uint64
}

// generation is the number of forgets so far; put takes it from before
// the store was read.
func (c *tokenCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

type cachedToken struct {
	tok subscription.Token
	at  time.Time
}

func (c *tokenCache) get(h [sha256.Size]byte, now time.Time) (subscription.Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[h]
	if !ok || now.Sub(e.at) >= tokenCacheTTL {
		return subscription.Token{}, false
	}
	return e.tok, true
}

func (c *tokenCache) put(h [sha256.Size]byte, tok subscription.Token, now time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = map[[sha256.Size]byte]cachedToken{}
	}
	c.m[h] = cachedToken{tok: tok, at: now}
}

// forget drops the cached tokens that match: a revoked token, or every
// token of a deleted application.
func (c *tokenCache) forget(match func(subscription.Token) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for h, e := range c.m {
		if match(e.tok) {
			delete(c.m, h)
		}
	}
}

// authenticate finds who the request acts for, or the 401 to answer.
// Admin keys are compared in constant time (their SHA-256 digests), every
// one of them, whatever matches first; an application token is found by its hash.
func (s *Server) authenticate(r *http.Request) (principal, *problem.Problem) {
	keys := *s.keys.Load()
	token, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		if len(keys) == 0 {
			return principal{admin: true}, nil
		}
		return principal{}, unauthorized("missing API key: send Authorization: Bearer <key>")
	}
	// Digests of equal length: ConstantTimeCompare returns at once on
	// inputs of different lengths, which would tell a key's length.
	th := sha256.Sum256([]byte(token))
	match := 0
	for _, k := range keys {
		kh := sha256.Sum256([]byte(k))
		match |= subtle.ConstantTimeCompare(th[:], kh[:])
	}
	if match == 1 {
		return principal{admin: true}, nil
	}
	if strings.HasPrefix(token, TokenPrefix) && s.opts.Subscriptions != nil {
		tok, err := s.lookupToken(r.Context(), token)
		if err == nil && tok.Expired(s.now()) {
			s.dropExpired(r.Context(), tok)
			return principal{}, unauthorized("token expired")
		}
		if err == nil {
			kind := tok.Kind
			if kind == "" {
				kind = subscription.TokenKindAPI
			}
			return principal{app: tok.App, token: tok.ID, kind: kind, expires: tok.ExpiresAt}, nil
		}
		if !errors.Is(err, subscription.ErrNotFound) {
			s.opts.Logger.Error("api: application token lookup failed", "error", err)
			return principal{}, problem.New(http.StatusServiceUnavailable, "cannot check the application token now; retry")
		}
		return principal{}, unauthorized("invalid or revoked application token")
	}
	if len(keys) == 0 {
		// No keys configured: open, as without server.api_keys.
		return principal{admin: true}, nil
	}
	return principal{}, unauthorized("invalid API key")
}

// dropExpired deletes an expired token (expired tokens are deleted
// lazily: when they are next presented or listed) and forgets it. A
// failure is only logged: the token is refused whether or not it is gone.
func (s *Server) dropExpired(ctx context.Context, tok subscription.Token) {
	s.tokens.forget(func(t subscription.Token) bool { return t.ID == tok.ID })
	err := s.opts.Subscriptions.DeleteToken(ctx, tok.App, tok.ID)
	if err != nil && !errors.Is(err, subscription.ErrNotFound) {
		s.opts.Logger.Warn("api: cannot delete an expired application token; it is refused all the same",
			"application", tok.App, "token_id", tok.ID, "error", err)
	}
}

func unauthorized(detail string) *problem.Problem {
	return problem.New(http.StatusUnauthorized, detail)
}

// lookupToken finds an application token by its hash, through the cache.
// The caller checks its expiry (on every use, cached or not).
func (s *Server) lookupToken(ctx context.Context, token string) (subscription.Token, error) {
	h := sha256.Sum256([]byte(token))
	now := time.Now()
	if tok, ok := s.tokens.get(h, now); ok {
		return tok, nil
	}
	gen := s.tokens.generation()
	tok, err := s.opts.Subscriptions.TokenByHash(ctx, h[:])
	if err != nil {
		return subscription.Token{}, err
	}
	// The store found it by hash; compare again in constant time so a
	// store that matched loosely cannot let another token in.
	if subtle.ConstantTimeCompare(tok.Hash, h[:]) != 1 {
		return subscription.Token{}, subscription.ErrNotFound
	}
	s.tokens.put(h, tok, now, gen)
	return tok, nil
}

// auth puts the route's access check in front of h: adminOnly routes take
// admin keys (an application token gets 403); appScoped routes also take a
// token of the application named in the path (another application's
// token gets the 404 an absent application gets, so it learns nothing of
// which applications exist); anyCredential routes take any valid one.
func (s *Server) auth(h http.Handler, a access) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, prob := s.authenticate(r)
		if prob != nil {
			if prob.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hookbus"`)
			}
			prob.Instance = r.URL.Path
			problem.Write(w, prob)
			return
		}
		if !p.admin && a != anyCredential {
			if a == adminOnly {
				problem.Write(w, problem.New(http.StatusForbidden, "an application token cannot use "+r.Method+" "+r.URL.Path+"; it needs an admin key"))
				return
			}
			if app := r.PathValue("app"); app != p.app {
				problem.Write(w, applicationNotFound(app))
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}
