package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/statuspolicy"
	"github.com/hookbus/hookbus/core/subscription"
)

// Limits of the lists.
const (
	// DefaultPageLimit is the page size of a Page without Limit.
	DefaultPageLimit = 100
	// MaxPageLimit is the largest page a list returns, whatever Limit asks.
	MaxPageLimit = 1000
	// DefaultChangesLimit is how many changes Changes returns when asked for 0.
	DefaultChangesLimit = 1000
	// ChangeRetention is how long the change feed keeps a change at least:
	// PruneChanges never removes younger ones, so an instance that lags
	// by less catches up from the feed instead of loading a snapshot.
	ChangeRetention = time.Hour
)

// nanos is how a time is stored: unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos reads a stored time back, in UTC.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// asStored is t as it reads back from the store.
func asStored(t time.Time) time.Time { return fromNanos(nanos(t)) }

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func pageLimit(l int) int {
	switch {
	case l <= 0:
		return DefaultPageLimit
	case l > MaxPageLimit:
		return MaxPageLimit
	}
	return l
}

// A cursor is the last id of a page, base64url: opaque to clients, and
// the next page is the ids after it.
func encodeCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	// A cursor is an id; anything else was not made by this store (and
	// invalid UTF-8 would be refused by PostgreSQL as a parameter).
	if err != nil || !subscription.CouldBeID(string(b)) {
		return "", fmt.Errorf("store: %w", subscription.ErrBadCursor)
	}
	return string(b), nil
}

func toJSON(what string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("store: %s: %w", what, err)
	}
	return string(b), nil
}

// changeLockKey is the PostgreSQL advisory lock key of the change feed of
// the store in schema. Every transaction that records a change holds it
// from before its sequence number is drawn until it commits, so the
// numbers become visible in order: a reader that saw change n never sees
// a change numbered below n appear later. (Without it two transactions
// may commit their numbers in the other order, and a reader polling
// between the two commits would skip the lower one.) Subscriptions change
// rarely next to deliveries, so this serialisation costs nothing that
// matters.
func changeLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("hookbus subscription changes\x00" + schema))
	return int64(h.Sum64())
}

// changeTx runs fn in a transaction that holds the change-feed lock
// (PostgreSQL; SQLite transactions take the database's one write lock when
// they begin). Writes that must not interleave with an application's
// deletion (a subscription or token created for it) run in one too.
func (s *Store) changeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if s.postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, s.changeLock); err != nil {
			return fmt.Errorf("store: lock the change feed: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func (s *Store) recordChange(ctx context.Context, tx *sql.Tx, kind subscription.ChangeKind, app, sub string) error {
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO hookbus_subscription_changes (kind, app, subscription, at) VALUES (?, ?, ?, ?)`),
		string(kind), app, sub, s.now().UnixNano()); err != nil {
		return fmt.Errorf("store: record the change of subscription %s: %w", sub, err)
	}
	return nil
}

// queryer is a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// appExists fails with ErrNotFound unless application id exists.
func (s *Store) appExists(ctx context.Context, q queryer, id string) error {
	var one int
	err := q.QueryRowContext(ctx, s.q(`SELECT 1 FROM hookbus_applications WHERE id = ?`), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: application %q: %w", id, subscription.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: application %q: %w", id, err)
	}
	return nil
}

// Applications.

const appColumns = `id, name, metadata, created_at, updated_at`

func scanApplication(r scanner) (subscription.Application, error) {
	var a subscription.Application
	var meta string
	var created, updated int64
	if err := r.Scan(&a.ID, &a.Name, &meta, &created, &updated); err != nil {
		return a, err
	}
	if err := json.Unmarshal([]byte(meta), &a.Metadata); err != nil {
		return a, fmt.Errorf("store: application %q: metadata: %w", a.ID, err)
	}
	a.Created, a.Updated = fromNanos(created), fromNanos(updated)
	return a, nil
}

// CreateApplication stores a new application; an empty ID is generated
// ("app_" + a ULID). ErrConflict when the ID is taken.
func (s *Store) CreateApplication(ctx context.Context, a subscription.Application) (subscription.Application, error) {
	if a.ID == "" {
		a.ID = "app_" + ulid.Make().String()
	}
	meta, err := toJSON("application metadata", a.Metadata)
	if err != nil {
		return a, err
	}
	now := s.now().UnixNano()
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO hookbus_applications (`+appColumns+`) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
		a.ID, a.Name, meta, now, now)
	if err != nil {
		return a, fmt.Errorf("store: create application %q: %w", a.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return a, fmt.Errorf("store: create application %q: %w", a.ID, err)
	} else if n == 0 {
		return a, fmt.Errorf("store: application %q: %w", a.ID, subscription.ErrConflict)
	}
	a.Created, a.Updated = fromNanos(now), fromNanos(now)
	return a, nil
}

// GetApplication returns one application (ErrNotFound).
func (s *Store) GetApplication(ctx context.Context, id string) (subscription.Application, error) {
	a, err := scanApplication(s.db.QueryRowContext(ctx, s.q(`SELECT `+appColumns+` FROM hookbus_applications WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("store: application %q: %w", id, subscription.ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("store: application %q: %w", id, err)
	}
	return a, nil
}

// ListApplications returns a page of applications ordered by ID and the
// cursor of the next page ("" after the last). A page holds at most
// p.Limit (DefaultPageLimit when 0, never more than MaxPageLimit); a
// cursor this store did not make is ErrBadCursor.
func (s *Store) ListApplications(ctx context.Context, p subscription.Page) ([]subscription.Application, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := pageLimit(p.Limit)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+appColumns+` FROM hookbus_applications WHERE id > ? ORDER BY id LIMIT ?`), after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("store: list applications: %w", err)
	}
	out, next, err := scanPage(rows, limit, scanApplication, func(a subscription.Application) string { return a.ID })
	if err != nil {
		return nil, "", fmt.Errorf("store: list applications: %w", err)
	}
	return out, next, nil
}

// scanPage reads the rows of a list query asked for limit+1 rows in id
// order: the page (never nil) and the cursor of the next ("" after the
// last). It closes rows.
func scanPage[T any](rows *sql.Rows, limit int, scan func(scanner) (T, error), id func(T) string) ([]T, string, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(out) > limit {
		out = out[:limit]
		return out, encodeCursor(id(out[limit-1])), nil
	}
	return out, "", nil
}

// UpdateApplication replaces the name and metadata of application a.ID
// (ErrNotFound) and returns it as stored.
func (s *Store) UpdateApplication(ctx context.Context, a subscription.Application) (subscription.Application, error) {
	meta, err := toJSON("application metadata", a.Metadata)
	if err != nil {
		return a, err
	}
	now := s.now().UnixNano()
	var created int64
	err = s.db.QueryRowContext(ctx, s.q(`UPDATE hookbus_applications SET name = ?, metadata = ?, updated_at = ? WHERE id = ? RETURNING created_at`),
		a.Name, meta, now, a.ID).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("store: application %q: %w", a.ID, subscription.ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("store: update application %q: %w", a.ID, err)
	}
	a.Created, a.Updated = fromNanos(created), fromNanos(now)
	return a, nil
}

// DeleteApplication deletes application id (ErrNotFound) with its
// subscriptions and tokens, recording a ChangeDeleted for each
// subscription, in one transaction.
func (s *Store) DeleteApplication(ctx context.Context, id string) error {
	return s.changeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM hookbus_applications WHERE id = ?`), id)
		if err != nil {
			return fmt.Errorf("store: delete application %q: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: delete application %q: %w", id, err)
		} else if n == 0 {
			return fmt.Errorf("store: application %q: %w", id, subscription.ErrNotFound)
		}
		subs, err := s.column(ctx, tx, `SELECT id FROM hookbus_subscriptions WHERE app = ? ORDER BY id`, id)
		if err != nil {
			return fmt.Errorf("store: delete application %q: %w", id, err)
		}
		for _, st := range []string{
			`DELETE FROM hookbus_subscription_event_types WHERE app = ?`,
			`DELETE FROM hookbus_subscriptions WHERE app = ?`,
			`DELETE FROM hookbus_app_tokens WHERE app = ?`,
		} {
			if _, err := tx.ExecContext(ctx, s.q(st), id); err != nil {
				return fmt.Errorf("store: delete application %q: %w", id, err)
			}
		}
		for _, sub := range subs {
			if err := s.recordChange(ctx, tx, subscription.ChangeDeleted, id, sub); err != nil {
				return err
			}
		}
		return nil
	})
}

// column runs a query of one text column and returns its values (read
// whole, before anything else runs on the transaction).
func (s *Store) column(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Subscriptions.

const subColumns = `id, app, url, event_types, description, secrets, headers, rate_limit, max_in_flight, filter_script,
	disabled, disabled_reason, metadata, failing_since, delivery_options, format, created_at, updated_at`

// storedDelivery is a subscription's delivery options as stored (the
// delivery_options column, JSON): a member left out is the sink's, and
// an empty retry_schedule (a single attempt) is kept apart from none.
type storedDelivery struct {
	Timeout       int64              `json:"timeout,omitempty"` // nanoseconds
	RetrySchedule *[]int64           `json:"retry_schedule,omitempty"`
	RetryOn       *statuspolicy.List `json:"retry_on,omitempty"`
	PermanentOn   *statuspolicy.List `json:"permanent_on,omitempty"`
	Compression   string             `json:"compression,omitempty"`
	Batch         *batching.Policy   `json:"batch,omitempty"`
}

// deliveryJSON is the delivery_options value of d.
func deliveryJSON(d subscription.DeliveryOptions) (string, error) {
	sd := storedDelivery{Timeout: int64(d.Timeout), Compression: d.Compression}
	if d.RetrySchedule != nil {
		ns := make([]int64, len(d.RetrySchedule))
		for i, w := range d.RetrySchedule {
			ns[i] = int64(w)
		}
		sd.RetrySchedule = &ns
	}
	if d.RetryOn != nil {
		sd.RetryOn = &d.RetryOn
	}
	if d.PermanentOn != nil {
		sd.PermanentOn = &d.PermanentOn
	}
	if d.Batch.On() {
		sd.Batch = &d.Batch
	}
	return toJSON("subscription delivery options", sd)
}

// parseDelivery reads a delivery_options value.
func parseDelivery(s string) (subscription.DeliveryOptions, error) {
	var sd storedDelivery
	if err := json.Unmarshal([]byte(s), &sd); err != nil {
		return subscription.DeliveryOptions{}, err
	}
	d := subscription.DeliveryOptions{Timeout: time.Duration(sd.Timeout), Compression: sd.Compression}
	if sd.RetrySchedule != nil {
		d.RetrySchedule = make([]time.Duration, len(*sd.RetrySchedule))
		for i, ns := range *sd.RetrySchedule {
			d.RetrySchedule[i] = time.Duration(ns)
		}
	}
	if sd.RetryOn != nil {
		d.RetryOn = *sd.RetryOn
	}
	if sd.PermanentOn != nil {
		d.PermanentOn = *sd.PermanentOn
	}
	if sd.Batch != nil {
		d.Batch = *sd.Batch
	}
	return d, nil
}

// storedSecret is a subscription secret or signing key as stored: its
// value sealed (crypt.go), its times in unix nanoseconds. Signing keys
// share the secrets column (so they are sealed, re-encrypted and replaced
// with the secrets, no migration needed) and are told apart by Kind.
type storedSecret struct {
	Value   string `json:"value"`
	Created int64  `json:"created,omitempty"`
	Expires int64  `json:"expires,omitempty"`
	// Kind is "" for an HMAC secret and kindEd25519 for a signing key.
	Kind string `json:"kind,omitempty"`
}

// kindEd25519 marks a stored Ed25519 signing key (Subscription.SigningKeys).
const kindEd25519 = "ed25519"

// subValues are the values of subColumns for sub, its secrets sealed.
func (s *Store) subValues(sub subscription.Subscription) ([]any, error) {
	types, err := toJSON("subscription event types", sub.EventTypes)
	if err != nil {
		return nil, err
	}
	secs := make([]storedSecret, 0, len(sub.Secrets)+len(sub.SigningKeys))
	for _, list := range []struct {
		kind string
		secs []subscription.Secret
	}{{"", sub.Secrets}, {kindEd25519, sub.SigningKeys}} {
		for _, sec := range list.secs {
			v, err := s.keys.seal(sub.ID, sec.Value)
			if err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			secs = append(secs, storedSecret{Value: v, Created: nanos(sec.Created), Expires: nanos(sec.Expires), Kind: list.kind})
		}
	}
	secrets, err := toJSON("subscription secrets", secs)
	if err != nil {
		return nil, err
	}
	headers, err := toJSON("subscription headers", sub.Headers)
	if err != nil {
		return nil, err
	}
	meta, err := toJSON("subscription metadata", sub.Metadata)
	if err != nil {
		return nil, err
	}
	delivery, err := deliveryJSON(sub.Delivery)
	if err != nil {
		return nil, err
	}
	return []any{sub.ID, sub.App, sub.URL, types, sub.Description, secrets, headers, sub.RateLimit, sub.MaxInFlight, sub.Filter,
		b2i(sub.Disabled), sub.DisabledReason, meta, nanos(sub.FailingSince), delivery, sub.Format, nanos(sub.Created), nanos(sub.Updated)}, nil
}

// scanSubscription reads a row of subColumns, decrypting its secrets. Its
// errors other than the row's Scan name the subscription.
func (s *Store) scanSubscription(r scanner) (subscription.Subscription, error) {
	var sub subscription.Subscription
	var types, secrets, headers, meta, delivery string
	var disabled, failing, created, updated int64
	if err := r.Scan(&sub.ID, &sub.App, &sub.URL, &types, &sub.Description, &secrets, &headers, &sub.RateLimit, &sub.MaxInFlight, &sub.Filter,
		&disabled, &sub.DisabledReason, &meta, &failing, &delivery, &sub.Format, &created, &updated); err != nil {
		return sub, err
	}
	d, err := parseDelivery(delivery)
	if err != nil {
		return sub, fmt.Errorf("subscription %s: delivery options: %w", sub.ID, err)
	}
	sub.Delivery = d
	var secs []storedSecret
	for _, f := range []struct {
		name, json string
		into       any
	}{{"event types", types, &sub.EventTypes}, {"secrets", secrets, &secs}, {"headers", headers, &sub.Headers}, {"metadata", meta, &sub.Metadata}} {
		if err := json.Unmarshal([]byte(f.json), f.into); err != nil {
			return sub, fmt.Errorf("subscription %s: %s: %w", sub.ID, f.name, err)
		}
	}
	if secs != nil {
		sub.Secrets = make([]subscription.Secret, 0, len(secs))
	}
	for _, sec := range secs {
		v, err := s.keys.open(sub.ID, sec.Value)
		if err != nil {
			return sub, err // names the subscription
		}
		clear := subscription.Secret{Value: v, Created: fromNanos(sec.Created), Expires: fromNanos(sec.Expires)}
		switch sec.Kind {
		case "":
			sub.Secrets = append(sub.Secrets, clear)
		case kindEd25519:
			sub.SigningKeys = append(sub.SigningKeys, clear)
		default:
			return sub, fmt.Errorf("subscription %s: secrets: unknown kind %q", sub.ID, sec.Kind)
		}
	}
	sub.Disabled = disabled != 0
	sub.FailingSince, sub.Created, sub.Updated = fromNanos(failing), fromNanos(created), fromNanos(updated)
	return sub, nil
}

// asStoredSubscription is sub with its times as they read back.
func asStoredSubscription(sub subscription.Subscription) subscription.Subscription {
	secs := make([]subscription.Secret, len(sub.Secrets))
	for i, sec := range sub.Secrets {
		secs[i] = subscription.Secret{Value: sec.Value, Created: asStored(sec.Created), Expires: asStored(sec.Expires)}
	}
	if sub.Secrets == nil {
		secs = nil
	}
	sub.Secrets = secs
	if sub.SigningKeys != nil {
		keys := make([]subscription.Secret, len(sub.SigningKeys))
		for i, k := range sub.SigningKeys {
			keys[i] = subscription.Secret{Value: k.Value, Created: asStored(k.Created), Expires: asStored(k.Expires)}
		}
		sub.SigningKeys = keys
	}
	sub.FailingSince, sub.Created, sub.Updated = asStored(sub.FailingSince), asStored(sub.Created), asStored(sub.Updated)
	return sub
}

// insertEventTypes indexes the event types of sub.
func (s *Store) insertEventTypes(ctx context.Context, tx *sql.Tx, sub subscription.Subscription) error {
	for _, p := range sub.EventTypes {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO hookbus_subscription_event_types (subscription, app, pattern) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`),
			sub.ID, sub.App, p); err != nil {
			return fmt.Errorf("store: subscription %s: event types: %w", sub.ID, err)
		}
	}
	return nil
}

// CreateSubscription stores a new subscription of application sub.App
// (ErrNotFound when there is none); an empty ID is generated ("sub_" + a
// ULID); ErrConflict when the ID is taken. Its secrets are encrypted when
// the store has an encryption key.
func (s *Store) CreateSubscription(ctx context.Context, sub subscription.Subscription) (subscription.Subscription, error) {
	if sub.ID == "" {
		sub.ID = "sub_" + ulid.Make().String()
	}
	now := fromNanos(s.now().UnixNano())
	sub.Created, sub.Updated = now, now
	vals, err := s.subValues(sub)
	if err != nil {
		return sub, err
	}
	err = s.changeTx(ctx, func(tx *sql.Tx) error {
		if err := s.appExists(ctx, tx, sub.App); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO hookbus_subscriptions (`+subColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`), vals...)
		if err != nil {
			return fmt.Errorf("store: create subscription %s: %w", sub.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: create subscription %s: %w", sub.ID, err)
		} else if n == 0 {
			return fmt.Errorf("store: subscription %s: %w", sub.ID, subscription.ErrConflict)
		}
		if err := s.insertEventTypes(ctx, tx, sub); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, subscription.ChangeUpserted, sub.App, sub.ID)
	})
	if err != nil {
		return sub, err
	}
	return asStoredSubscription(sub), nil
}

// GetSubscription returns subscription id of application app; a
// subscription of another application is ErrNotFound, as is none.
func (s *Store) GetSubscription(ctx context.Context, app, id string) (subscription.Subscription, error) {
	sub, err := s.scanSubscription(s.db.QueryRowContext(ctx, s.q(`SELECT `+subColumns+` FROM hookbus_subscriptions WHERE id = ? AND app = ?`), id, app))
	if errors.Is(err, sql.ErrNoRows) {
		return sub, fmt.Errorf("store: subscription %s of application %q: %w", id, app, subscription.ErrNotFound)
	}
	if err != nil {
		return sub, fmt.Errorf("store: get subscription: %w", err)
	}
	return sub, nil
}

// maxEnumeratedPatterns bounds the patterns matchingPatterns lists; an
// event type with more dots is matched by comparing prefixes in SQL.
const maxEnumeratedPatterns = 64

// matchingPatterns lists every event-type pattern an event of type t
// matches: t itself, "*", and "p.*" for every prefix "p." of t.
func matchingPatterns(t string) []string {
	pats := []string{t, "*"}
	for i := 0; i < len(t); i++ {
		if t[i] == '.' {
			pats = append(pats, t[:i+1]+"*")
		}
	}
	return pats
}

// ListSubscriptions returns a page of the subscriptions of application
// app (ErrNotFound when there is none) that q selects, ordered by ID, and
// the cursor of the next page ("" after the last). Pages are as in
// ListApplications.
func (s *Store) ListSubscriptions(ctx context.Context, app string, q subscription.SubscriptionQuery, p subscription.Page) ([]subscription.Subscription, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	if err := s.appExists(ctx, s.db, app); err != nil {
		return nil, "", err
	}
	limit := pageLimit(p.Limit)
	where := []string{`app = ?`}
	args := []any{app}
	if q.Disabled != nil {
		where = append(where, `disabled = ?`)
		args = append(args, b2i(*q.Disabled))
	}
	if q.EventType != "" {
		if pats := matchingPatterns(q.EventType); len(pats) <= maxEnumeratedPatterns {
			where = append(where, `id IN (SELECT subscription FROM hookbus_subscription_event_types WHERE app = ? AND pattern IN (?`+strings.Repeat(`, ?`, len(pats)-1)+`))`)
			args = append(args, app)
			for _, pat := range pats {
				args = append(args, pat)
			}
		} else {
			where = append(where, `id IN (SELECT subscription FROM hookbus_subscription_event_types WHERE app = ? AND (pattern = ? OR pattern = '*'
				OR (pattern LIKE '%.*' AND substr(CAST(? AS TEXT), 1, length(pattern) - 1) = substr(pattern, 1, length(pattern) - 1))))`)
			args = append(args, app, q.EventType, q.EventType)
		}
	}
	where = append(where, `id > ?`)
	args = append(args, after, limit+1)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+subColumns+` FROM hookbus_subscriptions WHERE `+strings.Join(where, ` AND `)+` ORDER BY id LIMIT ?`), args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list subscriptions: %w", err)
	}
	out, next, err := scanPage(rows, limit, s.scanSubscription, func(sub subscription.Subscription) string { return sub.ID })
	if err != nil {
		return nil, "", fmt.Errorf("store: list subscriptions: %w", err)
	}
	return out, next, nil
}

// UpdateSubscription replaces every field of subscription sub.ID of
// application sub.App but Created (ErrNotFound when that application has
// no such subscription), its secrets included, records the change and
// returns it as stored. When sub.Updated is set, it applies only while
// the stored updated_at is that (ErrChanged otherwise): a read-modify-write
// never overwrites a write made since its read. The new updated_at is
// always later than sub.Updated, so the version moves on even when the
// clock does not.
func (s *Store) UpdateSubscription(ctx context.Context, sub subscription.Subscription) (subscription.Subscription, error) {
	read := sub.Updated
	now := s.now().UnixNano()
	if !read.IsZero() && now <= nanos(read) {
		now = nanos(read) + 1
	}
	sub.Updated = fromNanos(now)
	vals, err := s.subValues(sub)
	if err != nil {
		return sub, err
	}
	// vals are id, app, the columns set here, created_at, updated_at.
	args := append(slices.Clone(vals[2:len(vals)-2]), nanos(sub.Updated), sub.ID, sub.App)
	where := `id = ? AND app = ?`
	if !read.IsZero() {
		where += ` AND updated_at = ?`
		args = append(args, nanos(read))
	}
	err = s.changeTx(ctx, func(tx *sql.Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, s.q(`UPDATE hookbus_subscriptions SET url = ?, event_types = ?, description = ?, secrets = ?, headers = ?,
			rate_limit = ?, max_in_flight = ?, filter_script = ?, disabled = ?, disabled_reason = ?, metadata = ?, failing_since = ?, delivery_options = ?, format = ?, updated_at = ?
			WHERE `+where+` RETURNING created_at`), args...).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			var one int
			switch err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM hookbus_subscriptions WHERE id = ? AND app = ?`), sub.ID, sub.App).Scan(&one); {
			case err == nil:
				return fmt.Errorf("store: subscription %s of application %q: %w", sub.ID, sub.App, subscription.ErrChanged)
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("store: update subscription %s: %w", sub.ID, err)
			}
			return fmt.Errorf("store: subscription %s of application %q: %w", sub.ID, sub.App, subscription.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: update subscription %s: %w", sub.ID, err)
		}
		sub.Created = fromNanos(created)
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM hookbus_subscription_event_types WHERE subscription = ?`), sub.ID); err != nil {
			return fmt.Errorf("store: subscription %s: event types: %w", sub.ID, err)
		}
		if err := s.insertEventTypes(ctx, tx, sub); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, subscription.ChangeUpserted, sub.App, sub.ID)
	})
	if err != nil {
		return sub, err
	}
	return asStoredSubscription(sub), nil
}

// DeleteSubscription deletes subscription id of application app
// (ErrNotFound when that application has no such subscription) and
// records the change.
func (s *Store) DeleteSubscription(ctx context.Context, app, id string) error {
	return s.changeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM hookbus_subscriptions WHERE id = ? AND app = ?`), id, app)
		if err != nil {
			return fmt.Errorf("store: delete subscription %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: delete subscription %s: %w", id, err)
		} else if n == 0 {
			return fmt.Errorf("store: subscription %s of application %q: %w", id, app, subscription.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM hookbus_subscription_event_types WHERE subscription = ?`), id); err != nil {
			return fmt.Errorf("store: delete subscription %s: %w", id, err)
		}
		return s.recordChange(ctx, tx, subscription.ChangeDeleted, app, id)
	})
}

// Tokens.

const tokenColumns = `id, app, hash, name, created_at, last_used, kind, expires_at`

func scanToken(r scanner) (subscription.Token, error) {
	var t subscription.Token
	var hash string
	var created, used int64
	var expires sql.NullInt64
	if err := r.Scan(&t.ID, &t.App, &hash, &t.Name, &created, &used, &t.Kind, &expires); err != nil {
		return t, err
	}
	h, err := hex.DecodeString(hash)
	if err != nil {
		return t, fmt.Errorf("store: token %s: hash: %w", t.ID, err)
	}
	t.Hash, t.Created, t.LastUsed = h, fromNanos(created), fromNanos(used)
	if expires.Valid {
		t.ExpiresAt = fromNanos(expires.Int64)
	}
	return t, nil
}

// tokenExpiry is how a token's ExpiresAt is stored: NULL for never.
func tokenExpiry(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: nanos(t), Valid: true}
}

// CreateToken stores a token of application t.App (ErrNotFound when there
// is none): its SHA-256 Hash, never the token, with its Kind and
// ExpiresAt. An empty ID is generated ("tok_" + a ULID); an ID or hash
// already stored is ErrConflict. Expired tokens stay stored until
// deleted: whoever checks a token checks its ExpiresAt.
func (s *Store) CreateToken(ctx context.Context, t subscription.Token) (subscription.Token, error) {
	if len(t.Hash) != sha256.Size {
		return t, fmt.Errorf("store: token hash must be a SHA-256 (%d bytes), got %d bytes", sha256.Size, len(t.Hash))
	}
	if t.ID == "" {
		t.ID = "tok_" + ulid.Make().String()
	}
	now := s.now().UnixNano()
	t.Created, t.LastUsed = fromNanos(now), time.Time{}
	t.ExpiresAt = asStored(t.ExpiresAt)
	// In a change transaction: an application deleted meanwhile would
	// leave a token that reaches an application created again later under
	// the same ID.
	err := s.changeTx(ctx, func(tx *sql.Tx) error {
		if err := s.appExists(ctx, tx, t.App); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO hookbus_app_tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT DO NOTHING`),
			t.ID, t.App, hex.EncodeToString(t.Hash), t.Name, now, t.Kind, tokenExpiry(t.ExpiresAt))
		if err != nil {
			return fmt.Errorf("store: create token %s: %w", t.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: create token %s: %w", t.ID, err)
		} else if n == 0 {
			return fmt.Errorf("store: token %s (or its hash): %w", t.ID, subscription.ErrConflict)
		}
		return nil
	})
	return t, err
}

// ListTokens returns the tokens of application app (ErrNotFound when
// there is none), ordered by ID.
func (s *Store) ListTokens(ctx context.Context, app string) ([]subscription.Token, error) {
	if err := s.appExists(ctx, s.db, app); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+tokenColumns+` FROM hookbus_app_tokens WHERE app = ? ORDER BY id`), app)
	if err != nil {
		return nil, fmt.Errorf("store: list tokens: %w", err)
	}
	defer rows.Close()
	out := []subscription.Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list tokens: %w", err)
	}
	return out, nil
}

// DeleteToken revokes token id of application app (ErrNotFound when that
// application has no such token).
func (s *Store) DeleteToken(ctx context.Context, app, id string) error {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM hookbus_app_tokens WHERE id = ? AND app = ?`), id, app)
	if err != nil {
		return fmt.Errorf("store: delete token %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: delete token %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("store: token %s of application %q: %w", id, app, subscription.ErrNotFound)
	}
	return nil
}

// TokenByHash finds the token whose SHA-256 is hash (ErrNotFound).
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (subscription.Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, s.q(`SELECT `+tokenColumns+` FROM hookbus_app_tokens WHERE hash = ?`), hex.EncodeToString(hash)))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("store: token: %w", subscription.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("store: token: %w", err)
	}
	return t, nil
}

// The change feed.

// feedBounds returns the newest sequence number pruned and the newest
// one recorded (at least the pruned one: the feed may be empty).
func (s *Store) feedBounds(ctx context.Context, q queryer) (pruned, last int64, err error) {
	err = q.QueryRowContext(ctx, `SELECT (SELECT seq FROM hookbus_subscription_changes_pruned WHERE id = 1),
		(SELECT COALESCE(MAX(seq), 0) FROM hookbus_subscription_changes)`).Scan(&pruned, &last)
	if err != nil {
		return 0, 0, fmt.Errorf("store: change feed: %w", err)
	}
	return pruned, max(pruned, last), nil
}

// Snapshot returns every subscription of every application, ordered by
// ID, and the sequence number of the last change it includes: a reader
// then follows Changes after that number. It reads one consistent state
// (a repeatable-read transaction on PostgreSQL).
func (s *Store) Snapshot(ctx context.Context) ([]subscription.Subscription, int64, error) {
	var opts *sql.TxOptions
	if s.postgres {
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, 0, fmt.Errorf("store: snapshot: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	_, seq, err := s.feedBounds(ctx, tx)
	if err != nil {
		return nil, 0, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+subColumns+` FROM hookbus_subscriptions ORDER BY id`)
	if err != nil {
		return nil, 0, fmt.Errorf("store: snapshot: %w", err)
	}
	defer rows.Close()
	out := []subscription.Subscription{}
	for rows.Next() {
		sub, err := s.scanSubscription(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("store: snapshot: %w", err)
		}
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: snapshot: %w", err)
	}
	return out, seq, nil
}

// Changes returns the changes after sequence number after, oldest first,
// at most limit (DefaultChangesLimit when 0). It answers ErrFeedGap when
// changes after it were pruned, or when after is beyond the newest change
// (a number from another store, or from before a restore): the reader
// loads a Snapshot again.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]subscription.Change, error) {
	if limit <= 0 {
		limit = DefaultChangesLimit
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT seq, kind, app, subscription FROM hookbus_subscription_changes WHERE seq > ? ORDER BY seq LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	defer rows.Close()
	out := []subscription.Change{}
	for rows.Next() {
		var c subscription.Change
		var kind string
		if err := rows.Scan(&c.Seq, &kind, &c.App, &c.Sub); err != nil {
			return nil, fmt.Errorf("store: changes: %w", err)
		}
		c.Kind = subscription.ChangeKind(kind)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	rows.Close()
	// Read after the rows: a prune that removed some of what the rows
	// would have held has raised the pruned number by now.
	pruned, last, err := s.feedBounds(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if after < pruned || after > last {
		return nil, fmt.Errorf("store: changes after %d (the feed holds %d to %d): %w", after, pruned+1, last, subscription.ErrFeedGap)
	}
	return out, nil
}

// PruneChanges removes the changes recorded before before, but never one
// younger than ChangeRetention, and returns how many it removed. A reader
// behind what was pruned gets ErrFeedGap from Changes and loads a
// Snapshot. The host calls it now and then (hourly is plenty) with
// time.Now().Add(-ChangeRetention) or earlier.
func (s *Store) PruneChanges(ctx context.Context, before time.Time) (int64, error) {
	if limit := s.now().Add(-ChangeRetention); before.After(limit) {
		before = limit
	}
	var n int64
	err := s.changeTx(ctx, func(tx *sql.Tx) error {
		var upto sql.NullInt64
		if err := tx.QueryRowContext(ctx, s.q(`SELECT MAX(seq) FROM hookbus_subscription_changes WHERE at < ?`), before.UnixNano()).Scan(&upto); err != nil {
			return fmt.Errorf("store: prune changes: %w", err)
		}
		if !upto.Valid {
			return nil
		}
		// Everything up to the newest old change goes, so the feed stays
		// one run of numbers after the pruned one.
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM hookbus_subscription_changes WHERE seq <= ?`), upto.Int64)
		if err != nil {
			return fmt.Errorf("store: prune changes: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("store: prune changes: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE hookbus_subscription_changes_pruned SET seq = ? WHERE id = 1 AND seq < ?`), upto.Int64, upto.Int64); err != nil {
			return fmt.Errorf("store: prune changes: %w", err)
		}
		return nil
	})
	return n, err
}

var _ subscription.Store = (*Store)(nil)
