package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/internal/testenv"
)

// runCLI runs the built binary and returns its stdout; it fails the test on a non-zero exit.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("hookbus %v: %v\n%s%s", args, err, out, stderr)
	}
	return string(out)
}

// runExit runs the binary and returns stdout, stderr and the exit code.
func runExit(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
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

func TestValidateReportsEveryProblemWithKeyPathAndLine(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, `version: 1
server:
  listn: 127.0.0.1:8080
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: not-a-url
      secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
      timeout: soon
pipelines:
  p:
    from: [shop]
    steps:
      - filter: missing.js
    to: [partnr]
`)
	_, stderr, code := runExit(t, "", "validate", "--config", path)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr: %s", code, stderr)
	}
	for _, want := range []string{
		"config.yaml:3: server.listn: unknown key",
		"sinks.partner.config.url",
		"sinks.partner.config.timeout",
		"pipelines.p.steps[0].filter",
		`pipelines.p.to[0]: unknown sink "partnr"`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr)
		}
	}
}

func TestValidateAcceptsTheExampleConfig(t *testing.T) {
	out, stderr, code := runExit(t, "", "validate", "--config", "../../config.yaml")
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"version"}, 0},
		{[]string{"run", "--help"}, 0},
		{[]string{"nosuchcommand"}, 2},
		{[]string{"run", "--no-such-flag"}, 2},
		{[]string{"run", "--config", "/nonexistent/config.yaml"}, 2},
		{[]string{"script", "run"}, 2},
		{[]string{"send", "shop", "--url", "http://127.0.0.1:1"}, 2},
		{[]string{"send", "shop", "--type", "a", "--url", "http://127.0.0.1:1"}, 1},
	}
	for _, c := range cases {
		_, stderr, code := runExit(t, "", c.args...)
		if code != c.code {
			t.Errorf("hookbus %v: exit %d, want %d (%s)", c.args, code, c.code, stderr)
		}
	}
}

func TestScriptRun(t *testing.T) {
	ev := `{"id":"e1","type":"order.paid","data":{"id":"1001","amount":42.5,"currency":"eur","items":[{"quantity":2}]}}`
	out, stderr, code := runExit(t, ev, "script", "run", "../../scripts/to_partner_format.js", "--event", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, `"amount_cents": 4250`) || !strings.Contains(out, `"kept": true`) {
		t.Errorf("output:\n%s", out)
	}
	out, _, code = runExit(t, `{"type":"order.created"}`, "script", "run", "../../scripts/only_paid.js", "--event", "-")
	if code != 0 || !strings.Contains(out, `"kept": false`) {
		t.Errorf("filter: exit %d\n%s", code, out)
	}
	_, stderr, code = runExit(t, `{"type":"order.paid","data":{"amount":"x"}}`, "script", "run", "../../scripts/to_partner_format.js", "--event", "-")
	if code != 1 || !strings.Contains(stderr, "to_partner_format.js:10:") {
		t.Errorf("throw: exit %d, stderr %s", code, stderr)
	}
}

func TestSendAndDeadLettersAgainstRunningAndStoppedInstance(t *testing.T) {
	rcv := newSink(t)
	rcv.status = func(id string, n int) int {
		if id == "reject-me" && n == 1 {
			return http.StatusBadRequest
		}
		return 0
	}
	addr := freeAddr(t)
	cfgPath := embeddedConfig(t, addr, rcv.srv.URL, "")
	p := startHookbus(t, cfgPath, addr)
	url := "http://" + addr
	out := runCLI(t, "send", "shop", "--url", url, "--type", "order.paid", "--id", "reject-me", "--data", `{"n":1}`)
	if !strings.Contains(out, "reject-me") {
		t.Errorf("send output: %s", out)
	}
	testenv.Eventually(t, 20*time.Second, "dead letter listed", func() bool {
		return strings.Contains(runCLI(t, "dead-letters", "list", "--url", url), "reject-me")
	})
	// Stop hookbus and replay from its data dir; the next start delivers it.
	p.stop()
	if out := runCLI(t, "dead-letters", "list", "--config", cfgPath); !strings.Contains(out, "HTTP 400") {
		t.Errorf("local list: %s", out)
	}
	if out := runCLI(t, "dead-letters", "replay", "--config", cfgPath, "--all"); !strings.Contains(out, "replayed 1") {
		t.Errorf("local replay: %s", out)
	}
	p = startHookbus(t, cfgPath, addr)
	testenv.Eventually(t, 20*time.Second, "replayed delivery", func() bool { return rcv.seen("reject-me") == 2 })
	if out := runCLI(t, "dead-letters", "list", "--url", url, "--json"); strings.Contains(out, "reject-me") {
		t.Errorf("replayed dead letter still listed: %s", out)
	}
	p.stop()
}

// TestReceiveVerifiesSignatures runs `hookbus receive` and posts one signed
// and one forged webhook to it.
func TestReceiveVerifiesSignatures(t *testing.T) {
	addr := freeAddr(t)
	cmd := exec.Command(binary, "receive", "--secret", testSecret, "--listen", addr)
	var out lockedWriter
	out.w = new(bytes.Buffer)
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sec, _ := signing.ParseSecret(testSecret)
	body := []byte(`{"id":"r1","type":"a"}`)
	send := func(sig string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", bytes.NewReader(body))
		req.Header.Set("webhook-id", "r1")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var status int
	testenv.Eventually(t, 10*time.Second, "receiver up", func() bool {
		status = send(signing.Sign([]signing.Secret{sec}, "r1", time.Now(), body))
		return status != 0
	})
	if status != http.StatusNoContent {
		t.Errorf("signed request: HTTP %d", status)
	}
	if st := send("v1,Zm9yZ2Vk"); st != http.StatusUnauthorized {
		t.Errorf("forged request: HTTP %d", st)
	}
	testenv.Eventually(t, 5*time.Second, "both printed", func() bool {
		s := out.String()
		return strings.Contains(s, `verified r1: {"id":"r1","type":"a"}`) && strings.Contains(s, "REJECTED r1")
	})
}

func TestBenchComparesTheWebhookPluginWithInProcess(t *testing.T) {
	plugin := testenv.BuildBinary(t, "../../plugins/webhook/cmd/hookbus-webhook")
	out := runCLI(t, "bench", "--drivers", "memory", "--events", "200", "--concurrency", "4", "--runs", "2", "--webhook-plugin", plugin)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^run 1  direct +- +- +200/200 events +\d+ events/s  p50`),
		regexp.MustCompile(`(?m)^run 1  transform +memory +webhook +200/200 events +\d+ events/s \(\d+\.\d\d× direct \d+/s\)  p50 .* cpu/event \d+µs`),
		regexp.MustCompile(`(?m)^run 2  plugin-sink +memory +webhook-plugin +200/200 events`),
		regexp.MustCompile(`(?m)^transform +memory +webhook +median of 2: +\d+ events/s \(\d+\.\d\d× direct`),
		regexp.MustCompile(`(?m)^plugin-sink +memory +webhook-plugin median of 2: +\d+ events/s \(\d+\.\d\d× direct \d+/s\) \(\d+\.\d\d× in process\)`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}

// TestBenchJSON: --json prints one document with every round (the direct
// baseline first, compared within the round) and the medians; hookbus ran
// as a child process.
func TestBenchJSON(t *testing.T) {
	out := runCLI(t, "bench", "--drivers", "memory", "--scenario", "passthrough,fanout", "--events", "200", "--concurrency", "4", "--runs", "2", "--json")
	var rep struct {
		Options struct {
			Scenarios []string `json:"scenarios"`
			Runs      int      `json:"runs"`
		} `json:"options"`
		Runs [][]struct {
			Scenario      string  `json:"scenario"`
			Process       string  `json:"process"`
			Delivered     int     `json:"delivered"`
			EventsPerS    float64 `json:"events_per_s"`
			RatioToDirect float64 `json:"ratio_to_direct"`
			P999          int64   `json:"p999_ns"`
			CPUPerEvent   int64   `json:"cpu_per_event_ns"`
			Partial       bool    `json:"partial"`
		} `json:"runs"`
		Summaries []struct {
			Scenario      string  `json:"scenario"`
			Runs          int     `json:"runs"`
			EventsPerS    float64 `json:"events_per_s"`
			RatioToDirect float64 `json:"ratio_to_direct"`
		} `json:"summaries"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out)
	}
	if rep.Options.Runs != 2 || strings.Join(rep.Options.Scenarios, ",") != "passthrough,fanout" || len(rep.Runs) != 2 {
		t.Fatalf("report %+v", rep)
	}
	for i, round := range rep.Runs {
		if len(round) != 3 || round[0].Scenario != "direct" || round[1].Scenario != "passthrough" || round[2].Scenario != "fanout" {
			t.Fatalf("round %d: %+v", i, round)
		}
		for _, r := range round[1:] {
			if r.Partial || r.Delivered != 200 || r.Process != "child" || r.RatioToDirect <= 0 || r.CPUPerEvent <= 0 || r.P999 <= 0 {
				t.Errorf("round %d: %+v", i, r)
			}
		}
	}
	if len(rep.Summaries) != 3 || rep.Summaries[1].Runs != 2 || rep.Summaries[1].RatioToDirect <= 0 || rep.Summaries[0].EventsPerS <= 0 {
		t.Errorf("summaries %+v", rep.Summaries)
	}
}

// TestBenchAttemptLogBoth: --attempt-log both runs each scenario with the
// delivery log off and on in every round, in turn first, and compares
// them; a bad value is refused.
func TestBenchAttemptLogBoth(t *testing.T) {
	out := runCLI(t, "bench", "--drivers", "memory", "--scenario", "passthrough", "--events", "200", "--concurrency", "4", "--runs", "2",
		"--attempt-log", "both", "--json")
	var rep struct {
		Runs [][]struct {
			Scenario         string  `json:"scenario"`
			AttemptLog       string  `json:"attempt_log"`
			Delivered        int     `json:"delivered"`
			RelativeToLogOff float64 `json:"relative_to_log_off"`
		} `json:"runs"`
		Summaries []struct {
			AttemptLog       string  `json:"attempt_log"`
			RelativeToLogOff float64 `json:"relative_to_log_off"`
		} `json:"summaries"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out)
	}
	if len(rep.Runs) != 2 {
		t.Fatalf("report %+v", rep)
	}
	for i, first := range []string{"off", "on"} {
		round := rep.Runs[i]
		if len(round) != 3 || round[1].AttemptLog != first || round[1].AttemptLog == round[2].AttemptLog {
			t.Fatalf("round %d: %+v", i+1, round)
		}
		for _, r := range round[1:] {
			if r.Delivered != 200 || (r.AttemptLog == "on") != (r.RelativeToLogOff > 0) {
				t.Errorf("round %d: %+v", i+1, r)
			}
		}
	}
	if len(rep.Summaries) != 3 || rep.Summaries[1].AttemptLog != "off" || rep.Summaries[2].AttemptLog != "on" || rep.Summaries[2].RelativeToLogOff <= 0 {
		t.Errorf("summaries %+v", rep.Summaries)
	}
	if _, stderr, code := runExit(t, "", "bench", "--attempt-log", "sometimes"); code == 0 || !strings.Contains(stderr, "--attempt-log: want on, off or both") {
		t.Errorf("bad --attempt-log: exit %d, %s", code, stderr)
	}
}

// TestBenchDirectMode: --mode direct measures only the generator straight
// to the receiver, and --progress writes the live line to stderr.
func TestBenchDirectMode(t *testing.T) {
	out, stderr, code := runExit(t, "", "bench", "--mode", "direct", "--events", "200", "--concurrency", "4", "--runs", "1", "--progress")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !regexp.MustCompile(`(?m)^run 1  direct +- +- +200/200 events`).MatchString(out) || strings.Contains(out, "transform") {
		t.Errorf("output:\n%s", out)
	}
	if !strings.Contains(stderr, "run 1 direct") || !strings.Contains(stderr, "/200 delivered") {
		t.Errorf("no progress line on stderr: %q", stderr)
	}
}

// TestBenchProfile: --profile DIR writes, for each run of the child
// hookbus, the merged CPU profile of the run and the heap at its end; a
// negative --profile-seconds is refused.
func TestBenchProfile(t *testing.T) {
	dir := t.TempDir()
	out, stderr, code := runExit(t, "", "bench", "--drivers", "memory", "--scenario", "passthrough", "--events", "200",
		"--concurrency", "4", "--runs", "1", "--profile", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cpu := filepath.Join(dir, "run1-passthrough-memory.cpu.pprof")
	if !strings.Contains(out, "profile "+cpu) {
		t.Errorf("output:\n%s", out)
	}
	for _, f := range []string{cpu, filepath.Join(dir, "run1-passthrough-memory.end.heap.pprof")} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
	if _, stderr, code := runExit(t, "", "bench", "--profile", dir, "--profile-seconds", "-1"); code == 0 || !strings.Contains(stderr, "--profile-seconds") {
		t.Errorf("--profile-seconds -1: exit %d, %s", code, stderr)
	}
}

func TestTestRunsScriptCases(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "cents.js", "function transform(event, ctx) {\n  event.data.cents = Math.round(event.data.amount * 100);\n  return event;\n}\n")
	writeFile(t, dir, "cents.cases.json", `[
  {"name": "converts", "event": {"id": "a", "type": "t", "data": {"amount": 1.5}},
   "expect": [{"id": "a", "type": "t", "data": {"amount": 1.5, "cents": 150}}]},
  {"name": "wrong expectation", "event": {"id": "b", "type": "t", "data": {"amount": 2}},
   "expect": [{"id": "b", "type": "t", "data": {"amount": 2, "cents": 201}}]},
  {"name": "not recorded yet", "event": {"id": "c", "type": "t", "data": {"amount": 0.1}}},
  {"name": "no data throws", "event": {"id": "d", "type": "t"}, "expect_error": "cents.js:2:"}
]`)
	writeFile(t, dir, "untested.js", "function filter(event) { return true; }\n")
	writeFile(t, dir, "broken.js", "function transform(event) {\n  return event +;\n}\n")
	writeFile(t, dir, "broken.cases.json", `[{"name": "any", "event": {"type": "t"}, "expect_filtered": true}]`)

	out, _, code := runExit(t, "", "test", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (cases fail):\n%s", code, out)
	}
	for _, want := range []string{
		"ok   " + filepath.Join(dir, "cents.js") + ": converts",
		"FAIL " + filepath.Join(dir, "cents.js") + ": wrong expectation: output differs from expect",
		`got  [{"id":"b","type":"t","data":{"amount":2,"cents":200}}]`,
		"FAIL " + filepath.Join(dir, "cents.js") + ": not recorded yet: no expectation",
		"ok   " + filepath.Join(dir, "cents.js") + ": no data throws",
		"?    " + filepath.Join(dir, "untested.js") + " (compiles; no test cases",
		"FAIL " + filepath.Join(dir, "broken.js") + ": ",
		"broken.js:2:",
		"3 scripts, 5 cases: 2 passed, 3 failed; 1 script without cases",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// --update records what the script returns now; the broken script
	// still fails.
	if err := os.Remove(filepath.Join(dir, "broken.js")); err != nil {
		t.Fatal(err)
	}
	if out, _, code := runExit(t, "", "test", "--update", filepath.Join(dir, "cents.js")); code != 0 || !strings.Contains(out, "2 expectations recorded") {
		t.Fatalf("--update: exit %d:\n%s", code, out)
	}
	if out, _, code := runExit(t, "", "test", filepath.Join(dir, "cents.js")); code != 0 || !strings.Contains(out, "1 script, 4 cases: 4 passed, 0 failed") {
		t.Fatalf("after --update: exit %d:\n%s", code, out)
	}
	if _, _, code := runExit(t, "", "test", filepath.Join(dir, "missing.js")); code != 2 {
		t.Errorf("missing script: exit %d, want 2", code)
	}
	// A script that does not compile fails even without cases.
	writeFile(t, dir, "nocases.js", "function filter(event) { return event.type ===; }\n")
	if out, _, code := runExit(t, "", "test", filepath.Join(dir, "nocases.js")); code != 1 || !strings.Contains(out, "SyntaxError") || !strings.Contains(out, "0 passed, 1 failed") {
		t.Errorf("uncompilable script without cases: exit %d:\n%s", code, out)
	}
}

func TestTestUsesTheConfigurationsScriptSettings(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "slow.js", "function transform(event, ctx) {\n  var t = Date.now();\n  while (Date.now() - t < 50) {}\n  event.data = {sink: ctx.sink, attempt: ctx.attempt};\n  return event;\n}\n")
	writeFile(t, dir, "slow.cases.json", `[{"name": "ctx defaults per member", "event": {"id": "a", "type": "t"}, "ctx": {"pipeline": "p"},
  "expect": [{"id": "a", "type": "t", "data": {"sink": "test", "attempt": 1}}]}]`)
	cfg := writeConfig(t, dir, `version: 1
scripts: {timeout: 10ms}
sources:
  shop: {type: http}
sinks:
  partner: {type: webhook, config: {url: "https://partner.example/hooks", secret: `+testSecret+`}}
pipelines:
  p: {from: [shop], steps: [{transform: slow.js}], to: [partner]}
`)
	if out, _, code := runExit(t, "", "test", "--config", cfg); code != 1 || !strings.Contains(out, "10ms") {
		t.Errorf("scripts.timeout 10ms: exit %d, want a timeout failure:\n%s", code, out)
	}
	if out, _, code := runExit(t, "", "test", "--config", cfg, "--timeout", "2s"); code != 0 || !strings.Contains(out, "1 passed, 0 failed") {
		t.Errorf("--timeout 2s: exit %d:\n%s", code, out)
	}
}

func TestTestDefaultsToTheConfiguredScripts(t *testing.T) {
	out, _, code := runExit(t, "", "test", "--config", "../../config.yaml")
	if code != 0 || !strings.Contains(out, "only_paid.js: paid order is kept unchanged") || !strings.Contains(out, "0 failed") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestVerifyChecksSignatures(t *testing.T) {
	dir := t.TempDir()
	sec, err := signing.ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	other, err := signing.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	body := `{"id":"evt_1","type":"order.paid","data":{"amount":5}}`
	save := func(name string, at time.Time, b string) string {
		t.Helper()
		sig := signing.Sign([]signing.Secret{sec}, "evt_1", at, []byte(b))
		req := "POST /hooks HTTP/1.1\r\nHost: partner.example\r\nContent-Type: application/json\r\nwebhook-id: evt_1\r\n" +
			"webhook-timestamp: " + strconv.FormatInt(at.Unix(), 10) + "\r\nwebhook-signature: " + sig + "\r\n\r\n" + b
		return writeFile(t, dir, name, req)
	}
	fresh := save("fresh.http", time.Now(), body)
	if out, _, code := runExit(t, "", "verify", "--secret", testSecret, "--request", fresh); code != 0 || !strings.HasPrefix(out, "valid: webhook-id evt_1") {
		t.Errorf("valid request: exit %d: %s", code, out)
	}
	// During a rotation any of the secrets may have signed it.
	if out, _, code := runExit(t, "", "verify", "--secret", other, "--secret", testSecret, "--request", fresh); code != 0 {
		t.Errorf("second secret: exit %d: %s", code, out)
	}
	if out, _, code := runExit(t, "", "verify", "--secret", other, "--request", fresh); code != 1 || !strings.Contains(out, "invalid: ") {
		t.Errorf("wrong secret: exit %d: %s", code, out)
	}
	// A changed body, here one trailing newline, is not the signed one.
	raw, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	tampered := writeFile(t, dir, "tampered.http", string(raw)+"\n")
	if out, _, code := runExit(t, "", "verify", "--secret", testSecret, "--request", tampered); code != 1 {
		t.Errorf("tampered body: exit %d: %s", code, out)
	}
	// An old request fails the timestamp check unless it is skipped.
	old := save("old.http", time.Now().Add(-time.Hour), body)
	if out, _, code := runExit(t, "", "verify", "--secret", testSecret, "--request", old); code != 1 || !strings.Contains(out, "too old") {
		t.Errorf("old request: exit %d: %s", code, out)
	}
	if out, _, code := runExit(t, "", "verify", "--secret", testSecret, "--request", old, "--tolerance", "0"); code != 0 {
		t.Errorf("old request, --tolerance 0: exit %d: %s", code, out)
	}
	// A request saved with LF line endings whose body holds a CRLF blank line.
	lfBody := "{\"note\":\"a\r\n\r\nb\"}"
	at := time.Now()
	lfReq := "POST /hooks HTTP/1.1\nwebhook-id: evt_1\nwebhook-timestamp: " + strconv.FormatInt(at.Unix(), 10) +
		"\nwebhook-signature: " + signing.Sign([]signing.Secret{sec}, "evt_1", at, []byte(lfBody)) + "\n\n" + lfBody
	lfPath := writeFile(t, dir, "lf.http", lfReq)
	if out, errOut, code := runExit(t, "", "verify", "--secret", testSecret, "--request", lfPath); code != 0 {
		t.Errorf("LF request with CRLF in the body: exit %d: %s%s", code, out, errOut)
	}
	// Headers as flags and the body on stdin.
	now := time.Now()
	sig := signing.Sign([]signing.Secret{sec}, "evt_1", now, []byte(body))
	if out, _, code := runExit(t, body, "verify", "--secret", testSecret, "--id", "evt_1", "--timestamp", strconv.FormatInt(now.Unix(), 10), "--signature", sig, "--body", "-"); code != 0 {
		t.Errorf("flags and stdin: exit %d: %s", code, out)
	}
	if _, errOut, code := runExit(t, body, "verify", "--secret", testSecret, "--body", "-"); code != 2 || !strings.Contains(errOut, "webhook-id (--id) is missing") {
		t.Errorf("missing id: exit %d: %s", code, errOut)
	}
	if _, _, code := runExit(t, "", "verify", "--request", fresh); code != 2 {
		t.Errorf("no secret: exit %d, want 2", code)
	}
}
