package console_test

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/browsertest"
	"github.com/hookbus/hookbus/internal/testenv"
)

// send posts one event to source of e as the admin.
func (e *env) send(t *testing.T, source, body string) {
	t.Helper()
	e.call(t, http.MethodPost, "/v1/sources/"+source+"/events", body, http.StatusAccepted, nil)
}

// call calls the API as the admin, checks the status and decodes the
// answer into out (when non-nil).
func (e *env) call(t *testing.T, method, path, body string, want int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// received tells whether the receiver got a body containing s.
func (r *receiver) received(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.got {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

var dlRowID = regexp.MustCompile(`data-testid="dl-row" data-id="([^"]+)"`)

// deadLetterIDs are the ids of the rows of a dead-letter list page.
func deadLetterIDs(body string) []string {
	var ids []string
	for _, m := range dlRowID.FindAllStringSubmatch(body, -1) {
		ids = append(ids, html.UnescapeString(m[1]))
	}
	return ids
}

// waitDeadLetters reads the list until it has n rows, and returns it.
func (v *visitor) waitDeadLetters(path string, n int) page {
	v.t.Helper()
	var p page
	testenv.Eventually(v.t, 30*time.Second, strconv.Itoa(n)+" dead letters listed at "+path, func() bool {
		p = v.get(path)
		return p.status == http.StatusOK && len(deadLetterIDs(p.body)) == n
	})
	return p
}

// flashAfter follows a POST's redirect and returns the flash it left.
func (v *visitor) flashAfter(p page) string {
	v.t.Helper()
	if p.status != http.StatusSeeOther {
		v.t.Fatalf("POST answered %d, want 303: %s", p.status, p.body)
	}
	next := v.get(p.location)
	m := regexp.MustCompile(`<p class="flash" role="status">([^<]*)</p>`).FindStringSubmatch(next.body)
	if m == nil {
		v.t.Fatalf("no flash on %s: %s", p.location, next.body)
	}
	return html.UnescapeString(m[1])
}

func TestDeadLettersListOpenReplay(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()

	p := v.get("/console/dead-letters")
	if p.status != http.StatusOK || !strings.Contains(p.body, "No dead letters: every event was delivered or filtered.") {
		t.Fatalf("empty list: %d %s", p.status, p.body)
	}
	for _, opt := range []string{`<option value="partner">partner</option>`, `<option value="partners">partners</option>`} {
		if !strings.Contains(p.body, opt) {
			t.Errorf("the sink filter lacks %s", opt)
		}
	}

	// A permanent failure: the receiver refuses the event.
	e.rcv.answer(http.StatusBadRequest, "no such customer")
	e.send(t, "shop", `{"id":"order-dl-1","type":"order.paid","data":{"total":42.5}}`)
	p = v.waitDeadLetters("/console/dead-letters", 1)
	id := deadLetterIDs(p.body)[0]
	for _, want := range []string{"order-dl-1", "order.paid", ">partner", "permanent", "400"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	if !regexp.MustCompile(`data-testid="dl-reason">[^<]*400`).MatchString(p.body) {
		t.Errorf("the reason cell does not give the status: %s", p.body)
	}
	// The filter: another sink has none, this one has it.
	if p := v.get("/console/dead-letters?sink=partners"); !strings.Contains(p.body, "No dead letters for sink partners") {
		t.Errorf("filtered by partners: %s", p.body)
	}
	if p := v.get("/console/dead-letters?sink=partner"); len(deadLetterIDs(p.body)) != 1 ||
		!strings.Contains(p.body, `<option value="partner" selected>`) {
		t.Errorf("filtered by partner: %s", p.body)
	}

	// Its page: the reason in full and the event, indented.
	d := v.get("/console/dead-letters/" + url.PathEscape(id))
	if d.status != http.StatusOK {
		t.Fatalf("dead letter page: %d %s", d.status, d.body)
	}
	for _, want := range []string{`<pre class="dl-reason-full" data-testid="dl-reason">`, `&#34;id&#34;: &#34;order-dl-1&#34;`,
		`&#34;total&#34;: 42.5`, `data-testid="dl-replay"`, "permanent"} {
		if !strings.Contains(d.body, want) {
			t.Errorf("dead letter page lacks %q: %s", want, d.body)
		}
	}
	if p := v.get("/console/dead-letters/no-such-id"); p.status != http.StatusNotFound || !strings.Contains(p.body, "no dead letter") {
		t.Errorf("unknown dead letter: %d %s", p.status, p.body)
	}

	// Fixed receiver, replay: it gets the event, the list is empty.
	e.rcv.answer(http.StatusOK, "")
	before := e.rcv.count()
	if msg := v.flashAfter(v.post("/console/dead-letters/"+url.PathEscape(id)+"/replay", nil)); msg != "Queued 1 dead letter for delivery again." {
		t.Errorf("flash after replay: %q", msg)
	}
	testenv.Eventually(t, 30*time.Second, "the replayed event at the receiver", func() bool {
		return e.rcv.count() > before && e.rcv.received("order-dl-1")
	})
	v.waitDeadLetters("/console/dead-letters", 0)
	// Replaying it again: it is gone, and the page says so.
	if msg := v.flashAfter(v.post("/console/dead-letters/"+url.PathEscape(id)+"/replay", nil)); !strings.Contains(msg, "Not replayed") {
		t.Errorf("second replay: %q", msg)
	}
}

func TestDeadLettersReplaySelectedAndAllShown(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()
	e.rcv.answer(http.StatusGone, "")
	for _, id := range []string{"order-a", "order-b", "order-c"} {
		e.send(t, "shop", `{"id":"`+id+`","type":"order.paid"}`)
	}
	p := v.waitDeadLetters("/console/dead-letters", 3)
	if !strings.Contains(p.body, `data-testid="dl-replay-selected"`) || !strings.Contains(p.body, `data-confirm="Replay all 3 dead letters shown?"`) {
		t.Fatalf("replay buttons: %s", p.body)
	}
	ids := deadLetterIDs(p.body)
	e.rcv.answer(http.StatusOK, "")

	// Nothing selected: nothing happens, and the page says what to do.
	if msg := v.flashAfter(v.post("/console/dead-letters/replay", url.Values{"sink": {"partner"}})); !strings.Contains(msg, "select at least one") {
		t.Errorf("no selection: %q", msg)
	}
	// One selected.
	p = v.post("/console/dead-letters/replay", url.Values{"ids": {ids[0]}, "sink": {"partner"}})
	if p.location != "/console/dead-letters?sink=partner" {
		t.Errorf("back to %q", p.location)
	}
	if msg := v.flashAfter(p); msg != "Queued 1 dead letter for delivery again." {
		t.Errorf("replay selected: %q", msg)
	}
	p = v.waitDeadLetters("/console/dead-letters", 2)
	left := deadLetterIDs(p.body)
	if left[0] == ids[0] || left[1] == ids[0] {
		t.Errorf("the replayed one is still listed: %v", left)
	}
	// All shown: the form carries every row's id.
	hidden := regexp.MustCompile(`<input type="hidden" name="ids" value="([^"]+)">`).FindAllStringSubmatch(p.body, -1)
	form := url.Values{}
	for _, m := range hidden {
		form.Add("ids", html.UnescapeString(m[1]))
	}
	if len(form["ids"]) != 2 {
		t.Fatalf("replay all shown carries %v", form["ids"])
	}
	if msg := v.flashAfter(v.post("/console/dead-letters/replay", form)); msg != "Queued 2 dead letters for delivery again." {
		t.Errorf("replay all shown: %q", msg)
	}
	testenv.Eventually(t, 30*time.Second, "the three events at the receiver", func() bool {
		return e.rcv.received(`"order-a"`) && e.rcv.received(`"order-b"`) && e.rcv.received(`"order-c"`)
	})
	v.waitDeadLetters("/console/dead-letters", 0)
}

// card is the markup of the overview's card named name.
func card(t *testing.T, body, name string) string {
	t.Helper()
	start := strings.Index(body, `data-testid="stats-card" data-name="`+name+`"`)
	if start < 0 {
		return ""
	}
	end := strings.Index(body[start:], "</section>")
	if end < 0 {
		t.Fatalf("card %s has no end", name)
	}
	return body[start : start+end]
}

// figure reads a number of a card.
func figure(c, testid string) int {
	m := regexp.MustCompile(`data-testid="` + testid + `">(?:<a [^>]*>)?(\d+)`).FindStringSubmatch(c)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestOverview(t *testing.T) {
	e := newEnv(t, "")
	v := e.visitor(t)
	v.mustLogin()

	p := v.get("/console/")
	if p.status != http.StatusOK {
		t.Fatalf("overview: %d %s", p.status, p.body)
	}
	for _, want := range []string{`data-testid="overview-empty"`, "No deliveries in the last hour. Send an event:",
		"/v1/sources/SOURCE/events", `data-testid="overview-version">1<`, `href="/console/status"`,
		"No applications yet", `data-name="partner"`, `data-name="partners"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("first overview lacks %q", want)
		}
	}
	if c := card(t, p.body, "partner"); strings.Contains(c, "data-failing") || !strings.Contains(c, "No deliveries in the last hour") {
		t.Errorf("quiet card: %s", c)
	}
	if p := v.get("/console/?chart=7y"); p.status != http.StatusBadRequest || !strings.Contains(p.body, "chart") {
		t.Errorf("bad chart window: %d", p.status)
	}

	// An application with a subscription, so it has figures too.
	e.call(t, http.MethodPost, "/v1/applications", `{"id":"acme","name":"Acme Inc"}`, http.StatusCreated, nil)
	e.call(t, http.MethodPost, "/v1/applications/acme/subscriptions",
		`{"url":"`+e.rcv.srv.URL+`/acme","event_types":["order.*"],"secret":"`+testSecret+`"}`, http.StatusCreated, nil)

	// One delivered, one failed for good.
	e.send(t, "shop", `{"id":"ov-ok","type":"order.paid"}`)
	e.send(t, "apps", `{"id":"ov-app","type":"order.paid","application":"acme"}`)
	testenv.Eventually(t, 30*time.Second, "the deliveries at the receiver", func() bool {
		return e.rcv.received("ov-ok") && e.rcv.received("ov-app")
	})
	e.rcv.answer(http.StatusBadRequest, "refused")
	e.send(t, "shop", `{"id":"ov-bad","type":"order.paid"}`)

	var partner string
	testenv.Eventually(t, 30*time.Second, "partner's card with a delivered and a failed event", func() bool {
		p = v.get("/console/?chart=1h")
		partner = card(t, p.body, "partner")
		return figure(partner, "delivered-1h") >= 1 && figure(partner, "failed-1h") >= 1
	})
	if !strings.Contains(partner, `data-failing="1"`) || !strings.Contains(partner, ">Failing</span> 1 delivery failed in the last hour") {
		t.Errorf("partner is not marked as failing: %s", partner)
	}
	for _, want := range []string{`href="/console/attempts?sink=partner"`, `href="/console/attempts?outcome=failed&amp;sink=partner"`,
		`<svg class="spark"`, "Oldest waiting event: none waits"} {
		if !strings.Contains(partner, want) {
			t.Errorf("partner's card lacks %q: %s", want, partner)
		}
	}
	if strings.Contains(p.body, `data-testid="overview-empty"`) {
		t.Error("the empty state stays with traffic")
	}
	testenv.Eventually(t, 30*time.Second, "acme's card with its delivery", func() bool {
		p = v.get("/console/")
		return figure(card(t, p.body, "Acme Inc"), "delivered-1h") >= 1
	})
	acme := card(t, p.body, "Acme Inc")
	if !strings.Contains(acme, `href="/console/applications/acme"`) || strings.Contains(acme, "data-failing") ||
		!strings.Contains(acme, "Healthy in the last hour") {
		t.Errorf("acme's card: %s", acme)
	}
}

// TestDeadLettersInBrowser drives the list with a browser: "select all"
// and "Replay selected" (a button outside the table's form), the
// confirmation of "Replay all shown", and the overview at phone width,
// all without a CSP violation or a script error.
func TestDeadLettersInBrowser(t *testing.T) {
	b := browsertest.New(t)
	e := newEnv(t, "")
	e.rcv.answer(http.StatusBadRequest, "")
	for _, id := range []string{"br-1", "br-2", "br-3"} {
		e.send(t, "shop", `{"id":"`+id+`","type":"order.paid"}`)
	}
	v := e.visitor(t)
	v.mustLogin()
	v.waitDeadLetters("/console/dead-letters", 3)
	e.rcv.answer(http.StatusOK, "")

	b.Navigate(e.base + "/console/login")
	b.SetValue("#key", adminKey)
	b.Submit("#key")
	b.WaitLocation("/console/")
	b.WaitReady(`[data-testid="sink-cards"]`)
	b.Navigate(e.base + "/console/dead-letters")
	b.WaitReady(`[data-testid="dl-row"]`)
	b.Click("#dl-all")
	b.Click(`[data-testid="dl-replay-selected"]`)
	b.WaitText(".flash", "Queued 3 dead letters for delivery again.")
	testenv.Eventually(t, 30*time.Second, "the replayed events at the receiver", func() bool {
		return e.rcv.received(`"br-1"`) && e.rcv.received(`"br-2"`) && e.rcv.received(`"br-3"`)
	})

	// Replay all shown asks first; answered yes here.
	e.rcv.answer(http.StatusBadRequest, "")
	e.send(t, "shop", `{"id":"br-4","type":"order.paid"}`)
	v.waitDeadLetters("/console/dead-letters", 1)
	e.rcv.answer(http.StatusOK, "")
	b.Navigate(e.base + "/console/dead-letters")
	b.WaitReady(`[data-testid="dl-replay-all"]`)
	b.Eval(`window.confirm = (msg) => { window.asked = msg; return true; }`, nil)
	b.Click(`[data-testid="dl-replay-all"]`)
	b.WaitText(".flash", "Queued 1 dead letter for delivery again.")
	b.WaitText("main", "No dead letters: every event was delivered or filtered.")

	b.SetViewport(browsertest.PhoneWidth, browsertest.PhoneHeight)
	b.Navigate(e.base + "/console/")
	b.WaitReady(`[data-testid="stats-card"][data-name="partner"] svg.spark`)
	var overflow bool
	b.Eval(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow)
	if overflow {
		t.Error("the overview is wider than a phone")
	}
	b.AssertClean()
}
