package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/plugins/webhook"
	"github.com/hookbus/hookbus/sdk"
	"github.com/hookbus/hookbus/sdk/plugintest"
	"github.com/hookbus/hookbus/sdk/remote"
)

const conformanceSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// pluginBin builds the hookbus-webhook plugin (once per test run).
func pluginBin(t testing.TB) string { return plugintest.Build(t, "./cmd/hookbus-webhook") }

// conformanceReceiver answers by event id prefix: "retry-" gets 503,
// "perm-" gets 400, anything else 204. It records the ids whose signature
// verified.
type conformanceReceiver struct {
	url    string
	secret signing.Secret
	mu     sync.Mutex
	got    map[string]json.RawMessage // event id -> body
	badSig int
}

func newConformanceReceiver(t *testing.T) *conformanceReceiver {
	t.Helper()
	sec, err := signing.ParseSecret(conformanceSecret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &conformanceReceiver{secret: sec, got: map[string]json.RawMessage{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("webhook-id")
		if err := signing.Verify(rc.secret, id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, 5*time.Minute, time.Now()); err != nil {
			rc.mu.Lock()
			rc.badSig++
			rc.mu.Unlock()
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		rc.mu.Lock()
		rc.got[id] = body
		rc.mu.Unlock()
		switch {
		case strings.HasPrefix(id, "retry-"):
			http.Error(w, "try later", http.StatusServiceUnavailable)
		case strings.HasPrefix(id, "perm-"):
			http.Error(w, "malformed", http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	rc.url = srv.URL
	return rc
}

func withIDs(ids ...string) []sdk.Delivery {
	ds := plugintest.SampleEvents(len(ids))
	for i, id := range ids {
		ds[i].Event.ID = id
	}
	return ds
}

func conformanceOptions(t *testing.T) plugintest.SinkOptions {
	rc := newConformanceReceiver(t)
	return plugintest.SinkOptions{
		Config: json.RawMessage(fmt.Sprintf(`{"url": %q, "secret": %q, "timeout": "5s", "allow_private_networks": true}`, rc.url, conformanceSecret)),
		// Every problem of this block must be reported, by key.
		BadConfig: json.RawMessage(`{"url": "ftp://nowhere", "max_in_flight": -1}`),
		Cases: []plugintest.SinkCase{
			{Name: "ok", Deliveries: withIDs("ok-1", "ok-2"), Want: []sdk.Outcome{sdk.OK, sdk.OK}},
			{Name: "retry", Deliveries: withIDs("retry-1"), Want: []sdk.Outcome{sdk.Retry}},
			{Name: "permanent", Deliveries: withIDs("perm-1"), Want: []sdk.Outcome{sdk.Permanent}},
			{Name: "mixed", Deliveries: withIDs("ok-3", "retry-2", "perm-2"), Want: []sdk.Outcome{sdk.OK, sdk.Retry, sdk.Permanent}},
		},
		Check: func(t *testing.T) {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if rc.badSig != 0 {
				t.Errorf("%d requests with a bad signature", rc.badSig)
			}
			for _, id := range []string{"ok-1", "ok-2", "ok-3", "retry-1", "retry-2", "perm-1", "perm-2"} {
				if _, ok := rc.got[id]; !ok {
					t.Errorf("receiver never got %s", id)
				}
			}
			var ev sdk.Event
			if err := json.Unmarshal(rc.got["ok-1"], &ev); err != nil {
				t.Fatalf("body of ok-1: %v", err)
			}
			if ev.Type != "plugintest.sample" || string(ev.Extensions["traceparent"]) != `"00-abc"` || string(ev.Data) != `{"n":0}` {
				t.Errorf("ok-1 arrived as %+v", ev)
			}
		},
	}
}

func TestSinkConformance(t *testing.T) {
	plugintest.RunSink(t, func() sdk.Sink { return &webhook.Webhook{} }, conformanceOptions(t))
}

func TestSinkBinaryConformance(t *testing.T) {
	plugintest.RunSinkBinary(t, pluginBin(t), conformanceOptions(t))
}

// TestBinaryReportsConfigErrorsByKey checks that the plugin's own
// validation reaches the host with its key paths and messages.
func TestBinaryReportsConfigErrorsByKey(t *testing.T) {
	m := plugintest.Describe(t, pluginBin(t))
	if m.Name != webhook.Name || len(m.Kinds) != 1 || m.Kinds[0] != sdk.KindSink || !json.Valid(m.ConfigSchema) {
		t.Fatalf("manifest = %+v", m)
	}
	c, err := remote.Start(remote.Options{Cmd: exec.Command(pluginBin(t)), CallTimeout: plugintest.Timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), plugintest.Timeout)
	defer cancel()
	bad := json.RawMessage(`{"url": "ftp://nowhere", "secret": "` + conformanceSecret + `", "max_in_flight": -1}`)
	for name, check := range map[string]func() error{
		"ValidateConfig": func() error { return c.ValidateConfig(ctx, sdk.KindSink, bad) },
		"Init": func() error {
			_, err := c.Sink().Init(ctx, bad)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := check()
			var ces []*sdk.ConfigError
			var re *remote.Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T), want a *remote.Error", err, err)
			}
			ces = re.Fields
			fields := map[string]string{}
			for _, ce := range ces {
				fields[ce.Field] = ce.Message
			}
			for _, f := range []string{"url", "max_in_flight"} {
				if fields[f] == "" {
					t.Errorf("no error for %s; got %v", f, fields)
				}
			}
		})
	}
}
