package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/internal/testenv"
)

// stampRecorder is a webhook receiver that records, per event id, the
// value of data.v of each verified delivery (the version stamp a
// transform put on it).
type stampRecorder struct {
	URL    string
	secret signing.Secret
	mu     sync.Mutex
	stamps map[string][]string
	bad    int
}

func newStampRecorder(t *testing.T) *stampRecorder {
	t.Helper()
	sec, err := signing.ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &stampRecorder{secret: sec, stamps: map[string][]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r.URL = "http://" + ln.Addr().String() + "/hooks"
	return r
}

func (r *stampRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := verifiedBody(r.secret, req)
	if err != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct {
		ID   string
		Data struct {
			V any `json:"v"`
		}
	}
	_ = json.Unmarshal(body, &ev)
	r.mu.Lock()
	r.stamps[ev.ID] = append(r.stamps[ev.ID], fmt.Sprint(ev.Data.V))
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *stampRecorder) snapshot() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.stamps))
	for k, v := range r.stamps {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// stampOf returns the one stamp id arrived with, "" if it has not arrived.
func (r *stampRecorder) stampOf(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.stamps[id]; len(s) > 0 {
		return s[len(s)-1]
	}
	return ""
}

// replaceFile writes body to path through a rename, as editors and
// deployment tools save, so a watcher never reads half a file.
func replaceFile(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// adminStatus is the part of GET /v1/admin/status the tests read.
type adminStatus struct {
	Version    int      `json:"version"`
	Hash       string   `json:"hash"`
	Pipelines  []string `json:"pipelines"`
	Sinks      []string `json:"sinks"`
	LastReload *struct {
		Trigger string `json:"trigger"`
		OK      bool   `json:"ok"`
		Errors  []struct {
			Field   string `json:"field"`
			Line    int    `json:"line"`
			Message string `json:"message"`
		} `json:"errors"`
	} `json:"last_reload"`
}

func getStatus(t *testing.T, addr string) adminStatus {
	t.Helper()
	resp, err := httpClient().Get("http://" + addr + "/v1/admin/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st adminStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// postReload calls POST /v1/admin/reload and returns the status and body.
func postReload(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: testenv.Timeout(2 * time.Minute)}).Post("http://"+addr+"/v1/admin/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func awaitVersion(t *testing.T, p *proc, want int) {
	t.Helper()
	if testenv.Wait(time.Minute, func() bool { return getStatus(t, p.addr).Version == want }) {
		return
	}
	// Stuck: the goroutines of the process tell where (SIGQUIT prints them).
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	logs := p.logs()
	if len(logs) > 200000 {
		logs = logs[len(logs)-200000:]
	}
	t.Fatalf("config version %d not running within %s (status %+v); the process's log and goroutines:\n%s",
		want, testenv.Timeout(time.Minute), getStatusOrZero(p.addr), logs)
}

// getStatusOrZero is the status, or the zero value when it cannot be had.
func getStatusOrZero(addr string) adminStatus {
	var st adminStatus
	resp, err := httpClient().Get("http://" + addr + "/v1/admin/status")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st
}

// metricSum adds up the samples of a Prometheus counter whose labels
// contain every one of match.
func metricSum(t *testing.T, addr, name string, match ...string) float64 {
	t.Helper()
	resp, err := httpClient().Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// reloadConfig is one version of the configuration the reload tests write.
type reloadConfig struct {
	addr, dataDir string
	watch         bool
	partnerURL    string
	maxInFlight   int
	script        string // path of the main pipeline's script, relative
	extraURL      string // when set, pipeline extra and sink side exist
	invalid       bool   // an unknown key in the partner sink's config
	listen        string // overrides addr as server.listen (a restart-only key)
}

func (c reloadConfig) yaml() string {
	listen := c.addr
	if c.listen != "" {
		listen = c.listen
	}
	bad := ""
	if c.invalid {
		bad = "\n      urll: http://typo.example"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `version: 1
server: {listen: "%s", shutdown_timeout: 10s}
data_dir: %s
log: {level: info}
reload: {watch: %t}
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: %s
      secret: %s
      allow_private_networks: true
      max_in_flight: %d
      timeout: 5s
      retry: {schedule: [100ms, 500ms, 1s]}%s
`, listen, c.dataDir, c.watch, c.partnerURL, testSecret, c.maxInFlight, bad)
	if c.extraURL != "" {
		fmt.Fprintf(&b, `  side:
    type: webhook
    config: {url: %s, secret: %s, allow_private_networks: true}
`, c.extraURL, testSecret)
	}
	fmt.Fprintf(&b, `pipelines:
  main:
    from: [shop]
    steps:
      - filter: %s
      - transform: %s
    to: [partner]
`, c.script, c.script)
	if c.extraURL != "" {
		b.WriteString(`  extra:
    from: [shop]
    steps:
      - transform: scripts/extra.js
    to: [side]
`)
	}
	return b.String()
}

// versionScript filters the events whose n % 23 is v and stamps the others
// with v. Its transform throws for an event its filter would have dropped,
// so an event run through the filter of one version and the transform of
// another is dead-lettered, and the test sees it.
func versionScript(v int) string {
	return fmt.Sprintf(`var V = %d;
function filter(e) { return e.data.n %% 23 !== V; }
function transform(e) {
  if (e.data.n %% 23 === V) { throw new Error("event " + e.id + " passed the filter of another version"); }
  e.data.v = V;
  return e;
}
`, v)
}

// TestReloadUnderLoadLosesNothing streams 20,000 events while the
// configuration is reloaded 20 times, by the three triggers in turn: the
// main pipeline's script changes each time (it stamps its version), the
// partner sink's URL moves between two receivers and its max_in_flight
// changes (a swap in place, or a new consumer), a pipeline and a sink are
// added and later removed, and one configuration in between is invalid.
// Every accepted event must be delivered once, stamped by a version whose
// filter keeps it, or filtered: delivered + filtered = accepted, no
// duplicates, no dead letters.
func TestReloadUnderLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("long reload test")
	}
	const total, batch, producers, reloads = 20000, 20, 8, 20
	rcvA, rcvB, rcvSide := newStampRecorder(t), newStampRecorder(t), newStampRecorder(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "scripts/extra.js", "function transform(e) { e.data.v = 'x'; return e; }\n")
	writeFile(t, dir, "scripts/v0.js", versionScript(0))
	cfg := reloadConfig{addr: addr, dataDir: filepath.Join(dir, "data"), watch: true, partnerURL: rcvA.URL, maxInFlight: 16, script: "scripts/v0.js"}
	cfgPath := writeConfig(t, dir, cfg.yaml())
	p := startHookbus(t, cfgPath, addr)
	if v := getStatus(t, addr).Version; v != 1 {
		t.Fatalf("version at start = %d, want 1", v)
	}

	var acceptedN, next atomic.Int64
	client := httpClient()
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for {
				first := next.Add(batch) - batch
				if first >= total {
					return
				}
				if st := postEvents(client, addr, "shop", eventBatch("r", first, batch)); st != http.StatusAccepted {
					t.Errorf("batch at %d: status %d (ingest must not fail during a reload)", first, st)
					return
				}
				acceptedN.Add(batch)
			}
		})
	}

	version := 1
	triggers := map[string]int{}
	for i := 1; i <= reloads; i++ {
		testenv.Eventually(t, 2*time.Minute, fmt.Sprintf("%d events accepted before reload %d", int64(i)*total/(reloads+2), i),
			func() bool { return acceptedN.Load() >= int64(i)*total/(reloads+2) })
		script := fmt.Sprintf("scripts/v%d.js", i)
		writeFile(t, dir, script, versionScript(i))
		cfg.script = script
		cfg.partnerURL = []string{rcvA.URL, rcvB.URL}[i%2]
		cfg.maxInFlight = []int{16, 16, 8, 8}[i%4]
		cfg.extraURL = ""
		if i >= 5 && i < 12 {
			cfg.extraURL = rcvSide.URL
		}
		cfg.invalid = i == 10
		replaceFile(t, cfgPath, cfg.yaml())
		trigger := []string{"api", "signal", "watch"}[i%3]
		if cfg.invalid {
			trigger = "api"
		}
		triggers[trigger]++
		switch trigger {
		case "api":
			code, body := postReload(t, addr)
			if cfg.invalid {
				if code != http.StatusUnprocessableEntity || !strings.Contains(body, "sinks.partner.config.urll") {
					t.Fatalf("invalid config: reload answered %d %s, want 422 naming sinks.partner.config.urll", code, body)
				}
				st := getStatus(t, addr)
				if st.Version != version || st.LastReload == nil || st.LastReload.OK {
					t.Fatalf("after an invalid config: status %+v, want version %d and a failed last reload", st, version)
				}
				continue
			}
			if code != http.StatusOK {
				t.Fatalf("reload %d: %d %s", i, code, body)
			}
		case "signal":
			if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		version++
		awaitVersion(t, p, version)
		st := getStatus(t, addr)
		hasExtra := strings.Contains(strings.Join(st.Pipelines, ","), "extra")
		if hasExtra != (cfg.extraURL != "") {
			t.Fatalf("reload %d: running pipelines %v, extra expected %t", i, st.Pipelines, cfg.extraURL != "")
		}
	}
	wg.Wait()
	if acceptedN.Load() != total {
		t.Fatalf("accepted %d of %d events", acceptedN.Load(), total)
	}

	delivered := func() (ids map[string][]string) {
		ids = rcvA.snapshot()
		for id, s := range rcvB.snapshot() {
			ids[id] = append(ids[id], s...)
		}
		return ids
	}
	testenv.Eventually(t, 3*time.Minute, "every accepted event delivered or filtered", func() bool {
		filtered := metricSum(t, addr, "hookbus_events_filtered_total", `pipeline="main"`)
		return len(delivered())+int(filtered) >= total
	})
	ids := delivered()
	filtered := int(metricSum(t, addr, "hookbus_events_filtered_total", `pipeline="main"`))
	dups, badStamp := 0, 0
	perVersion := map[string]int{}
	for id, stamps := range ids {
		dups += len(stamps) - 1
		n, err := strconv.Atoi(strings.TrimPrefix(id, "r-"))
		if err != nil {
			t.Fatalf("unexpected event id %q", id)
		}
		v, err := strconv.Atoi(stamps[0])
		if err != nil || n%23 == v {
			badStamp++
		}
		perVersion[stamps[0]]++
	}
	if len(ids)+filtered != total {
		t.Errorf("delivered %d + filtered %d = %d, want %d (lost or double-counted events)", len(ids), filtered, len(ids)+filtered, total)
	}
	if dups != 0 || badStamp != 0 {
		t.Errorf("%d duplicate deliveries, %d events stamped by a version whose filter drops them", dups, badStamp)
	}
	if dl := metricSum(t, addr, "hookbus_events_dead_lettered_total"); dl != 0 {
		t.Errorf("%v events dead-lettered during reloads:\n%s", dl, p.logs())
	}
	sideDups := 0
	for _, s := range rcvSide.snapshot() {
		sideDups += len(s) - 1
		if s[0] != "x" {
			t.Errorf("side sink got an event not stamped by extra.js: %v", s)
			break
		}
	}
	if sideDups != 0 {
		t.Errorf("%d duplicate deliveries to the side sink", sideDups)
	}
	if rcvA.bad+rcvB.bad+rcvSide.bad != 0 {
		t.Errorf("deliveries with bad signatures: %d", rcvA.bad+rcvB.bad+rcvSide.bad)
	}
	t.Logf("reload test: %d events, %d reloads (%v), version %d; delivered %d (%d to A, %d to B, %d versions seen), filtered %d, side sink %d, 0 lost, %d duplicates",
		total, reloads, triggers, version, len(ids), len(rcvA.snapshot()), len(rcvB.snapshot()), len(perVersion), filtered, len(rcvSide.snapshot()), dups)
	p.stop()
}

// startReloadable starts hookbus on a config with one pipeline whose
// transform stamps the value of `var V` in scripts/stamp.js.
func startReloadable(t *testing.T, watch bool) (p *proc, cfg reloadConfig, cfgPath string, rcv *stampRecorder) {
	t.Helper()
	rcv = newStampRecorder(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "scripts/stamp.js", versionScript(100))
	cfg = reloadConfig{addr: addr, dataDir: filepath.Join(dir, "data"), watch: watch, partnerURL: rcv.URL, maxInFlight: 4, script: "scripts/stamp.js"}
	cfgPath = writeConfig(t, dir, cfg.yaml())
	return startHookbus(t, cfgPath, addr), cfg, cfgPath, rcv
}

// sendStamped sends one event (n = 1, which no version of 100+ filters)
// and waits for its stamp.
func sendStamped(t *testing.T, addr string, rcv *stampRecorder, id string) string {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"type":"test.event","data":{"n":1}}`, id)
	if st := postEvents(httpClient(), addr, "shop", body); st != http.StatusAccepted {
		t.Fatalf("send %s: status %d", id, st)
	}
	testenv.Eventually(t, time.Minute, id+" delivered", func() bool { return rcv.stampOf(id) != "" })
	return rcv.stampOf(id)
}

// Each trigger reloads through the real binary: a script changed in place
// is picked up by the file watch, SIGHUP and POST /v1/admin/reload reload
// with the watch off.
func TestReloadTriggers(t *testing.T) {
	t.Run("watch", func(t *testing.T) {
		t.Parallel()
		p, cfg, cfgPath, rcv := startReloadable(t, true)
		if s := sendStamped(t, cfg.addr, rcv, "w-1"); s != "100" {
			t.Fatalf("stamp before the change = %s, want 100", s)
		}
		// The script is rewritten in place (not renamed): the watch sees a write.
		if err := os.WriteFile(filepath.Join(filepath.Dir(cfgPath), "scripts/stamp.js"), []byte(versionScript(101)), 0o644); err != nil {
			t.Fatal(err)
		}
		awaitVersion(t, p, 2)
		if s := sendStamped(t, cfg.addr, rcv, "w-2"); s != "101" {
			t.Fatalf("stamp after the change = %s, want 101", s)
		}
		if st := getStatus(t, cfg.addr); st.LastReload == nil || st.LastReload.Trigger != "watch" || !st.LastReload.OK {
			t.Fatalf("last reload %+v, want an ok reload by watch", st.LastReload)
		}
		p.stop()
	})
	t.Run("signal", func(t *testing.T) {
		t.Parallel()
		p, cfg, cfgPath, rcv := startReloadable(t, false)
		writeFile(t, filepath.Dir(cfgPath), "scripts/stamp.js", versionScript(102))
		// With the watch off nothing changes until the signal.
		if s := sendStamped(t, cfg.addr, rcv, "s-1"); s != "100" {
			t.Fatalf("stamp before SIGHUP = %s, want 100 (watch is off)", s)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		awaitVersion(t, p, 2)
		if s := sendStamped(t, cfg.addr, rcv, "s-2"); s != "102" {
			t.Fatalf("stamp after SIGHUP = %s, want 102", s)
		}
		if st := getStatus(t, cfg.addr); st.LastReload == nil || st.LastReload.Trigger != "signal" {
			t.Fatalf("last reload %+v, want one by signal", st.LastReload)
		}
		p.stop()
	})
	t.Run("api", func(t *testing.T) {
		t.Parallel()
		p, cfg, cfgPath, rcv := startReloadable(t, false)
		writeFile(t, filepath.Dir(cfgPath), "scripts/stamp.js", versionScript(103))
		code, body := postReload(t, cfg.addr)
		if code != http.StatusOK || !strings.Contains(body, `"pipeline main"`) {
			t.Fatalf("reload: %d %s, want 200 listing the changed pipeline main", code, body)
		}
		if s := sendStamped(t, cfg.addr, rcv, "a-1"); s != "103" {
			t.Fatalf("stamp after reload = %s, want 103", s)
		}
		// Nothing changed: nothing applied, the version stays.
		code, body = postReload(t, cfg.addr)
		if code != http.StatusOK || getStatus(t, cfg.addr).Version != 2 {
			t.Fatalf("second reload: %d %s, version %d, want 200 and version 2", code, body, getStatus(t, cfg.addr).Version)
		}
		p.stop()
	})
}

// A reload that changes a key only a restart can change is refused whole,
// naming the key; and one with a script error is refused naming the
// script's line. The running configuration goes on.
func TestReloadRefusals(t *testing.T) {
	p, cfg, cfgPath, rcv := startReloadable(t, false)
	dir := filepath.Dir(cfgPath)

	// A restart-only key beside a valid change: none of it is applied.
	writeFile(t, dir, "scripts/stamp.js", versionScript(104))
	other := cfg
	other.listen = freeAddr(t)
	writeConfig(t, dir, other.yaml())
	code, body := postReload(t, cfg.addr)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, `"server.listen"`) || !strings.Contains(body, "restart") {
		t.Fatalf("restart-only key: %d %s, want 422 naming server.listen", code, body)
	}
	if s := sendStamped(t, cfg.addr, rcv, "x-1"); s != "100" {
		t.Fatalf("stamp after a refused reload = %s, want 100 (nothing applied)", s)
	}
	if !strings.Contains(p.logs(), "server.listen") {
		t.Errorf("the refusal is not logged:\n%s", p.logs())
	}

	// A script with a syntax error: refused with the script's line.
	writeConfig(t, dir, cfg.yaml())
	writeFile(t, dir, "scripts/stamp.js", "var V = 105;\nfunction filter(e) { return true }\nfunction transform(e) {\n  return e.data.(;\n}\n")
	code, body = postReload(t, cfg.addr)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "stamp.js:4") {
		t.Fatalf("script error: %d %s, want 422 naming stamp.js:4", code, body)
	}
	st := getStatus(t, cfg.addr)
	if st.Version != 1 || st.LastReload == nil || st.LastReload.OK || len(st.LastReload.Errors) == 0 {
		t.Fatalf("status after refusals: %+v", st)
	}
	if s := sendStamped(t, cfg.addr, rcv, "x-2"); s != "100" {
		t.Fatalf("stamp after a refused reload = %s, want 100", s)
	}

	// Fixed: the reload goes through.
	writeFile(t, dir, "scripts/stamp.js", versionScript(106))
	if code, body := postReload(t, cfg.addr); code != http.StatusOK {
		t.Fatalf("valid reload: %d %s", code, body)
	}
	if s := sendStamped(t, cfg.addr, rcv, "x-3"); s != "106" {
		t.Fatalf("stamp after the fix = %s, want 106", s)
	}
	p.stop()
}
