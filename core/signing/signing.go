// Package signing implements Standard Webhooks signatures
// (https://www.standardwebhooks.com): an HMAC-SHA256 over
// "<webhook-id>.<webhook-timestamp>.<body>" keyed with a "whsec_" secret,
// sent as "v1,<base64>" in the webhook-signature header, and the
// asymmetric scheme, an Ed25519 signature of the same content by a
// "whsk_" key, sent as "v1a,<base64>" and checked with its "whpk_" public
// key (ed25519.go). Any official Standard Webhooks library verifies what
// Sign produces.
package signing

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Prefix starts every secret in its text form.
const Prefix = "whsec_"

// generatedSecretBytes is the key length GenerateSecret uses; the spec
// recommends 24 to 64 bytes.
const generatedSecretBytes = 32

// Errors returned by Verify, for errors.Is.
var (
	// ErrMissingHeader means the id, timestamp or signature header is empty.
	ErrMissingHeader = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	// ErrInvalidTimestamp means webhook-timestamp is not integer Unix
	// seconds in canonical decimal form (no sign, no leading zeros).
	ErrInvalidTimestamp = errors.New("invalid webhook-timestamp")
	// ErrTimestampTooOld means the message is older than the tolerance.
	ErrTimestampTooOld = errors.New("webhook-timestamp too old")
	// ErrTimestampTooNew means the message is further in the future than the tolerance.
	ErrTimestampTooNew = errors.New("webhook-timestamp too far in the future")
	// ErrNoMatchingSignature means no signature of the scheme checked (v1
	// for Verify, v1a for VerifyV1a) in the header matches.
	ErrNoMatchingSignature = errors.New("no matching signature")
)

// Secret is a decoded signing key. The zero value is not usable; get one
// from ParseSecret. A Secret is safe for concurrent use and cheap to copy.
type Secret struct {
	k *key
}

// key holds the key bytes and a pool of HMAC states keyed with them, so
// signing reuses hashes instead of allocating one per message.
type key struct {
	raw  []byte
	pool sync.Pool // of *state
}

// state is one reusable HMAC plus scratch space for the signed prefix and sum.
type state struct {
	mac    hash.Hash
	prefix []byte
	sum    []byte
}

func newKey(raw []byte) *key {
	k := &key{raw: raw}
	k.pool.New = func() any {
		return &state{
			mac:    hmac.New(sha256.New, k.raw),
			prefix: make([]byte, 0, 64),
			sum:    make([]byte, 0, sha256.Size),
		}
	}
	return k
}

// ParseSecret decodes a "whsec_" + base64 (standard encoding) secret.
func ParseSecret(s string) (Secret, error) {
	if s == "" {
		return Secret{}, errors.New("secret is empty")
	}
	b64, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return Secret{}, fmt.Errorf("secret must start with %q (Standard Webhooks format)", Prefix)
	}
	if b64 == "" {
		return Secret{}, fmt.Errorf("secret has nothing after %q", Prefix)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Secret{}, fmt.Errorf("secret after %q is not valid base64: %w", Prefix, err)
	}
	if len(raw) == 0 {
		// The decoder skips line breaks, so "whsec_\n" decodes to nothing:
		// an empty HMAC key anyone could sign with.
		return Secret{}, fmt.Errorf("secret has no key bytes after %q", Prefix)
	}
	return NewSecret(raw), nil
}

// NewSecret makes a Secret from raw key bytes. The slice is copied.
func NewSecret(raw []byte) Secret {
	return Secret{k: newKey(append([]byte(nil), raw...))}
}

// String returns the secret's "whsec_" text form.
func (s Secret) String() string {
	if s.k == nil {
		return ""
	}
	return Prefix + base64.StdEncoding.EncodeToString(s.k.raw)
}

// IsZero reports whether s holds no key.
func (s Secret) IsZero() bool { return s.k == nil }

// GenerateSecret returns a new random secret in "whsec_" form (32 random bytes).
func GenerateSecret() (string, error) {
	raw := make([]byte, generatedSecretBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generating secret: %w", err)
	}
	return Prefix + base64.StdEncoding.EncodeToString(raw), nil
}

// sigLen is the length of one "v1,<base64 of 32 bytes>" entry.
var sigLen = len("v1,") + base64.StdEncoding.EncodedLen(sha256.Size)

// Sign returns the webhook-signature header value for a message: one
// "v1,<base64>" entry per secret, space-separated (during a rotation every
// active secret signs, so receivers holding either one accept it). The
// timestamp signed is ts in Unix seconds; send the same value as
// webhook-timestamp. Zero secrets give "".
func Sign(secrets []Secret, id string, ts time.Time, body []byte) string {
	if len(secrets) == 0 {
		return ""
	}
	var b strings.Builder
	b.Grow(len(secrets)*(sigLen+1) - 1)
	unix := ts.Unix()
	var enc [44]byte // base64 of a 32-byte sum
	for i, s := range secrets {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		sum := s.sum(id, unix, body)
		base64.StdEncoding.Encode(enc[:], sum.sum)
		s.k.pool.Put(sum)
		b.Write(enc[:])
	}
	return b.String()
}

// sum computes the HMAC of "id.unix.body"; the caller reads st.sum and
// returns st to the pool.
func (s Secret) sum(id string, unix int64, body []byte) *state {
	if s.k == nil {
		panic("signing: zero Secret (use ParseSecret)")
	}
	st := s.k.pool.Get().(*state)
	st.mac.Reset()
	p := append(st.prefix[:0], id...)
	p = append(p, '.')
	p = strconv.AppendInt(p, unix, 10)
	p = append(p, '.')
	st.prefix = p
	st.mac.Write(p)
	st.mac.Write(body)
	st.sum = st.mac.Sum(st.sum[:0])
	return st
}

// Verify checks a received message the way a receiver would: the headers
// are present, the timestamp is within tolerance of now (either side), and
// at least one "v1," entry of signatureHeader is the HMAC of the message
// under secret. It returns nil or an error wrapping one of the Err* values.
func Verify(secret Secret, id, timestamp, signatureHeader string, body []byte, tolerance time.Duration, now time.Time) error {
	unix, err := checkHeaders(id, timestamp, signatureHeader, tolerance, now)
	if err != nil {
		return err
	}
	st := secret.sum(id, unix, body)
	defer secret.k.pool.Put(st)
	for _, entry := range strings.Fields(signatureHeader) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		if hmac.Equal(got, st.sum) {
			return nil
		}
	}
	return ErrNoMatchingSignature
}

// checkHeaders checks what every scheme checks before the signature: the
// three headers are present and the timestamp is canonical and within
// tolerance of now. It returns the timestamp in Unix seconds.
func checkHeaders(id, timestamp, signatureHeader string, tolerance time.Duration, now time.Time) (int64, error) {
	if id == "" || timestamp == "" || signatureHeader == "" {
		return 0, ErrMissingHeader
	}
	unix, err := strconv.ParseInt(timestamp, 10, 64)
	// The signature covers the timestamp as written; only the canonical
	// decimal form ("+17…" or "017…" are not) makes that text and the
	// parsed value one and the same.
	if err != nil || strconv.FormatInt(unix, 10) != timestamp {
		return 0, fmt.Errorf("%w: %q", ErrInvalidTimestamp, timestamp)
	}
	ts := time.Unix(unix, 0)
	if now.Sub(ts) > tolerance {
		return 0, fmt.Errorf("%w: %s, tolerance %s", ErrTimestampTooOld, ts.UTC().Format(time.RFC3339), tolerance)
	}
	if ts.Sub(now) > tolerance {
		return 0, fmt.Errorf("%w: %s, tolerance %s", ErrTimestampTooNew, ts.UTC().Format(time.RFC3339), tolerance)
	}
	return unix, nil
}
