package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Text prefixes of the Standard Webhooks asymmetric (v1a) keys: the signing
// key (base64 of the 32-byte Ed25519 seed) and its public key (base64 of
// the 32-byte Ed25519 public key).
const (
	KeyPrefix       = "whsk_"
	PublicKeyPrefix = "whpk_"
)

// SigningKey is a decoded Ed25519 signing key ("whsk_"). The zero value is
// not usable; get one from ParseSigningKey or GenerateSigningKey. It is
// safe for concurrent use and cheap to copy.
type SigningKey struct {
	priv ed25519.PrivateKey
}

// PublicKey is a decoded Ed25519 public key ("whpk_"), what a receiver
// holds to check v1a signatures.
type PublicKey struct {
	pub ed25519.PublicKey
}

// ParseSigningKey decodes a "whsk_" key: base64 (standard encoding) of the
// 32-byte Ed25519 seed, the form the Standard Webhooks libraries read. The
// 64-byte form (seed then public key, as Go and libsodium keep a private
// key) is accepted too when its public half matches the seed.
func ParseSigningKey(s string) (SigningKey, error) {
	raw, err := decodePrefixed(s, KeyPrefix, "signing key")
	if err != nil {
		return SigningKey{}, err
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return SigningKey{priv: ed25519.NewKeyFromSeed(raw)}, nil
	case ed25519.PrivateKeySize:
		priv := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if subtle.ConstantTimeCompare(priv[ed25519.SeedSize:], raw[ed25519.SeedSize:]) != 1 {
			return SigningKey{}, errors.New("signing key: the public half of the 64-byte key does not match its seed")
		}
		return SigningKey{priv: priv}, nil
	default:
		return SigningKey{}, fmt.Errorf("signing key after %q must be base64 of a 32-byte Ed25519 seed, got %d bytes", KeyPrefix, len(raw))
	}
}

// GenerateSigningKey returns a new random Ed25519 signing key in "whsk_" form.
func GenerateSigningKey() (string, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return "", fmt.Errorf("generating signing key: %w", err)
	}
	return KeyPrefix + base64.StdEncoding.EncodeToString(seed), nil
}

// String returns the key's "whsk_" text form (base64 of the seed).
func (k SigningKey) String() string {
	if k.priv == nil {
		return ""
	}
	return KeyPrefix + base64.StdEncoding.EncodeToString(k.priv.Seed())
}

// IsZero reports whether k holds no key.
func (k SigningKey) IsZero() bool { return k.priv == nil }

// PublicKey returns the public half of k.
func (k SigningKey) PublicKey() PublicKey {
	if k.priv == nil {
		return PublicKey{}
	}
	return PublicKey{pub: k.priv.Public().(ed25519.PublicKey)}
}

// SignV1a returns the one "v1a,<base64 Ed25519 signature>" entry of k over
// "id.unix(ts).body".
func (k SigningKey) SignV1a(id string, ts time.Time, body []byte) string {
	if k.priv == nil {
		panic("signing: zero SigningKey (use ParseSigningKey)")
	}
	sig := ed25519.Sign(k.priv, signedContent(id, ts.Unix(), body))
	return "v1a," + base64.StdEncoding.EncodeToString(sig)
}

// ParsePublicKey decodes a "whpk_" key: base64 (standard encoding) of the
// 32-byte Ed25519 public key.
func ParsePublicKey(s string) (PublicKey, error) {
	raw, err := decodePrefixed(s, PublicKeyPrefix, "public key")
	if err != nil {
		return PublicKey{}, err
	}
	if len(raw) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("public key after %q must be base64 of a 32-byte Ed25519 public key, got %d bytes", PublicKeyPrefix, len(raw))
	}
	return PublicKey{pub: ed25519.PublicKey(raw)}, nil
}

// String returns the key's "whpk_" text form.
func (p PublicKey) String() string {
	if p.pub == nil {
		return ""
	}
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(p.pub)
}

// IsZero reports whether p holds no key.
func (p PublicKey) IsZero() bool { return p.pub == nil }

// ID is a short stable name of the key: "key_" and the first 16 hex
// digits of the SHA-256 of the public key bytes. Receivers can use it to
// tell the keys of a published list apart; it reveals nothing secret.
func (p PublicKey) ID() string {
	sum := sha256.Sum256(p.pub)
	return "key_" + hex.EncodeToString(sum[:8])
}

// SignAll returns the webhook-signature header value for a message signed
// by every HMAC secret ("v1,…" entries, first) and every Ed25519 key
// ("v1a,…" entries), space-separated. Nothing to sign with gives "".
func SignAll(secrets []Secret, keys []SigningKey, id string, ts time.Time, body []byte) string {
	header := Sign(secrets, id, ts, body)
	if len(keys) == 0 {
		return header
	}
	var b strings.Builder
	b.WriteString(header)
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k.SignV1a(id, ts, body))
	}
	return b.String()
}

// VerifyV1a checks a received message against a public key the way a
// receiver would: the headers are present, the timestamp is within
// tolerance of now (either side), and at least one "v1a," entry of
// signatureHeader is an Ed25519 signature of the message by pub. It
// returns nil or an error wrapping one of the Err* values.
func VerifyV1a(pub PublicKey, id, timestamp, signatureHeader string, body []byte, tolerance time.Duration, now time.Time) error {
	if pub.pub == nil {
		panic("signing: zero PublicKey (use ParsePublicKey)")
	}
	unix, err := checkHeaders(id, timestamp, signatureHeader, tolerance, now)
	if err != nil {
		return err
	}
	msg := signedContent(id, unix, body)
	for _, entry := range strings.Fields(signatureHeader) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1a" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil || len(got) != ed25519.SignatureSize {
			continue
		}
		if ed25519.Verify(pub.pub, msg, got) {
			return nil
		}
	}
	return ErrNoMatchingSignature
}

// signedContent is "id.unix.body", the bytes every scheme signs.
func signedContent(id string, unix int64, body []byte) []byte {
	b := make([]byte, 0, len(id)+len(body)+22)
	b = append(b, id...)
	b = append(b, '.')
	b = strconv.AppendInt(b, unix, 10)
	b = append(b, '.')
	return append(b, body...)
}

// decodePrefixed strips prefix from s and decodes the base64 after it;
// what names the key in errors.
func decodePrefixed(s, prefix, what string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%s is empty", what)
	}
	b64, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return nil, fmt.Errorf("%s must start with %q (Standard Webhooks format)", what, prefix)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%s after %q is not valid base64: %w", what, prefix, err)
	}
	return raw, nil
}
