package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/core/subscription"
)

// Ed25519 (Standard Webhooks "v1a") signing of subscriptions, and the
// routes that publish the public keys receivers check v1a signatures with.

// The values of a subscription's "signing" member.
const (
	// SigningHMAC: only the HMAC secrets sign ("v1,"), as before.
	SigningHMAC = "hmac"
	// SigningEd25519: an Ed25519 key signs too ("v1a,"), beside the secrets.
	SigningEd25519 = "ed25519"
)

// publicKeyJSON is one entry of a public-keys answer.
type publicKeyJSON struct {
	// ID is signing.PublicKey.ID: stable, derived from the key.
	ID        string `json:"id"`
	PublicKey string `json:"public_key"`
	// Created is when the key was made (absent for a sink's keys, which
	// come from the configuration).
	Created string `json:"created,omitempty"`
	// Expires is when a rotated-out key stops signing.
	Expires string `json:"expires,omitempty"`
}

// publicKeysJSON is the answer of the public-keys routes and of
// POST …/rotate-signing-key: every key that signs now, the current first.
type publicKeysJSON struct {
	Keys []publicKeyJSON `json:"keys"`
}

// applySigning sets sub's signing keys from the "signing" member when o
// gives it: "ed25519" makes a key unless one signs already, "hmac" (or
// null) drops every key.
func (s *Server) applySigning(o *object, sub *subscription.Subscription) error {
	var mode string
	if !o.get("signing", &mode, `"hmac" or "ed25519"`) {
		return nil
	}
	switch mode {
	case SigningHMAC, "": // null clears, as for every member: back to the default
		sub.SigningKeys = nil
	case SigningEd25519:
		if len(sub.SigningKeysAt(time.Now())) > 0 {
			return nil
		}
		key, err := signing.GenerateSigningKey()
		if err != nil {
			return err
		}
		sub.SigningKeys = []subscription.Secret{{Value: key, Created: time.Now().UTC()}}
	default:
		o.fail("signing", `must be "hmac" (HMAC secrets only) or "ed25519" (an Ed25519 key signs too)`)
	}
	return nil
}

// signingJSON sets the signing and public_key members of out from sub.
func signingJSON(out *SubscriptionJSON, sub subscription.Subscription) {
	keys := sub.SigningKeysAt(time.Now())
	if len(keys) == 0 {
		out.Signing = SigningHMAC
		return
	}
	out.Signing = SigningEd25519
	if k, err := signing.ParseSigningKey(keys[0].Value); err == nil {
		out.PublicKey = k.PublicKey().String()
	}
}

// subscriptionKeys lists the public keys of the subscription's signing
// keys that sign at now.
func subscriptionKeys(sub subscription.Subscription, now time.Time) (publicKeysJSON, error) {
	out := publicKeysJSON{Keys: []publicKeyJSON{}}
	for _, k := range sub.SigningKeysAt(now) {
		key, err := signing.ParseSigningKey(k.Value)
		if err != nil {
			return out, err
		}
		pub := key.PublicKey()
		out.Keys = append(out.Keys, publicKeyJSON{ID: pub.ID(), PublicKey: pub.String(), Created: timeJSON(k.Created), Expires: optTimeJSON(k.Expires)})
	}
	return out, nil
}

func optTimeJSON(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return timeJSON(t)
}

// subscriptionPublicKeys answers GET …/subscriptions/{sub}/public-keys.
func (s *Server) subscriptionPublicKeys(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.subscription(w, r)
	if !ok {
		return
	}
	out, err := subscriptionKeys(sub, time.Now())
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// rotateSigningKey makes a new current Ed25519 key; the keys signing now
// keep signing beside it until now+overlap, as rotate-secret does for
// secrets. A subscription without a key gets its first one.
func (s *Server) rotateSigningKey(w http.ResponseWriter, r *http.Request) {
	o, p := readObject(w, r, true, "overlap")
	if p != nil {
		problem.Write(w, p)
		return
	}
	overlap := parseOverlap(o)
	if len(o.errs) > 0 {
		problem.Write(w, problem.Validation("invalid rotation", o.errs...))
		return
	}
	key, err := signing.GenerateSigningKey()
	if err != nil {
		s.internal(w, err)
		return
	}
	now := time.Now().UTC()
	updated, ok := s.modifySubscription(w, r, func(sub *subscription.Subscription) *problem.Problem {
		sub.SigningKeys = Rotate(sub.SigningKeys, subscription.Secret{Value: key, Created: now}, overlap, now)
		return nil
	})
	if !ok {
		return
	}
	out, err := subscriptionKeys(updated, now)
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// sinkPublicKeys answers GET /v1/sinks/{sink}/public-keys: the public
// keys of a webhook sink's signing_key(s). It needs no credentials (public
// keys are meant to be fetched by receivers); a sink that does not exist
// and one without signing keys both answer 404, so the route tells
// nothing else about the configuration.
func (s *Server) sinkPublicKeys(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("sink")
	var keys []signing.PublicKey
	ok := false
	if s.opts.SinkPublicKeys != nil {
		keys, ok = s.opts.SinkPublicKeys(name)
	}
	if !ok || len(keys) == 0 {
		problem.Write(w, problem.New(http.StatusNotFound, "no sink named "+strconv.Quote(name)+" with Ed25519 signing keys"))
		return
	}
	out := publicKeysJSON{Keys: make([]publicKeyJSON, len(keys))}
	for i, k := range keys {
		out.Keys[i] = publicKeyJSON{ID: k.ID(), PublicKey: k.String()}
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, out)
}
