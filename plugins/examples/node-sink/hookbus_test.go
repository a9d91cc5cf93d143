//go:build unix

package nodesink_test

import (
	"bytes"
	"encoding/json"
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

	"github.com/hookbus/hookbus/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestHookbusDeliversToTheNodeSink runs `hookbus run` with the plugin as
// a sink type (plugins: {nodesink: {path: ...}}), posts events to an HTTP
// source and waits for them in the plugin's file; the plugin's log lines
// reach hookbus' log, and a stop by SIGTERM stops the plugin through
// GRPCController.Shutdown.
func TestHookbusDeliversToTheNodeSink(t *testing.T) {
	plugin := launcher(t)
	hookbus := testenv.BuildBinary(t, "github.com/hookbus/hookbus/cmd/hookbus")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	addr := freeAddr(t)
	config := func(sinkConfig string) string {
		path := filepath.Join(dir, "config.yaml")
		y := `version: 1
server: {listen: "` + addr + `"}
data_dir: ` + filepath.Join(dir, "data") + `
log: {level: info, format: json}
plugins:
  nodesink: {path: ` + plugin + `}
sources:
  shop: {type: http}
sinks:
  archive:
    type: nodesink
    config: ` + sinkConfig + `
pipelines:
  all: {from: [shop], to: [archive]}
`
		if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// hookbus validate checks the block against the plugin's schema and its
	// ValidateConfig, naming every problem at its key.
	bad := exec.Command(hookbus, "validate", "--config", config(`{path: "", fsync: "yes", colour: red}`))
	msg, err := bad.CombinedOutput()
	if code := bad.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("validate of a bad block: exit %d (%v), want 2: %s", code, err, msg)
	}
	// (The schema check reports an unknown key at the block's path, naming
	// the key in its message.)
	for _, key := range []string{"sinks.archive.config.path", "sinks.archive.config.fsync", "colour"} {
		if !strings.Contains(string(msg), key) {
			t.Errorf("validate does not name %s:\n%s", key, msg)
		}
	}

	cfg := config(`{path: ` + out + `}`)
	if msg, err := exec.Command(hookbus, "validate", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("validate: %v: %s", err, msg)
	}
	logs := &syncBuffer{}
	run := exec.Command(hookbus, "run", "--config", cfg)
	run.Stdout, run.Stderr = logs, logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = run.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = run.Process.Kill()
		<-done
	})
	client := &http.Client{Timeout: 10 * time.Second}
	testenv.Eventually(t, 30*time.Second, "hookbus ready", func() bool {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	body := `[{"id":"n1","type":"order.paid","data":{"n":1}},{"id":"n2","type":"order.paid","data":{"n":2}},{"id":"n3","type":"order.paid"}]`
	resp, err := client.Post("http://"+addr+"/v1/sources/shop/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("ingest: %d", resp.StatusCode)
	}
	got := map[string]map[string]any{}
	testenv.Eventually(t, 20*time.Second, "3 events in the plugin's file", func() bool {
		b, _ := os.ReadFile(out)
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(l), &ev) == nil {
				got[ev["id"].(string)] = ev
			}
		}
		return len(got) == 3
	})
	if ev := got["n1"]; ev["type"] != "order.paid" || ev["source"] != "shop" {
		t.Errorf("n1 arrived as %v", ev)
	}

	// The plugin's own line, at info, tagged with the plugin and sink.
	var initLine map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "appending events" {
			initLine = m
		}
	}
	if initLine == nil || initLine["level"] != "INFO" || !strings.Contains(initLine["plugin"].(string), "nodesink") || initLine["path"] != out {
		t.Errorf("the plugin's Init line in hookbus' log: %v\n%s", initLine, logs)
	}

	_ = run.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(testenv.Timeout(30 * time.Second)):
		t.Fatalf("hookbus did not stop within 30s of SIGTERM:\n%s", logs)
	}
	if code := run.ProcessState.ExitCode(); code != 0 {
		t.Errorf("hookbus exited %d:\n%s", code, logs)
	}
	if !strings.Contains(logs.String(), `"reason":"hookbus asked for shutdown"`) {
		t.Errorf("the plugin was not stopped by Shutdown:\n%s", logs)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "nodesink") && (strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`)) {
			t.Errorf("hookbus logged a problem with the plugin: %s", l)
		}
	}
}
