package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// cpuTime is the user and system CPU time process pid has used so far
// (/proc/<pid>/stat, Linux).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("CPU time of %d: %v", pid, err)
	}
	// The command name may hold spaces: fields count from after its ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// countingEndpoint answers every delivery 204 and counts them by
// webhook-id, without verifying (the benchmark measures hookbus, not the
// receiver).
type countingEndpoint struct {
	mu   sync.Mutex
	seen map[string]int
	n    atomic.Int64
}

func (c *countingEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("webhook-id")
	c.mu.Lock()
	if c.seen[id]++; c.seen[id] == 1 {
		c.n.Add(1)
	}
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// TestClusterThroughput measures delivered events per second with 1, 2
// and 3 hookbus instances on a three-node JetStream cluster (replicas 3)
// and PostgreSQL, and the instances' CPU time per event. A measurement,
// not a check: it runs only with HOOKBUS_CLUSTER_BENCH=1 (events per run
// in HOOKBUS_CLUSTER_BENCH_EVENTS, default 20000; rounds in
// HOOKBUS_CLUSTER_BENCH_ROUNDS, default 2) and logs medians.
func TestClusterThroughput(t *testing.T) {
	if os.Getenv("HOOKBUS_CLUSTER_BENCH") != "1" {
		t.Skip("a benchmark: set HOOKBUS_CLUSTER_BENCH=1")
	}
	total, rounds := 20000, 2
	if v, err := strconv.Atoi(os.Getenv("HOOKBUS_CLUSTER_BENCH_EVENTS")); err == nil && v > 0 {
		total = v
	}
	if v, err := strconv.Atoi(os.Getenv("HOOKBUS_CLUSTER_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	cl := testenv.StartNATSCluster(t, 3)
	type result = clusterResult
	results := map[int][]result{}
	for round := range rounds {
		for _, n := range []int{1, 2, 3} {
			r := clusterRun(t, cl, n, total, fmt.Sprintf("b%d_%d", n, round))
			t.Logf("round %d, %d instance(s): %.0f events/s delivered, %.0f µs CPU per event in hookbus, %.0f µs in NATS",
				round+1, n, r.rate, r.cpuPerEvent, r.natsCPUPerEvent)
			results[n] = append(results[n], r)
		}
	}
	median := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, 0, len(rs))
		for _, r := range rs {
			v = append(v, f(r))
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	base := median(results[1], func(r result) float64 { return r.rate })
	for _, n := range []int{1, 2, 3} {
		rate := median(results[n], func(r result) float64 { return r.rate })
		t.Logf("median of %d rounds, %d instance(s): %.0f events/s (%.2f× one instance), %.0f µs hookbus CPU and %.0f µs NATS CPU per event",
			rounds, n, rate, rate/base, median(results[n], func(r result) float64 { return r.cpuPerEvent }),
			median(results[n], func(r result) float64 { return r.natsCPUPerEvent }))
	}
}

// clusterResult is one run's figures: delivered events per second, and
// microseconds of CPU per event in the hookbus instances and in NATS.
type clusterResult struct{ rate, cpuPerEvent, natsCPUPerEvent float64 }

// clusterRun streams total events through n instances on cl and returns
// the delivered rate and the CPU per event of the instances and of NATS.
func clusterRun(t *testing.T, cl *testenv.NATSCluster, n, total int, prefix string) clusterResult {
	t.Helper()
	const batch, producers = 50, 6
	dsn := postgresSchema(t)
	ns := clusterNamespace(prefix)
	rcv := &countingEndpoint{seen: map[string]int{}}
	srv := &http.Server{Handler: rcv}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/hooks"
	procs := make([]*proc, n)
	addrs := make([]string, n)
	for i := range n {
		addrs[i] = freeAddr(t)
		procs[i] = startHookbus(t, clusterConfig(t, addrs[i], cl.URLs(), ns, dsn, 3), addrs[i])
		if i == 0 {
			a := newAPI(t, addrs[0])
			a.must(http.StatusCreated, http.MethodPost, "/v1/applications", map[string]any{"id": "acme", "name": "Acme"}, nil)
			a.must(http.StatusCreated, http.MethodPost, "/v1/applications/acme/subscriptions",
				map[string]any{"url": url, "event_types": []string{"order.*"}, "secret": testSecret}, nil)
		}
	}
	natsBefore := time.Duration(0)
	for _, pid := range cl.PIDs() {
		natsBefore += cpuTime(t, pid)
	}
	before := make([]time.Duration, n)
	for i, p := range procs {
		before[i] = cpuTime(t, p.cmd.Process.Pid)
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for w := range producers {
		wg.Go(func() {
			for {
				first := int(next.Add(batch) - batch)
				if first >= total {
					return
				}
				body, _ := appBatch(prefix, first, batch)
				for try := 0; ; try++ {
					status, wait, answer := post(client, addrs[(w+try)%n], body)
					if status == http.StatusAccepted {
						break
					}
					if status != http.StatusServiceUnavailable || try > 100 {
						t.Errorf("HTTP %d: %s", status, answer)
						return
					}
					time.Sleep(wait)
				}
			}
		})
	}
	wg.Wait()
	testenv.Eventually(t, 10*time.Minute, "every event delivered", func() bool { return rcv.n.Load() >= int64(total) })
	elapsed := time.Since(start)
	var cpu time.Duration
	for i, p := range procs {
		cpu += cpuTime(t, p.cmd.Process.Pid) - before[i]
	}
	natsCPU := -natsBefore
	for _, pid := range cl.PIDs() {
		natsCPU += cpuTime(t, pid)
	}
	for _, p := range procs {
		p.stop()
	}
	return clusterResult{
		float64(total) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(total), float64(natsCPU.Microseconds()) / float64(total),
	}
}
