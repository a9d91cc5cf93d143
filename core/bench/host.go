package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hookbus/hookbus/core/app"
)

// host is a running hookbus: in this process, or a child `hookbus run`.
type host interface {
	addr() string
	// cpu is the CPU time spent so far by what the figures charge to hookbus.
	cpu() time.Duration
	// rss is the resident memory of the hookbus process, in bytes.
	rss() int64
	// stop shuts hookbus down and waits for it.
	stop()
}

// startHost writes cfg as the configuration file under dir and starts
// hookbus on it: the binary o.Binary as a child process, or, without it,
// an app in this process.
func startHost(ctx context.Context, o Options, dir string, cfg map[string]any) (host, error) {
	b, err := json.MarshalIndent(cfg, "", "  ") // YAML is a superset of JSON
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	if o.Binary == "" {
		c, err := app.LoadConfig(path, o.Logger)
		if err != nil {
			return nil, fmt.Errorf("bench configuration: %w", err)
		}
		a, err := app.New(ctx, c, o.Logger)
		if err != nil {
			return nil, err
		}
		if err := a.Start(ctx); err != nil {
			_ = a.Shutdown(context.Background())
			return nil, err
		}
		return &appHost{a: a}, nil
	}
	return startChild(ctx, o.Binary, path, cfg)
}

// appHost is hookbus in this process: its CPU and memory figures include the
// generator and the receivers.
type appHost struct {
	a    *app.App
	once sync.Once
}

func (h *appHost) addr() string       { return h.a.Addr() }
func (h *appHost) cpu() time.Duration { return selfCPU() }
func (h *appHost) rss() int64         { return procRSS(os.Getpid()) }
func (h *appHost) stop() {
	h.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = h.a.Shutdown(ctx)
	})
}

// childHost is `hookbus run` in its own process, so that its CPU time and
// memory are its own (plugin processes it started included in the CPU).
type childHost struct {
	cmd    *exec.Cmd
	listen string
	stderr *tailBuffer
	exited chan struct{}
	once   sync.Once
}

func startChild(ctx context.Context, binary, path string, cfg map[string]any) (*childHost, error) {
	listen := cfg["server"].(map[string]any)["listen"].(string)
	h := &childHost{listen: listen, stderr: &tailBuffer{max: 8 << 10}, exited: make(chan struct{})}
	h.cmd = exec.Command(binary, "run", "--config", path)
	h.cmd.Stdout = io.Discard
	h.cmd.Stderr = h.stderr
	if err := h.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s run: %w", binary, err)
	}
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	// Ready when /readyz answers 200: the pipelines and sinks are running.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h, nil
			}
		}
		select {
		case <-h.exited:
			return nil, fmt.Errorf("hookbus run exited before it was ready: %s", h.stderr)
		case <-ctx.Done():
			h.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.stop()
			return nil, fmt.Errorf("hookbus run not ready within 60s: %s", h.stderr)
		}
	}
}

func (h *childHost) addr() string       { return h.listen }
func (h *childHost) cpu() time.Duration { return procCPU(h.cmd.Process.Pid) }
func (h *childHost) rss() int64         { return procRSS(h.cmd.Process.Pid) }
func (h *childHost) stop() {
	h.once.Do(func() {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.exited:
		case <-time.After(45 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
	})
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
