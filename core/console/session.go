package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"
)

// A session lives in one cookie, sealed with AES-256-GCM: the browser
// holds it but can neither read nor change it, and any instance with the
// same key opens it. It carries the credential the console calls the API
// with, so a session stops working the moment the API stops taking that
// credential (an admin key removed from the configuration, a portal
// token revoked or expired), whatever its own expiry says.
type session struct {
	// Bearer is the API credential: an admin key, or the portal link's
	// token (kind "portal", of App) for the portal. Empty for an admin session when the API needs none.
	Bearer string `json:"b"`
	// App is the portal's application; empty in the operator console.
	App string `json:"a,omitempty"`
	// CSRF is the token every form of the session carries.
	CSRF string `json:"c"`
	// Expires is the session's end, in Unix seconds.
	Expires int64 `json:"e"`
	// ID names the session, so that signing out ends it on the server too.
	ID string `json:"i"`
}

// endedSessions remembers the sessions signed out before they expired,
// until they do: a copy of the cookie kept from before is refused. It is
// in memory, so on this instance only (another instance sharing the
// session key accepts the copy until it expires).
type endedSessions struct {
	mu sync.Mutex
	m  map[string]int64
}

// maxEnded bounds the sessions remembered; beyond it the expired ones are
// forgotten, then any (a forgotten copy works again until it expires).
const maxEnded = 100000

func newEndedSessions() *endedSessions { return &endedSessions{m: map[string]int64{}} }

func (e *endedSessions) end(s session, now time.Time) {
	if s.ID == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.m) >= maxEnded {
		for id, exp := range e.m {
			if exp <= now.Unix() {
				delete(e.m, id)
			}
		}
		for id := range e.m {
			if len(e.m) < maxEnded {
				break
			}
			delete(e.m, id)
		}
	}
	e.m[s.ID] = s.Expires
}

func (e *endedSessions) has(id string) bool {
	if id == "" {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.m[id]
	return ok
}

// sealer seals and opens session cookies.
type sealer struct{ aead cipher.AEAD }

// newSealer derives the cookie key from secret (a random key when empty).
func newSealer(secret string) (*sealer, error) {
	var key [32]byte
	if secret == "" {
		if _, err := rand.Read(key[:]); err != nil {
			return nil, err
		}
	} else {
		// Domain-separated: the same secret used elsewhere gives another key.
		key = sha256.Sum256([]byte("hookbus console session v1\x00" + secret))
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal returns the cookie value of s; name binds it to its cookie, so a
// portal cookie cannot be replayed as a console one.
func (k *sealer) seal(name string, s session) (string, error) {
	plain, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(k.aead.Seal(nonce, nonce, plain, []byte(name))), nil
}

var errBadSession = errors.New("console: invalid or expired session")

// open returns the session of a cookie value, if it is one this key sealed
// under name and it has not expired.
func (k *sealer) open(name, value string, now time.Time) (session, error) {
	var s session
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < k.aead.NonceSize() {
		return s, errBadSession
	}
	nonce, sealed := raw[:k.aead.NonceSize()], raw[k.aead.NonceSize():]
	plain, err := k.aead.Open(nil, nonce, sealed, []byte(name))
	if err != nil {
		return s, errBadSession
	}
	if err := json.Unmarshal(plain, &s); err != nil || now.Unix() >= s.Expires {
		return session{}, errBadSession
	}
	return s, nil
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// sameToken compares two CSRF tokens in constant time.
func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// cookieSpec is how one kind of session's cookie is set.
type cookieSpec struct {
	name     string
	path     string
	sameSite http.SameSite
	secure   bool
	// partitioned keeps a framed portal's cookie in a jar of the framing
	// site (CHIPS), where browsers block other third-party cookies.
	partitioned bool
}

// set sets the cookie to value until expires; now is the console's clock
// (Max-Age counts from it, so the browser drops the cookie when the
// session ends by that clock).
func (cs cookieSpec) set(w http.ResponseWriter, value string, now, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: cs.name, Value: value, Path: cs.path, Expires: expires,
		MaxAge: max(1, int(expires.Sub(now).Seconds())), HttpOnly: true, Secure: cs.secure, SameSite: cs.sameSite,
		Partitioned: cs.partitioned})
}

func (cs cookieSpec) clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: cs.name, Value: "", Path: cs.path, MaxAge: -1, HttpOnly: true,
		Secure: cs.secure, SameSite: cs.sameSite, Partitioned: cs.partitioned})
}
