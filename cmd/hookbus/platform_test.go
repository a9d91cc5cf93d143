package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/internal/testenv"
)

const platformKey = "cli-admin-key"

// platformConfig writes a configuration with an admin key and the given
// store block.
func platformConfig(t *testing.T, addr, storeBlock string) string {
	dir := t.TempDir()
	return writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`", api_keys: ["`+platformKey+`"]}
data_dir: `+filepath.Join(dir, "data")+`
log: {level: warn}
queue: {driver: memory}
`+storeBlock+`
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config: {url: "https://partner.example/hooks", secret: `+testSecret+`}
  everyone:
    type: subscriptions
    config: {allow_private_networks: true, timeout: 5s}
pipelines:
  all: {from: [shop], to: [partner, everyone]}
`)
}

// postgresSchema makes a schema of its own in the test database, dropped
// at the end, and returns the DSN that uses it.
func postgresSchema(t *testing.T) string {
	t.Helper()
	testenv.NeedService(t, "127.0.0.1:5432")
	const base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	schema := fmt.Sprintf("hbcli_%d", time.Now().UnixNano())
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })
	return base + "&search_path=" + schema
}

// TestPlatformCLI drives applications, subscriptions and tokens of a
// running instance through the CLI, in tables and in --json, on SQLite and
// on PostgreSQL.
func TestPlatformCLI(t *testing.T) {
	for _, tt := range []struct {
		name  string
		store func(t *testing.T) string
	}{
		{"sqlite", func(*testing.T) string { return "store: {driver: sqlite}" }},
		{"postgres", func(t *testing.T) string { return `store: {driver: postgres, dsn: "` + postgresSchema(t) + `"}` }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := freeAddr(t)
			p := startHookbus(t, platformConfig(t, addr, tt.store(t)), addr)
			defer p.stop()
			platformRoundTrip(t, "http://"+addr)
		})
	}
}

func platformRoundTrip(t *testing.T, url string) {
	env := append(os.Environ(), "HOOKBUS_URL="+url)
	run := func(key string, args ...string) (string, string, int) {
		t.Helper()
		cmd := append([]string{}, args...)
		cmd = append(cmd, "--api-key", key)
		return runEnv(t, env, cmd...)
	}
	ok := func(args ...string) string {
		t.Helper()
		out, stderr, code := run(platformKey, args...)
		if code != 0 {
			t.Fatalf("hookbus %v: exit %d\n%s%s", args, code, out, stderr)
		}
		return out
	}
	fails := func(key string, want string, args ...string) string {
		t.Helper()
		out, stderr, code := run(key, args...)
		if code != 1 || !strings.Contains(stderr, want) {
			t.Fatalf("hookbus %v: exit %d, want 1 with %q\n%s%s", args, code, want, out, stderr)
		}
		return stderr
	}
	contains := func(what, out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, out)
			}
		}
	}

	// Applications.
	contains("apps create", ok("apps", "create", "--id", "acme", "--name", "Acme", "--metadata", `{"plan":"gold"}`),
		"ID", "acme", "NAME", "Acme", `{"plan":"gold"}`)
	var gen struct{ ID, Name string }
	if err := json.Unmarshal([]byte(ok("apps", "create", "--name", "Generated", "--json")), &gen); err != nil || !strings.HasPrefix(gen.ID, "app_") {
		t.Fatalf("apps create --json: %+v %v", gen, err)
	}
	list := ok("apps", "list")
	contains("apps list", list, "ID", "NAME", "acme", gen.ID)
	var page struct {
		Data       []struct{ ID string }
		NextCursor *string `json:"next_cursor"`
	}
	if err := json.Unmarshal([]byte(ok("apps", "list", "--json", "--limit", "1", "--all")), &page); err != nil || len(page.Data) != 2 || page.NextCursor != nil {
		t.Fatalf("apps list --all --json: %+v %v", page, err)
	}
	contains("apps update", ok("apps", "update", "acme", "--name", "Acme Inc"), "Acme Inc", `{"plan":"gold"}`)
	contains("apps get", ok("apps", "get", "acme"), "Acme Inc")
	fails(platformKey, "HTTP 409 conflict", "apps", "create", "--id", "acme", "--name", "again")

	// Subscriptions.
	var sub struct {
		ID, Secret string
		EventTypes []string `json:"event_types"`
		Headers    map[string]string
		Format     string
	}
	created := ok("subscriptions", "create", "acme", "--endpoint", "https://acme.example/hooks", "-e", "order.paid", "-e", "user.*",
		"-H", "X-Tenant=acme", "--description", "orders", "--format", "cloudevents-binary", "--json")
	if err := json.Unmarshal([]byte(created), &sub); err != nil || sub.ID == "" || !strings.HasPrefix(sub.Secret, "whsec_") ||
		len(sub.EventTypes) != 2 || sub.Headers["X-Tenant"] != "acme" || sub.Format != "cloudevents-binary" {
		t.Fatalf("subscriptions create --json: %+v %v\n%s", sub, err, created)
	}
	table := ok("subs", "create", "acme", "--endpoint", "https://acme.example/other", "-e", "invoice.sent,invoice.paid")
	contains("subscriptions create", table, "SECRET", "whsec_", "invoice.sent, invoice.paid")
	contains("subscriptions list", ok("subscriptions", "list", "acme"), "ID", "URL", "EVENT TYPES", sub.ID, "order.paid,user.*", "https://acme.example/other")
	var matched struct{ Data []struct{ ID string } }
	if err := json.Unmarshal([]byte(ok("subscriptions", "list", "acme", "-e", "user.created", "--json")), &matched); err != nil ||
		len(matched.Data) != 1 || matched.Data[0].ID != sub.ID {
		t.Fatalf("list -e user.created: %+v %v", matched, err)
	}
	got := ok("subscriptions", "get", "acme", sub.ID)
	contains("subscriptions get", got, "https://acme.example/hooks", "orders", "X-Tenant", "cloudevents-binary")
	if strings.Contains(got, "whsec_") {
		t.Errorf("subscriptions get shows the secret:\n%s", got)
	}
	if s := strings.TrimSpace(ok("subscriptions", "secret", "acme", sub.ID)); s != sub.Secret {
		t.Errorf("subscriptions secret = %q, want %q", s, sub.Secret)
	}
	rotated := strings.TrimSpace(ok("subscriptions", "rotate-secret", "acme", sub.ID, "--overlap", "1h"))
	if rotated == sub.Secret || !strings.HasPrefix(rotated, "whsec_") {
		t.Errorf("rotate-secret printed %q", rotated)
	}
	if s := strings.TrimSpace(ok("subscriptions", "secret", "acme", sub.ID)); s != rotated {
		t.Errorf("secret after rotation = %q, want %q", s, rotated)
	}
	contains("subscriptions update", ok("subscriptions", "update", "acme", sub.ID, "--disabled"), "DISABLED         true", "disabled through the API")
	var upd struct{ Disabled bool }
	if err := json.Unmarshal([]byte(ok("subscriptions", "update", "acme", sub.ID, "--disabled=false", "--json")), &upd); err != nil || upd.Disabled {
		t.Fatalf("update --disabled=false: %+v %v", upd, err)
	}
	// A test send: a signed hookbus.test event of the application, now.
	rcv := newTestReceiver(t)
	var local struct{ ID string }
	if err := json.Unmarshal([]byte(ok("subscriptions", "create", "acme", "--endpoint", rcv.url, "-e", "*", "--secret", testSecret, "--json")), &local); err != nil {
		t.Fatal(err)
	}
	contains("subscriptions test", ok("subscriptions", "test", "acme", local.ID), "OUTCOME", "delivered", "STATUS", "200", "LATENCY", "RESPONSE", "ok")
	var res struct {
		Outcome    string
		StatusCode int `json:"status_code"`
	}
	if err := json.Unmarshal([]byte(ok("subscriptions", "test", "acme", local.ID, "--type", "order.paid", "--data", `{"n":1}`, "--json")), &res); err != nil ||
		res.Outcome != "delivered" || res.StatusCode != 200 {
		t.Fatalf("subscriptions test --json: %+v %v", res, err)
	}
	got1, got2 := rcv.events()
	if got1.Type != "hookbus.test" || got1.Application != "acme" || got2.Type != "order.paid" || string(got2.Data) != `{"n":1}` {
		t.Fatalf("the receiver got %+v and %+v", got1, got2)
	}
	// An event sent for the application reaches its subscription through
	// the queue and the subscriptions sink; one for another does not.
	ok("send", "shop", "--type", "order.paid", "--application", "globex", "--id", "cli-other", "--data", `{"n":3}`)
	ok("send", "shop", "--type", "order.paid", "--application", "acme", "--id", "cli-sent", "--data", `{"n":2}`)
	testenv.Eventually(t, 20*time.Second, "the sent event delivered", func() bool { return rcv.has("cli-sent") })
	if rcv.has("cli-other") {
		t.Fatal("another application's event reached acme's subscription")
	}

	// Errors: the problem's code, detail and field errors, exit 1.
	stderr := fails(platformKey, "HTTP 422 validation_failed: invalid subscription", "subscriptions", "create", "acme",
		"--endpoint", "ftp://acme.example/", "-e", "order*")
	contains("validation error", stderr, "url: ", "event_types[0]: ")
	fails("", "HTTP 401 unauthorized", "apps", "list")
	fails("wrong", "HTTP 401 unauthorized", "apps", "list")
	if _, stderr, code := run(platformKey, "subscriptions", "update", "acme", sub.ID); code != 2 || !strings.Contains(stderr, "nothing to change") {
		t.Errorf("update without flags: exit %d %s", code, stderr)
	}

	// Tokens.
	var tok struct{ ID, Token string }
	if err := json.Unmarshal([]byte(ok("tokens", "create", "acme", "--name", "ci", "--json")), &tok); err != nil || !strings.HasPrefix(tok.Token, "hbat_") {
		t.Fatalf("tokens create --json: %+v %v", tok, err)
	}
	tokens := ok("tokens", "list", "acme")
	contains("tokens list", tokens, tok.ID, "ci")
	if strings.Contains(tokens, tok.Token) {
		t.Errorf("tokens list shows the token:\n%s", tokens)
	}
	// The token reaches its application only.
	if out, stderr, code := run(tok.Token, "subscriptions", "list", "acme"); code != 0 || !strings.Contains(out, sub.ID) {
		t.Fatalf("list with the application token: exit %d\n%s%s", code, out, stderr)
	}
	fails(tok.Token, "HTTP 404 not_found", "apps", "get", gen.ID)
	fails(tok.Token, "HTTP 403 forbidden", "apps", "list")
	fails(tok.Token, "HTTP 403 forbidden", "tokens", "create", "acme")
	contains("tokens delete", ok("tokens", "delete", "acme", tok.ID), "revoked token "+tok.ID)
	fails(tok.Token, "HTTP 401 unauthorized", "apps", "get", "acme")

	// Portal links: the URL alone on stdout; its token reaches the application.
	out, stderr, code := run(platformKey, "apps", "portal", "acme", "--ttl", "30m")
	link := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(link, url+"/portal/login?app=acme&token=hbat_") || strings.Contains(link, "\n") || !strings.Contains(stderr, "expires at") {
		t.Fatalf("apps portal: exit %d\n%s%s", code, out, stderr)
	}
	portalTok := link[strings.Index(link, "token=")+len("token="):]
	if out, stderr, code := run(portalTok, "subscriptions", "list", "acme"); code != 0 || !strings.Contains(out, sub.ID) {
		t.Fatalf("list with the portal token: exit %d\n%s%s", code, out, stderr)
	}
	fails(portalTok, "HTTP 403 forbidden", "apps", "portal", "acme")
	fails(platformKey, "ttl: must be from 1m to 24h", "apps", "portal", "acme", "--ttl", "48h")
	contains("tokens list", ok("tokens", "list", "acme"), "KIND", "EXPIRES", "portal")

	// Deletes: done, then 404.
	contains("subscriptions delete", ok("subscriptions", "delete", "acme", sub.ID), "deleted subscription "+sub.ID)
	fails(platformKey, "HTTP 404 not_found", "subscriptions", "delete", "acme", sub.ID)
	contains("apps delete", ok("apps", "delete", "acme"), "deleted application acme")
	fails(platformKey, "HTTP 404 not_found", "apps", "get", "acme")
}

// testReceiver is an endpoint that checks every request's signature with
// testSecret and keeps the events.
type testReceiver struct {
	url string
	mu  sync.Mutex
	got []receivedEvent
}

type receivedEvent struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Application string          `json:"application"`
	Data        json.RawMessage `json:"data"`
}

func newTestReceiver(t *testing.T) *testReceiver {
	t.Helper()
	sec, err := signing.ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &testReceiver{url: "http://" + ln.Addr().String() + "/hooks"}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := verifiedBody(sec, req)
		if err != nil {
			http.Error(w, "bad signature: "+err.Error(), http.StatusUnauthorized)
			return
		}
		var ev receivedEvent
		_ = json.Unmarshal(body, &ev)
		r.mu.Lock()
		r.got = append(r.got, ev)
		r.mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// has reports whether an event with this id was received.
func (r *testReceiver) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.got {
		if ev.ID == id {
			return true
		}
	}
	return false
}

// events returns the first two events received.
func (r *testReceiver) events() (receivedEvent, receivedEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var a, b receivedEvent
	if len(r.got) > 0 {
		a = r.got[0]
	}
	if len(r.got) > 1 {
		b = r.got[1]
	}
	return a, b
}

// runEnv runs the binary with env and returns stdout, stderr and the exit code.
func runEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}
