package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/queue"
	"github.com/hookbus/hookbus/internal/testenv"
)

// The tests here run hookbus instances on a three-node NATS JetStream
// cluster of the machine's nats-server, with streams of three replicas and
// the PostgreSQL store, and take nodes and instances away.

// clusterConfig writes the configuration of one clustered instance: the
// three NATS URLs, queue.replicas 3, the shared store, an http source and
// a subscriptions sink in pipeline "all".
func clusterConfig(t *testing.T, addr, urls, ns, dsn string, replicas int) string {
	t.Helper()
	dir := t.TempDir()
	return writeConfig(t, dir, fmt.Sprintf(`version: 1
server: {listen: %q, api_keys: [%q], shutdown_timeout: 10s}
data_dir: %s
log: {level: warn}
queue: {driver: nats, url: %q, namespace: %s, replicas: %d}
store: {driver: postgres, dsn: %q}
sources:
  shop: {type: http}
sinks:
  platform:
    type: subscriptions
    config:
      allow_private_networks: true
      timeout: 10s
      max_in_flight: 64
      retry: {schedule: [200ms, 500ms, 1s, 2s, 5s, 5s, 5s, 5s, 5s, 5s]}
pipelines:
  all: {from: [shop], to: [platform]}
`, addr, platformKey, filepath.Join(dir, "data"), urls, ns, replicas, dsn))
}

// clusterNamespace is a queue namespace of the test's own (the cluster is
// the test's own too, so nothing needs dropping).
func clusterNamespace(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1e9)
}

// producerStats is what the producers saw: accepted events and when
// ingest answered 503.
type producerStats struct {
	accepted atomic.Int64
	mu       sync.Mutex
	ids      map[string]bool
	refused  []time.Time // 503 answers
	conn     int         // connection errors (an instance down)
}

func (p *producerStats) refusals(from, to time.Time) (n int, first, last time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, at := range p.refused {
		if at.Before(from) || at.After(to) {
			continue
		}
		if n == 0 {
			first = at
		}
		last = at
		n++
	}
	return n, first, last
}

// post sends one batch to addr: the status (0 on a connection error) and
// the Retry-After of a 503.
func post(c *http.Client, addr, body string) (int, time.Duration, string) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/sources/shop/events", strings.NewReader(body))
	if err != nil {
		return 0, 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+platformKey)
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, time.Duration(secs) * time.Second, string(b)
}

// appBatch is a JSON array of n events of application acme with ids
// prefix-first … prefix-(first+n-1).
func appBatch(prefix string, first, n int) (string, []string) {
	var b strings.Builder
	var ids []string
	b.WriteByte('[')
	for i := first; i < first+n; i++ {
		if i > first {
			b.WriteByte(',')
		}
		id := fmt.Sprintf("%s-%d", prefix, i)
		ids = append(ids, id)
		fmt.Fprintf(&b, `{"id":%q,"type":"order.paid","application":"acme","data":{"n":%d}}`, id, i)
	}
	b.WriteByte(']')
	return b.String(), ids
}

// maxGap is the longest time between two first arrivals at e within
// [from, to], and when it began.
func (e *endpoint) maxGap(from, to time.Time) (gap time.Duration, at time.Time) {
	e.mu.Lock()
	var times []time.Time
	for _, tm := range e.first {
		if !tm.Before(from) && !tm.After(to) {
			times = append(times, tm)
		}
	}
	e.mu.Unlock()
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	prev := from
	for _, tm := range times {
		if d := tm.Sub(prev); d > gap {
			gap, at = d, prev
		}
		prev = tm
	}
	return gap, at
}

// TestClusterSurvivesNodeAndInstanceLoss streams 30,000 events through
// three hookbus instances on a three-node JetStream cluster (replicas 3)
// and PostgreSQL, with producers spread over the instances that retry a
// 503 after its Retry-After. Meanwhile the node leading the ingest stream
// is killed with SIGKILL and restarted, then one instance is killed and
// restarted. Every accepted event is delivered (duplicates reported), each
// instance delivers a share of one subscription created on the first, and
// no event is dead-lettered or logged as a failed attempt. The fault
// timeline is logged.
func TestClusterSurvivesNodeAndInstanceLoss(t *testing.T) {
	const total, batch, producers = 30000, 50, 6
	cl := testenv.StartNATSCluster(t, 3)
	dsn := postgresSchema(t)
	ns := clusterNamespace("clu")
	prefix := queue.JetStreamPrefix(ns)
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	confs := make([]string, 3)
	for i := range confs {
		confs[i] = clusterConfig(t, addrs[i], cl.URLs(), ns, dsn, 3)
	}
	start := time.Now()
	procs := make([]*proc, 3)
	procs[0] = startHookbus(t, confs[0], addrs[0])
	a := newAPI(t, addrs[0])
	rcv := newEndpoint(t, testSecret)
	a.must(http.StatusCreated, http.MethodPost, "/v1/applications", map[string]any{"id": "acme", "name": "Acme"}, nil)
	a.must(http.StatusCreated, http.MethodPost, "/v1/applications/acme/subscriptions",
		map[string]any{"url": rcv.url, "event_types": []string{"order.*"}, "secret": testSecret}, nil)
	// The others start after the subscription was made on the first: they
	// read it from the shared store.
	procs[1] = startHookbus(t, confs[1], addrs[1])
	procs[2] = startHookbus(t, confs[2], addrs[2])
	t.Logf("cluster of 3 nodes and 3 instances up in %v", time.Since(start).Round(time.Millisecond))

	var down [3]atomic.Bool
	ps := &producerStats{ids: map[string]bool{}}
	var next atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	streamStart := time.Now()
	for w := range producers {
		wg.Go(func() {
			for {
				first := int(next.Add(batch) - batch)
				if first >= total {
					return
				}
				body, ids := appBatch("clu", first, batch)
				deadline := time.Now().Add(testenv.Timeout(2 * time.Minute))
				for try := 0; ; try++ {
					i := (w + try) % 3
					if down[i].Load() {
						continue
					}
					status, wait, answer := post(client, addrs[i], body)
					if status == http.StatusAccepted {
						ps.mu.Lock()
						for _, id := range ids {
							ps.ids[id] = true
						}
						ps.mu.Unlock()
						ps.accepted.Add(batch)
						break
					}
					switch status {
					case http.StatusServiceUnavailable:
						ps.mu.Lock()
						ps.refused = append(ps.refused, time.Now())
						ps.mu.Unlock()
						if wait <= 0 {
							t.Errorf("503 without Retry-After: %s", answer)
							wait = time.Second
						}
						time.Sleep(min(wait, 5*time.Second))
					case 0:
						ps.mu.Lock()
						ps.conn++
						ps.mu.Unlock()
						time.Sleep(50 * time.Millisecond)
					default:
						t.Errorf("batch %d: HTTP %d from %s: %s", first, status, addrs[i], answer)
						return
					}
					if time.Now().After(deadline) {
						t.Errorf("batch %d not accepted within %v", first, testenv.Timeout(2*time.Minute))
						return
					}
				}
			}
		})
	}
	failed := func() bool { return t.Failed() }
	const series = `hookbus_events_delivered_total{pipeline="all",sink="platform"}`

	// Fault 1: SIGKILL the node leading the ingest stream, restart it once
	// ingest has gone on without it.
	testenv.Eventually(t, 2*time.Minute, "a third of the events accepted", func() bool { return ps.accepted.Load() >= total/3 || failed() })
	leader := cl.StreamLeader(prefix + "_IN")
	if leader < 0 {
		leader = 0
	}
	natsKill := time.Now()
	cl.Kill(leader)
	atKill := ps.accepted.Load()
	t.Logf("%v: killed NATS node %s (leader of %s_IN) with SIGKILL at %d accepted", natsKill.Sub(streamStart).Round(time.Millisecond), cl.NodeName(leader), prefix, atKill)
	testenv.Eventually(t, 2*time.Minute, "ingest going on without the node", func() bool { return ps.accepted.Load() >= atKill+3000 || failed() })
	natsResumed := time.Now()
	cl.Start(leader)
	natsRestart := time.Now()
	t.Logf("%v: restarted NATS node %s (3000 events accepted without it in %v)", natsRestart.Sub(streamStart).Round(time.Millisecond), cl.NodeName(leader), natsResumed.Sub(natsKill).Round(time.Millisecond))

	// Fault 2: SIGKILL the third instance, restart it once the others went
	// on.
	testenv.Eventually(t, 2*time.Minute, "two thirds of the events accepted", func() bool { return ps.accepted.Load() >= 2*total/3 || failed() })
	cBefore := scrape(addrs[2], series)
	down[2].Store(true)
	hbKill := time.Now()
	procs[2].kill()
	atHBKill := ps.accepted.Load()
	t.Logf("%v: killed instance C with SIGKILL at %d accepted (it had delivered %v)", hbKill.Sub(streamStart).Round(time.Millisecond), atHBKill, cBefore)
	testenv.Eventually(t, 2*time.Minute, "ingest going on without instance C", func() bool { return ps.accepted.Load() >= atHBKill+3000 || failed() })
	procs[2] = startHookbus(t, confs[2], addrs[2])
	down[2].Store(false)
	hbRestart := time.Now()
	t.Logf("%v: instance C ready again after %v", hbRestart.Sub(streamStart).Round(time.Millisecond), hbRestart.Sub(hbKill).Round(time.Millisecond))

	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ingestDone := time.Now()
	ps.mu.Lock()
	ids := make([]string, 0, len(ps.ids))
	for id := range ps.ids {
		ids = append(ids, id)
	}
	conn := ps.conn
	ps.mu.Unlock()
	if len(ids) != total {
		t.Fatalf("accepted %d distinct events, want %d", len(ids), total)
	}
	testenv.Eventually(t, 3*time.Minute, "every accepted event delivered", func() bool {
		got, _ := rcv.count(ids)
		return got == total
	})
	allDelivered := time.Now()
	_, dups := rcv.count(ids)

	// The timeline.
	n1, f1, l1 := ps.refusals(natsKill, natsRestart.Add(30*time.Second))
	gap1, gap1At := rcv.maxGap(natsKill.Add(-time.Second), natsRestart)
	n2, f2, l2 := ps.refusals(hbKill, hbRestart)
	gap2, gap2At := rcv.maxGap(hbKill.Add(-time.Second), hbRestart)
	t.Logf("NATS node kill: %d answers 503 after it", n1)
	if n1 > 0 {
		t.Logf("  ingest answered 503 from %v to %v after the kill (%v)", f1.Sub(natsKill).Round(time.Millisecond), l1.Sub(natsKill).Round(time.Millisecond), l1.Sub(f1).Round(time.Millisecond))
	}
	t.Logf("  longest delivery gap around it: %v, from %v after the kill", gap1.Round(time.Millisecond), gap1At.Sub(natsKill).Round(time.Millisecond))
	t.Logf("instance kill: %d answers 503, %d connection errors in all (producers moved to the other instances)", n2, conn)
	if n2 > 0 {
		t.Logf("  503 from %v to %v after the kill", f2.Sub(hbKill).Round(time.Millisecond), l2.Sub(hbKill).Round(time.Millisecond))
	}
	t.Logf("  longest delivery gap around it: %v, from %v after the kill", gap2.Round(time.Millisecond), gap2At.Sub(hbKill).Round(time.Millisecond))
	t.Logf("%d events accepted in %v, all delivered %v later; %d duplicates (%.2f%%)", total, ingestDone.Sub(streamStart).Round(time.Millisecond),
		allDelivered.Sub(ingestDone).Round(time.Millisecond), dups, 100*float64(dups)/total)

	// Each instance delivered a share of the one subscription.
	shares := []float64{scrape(addrs[0], series), scrape(addrs[1], series), cBefore + scrape(addrs[2], series)}
	t.Logf("deliveries by instance: A %v, B %v, C %v (before and after its restart)", shares[0], shares[1], shares[2])
	for i, s := range shares {
		if s == 0 {
			t.Errorf("instance %c delivered nothing", 'A'+i)
		}
	}
	// Nothing counted as an event failure.
	var dl struct {
		DeadLetters []deadLetterJSON `json:"dead_letters"`
	}
	a.must(http.StatusOK, http.MethodGet, "/v1/dead-letters?limit=10", nil, &dl)
	if len(dl.DeadLetters) > 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dl.DeadLetters), dl.DeadLetters)
	}
	var failedAttempts struct {
		Data []json.RawMessage `json:"data"`
	}
	a.must(http.StatusOK, http.MethodGet, "/v1/attempts?outcome=failed&limit=10", nil, &failedAttempts)
	if len(failedAttempts.Data) > 0 {
		t.Errorf("%d failed attempts recorded, want none: %s", len(failedAttempts.Data), failedAttempts.Data[0])
	}
	for i, p := range procs {
		if strings.Contains(p.logs(), "dead-lettered") {
			t.Errorf("instance %c logged a dead letter:\n%s", 'A'+i, p.logs())
		}
		p.stop()
	}
}

// readyz returns /readyz's status and body.
func readyz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestClusterIngestAnswers503WithoutStreamLeader stops two of the three
// nodes, so the streams lose their quorum and leader: ingest answers 503
// with Retry-After and an "unavailable" problem, /readyz names the queue,
// and once the nodes are back ingest and delivery resume by themselves,
// with nothing dead-lettered.
func TestClusterIngestAnswers503WithoutStreamLeader(t *testing.T) {
	cl := testenv.StartNATSCluster(t, 3)
	dsn := postgresSchema(t)
	ns := clusterNamespace("nolead")
	addr := freeAddr(t)
	p := startHookbus(t, clusterConfig(t, addr, cl.URLs(), ns, dsn, 3), addr)
	a := newAPI(t, addr)
	rcv := newEndpoint(t, testSecret)
	a.must(http.StatusCreated, http.MethodPost, "/v1/applications", map[string]any{"id": "acme", "name": "Acme"}, nil)
	a.must(http.StatusCreated, http.MethodPost, "/v1/applications/acme/subscriptions",
		map[string]any{"url": rcv.url, "event_types": []string{"order.*"}, "secret": testSecret}, nil)
	client := &http.Client{Timeout: 30 * time.Second}
	var accepted []string
	body, ids := appBatch("before", 0, 10)
	if status, _, answer := post(client, addr, body); status != http.StatusAccepted {
		t.Fatalf("HTTP %d before the fault: %s", status, answer)
	}
	accepted = append(accepted, ids...)

	killed := time.Now()
	cl.Kill(0)
	cl.Kill(1)
	var status int
	var wait time.Duration
	var answer string
	n := 0
	testenv.Eventually(t, time.Minute, "ingest answering 503 without a stream leader", func() bool {
		body, ids := appBatch("during", n, 1)
		n++
		status, wait, answer = post(client, addr, body)
		if status == http.StatusAccepted {
			// Before the survivor noticed it lost its quorum.
			accepted = append(accepted, ids...)
		}
		return status == http.StatusServiceUnavailable
	})
	first503 := time.Since(killed)
	var prob struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(answer), &prob); err != nil || prob.Code != "unavailable" || wait <= 0 {
		t.Errorf("503 answer: Retry-After %v, body %s (%v)", wait, answer, err)
	}
	testenv.Eventually(t, 30*time.Second, "/readyz naming the queue", func() bool {
		code, b := readyz(addr)
		return code == http.StatusServiceUnavailable && strings.Contains(b, "queue")
	})
	_, rz := readyz(addr)
	t.Logf("two of three nodes killed: first 503 (Retry-After %v) after %v; /readyz: %s", wait, first503.Round(time.Millisecond), strings.TrimSpace(rz))

	restarted := time.Now()
	cl.Start(0)
	cl.Start(1)
	i := 0
	testenv.Eventually(t, 2*time.Minute, "ingest accepting again", func() bool {
		body, ids := appBatch("after", i, 1)
		i++
		status, _, _ := post(client, addr, body)
		if status == http.StatusAccepted {
			accepted = append(accepted, ids...)
		}
		return status == http.StatusAccepted
	})
	resumed := time.Since(restarted)
	testenv.Eventually(t, time.Minute, "/readyz ready again", func() bool { code, _ := readyz(addr); return code == http.StatusOK })
	testenv.Eventually(t, 2*time.Minute, "every accepted event delivered", func() bool {
		got, _ := rcv.count(accepted)
		return got == len(accepted)
	})
	t.Logf("nodes restarted: ingest accepted again after %v, ready and every accepted event (%d) delivered after %v",
		resumed.Round(time.Millisecond), len(accepted), time.Since(restarted).Round(time.Millisecond))
	var dl struct {
		DeadLetters []deadLetterJSON `json:"dead_letters"`
	}
	a.must(http.StatusOK, http.MethodGet, "/v1/dead-letters?limit=10", nil, &dl)
	if len(dl.DeadLetters) > 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dl.DeadLetters), dl.DeadLetters)
	}
	p.stop()
}

// TestClusterRefusesMoreReplicasThanNodes: queue.replicas 5 on a
// three-node cluster stops the start with an error naming the key.
func TestClusterRefusesMoreReplicasThanNodes(t *testing.T) {
	cl := testenv.StartNATSCluster(t, 3)
	addr := freeAddr(t)
	dir := t.TempDir()
	conf := writeConfig(t, dir, fmt.Sprintf(`version: 1
server: {listen: %q}
data_dir: %s
queue: {driver: nats, url: %q, namespace: %s, replicas: 5}
sources: {shop: {type: http}}
sinks: {out: {type: webhook, config: {url: "https://partner.example/hooks", secret: %s}}}
pipelines: {all: {from: [shop], to: [out]}}
`, addr, filepath.Join(dir, "data"), cl.URLs(), clusterNamespace("r5"), testSecret))
	out, code := runBounded(t, testenv.Timeout(time.Minute), "run", "--config", conf)
	if code == 0 || code == -1 {
		t.Fatalf("hookbus started with 5 replicas on 3 nodes (exit %d): %s", code, out)
	}
	if !strings.Contains(out, "queue.replicas") || !strings.Contains(out, "5 replicas") {
		t.Errorf("the error does not name queue.replicas and the count: %s", out)
	}
}
