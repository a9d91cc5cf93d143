package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/internal/testenv"
)

const pgTestURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var pgSchemaSeq atomic.Int64

// storeBlock returns the store block of a configuration: SQLite under
// data_dir, or a fresh schema of the machine's PostgreSQL dropped at the
// end (skipped, or failed in CI, when it does not run).
func storeBlock(t *testing.T, driver string) string {
	t.Helper()
	if driver == "sqlite" {
		return "store: {driver: sqlite}\n"
	}
	testenv.NeedService(t, "127.0.0.1:5432")
	schema := fmt.Sprintf("hbapp_%d_%d", time.Now().UnixNano(), pgSchemaSeq.Add(1))
	admin, err := sql.Open("pgx", pgTestURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	return `store: {driver: postgres, dsn: "` + pgTestURL + `&search_path=` + schema + `"}` + "\n"
}

// attemptsOf waits until the delivery log has n attempts of event id (to
// subscription sub, when not "") and returns them, newest first.
func attemptsOf(t *testing.T, as attempt.Store, id, sub string, n int) []attempt.Attempt {
	t.Helper()
	var got []attempt.Attempt
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d attempts of %s on record", n, id), func() bool {
		var err error
		got, _, err = as.ListAttempts(context.Background(), attempt.Filter{EventID: id, Subscription: sub, Limit: 100})
		return err == nil && len(got) >= n
	})
	return got
}

// The same as TestResendAndRecover, from the delivery log the engine
// records into the real store (SQLite and PostgreSQL): events that failed
// are resent and recovered as new deliveries with attempt 1 and the same
// webhook-id; a recover of an application's failed deliveries in a time
// range sends exactly those, and run twice queues them once.
func TestResendAndRecoverFromTheDeliveryLog(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			testResendFromLog(t, driver)
		})
	}
}

func testResendFromLog(t *testing.T, driver string) {
	f := &resendFixture{partner: newReceiver(t), rA: newReceiver(t), rG: newReceiver(t)}
	y := strings.Replace(strings.ReplaceAll(resendConfig, "PARTNER", f.partner.srv.URL), "reload: {watch: false}\n", "reload: {watch: false}\n"+storeBlock(t, driver), 1)
	f.a = startApp(t, loadConfig(t, y))
	as := f.a.Attempts
	f.subscribe(t)
	rs := f.a.resender()
	ctx := context.Background()
	ingest := func(source, body string) {
		t.Helper()
		if status, b := post(t, f.a, source, "application/json", body); status != http.StatusAccepted {
			t.Fatalf("ingest %s: %d %v", body, status, b)
		}
	}
	ev := func(id, app string) string {
		return fmt.Sprintf(`{"id":%q,"type":"order.paid","application":%q,"data":{"order":%q}}`, id, app, id)
	}
	for _, id := range []string{"e0", "e1", "e2", "e4"} {
		f.rA.answer(id, response{status: 400})
	}
	f.rG.answer("g1", response{status: 400})
	f.partner.answer("p1", response{status: 400})

	ingest("apps", ev("e0", "acme"))
	attemptsOf(t, as, "e0", "", 1)
	since := time.Now()
	ingest("apps", "["+ev("e1", "acme")+","+ev("e2", "acme")+","+ev("e3", "acme")+","+ev("g1", "globex")+"]")
	ingest("shop", `{"id":"p1","type":"order.paid"}`)
	for _, id := range []string{"e1", "e2", "e3", "g1", "p1"} {
		attemptsOf(t, as, id, "", 1)
	}
	until := time.Now()
	ingest("apps", ev("e4", "acme"))
	attemptsOf(t, as, "e4", "", 1)

	// Scoped to an application: another application's subscription or
	// event is not found.
	for _, req := range []attempt.ResendRequest{
		{EventIDs: []string{"e1"}, Subscription: f.subG.ID, Application: "acme"},
		{EventIDs: []string{"g1"}, Subscription: f.subA.ID, Application: "acme"},
	} {
		if n, err := rs.Resend(ctx, req); !errors.Is(err, attempt.ErrNotFound) {
			t.Errorf("resend %+v = %d, %v; want ErrNotFound", req, n, err)
		}
	}

	// Resend: a new delivery, attempt 1, the same webhook-id.
	if n, err := rs.Resend(ctx, attempt.ResendRequest{EventIDs: []string{"e1"}, Subscription: f.subA.ID, Application: "acme"}); err != nil || n != 1 {
		t.Fatalf("resend e1 to its subscription: %d, %v", n, err)
	}
	if n, err := rs.Resend(ctx, attempt.ResendRequest{EventIDs: []string{"p1"}, Sink: "partner"}); err != nil || n != 1 {
		t.Fatalf("resend p1 to its sink: %d, %v", n, err)
	}
	for _, c := range []struct {
		id, sub string
		r       *receiver
	}{{"e1", f.subA.ID, f.rA}, {"p1", "", f.partner}} {
		got := attemptsOf(t, as, c.id, c.sub, 2)
		if a := got[0]; a.Number != 1 || a.Outcome != attempt.Delivered || a.WebhookID != c.id {
			t.Errorf("%s resent: newest attempt %d %s webhook-id %q, want 1 delivered %s", c.id, a.Number, a.Outcome, a.WebhookID, c.id)
		}
		testenv.Eventually(t, 30*time.Second, c.id+" received again", func() bool { return len(c.r.attempts(c.id)) == 2 })
	}

	// Recover acme's failed deliveries of the range: e2 (e1 was delivered
	// by its resend, e3 the first time, e0 and e4 are out of range, g1 is
	// globex's), once however often it runs.
	q := attempt.RecoverQuery{Application: "acme", Since: since, Until: until, Limit: 100}
	res, err := rs.Recover(ctx, q)
	if err != nil || res.Queued != 1 {
		t.Fatalf("recover = %+v, %v; want 1 queued", res, err)
	}
	if res, err := rs.Recover(ctx, q); err != nil || res.Queued != 0 {
		t.Fatalf("recover run again = %+v, %v; want nothing queued", res, err)
	}
	if got := attemptsOf(t, as, "e2", f.subA.ID, 2); got[0].Number != 1 || got[0].Outcome != attempt.Delivered {
		t.Errorf("e2 recovered: newest attempt %+v, want attempt 1 delivered", got[0])
	}
	// A marker behind everything: once it arrives, nothing else is coming.
	if n, err := rs.Resend(ctx, attempt.ResendRequest{EventIDs: []string{"e3"}, Subscription: f.subA.ID}); err != nil || n != 1 {
		t.Fatalf("marker resend: %d, %v", n, err)
	}
	testenv.Eventually(t, 30*time.Second, "the marker received", func() bool { return len(f.rA.attempts("e3")) == 2 })
	if got, want := receivedIDs(t, f.rA), []string{"e0", "e1", "e1", "e2", "e2", "e3", "e3", "e4"}; !slices.Equal(got, want) {
		t.Errorf("acme's subscription received %v, want %v", got, want)
	}
	if got := receivedIDs(t, f.rG); !slices.Equal(got, []string{"g1"}) {
		t.Errorf("globex's subscription received %v, want [g1]", got)
	}
	if got := receivedIDs(t, f.partner); !slices.Equal(got, []string{"p1", "p1"}) {
		t.Errorf("the webhook sink received %v, want p1 twice", got)
	}
}
