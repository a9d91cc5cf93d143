package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// orderedReceiver is a webhook receiver that fails at random (503) and
// sleeps at random, and records per key (the event's subject) the
// sequence numbers (data.seq) of the deliveries it accepted, in the
// order it accepted them.
type orderedReceiver struct {
	url string
	mu  sync.Mutex
	rnd *rand.Rand
	got map[string][]int
	// concurrent counts deliveries of one key in flight at once (must
	// stay 0: the next of a key goes only after the previous one).
	inFlight   map[string]int
	concurrent int
	requests   atomic.Int64
}

func newOrderedReceiver(t *testing.T, failOneIn int, maxSleep time.Duration) *orderedReceiver {
	r := &orderedReceiver{rnd: rand.New(rand.NewPCG(1, 2)), got: map[string][]int{}, inFlight: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.url = "http://" + ln.Addr().String() + "/hooks"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		body, _ := io.ReadAll(req.Body)
		var ev struct {
			Subject string
			Data    struct{ Seq int }
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		fail := r.rnd.IntN(failOneIn) == 0
		sleep := time.Duration(r.rnd.Int64N(int64(maxSleep)))
		r.inFlight[ev.Subject]++
		if r.inFlight[ev.Subject] > 1 {
			r.concurrent++
		}
		r.mu.Unlock()
		time.Sleep(sleep)
		r.mu.Lock()
		r.inFlight[ev.Subject]--
		if !fail {
			r.got[ev.Subject] = append(r.got[ev.Subject], ev.Data.Seq)
		}
		r.mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// complete tells whether every key has had each of its n events.
func (r *orderedReceiver) complete(keys []string, n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		seen := map[int]bool{}
		for _, v := range r.got[k] {
			seen[v] = true
		}
		if len(seen) < n {
			return false
		}
	}
	return true
}

// check fails the test unless each key's deliveries are 0..n-1 in order,
// a repeat only right after itself; it returns the repeats.
func (r *orderedReceiver) check(t *testing.T, keys []string, n int) (repeats int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		seq := r.got[k]
		next := 0
		for i, v := range seq {
			switch {
			case v == next:
				next++
			case i > 0 && v == seq[i-1]:
				repeats++
			default:
				t.Fatalf("key %s: delivery %d is event %d, expected %d or a repeat of %d; deliveries %v", k, i, v, next, next-1, seq)
			}
		}
		if next != n {
			t.Fatalf("key %s: %d of %d events delivered", k, next, n)
		}
	}
	if r.concurrent > 0 {
		t.Fatalf("%d times two deliveries of one key were in flight at once", r.concurrent)
	}
	return repeats
}

// TestOrderedDeliveryTwoInstancesAndKills is the ordering guarantee end
// to end: 50 keys × 200 events, each key's producer sending its next
// event once the previous one was accepted, through two instances on the
// external NATS server, to a receiver that fails and sleeps at random,
// while instances are killed with SIGKILL three times and restarted:
// every key's events arrive in order, a repeat only right after itself,
// none lost.
func TestOrderedDeliveryTwoInstancesAndKills(t *testing.T) {
	if testing.Short() {
		t.Skip("long ordering test")
	}
	testOrderedDelivery(t, true, 50, 200)
}

// TestOrderedDeliveryEmbeddedKills is the same on the embedded queue, one
// instance killed three times and restarted: the queue's state on disk
// (the message each partition holds) keeps the order across restarts.
func TestOrderedDeliveryEmbeddedKills(t *testing.T) {
	if testing.Short() {
		t.Skip("long ordering test")
	}
	testOrderedDelivery(t, false, 20, 100)
}

// testOrderedDelivery runs keys × perKey events through two instances on
// NATS (shared) or one on the embedded queue, killing instances three
// times, and checks the order each key's events arrived in.
func testOrderedDelivery(t *testing.T, shared bool, keys, perKey int) {
	queueBlock := "queue: {ack_wait: 2s}"
	if shared {
		ns := natsNamespace(t, "ord")
		queueBlock = "queue: {driver: nats, url: \"" + natsURL + "\", namespace: " + ns + ", ack_wait: 2s}"
	}
	rcv := newOrderedReceiver(t, 5, 3*time.Millisecond)
	schedule := strings.TrimSuffix(strings.Repeat("50ms, ", 40), ", ")
	conf := func(addr string) string {
		dir := t.TempDir()
		return writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`", shutdown_timeout: 10s}
data_dir: `+filepath.Join(dir, "data")+`
log: {level: warn}
`+queueBlock+`
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: `+rcv.url+`
      secret: `+testSecret+`
      allow_private_networks: true
      timeout: 5s
      circuit: {enabled: false}
      retry: {schedule: [`+schedule+`]}
      ordering: {key: subject}
pipelines:
  all:
    from: [shop]
    to: [partner]
`)
	}
	addrs := []string{freeAddr(t), freeAddr(t)}
	cfgs := []string{conf(addrs[0]), conf(addrs[1])}
	kills := []int{0, 1, 0}
	var procs []*proc
	if shared {
		procs = []*proc{startHookbus(t, cfgs[0], addrs[0]), startHookbus(t, cfgs[1], addrs[1])}
	} else {
		// One instance: both addresses are its own.
		addrs[1], cfgs[1] = addrs[0], cfgs[0]
		procs = []*proc{startHookbus(t, cfgs[0], addrs[0])}
		kills = []int{0, 0, 0}
	}
	var down [2]atomic.Bool

	var names []string
	for k := range keys {
		names = append(names, fmt.Sprintf("order-%02d", k))
	}
	var accepted atomic.Int64
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for k, key := range names {
		wg.Go(func() {
			for i := range perKey {
				body := fmt.Sprintf(`{"id":"%s-%d","type":"order.updated","subject":"%s","data":{"seq":%d}}`, key, i, key, i)
				deadline := time.Now().Add(testenv.Timeout(2 * time.Minute))
				for try := 0; ; try++ {
					n := (k + i + try) % 2
					if down[n].Load() && shared {
						n = 1 - n
					}
					if postEvents(client, addrs[n], "shop", body) == http.StatusAccepted {
						accepted.Add(1)
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s-%d never accepted", key, i)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	total := int64(keys * perKey)
	for kill, n := range kills {
		at := total * int64(kill+1) / 4
		testenv.Eventually(t, 2*time.Minute, fmt.Sprintf("%d accepted", at), func() bool { return accepted.Load() >= at })
		down[n].Store(true)
		procs[n].kill()
		t.Logf("kill %d: instance %d killed with SIGKILL after %d accepted events", kill+1, n, accepted.Load())
		procs[n] = startHookbus(t, cfgs[n], addrs[n])
		down[n].Store(false)
	}
	wg.Wait()
	testenv.Eventually(t, 3*time.Minute, "every key's events delivered", func() bool { return rcv.complete(names, perKey) })
	repeats := rcv.check(t, names, perKey)
	t.Logf("%d keys × %d events delivered in per-key order through %d instance(s) and 3 kills; %d requests, %d immediate repeats",
		keys, perKey, len(procs), rcv.requests.Load(), repeats)
	for _, p := range procs {
		p.stop()
	}
}

// TestOrderingTurnedOffAcrossRestart: events waiting on an ordered sink's
// partitions (the receiver down) when hookbus restarts with the sink's
// ordering removed are delivered after the restart, none discarded with
// the partitions' consumers, which are then removed.
func TestOrderingTurnedOffAcrossRestart(t *testing.T) {
	rcv := newSink(t)
	var down atomic.Bool
	down.Store(true)
	rcv.status = func(string, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	addr := freeAddr(t)
	dir := t.TempDir()
	conf := func(ordering string) string {
		return writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`", shutdown_timeout: 10s}
data_dir: `+filepath.Join(dir, "data")+`
log: {level: info}
sources:
  shop: {type: http}
sinks:
  partner:
    type: webhook
    config:
      url: `+rcv.srv.URL+`
      secret: `+testSecret+`
      allow_private_networks: true
      circuit: {enabled: false}
      retry: {schedule: [200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms]}
`+ordering+`
pipelines:
  all:
    from: [shop]
    to: [partner]
`)
	}
	p := startHookbus(t, conf("      ordering: {key: subject}"), addr)
	var ids []string
	for i := range 30 {
		id := fmt.Sprintf("off-%d", i)
		ids = append(ids, id)
		body := fmt.Sprintf(`{"id":"%s","type":"t","subject":"k%d","data":{"seq":%d}}`, id, i%3, i)
		if st := postEvents(http.DefaultClient, addr, "shop", body); st != http.StatusAccepted {
			t.Fatal(st)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the heads of the three keys attempted", func() bool {
		return rcv.inFlight("off-0") > 0 && rcv.inFlight("off-1") > 0 && rcv.inFlight("off-2") > 0
	})
	if rcv.inFlight("off-3") > 0 {
		t.Fatal("the second event of a key was attempted while the first failed")
	}
	p.stop()
	down.Store(false)
	p = startHookbus(t, conf(""), addr)
	testenv.Eventually(t, 60*time.Second, "every event delivered after the restart", func() bool {
		missing, _ := rcv.stats(ids)
		return len(missing) == 0
	})
	testenv.Eventually(t, 30*time.Second, "the move logged", func() bool {
		return strings.Contains(p.logs(), "ordering is off: moved the events still queued")
	})
	if strings.Contains(p.logs(), "its undelivered messages are discarded") {
		t.Fatalf("a partition's consumer was dropped with its events: %s", p.logs())
	}
	p.stop()
}
