package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/signing"
	"github.com/hookbus/hookbus/internal/testenv"
)

// binary is the hookbus binary built once for the tests of this package.
var binary string

func TestMain(m *testing.M) {
	binary = testenv.MustBuild(".")
	testenv.Main(m)
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// freeAddr returns a loopback address with a currently free port.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a running `hookbus run`.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	log  *bytes.Buffer
	lw   *lockedWriter
	done chan struct{}
}

// logs returns what the process has logged so far (safe while it runs).
func (p *proc) logs() string { return p.lw.String() }

func startHookbus(t *testing.T, configPath, addr string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, "run", "--config", configPath)
	cmd.Env = append(os.Environ(), env...)
	var logBuf bytes.Buffer
	lw := &lockedWriter{w: &logBuf}
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, addr: addr, log: &logBuf, lw: lw, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(testenv.Timeout(30 * time.Second))
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("hookbus exited at start: %s", lw.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("hookbus not ready within %s: %s", testenv.Timeout(30*time.Second), lw.String())
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(testenv.Timeout(30 * time.Second)):
		p.t.Errorf("hookbus did not stop within 30s of SIGTERM")
		p.kill()
	}
}

// sink is a webhook receiver recording verified deliveries by event id.
type sink struct {
	t      *testing.T
	srv    *httptest
	secret signing.Secret
	mu     sync.Mutex
	count  map[string]int
	// arrived counts requests by event id as soon as they are read, before
	// the delay: a test waits on it to know a delivery is in flight.
	arrived map[string]int
	bad     int
	delay   time.Duration
	status  func(id string, n int) int
}

type httptest struct {
	ln  net.Listener
	srv *http.Server
	URL string
}

func newSink(t *testing.T) *sink {
	t.Helper()
	sec, err := signing.ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{t: t, secret: sec, count: map[string]int{}, arrived: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(s.serve)}
	go srv.Serve(ln)
	s.srv = &httptest{ln: ln, srv: srv, URL: "http://" + ln.Addr().String() + "/hooks"}
	t.Cleanup(func() { srv.Close() })
	return s
}

// verifiedBody reads a delivery's body and checks its Standard Webhooks
// signature against secret.
func verifiedBody(secret signing.Secret, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	return body, signing.Verify(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, 10*time.Minute, time.Now())
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := verifiedBody(s.secret, r)
	if err != nil {
		s.mu.Lock()
		s.bad++
		s.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct{ ID string }
	_ = json.Unmarshal(body, &ev)
	s.mu.Lock()
	s.arrived[ev.ID]++
	s.mu.Unlock()
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.mu.Lock()
	s.count[ev.ID]++
	n := s.count[ev.ID]
	s.mu.Unlock()
	if s.status != nil {
		if st := s.status(ev.ID, n); st != 0 {
			w.WriteHeader(st)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// inFlight reports how many requests for id arrived, finished or not.
func (s *sink) inFlight(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrived[id]
}

func (s *sink) seen(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[id]
}

// stats returns how many distinct ids arrived and how many extra copies.
func (s *sink) stats(ids []string) (missing []string, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		switch n := s.count[id]; {
		case n == 0:
			missing = append(missing, id)
		case n > 1:
			dups += n - 1
		}
	}
	return missing, dups
}

// awaitAll checks that total ids were accepted (keys of accepted), waits
// until every one was delivered and returns the number of extra copies.
func (s *sink) awaitAll(t *testing.T, accepted *sync.Map, total int, timeout time.Duration) (dups int) {
	t.Helper()
	var ids []string
	accepted.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	if len(ids) != total {
		t.Fatalf("accepted %d of %d events", len(ids), total)
	}
	testenv.Eventually(t, timeout, "every accepted event delivered", func() bool {
		missing, _ := s.stats(ids)
		return len(missing) == 0
	})
	_, dups = s.stats(ids)
	return dups
}

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	return writeFile(t, dir, "config.yaml", body)
}

// writeFile writes body to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// postEvents posts a JSON body; it returns the HTTP status or 0 on a connection error.
func postEvents(client *http.Client, addr, source, body string) int {
	resp, err := client.Post("http://"+addr+"/v1/sources/"+source+"/events", "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func httpClient() *http.Client { return &http.Client{Timeout: 10 * time.Second} }

// eventBatch is a JSON array of n events with ids prefix-first … prefix-(first+n-1).
func eventBatch(prefix string, first, n int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := first; i < first+n; i++ {
		if i > first {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%s-%d","type":"test.event","data":{"n":%d}}`, prefix, i, i)
	}
	b.WriteByte(']')
	return b.String()
}
