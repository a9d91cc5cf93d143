package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Subscription secrets at rest. With an encryption key, each secret value
// is stored as
//
//	enc:v1:<key id>:<base64(nonce | AES-256-GCM ciphertext)>
//
// where the key id is a short hash of the key, so a store holding values
// written under several keys (during a rotation) finds the key of each.
// The subscription's id is the additional data: a value copied into
// another subscription's row does not decrypt. Without a key values are
// stored as they are (a value that itself starts with one of the prefixes
// is stored behind plainPrefix, so it is never mistaken for a ciphertext).

const (
	encPrefix   = "enc:v1:"
	plainPrefix = "plain:"
	keyIDLen    = 8 // hex characters
)

// ErrEncryptionKey is wrapped by the errors of a secret that cannot be
// decrypted: encrypted under a key the store was not given, or damaged.
var ErrEncryptionKey = errors.New("subscription secret cannot be decrypted")

// keyring holds the AES-GCM ciphers of the configured keys by key id.
type keyring struct {
	current   string // key id new values are written under; "" = clear
	ciphers   map[string]cipher.AEAD
	hasAnyKey bool
}

// newKeyring parses the base64 keys: current (may be empty) and old ones.
func newKeyring(current string, old []string) (*keyring, error) {
	k := &keyring{ciphers: map[string]cipher.AEAD{}}
	add := func(field, b64 string) (string, error) {
		key, err := decodeKey(b64)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		id := keyID(key)
		if _, dup := k.ciphers[id]; dup {
			return id, nil
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		k.ciphers[id] = gcm
		k.hasAnyKey = true
		return id, nil
	}
	if strings.TrimSpace(current) != "" {
		id, err := add("store.encryption_key", current)
		if err != nil {
			return nil, err
		}
		k.current = id
	}
	for i, o := range old {
		if strings.TrimSpace(o) == "" {
			continue
		}
		if _, err := add(fmt.Sprintf("store.old_encryption_keys[%d]", i), o); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// decodeKey decodes an encryption key: the standard base64 of exactly 32
// bytes (`openssl rand -base64 32`). Its errors never quote the key.
func decodeKey(b64 string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, errors.New("not valid base64; make a key with: openssl rand -base64 32")
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("decodes to %d bytes, want 32; make a key with: openssl rand -base64 32", len(key))
	}
	return key, nil
}

// keyID is the short public name of a key: a hash, from which nothing of
// the key can be learned.
func keyID(key []byte) string {
	h := sha256.Sum256(append([]byte("hookbus store encryption key\x00"), key...))
	return hex.EncodeToString(h[:])[:keyIDLen]
}

func secretAAD(sub string) []byte { return []byte("hookbus subscription secret\x00" + sub) }

// seal is how the secret value of subscription sub is stored.
func (k *keyring) seal(sub, value string) (string, error) {
	if k.current == "" {
		if strings.HasPrefix(value, "enc:") || strings.HasPrefix(value, plainPrefix) {
			return plainPrefix + value, nil
		}
		return value, nil
	}
	gcm := k.ciphers[k.current]
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(value)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("subscription %s: encrypt secret: %w", sub, err)
	}
	out := gcm.Seal(nonce, nonce, []byte(value), secretAAD(sub))
	return encPrefix + k.current + ":" + base64.StdEncoding.EncodeToString(out), nil
}

// open returns the clear value of a stored secret of subscription sub.
// Its errors name the subscription and the key id, never a secret.
func (k *keyring) open(sub, stored string) (string, error) {
	if v, ok := strings.CutPrefix(stored, plainPrefix); ok {
		return v, nil
	}
	rest, ok := strings.CutPrefix(stored, encPrefix)
	if !ok {
		return stored, nil
	}
	id, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return "", fmt.Errorf("%w: subscription %s: the stored secret is damaged (no key id)", ErrEncryptionKey, sub)
	}
	gcm, ok := k.ciphers[id]
	if !ok {
		if !k.hasAnyKey {
			return "", fmt.Errorf("%w: subscription %s: its secret is encrypted (key id %s) but store.encryption_key is not set", ErrEncryptionKey, sub, id)
		}
		return "", fmt.Errorf("%w: subscription %s: its secret is encrypted with key id %s, which is neither store.encryption_key nor one of store.old_encryption_keys", ErrEncryptionKey, sub, id)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < gcm.NonceSize() {
		return "", fmt.Errorf("%w: subscription %s: the stored secret is damaged", ErrEncryptionKey, sub)
	}
	clear, err := gcm.Open(nil, raw[:gcm.NonceSize()], raw[gcm.NonceSize():], secretAAD(sub))
	if err != nil {
		return "", fmt.Errorf("%w: subscription %s: the stored secret does not decrypt with key id %s (damaged, or copied from another subscription)", ErrEncryptionKey, sub, id)
	}
	return string(clear), nil
}

// current tells whether stored is written the way seal writes now: under
// the current key, or in clear when there is none.
func (k *keyring) isCurrent(stored string) bool {
	if k.current == "" {
		return !strings.HasPrefix(stored, encPrefix)
	}
	return strings.HasPrefix(stored, encPrefix+k.current+":")
}

// Reencrypt rewrites every stored subscription secret that is not written
// under the current store.encryption_key (encrypted under an old key, or
// in clear) so that it is, and returns how many subscriptions it changed.
// With no current key it decrypts every secret and stores it in clear
// (turning encryption off). What it rewrites is the same secret: no change
// is recorded in the feed and the subscriptions' Updated times stay.
//
// It may run beside instances using the store, once every instance knows
// the current key: a subscription written by one of them meanwhile is left
// as that write made it. It stops at the first secret it cannot decrypt,
// with an error naming that subscription; what it rewrote before stays.
func (s *Store) Reencrypt(ctx context.Context) (int, error) {
	n, after := 0, ""
	for {
		type row struct{ id, secrets string }
		rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, secrets FROM hookbus_subscriptions WHERE id > ? ORDER BY id LIMIT 200`), after)
		if err != nil {
			return n, fmt.Errorf("store: reencrypt: %w", err)
		}
		var page []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.secrets); err != nil {
				rows.Close()
				return n, fmt.Errorf("store: reencrypt: %w", err)
			}
			page = append(page, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return n, fmt.Errorf("store: reencrypt: %w", err)
		}
		if len(page) == 0 {
			return n, nil
		}
		for _, r := range page {
			after = r.id
			var secs []storedSecret
			if err := json.Unmarshal([]byte(r.secrets), &secs); err != nil {
				return n, fmt.Errorf("store: reencrypt: subscription %s: secrets: %w", r.id, err)
			}
			changed := false
			for i := range secs {
				if s.keys.isCurrent(secs[i].Value) {
					continue
				}
				clear, err := s.keys.open(r.id, secs[i].Value)
				if err != nil {
					return n, fmt.Errorf("store: reencrypt: %w", err)
				}
				if secs[i].Value, err = s.keys.seal(r.id, clear); err != nil {
					return n, fmt.Errorf("store: reencrypt: %w", err)
				}
				changed = true
			}
			if !changed {
				continue
			}
			b, err := json.Marshal(secs)
			if err != nil {
				return n, fmt.Errorf("store: reencrypt: subscription %s: %w", r.id, err)
			}
			// Only if the row still holds what was read: a write since
			// then stored the secrets under the current key already.
			res, err := s.db.ExecContext(ctx, s.q(`UPDATE hookbus_subscriptions SET secrets = ? WHERE id = ? AND secrets = ?`), string(b), r.id, r.secrets)
			if err != nil {
				return n, fmt.Errorf("store: reencrypt: subscription %s: %w", r.id, err)
			}
			if k, _ := res.RowsAffected(); k == 1 {
				n++
			}
		}
	}
}
