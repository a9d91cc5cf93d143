package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/testenv"
)

// children returns the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 {
			if pp, _ := strconv.Atoi(fields[1]); pp == pid {
				out = append(out, p)
			}
		}
	}
	return out
}

// alive tells whether pid is a live (not zombie) process.
func alive(pid int) bool {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "State:"); ok {
			return !strings.Contains(v, "Z")
		}
	}
	return false
}

// TestKill9LeavesNoPluginBehind runs hookbus with an out-of-process sink
// plugin, kills hookbus with SIGKILL and checks the plugin process is gone.
func TestKill9LeavesNoPluginBehind(t *testing.T) {
	dir := t.TempDir()
	plugin := testenv.BuildBinary(t, "../../plugins/file/cmd/file-sink")
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, `version: 1
server: {listen: "`+addr+`"}
data_dir: `+filepath.Join(dir, "data")+`
log: {level: warn}
plugins:
  files: {path: `+plugin+`}
sources:
  shop: {type: http}
sinks:
  archive:
    type: files
    config: {path: `+filepath.Join(dir, "out.jsonl")+`}
pipelines:
  all: {from: [shop], to: [archive]}
`)
	if out, stderr, code := runExit(t, "", "validate", "--config", cfg); code != 0 {
		t.Fatalf("validate: %d %s %s", code, out, stderr)
	}
	if out := runCLI(t, "plugins", "describe", plugin); !strings.Contains(out, `"name": "file"`) || !strings.Contains(out, `"sink"`) || !strings.Contains(out, `"config_schema"`) {
		t.Errorf("plugins describe: %s", out)
	}
	p := startHookbus(t, cfg, addr)
	if st := postEvents(httpClient(), addr, "shop", `{"id":"k1","type":"a"}`); st != 202 {
		t.Fatal(st)
	}
	testenv.Eventually(t, 20*time.Second, "event written by the plugin", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
		return strings.Contains(string(b), `"k1"`)
	})
	kids := children(p.cmd.Process.Pid)
	if len(kids) == 0 {
		t.Fatal("no plugin process found under hookbus")
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	testenv.Eventually(t, 10*time.Second, "plugin processes gone", func() bool {
		for _, k := range kids {
			if alive(k) {
				return false
			}
		}
		return true
	})
}

// TestRunReportsEveryRejectedPluginConfig: `hookbus run` with two sink
// configs their plugin rejects exits 2 naming both, as validate does.
func TestRunReportsEveryRejectedPluginConfig(t *testing.T) {
	dir := t.TempDir()
	plugin := testenv.BuildBinary(t, "../../core/pluginhost/testdata/crashsink")
	cfg := writeConfig(t, dir, `version: 1
server: {listen: "`+freeAddr(t)+`"}
data_dir: `+filepath.Join(dir, "data")+`
queue: {driver: memory}
plugins:
  crash: {path: `+plugin+`}
sources:
  shop: {type: http}
sinks:
  a: {type: crash, config: {crash_every: -1}}
  b: {type: crash, config: {crash_every: -2}}
pipelines:
  all: {from: [shop], to: [a, b]}
`)
	_, stderr, code := runExit(t, "", "run", "--config", cfg)
	if code != 2 {
		t.Fatalf("run: exit %d, want 2\n%s", code, stderr)
	}
	for _, w := range []string{"sinks.a.config.crash_every: crashsink wants crash_every >= 0, got -1", "sinks.b.config.crash_every: crashsink wants crash_every >= 0, got -2"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("run's output does not name %q:\n%s", w, stderr)
		}
	}
}

// TestPluginConfigProblemsAllAtOnce: validate and run report the same
// problems of plugin config blocks, in one round, in config.Load's format
// (file:line: key path: message), with exit code 2: the schema's (an
// unknown key at its own path) and the plugin's own check's together.
func TestPluginConfigProblemsAllAtOnce(t *testing.T) {
	dir := t.TempDir()
	crash := testenv.BuildBinary(t, "../../core/pluginhost/testdata/crashsink")
	files := testenv.BuildBinary(t, "../../plugins/file/cmd/file-sink")
	cfg := writeConfig(t, dir, `version: 1
server: {listen: "`+freeAddr(t)+`"}
data_dir: `+filepath.Join(dir, "data")+`
queue: {driver: memory}
plugins:
  crash: {path: `+crash+`}
  files: {path: `+files+`}
sources:
  shop: {type: http}
sinks:
  a:
    type: crash
    config:
      crash_every: -1
      colour: red
  b:
    type: files
    config:
      max_line_bytes: big
pipelines:
  all: {from: [shop], to: [a, b]}
`)
	want := []string{
		"config.yaml:14: sinks.a.config.crash_every: crashsink wants crash_every >= 0, got -1",
		"config.yaml:15: sinks.a.config.colour: unknown key",
		"config.yaml:18: sinks.b.config.path: required",
		"config.yaml:19: sinks.b.config.max_line_bytes: got string, want integer",
	}
	for _, cmd := range []string{"validate", "run"} {
		t.Run(cmd, func(t *testing.T) {
			_, stderr, code := runExit(t, "", cmd, "--config", cfg)
			if code != 2 {
				t.Fatalf("%s: exit %d, want 2\n%s", cmd, code, stderr)
			}
			var got []string
			for _, l := range strings.Split(stderr, "\n") {
				if strings.Contains(l, "config.yaml:") {
					got = append(got, l[strings.Index(l, "config.yaml:"):])
				}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s reported\n%s\nwant\n%s\nstderr:\n%s", cmd, strings.Join(got, "\n"), strings.Join(want, "\n"), stderr)
			}
		})
	}
}
