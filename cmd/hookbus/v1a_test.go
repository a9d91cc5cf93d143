package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/internal/testenv"
)

// TestV1aEndToEnd runs hookbus with a webhook sink that has a secret and
// an Ed25519 signing_key (from the environment), fetches the sink's
// public key from the public route, and checks a real delivery on
// loopback three ways: v1 with the secret, v1a with crypto/ed25519 and the
// fetched key, and `hookbus verify --public-key` on the saved request.
func TestV1aEndToEnd(t *testing.T) {
	key, err := signing.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var saved string
	var got *http.Request
	var body []byte
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if got == nil {
			got, body = r, b
			var sb strings.Builder
			fmt.Fprintf(&sb, "POST %s HTTP/1.1\r\n", r.URL.Path)
			names := make([]string, 0, len(r.Header))
			for k := range r.Header {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				fmt.Fprintf(&sb, "%s: %s\r\n", k, r.Header.Get(k))
			}
			sb.WriteString("\r\n")
			sb.Write(b)
			saved = sb.String()
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go rcv.Serve(ln)
	t.Cleanup(func() { rcv.Close() })
	addr := freeAddr(t)
	cfgPath := embeddedConfig(t, addr, "http://"+ln.Addr().String()+"/hooks", "      signing_key: ${HOOKBUS_TEST_SIGNING_KEY}")
	p := startHookbus(t, cfgPath, addr, "HOOKBUS_TEST_SIGNING_KEY="+key)

	// The public key, as a receiver fetches it: no credentials.
	resp, err := httpClient().Get("http://" + addr + "/v1/sinks/partner/public-keys")
	if err != nil {
		t.Fatal(err)
	}
	var keys struct {
		Keys []struct {
			ID        string `json:"id"`
			PublicKey string `json:"public_key"`
		} `json:"keys"`
	}
	err = json.NewDecoder(resp.Body).Decode(&keys)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(keys.Keys) != 1 {
		t.Fatalf("public keys: %d %+v %v", resp.StatusCode, keys, err)
	}
	whpk := keys.Keys[0].PublicKey
	if out := runCLI(t, "keygen", "--from", key); strings.TrimSpace(strings.TrimPrefix(out, "public_key:")) != whpk {
		t.Fatalf("keygen --from prints %q, the sink publishes %q", out, whpk)
	}
	if resp, err := httpClient().Get("http://" + addr + "/v1/sinks/nosuch/public-keys"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown sink: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	if code := postEvents(httpClient(), addr, "shop", `{"id":"evt_v1a","type":"order.paid","data":{"n":1}}`); code != http.StatusAccepted {
		t.Fatalf("ingest: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, "the delivery", func() bool { mu.Lock(); defer mu.Unlock(); return got != nil })
	p.stop()

	mu.Lock()
	defer mu.Unlock()
	id, ts, sig := got.Header.Get("webhook-id"), got.Header.Get("webhook-timestamp"), got.Header.Get("webhook-signature")
	sec, _ := signing.ParseSecret(testSecret)
	if err := signing.Verify(sec, id, ts, sig, body, 5*time.Minute, time.Now()); err != nil {
		t.Errorf("v1 beside v1a: %v (header %q)", err, sig)
	}
	pub, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whpk, "whpk_"))
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	for _, e := range strings.Fields(sig) {
		if b64, isV1a := strings.CutPrefix(e, "v1a,"); isV1a {
			s, err := base64.StdEncoding.DecodeString(b64)
			ok = ok || err == nil && ed25519.Verify(pub, []byte(id+"."+ts+"."+string(body)), s)
		}
	}
	if !ok {
		t.Fatalf("crypto/ed25519 rejects the v1a signature of %q", sig)
	}

	dir := t.TempDir()
	reqPath := writeFile(t, dir, "saved.http", saved)
	if out, _, code := runExit(t, "", "verify", "--public-key", whpk, "--request", reqPath); code != 0 ||
		!strings.HasPrefix(out, "valid: webhook-id evt_v1a") || !strings.Contains(out, "v1a, public key "+keys.Keys[0].ID) {
		t.Errorf("verify --public-key: exit %d: %s", code, out)
	}
	other, _ := signing.GenerateSigningKey()
	otherKey, _ := signing.ParseSigningKey(other)
	if out, _, code := runExit(t, "", "verify", "--public-key", otherKey.PublicKey().String(), "--request", reqPath); code != 1 || !strings.Contains(out, "no matching signature") {
		t.Errorf("verify with another public key: exit %d: %s", code, out)
	}
	if out, _, code := runExit(t, "", "verify", "--secret", testSecret, "--request", reqPath); code != 0 || !strings.Contains(out, "v1, secret 1") {
		t.Errorf("verify --secret of a v1+v1a request: exit %d: %s", code, out)
	}
	if _, errOut, code := runExit(t, "", "verify", "--public-key", key, "--request", reqPath); code != 2 || !strings.Contains(errOut, `must start with "whpk_"`) {
		t.Errorf("a signing key given as --public-key: exit %d: %s", code, errOut)
	}
	if _, errOut, code := runExit(t, "", "verify", "--request", reqPath); code != 2 || !strings.Contains(errOut, "--public-key") {
		t.Errorf("neither --secret nor --public-key: exit %d: %s", code, errOut)
	}
}

// TestSubscriptionV1aCLI: a subscription created with --signing ed25519
// signs a real test send with v1 and v1a; its public keys are listed and
// rotated through the CLI, and during the overlap both keys sign.
func TestSubscriptionV1aCLI(t *testing.T) {
	addr := freeAddr(t)
	p := startHookbus(t, platformConfig(t, addr, `store: {driver: sqlite, encryption_key: "6g8u8bCqkQ9Xz1mYbN0m1bXJ2p9k3pY4r8QeYb1x2Zs="}`), addr)
	defer p.stop()
	env := append(os.Environ(), "HOOKBUS_URL=http://"+addr, "HOOKBUS_API_KEY="+platformKey)
	ok := func(args ...string) string {
		t.Helper()
		out, stderr, code := runEnv(t, env, args...)
		if code != 0 {
			t.Fatalf("hookbus %v: exit %d\n%s%s", args, code, out, stderr)
		}
		return out
	}
	var mu sync.Mutex
	var sigs []string
	var bodies [][]byte
	var ids, stamps []string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		sigs, bodies = append(sigs, r.Header.Get("webhook-signature")), append(bodies, b)
		ids, stamps = append(ids, r.Header.Get("webhook-id")), append(stamps, r.Header.Get("webhook-timestamp"))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})}
	go rcv.Serve(ln)
	t.Cleanup(func() { rcv.Close() })

	ok("apps", "create", "--id", "acme", "--name", "Acme")
	var sub struct {
		ID, Signing string
		PublicKey   string `json:"public_key"`
	}
	out := ok("subscriptions", "create", "acme", "--endpoint", "http://"+ln.Addr().String()+"/hooks", "-e", "*", "--secret", testSecret, "--signing", "ed25519", "--json")
	if err := json.Unmarshal([]byte(out), &sub); err != nil || sub.Signing != "ed25519" || !strings.HasPrefix(sub.PublicKey, "whpk_") || strings.Contains(out, "whsk_") {
		t.Fatalf("create --signing ed25519: %+v %v\n%s", sub, err, out)
	}
	if table := ok("subscriptions", "get", "acme", sub.ID); !strings.Contains(table, "PUBLIC KEY") || !strings.Contains(table, sub.PublicKey) {
		t.Errorf("subscriptions get:\n%s", table)
	}
	if keys := ok("subscriptions", "public-keys", "acme", sub.ID); !strings.Contains(keys, sub.PublicKey) || strings.Count(keys, "\n") != 1 {
		t.Errorf("public-keys:\n%s", keys)
	}
	ok("subscriptions", "test", "acme", sub.ID)
	rotated := ok("subscriptions", "rotate-signing-key", "acme", sub.ID, "--overlap", "1h")
	lines := strings.Split(strings.TrimSpace(rotated), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], sub.PublicKey) || !strings.Contains(lines[1], "expires ") {
		t.Fatalf("rotate-signing-key:\n%s", rotated)
	}
	newPub := strings.Fields(lines[0])[1]
	ok("subscriptions", "test", "acme", sub.ID)

	mu.Lock()
	defer mu.Unlock()
	if len(sigs) != 2 {
		t.Fatalf("the receiver got %d requests, want 2", len(sigs))
	}
	dir := t.TempDir()
	for i, want := range [][]string{{sub.PublicKey}, {newPub, sub.PublicKey}} {
		req := "webhook-id: " + ids[i] + "\nwebhook-timestamp: " + stamps[i] + "\nwebhook-signature: " + sigs[i] + "\n\n" + string(bodies[i])
		path := writeFile(t, dir, fmt.Sprintf("req%d.http", i), req)
		if out, _, code := runExit(t, "", "verify", "--secret", testSecret, "--request", path); code != 0 {
			t.Errorf("request %d: v1: exit %d %s", i, code, out)
		}
		for _, pub := range want {
			if out, _, code := runExit(t, "", "verify", "--public-key", pub, "--request", path); code != 0 {
				t.Errorf("request %d: v1a with %s: exit %d %s (header %q)", i, pub, code, out, sigs[i])
			}
		}
	}
	if n := strings.Count(sigs[1], "v1a,"); n != 2 {
		t.Errorf("during the key overlap: %d v1a entries, want 2 (%q)", n, sigs[1])
	}
}
