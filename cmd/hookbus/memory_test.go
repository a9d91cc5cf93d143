package main

import (
	"io"
	"net/http"
	"regexp"
	"testing"
)

// gomemlimit is the soft memory limit line of /metrics.
var gomemlimit = regexp.MustCompile(`(?m)^go_gc_gomemlimit_bytes (\S+)$`)

// server.memory_limit becomes the process's soft memory limit, also when
// set through the environment; without it GOMEMLIMIT is honoured.
func TestRunAppliesTheMemoryLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"config key", []string{"HOOKBUS_SERVER__MEMORY_LIMIT=96MiB"}, "1.00663296e+08"},
		{"GOMEMLIMIT", []string{"GOMEMLIMIT=80MiB"}, "8.388608e+07"},
		{"key over GOMEMLIMIT", []string{"GOMEMLIMIT=80MiB", "HOOKBUS_SERVER__MEMORY_LIMIT=96MiB"}, "1.00663296e+08"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSink(t)
			addr := freeAddr(t)
			p := startHookbus(t, embeddedConfig(t, addr, rcv.srv.URL, ""), addr, tc.env...)
			defer p.stop()
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			m := gomemlimit.FindSubmatch(b)
			if m == nil {
				t.Fatalf("no go_gc_gomemlimit_bytes in /metrics")
			}
			if string(m[1]) != tc.want {
				t.Errorf("go_gc_gomemlimit_bytes %s, want %s", m[1], tc.want)
			}
		})
	}
}
