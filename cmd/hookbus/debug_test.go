package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
	"github.com/hookbus/hookbus/sdk"
)

// startDebugPlugin starts a plugin binary in debug mode, as a developer
// would under a debugger, and returns the address it prints.
func startDebugPlugin(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), sdk.DebugEnv+"=1")
	lw := &lockedWriter{w: new(bytes.Buffer)}
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	re := regexp.MustCompile(`waiting for hookbus on (\S+)`)
	var addr string
	testenv.Eventually(t, testenv.Timeout(20*time.Second), "plugin "+filepath.Base(bin)+" prints its debug address", func() bool {
		select {
		case <-done:
			t.Fatalf("plugin in debug mode exited: %s", lw.String())
		default:
		}
		if m := re.FindStringSubmatch(lw.String()); m != nil {
			addr = m[1]
			return true
		}
		return false
	})
	if !strings.Contains(lw.String(), "HOOKBUS_PLUGINS__<NAME>__REATTACH="+addr) {
		t.Errorf("the plugin does not say how to attach hookbus: %s", lw.String())
	}
	return addr
}

// TestPluginDebugModeReattach: a source and a sink plugin started by hand
// in debug mode (HOOKBUS_PLUGIN_DEBUG=1, as under dlv), hookbus attached to
// both through plugins.<name>.reattach: events flow from the plugin source
// and the HTTP source to the plugin sink, and the plugins serve a second
// hookbus run after the first stopped.
func TestPluginDebugModeReattach(t *testing.T) {
	dir := t.TempDir()
	sinkBin := testenv.BuildBinary(t, "../../plugins/file/cmd/file-sink")
	sourceBin := testenv.BuildBinary(t, "../../plugins/file/cmd/file-source")
	sinkAddr := startDebugPlugin(t, sinkBin)
	sourceAddr := startDebugPlugin(t, sourceBin)
	in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	if err := os.WriteFile(in, []byte(`{"id":"from-plugin","type":"a"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`"}
data_dir: `+filepath.Join(dir, "data")+`
log: {level: info}
plugins:
  files: {path: `+sinkBin+`}
  tail: {path: `+sourceBin+`}
sources:
  shop: {type: http}
  feed: {type: tail, config: {path: `+in+`}}
sinks:
  archive:
    type: files
    config: {path: `+out+`}
pipelines:
  all: {from: [shop, feed], to: [archive]}
`)
	env := []string{"HOOKBUS_PLUGINS__FILES__REATTACH=" + sinkAddr, "HOOKBUS_PLUGINS__TAIL__REATTACH=" + sourceAddr}
	written := func(id string) func() bool {
		return func() bool {
			b, _ := os.ReadFile(out)
			return strings.Contains(string(b), `"`+id+`"`)
		}
	}
	for run, id := range []string{"k1", "k2"} {
		p := startHookbus(t, cfg, addr, env...)
		if st := postEvents(httpClient(), addr, "shop", `{"id":"`+id+`","type":"a"}`); st != 202 {
			t.Fatalf("run %d: post: %d", run+1, st)
		}
		testenv.Eventually(t, testenv.Timeout(20*time.Second), "run "+id+": event delivered by the debug-mode sink", written(id))
		testenv.Eventually(t, testenv.Timeout(20*time.Second), "event from the debug-mode source delivered", written("from-plugin"))
		if kids := children(p.cmd.Process.Pid); len(kids) != 0 {
			t.Errorf("run %d: hookbus started plugin processes %v instead of attaching", run+1, kids)
		}
		p.stop()
		logs := p.logs()
		for _, want := range []string{"attaching to the plugin in debug mode instead of starting it", "address=" + sinkAddr, "address=" + sourceAddr} {
			if !strings.Contains(logs, want) {
				t.Errorf("run %d: hookbus' log lacks %q:\n%s", run+1, want, logs)
			}
		}
	}
}

// TestPluginDebugAddressErrors: a reattach address that is not one, or
// where no plugin listens, is a clear error.
func TestPluginDebugAddressErrors(t *testing.T) {
	dir := t.TempDir()
	sinkBin := testenv.BuildBinary(t, "../../plugins/file/cmd/file-sink")
	cfg := writeConfig(t, dir, `version: 1
server: {listen: "`+freeAddr(t)+`"}
data_dir: `+filepath.Join(dir, "data")+`
plugins:
  files: {path: `+sinkBin+`, reattach: "127.0.0.1:7000"}
sources:
  shop: {type: http}
sinks:
  archive: {type: files, config: {path: `+filepath.Join(dir, "out.jsonl")+`}}
pipelines:
  all: {from: [shop], to: [archive]}
`)
	_, stderr, code := runExit(t, "", "validate", "--config", cfg)
	if code != 2 || !strings.Contains(stderr, `config.yaml:5: plugins.files.reattach: "127.0.0.1:7000" is not a plugin debug address`) {
		t.Errorf("validate: exit %d\n%s", code, stderr)
	}
	env := "HOOKBUS_PLUGINS__FILES__REATTACH=unix:" + filepath.Join(dir, "nobody.sock")
	cmd := exec.Command(binary, "validate", "--config", cfg)
	cmd.Env = append(os.Environ(), env)
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "no plugin in debug mode listens on unix:"+filepath.Join(dir, "nobody.sock")) {
		t.Errorf("validate with nothing at the address: %v\n%s", err, b)
	}
}
