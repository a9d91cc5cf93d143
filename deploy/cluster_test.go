package deploy

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/testenv"
)

// The files of a clustered deployment: three NATS node configs
// (nats/nats-N.conf), the systemd units (systemd/) and a hookbus config of
// one instance (hookbus/cluster.yaml).

var natsConfigs = []string{"nats/nats-1.conf", "nats/nats-2.conf", "nats/nats-3.conf"}

// TestNATSConfigsAreValid: nats-server accepts each node's file, and the
// three describe one cluster: distinct server names, one cluster name, the
// same routes naming every node, JetStream on.
func TestNATSConfigsAreValid(t *testing.T) {
	bin := testenv.NeedCommand(t, "nats-server")
	var names, clusters, routes []string
	for _, f := range natsConfigs {
		if out, err := exec.Command(bin, "-t", "-c", f).CombinedOutput(); err != nil {
			t.Errorf("nats-server -t -c %s: %v\n%s", f, err, out)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		names = append(names, field(t, f, s, `(?m)^server_name:\s*(\S+)`))
		clusters = append(clusters, field(t, f, s, `(?m)^\s+name:\s*(\S+)`))
		routes = append(routes, strings.Join(regexp.MustCompile(`nats-route://\S+`).FindAllString(s, -1), " "))
		if !regexp.MustCompile(`(?m)^jetstream\s*\{`).MatchString(s) {
			t.Errorf("%s: JetStream is not enabled", f)
		}
	}
	for i := range natsConfigs {
		if names[i] != fmt.Sprintf("nats-%d", i+1) {
			t.Errorf("%s: server_name %q, want nats-%d", natsConfigs[i], names[i], i+1)
		}
		if clusters[i] != clusters[0] || routes[i] != routes[0] {
			t.Errorf("%s: cluster %q routes %q differ from %s's (%q, %q)", natsConfigs[i], clusters[i], routes[i], natsConfigs[0], clusters[0], routes[0])
		}
		if !strings.Contains(routes[0], names[i]+".") {
			t.Errorf("the routes %q do not name %s", routes[0], names[i])
		}
	}
}

// field returns the first submatch of re in s, failing the test when none.
func field(t *testing.T, file, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Errorf("%s: no match for %s", file, re)
		return ""
	}
	return m[1]
}

// TestNATSConfigsFormACluster runs the three node files as they are, with
// only the addresses and the store directory moved to loopback ports and
// temporary directories: the nodes form a cluster that holds a stream of
// three replicas.
func TestNATSConfigsFormACluster(t *testing.T) {
	bin := testenv.NeedCommand(t, "nats-server")
	dir := t.TempDir()
	port := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	type node struct{ client, http, route int }
	nodes := make([]node, len(natsConfigs))
	for i := range nodes {
		nodes[i] = node{port(), port(), port()}
	}
	var urls []string
	for i, f := range natsConfigs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		r := strings.NewReplacer(
			"0.0.0.0:4222", fmt.Sprintf("127.0.0.1:%d", nodes[i].client),
			"0.0.0.0:8222", fmt.Sprintf("127.0.0.1:%d", nodes[i].http),
			"0.0.0.0:6222", fmt.Sprintf("127.0.0.1:%d", nodes[i].route),
			"/var/lib/nats/jetstream", filepath.Join(dir, fmt.Sprint(i)),
			"max_file_store: 50GB", "max_file_store: 1GB",
		)
		s = r.Replace(s)
		for j := range nodes {
			s = strings.ReplaceAll(s, fmt.Sprintf("nats-%d.hookbus.internal:6222", j+1), fmt.Sprintf("127.0.0.1:%d", nodes[j].route))
		}
		conf := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() })
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].client))
	}
	var nc *nats.Conn
	testenv.Eventually(t, 30*time.Second, "a node accepting connections", func() bool {
		var err error
		nc, err = nats.Connect(strings.Join(urls, ","))
		return err == nil
	})
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "a stream of three replicas", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "DEPLOYCHECK", Subjects: []string{"deploy.check"}, Replicas: 3})
		if err != nil {
			return false
		}
		ci := s.CachedInfo().Cluster
		return ci != nil && ci.Leader != "" && len(ci.Replicas) == 2
	})
}

// TestSystemdUnitsVerify: systemd-analyze verify accepts the units, the
// hookbus one with its ExecStart pointing at a hookbus binary built now.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze := testenv.NeedCommand(t, "systemd-analyze")
	bin := testenv.BuildBinary(t, "github.com/hookbus/hookbus/cmd/hookbus")
	dir := t.TempDir()
	for _, f := range []string{"systemd/hookbus.service", "systemd/nats.service"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/hookbus", bin)
		if strings.Contains(s, "/usr/sbin/nats-server") {
			s = strings.ReplaceAll(s, "/usr/sbin/nats-server", testenv.NeedCommand(t, "nats-server"))
		}
		unit := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(unit, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s", f, err, out)
		}
	}
	// The unit's stop timeout leaves room for the config's drain.
	b, _ := os.ReadFile("systemd/hookbus.service")
	if !strings.Contains(string(b), "TimeoutStopSec=45s") {
		t.Error("hookbus.service: TimeoutStopSec is not 45s (server.shutdown_timeout 30s and a margin)")
	}
}

// TestClusterConfigValidates: hookbus validate accepts the clustered
// instance's configuration, with its secrets in the environment.
func TestClusterConfigValidates(t *testing.T) {
	bin := testenv.BuildBinary(t, "github.com/hookbus/hookbus/cmd/hookbus")
	cmd := exec.Command(bin, "validate", "--config", "hookbus/cluster.yaml")
	cmd.Env = append(os.Environ(), "HOOKBUS_API_KEY=admin-key", "HOOKBUS_PG_DSN=postgres://hookbus@127.0.0.1:5432/hookbus",
		"HOOKBUS_ENCRYPTION_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hookbus validate deploy/hookbus/cluster.yaml: %v\n%s", err, out)
	}
	b, err := os.ReadFile("hookbus/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"driver: nats", "replicas: 3", "nats-1.hookbus.internal:4222", "nats-3.hookbus.internal:4222", "driver: postgres"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("hookbus/cluster.yaml lacks %q", want)
		}
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }
