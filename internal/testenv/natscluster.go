package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSCluster is a NATS JetStream cluster of nats-server processes (the
// machine's binary) on loopback ports, each with a store directory of the
// test's own: what a clustered deployment runs, killable node by node.
type NATSCluster struct {
	t     testing.TB
	bin   string
	Name  string
	nodes []*natsNode
}

type natsNode struct {
	name, client, route, conf string
	cmd                       *exec.Cmd
	done                      chan struct{}
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// StartNATSCluster starts an n-node JetStream cluster from the
// nats-server on PATH (skipping the test, or failing it in CI, when there
// is none) and waits until it has a JetStream leader. The nodes are
// killed at the end of the test.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	c := &NATSCluster{t: t, bin: NeedCommand(t, "nats-server"), Name: "hbtest"}
	dir := t.TempDir()
	var routes []string
	for i := range n {
		nd := &natsNode{name: fmt.Sprintf("n%d", i+1), client: freePort(t), route: freePort(t)}
		routes = append(routes, "nats-route://"+nd.route)
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		nd.conf = filepath.Join(dir, nd.name+".conf")
		body := fmt.Sprintf(`server_name: %s
listen: %s
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 2GB
}
cluster {
  name: %s
  listen: %s
  routes: [%s]
}
`, nd.name, nd.client, filepath.Join(dir, nd.name), c.Name, nd.route, strings.Join(routes, ", "))
		if err := os.WriteFile(nd.conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.nodes {
		c.Start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Kill(i)
		}
	})
	c.WaitJetStream(0)
	return c
}

// freePort returns a loopback host:port that is free now.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// URL is the client URL of node i.
func (c *NATSCluster) URL(i int) string { return "nats://" + c.nodes[i].client }

// URLs is the client URLs of every node, comma-separated, as queue.url
// takes them.
func (c *NATSCluster) URLs() string {
	var out []string
	for i := range c.nodes {
		out = append(out, c.URL(i))
	}
	return strings.Join(out, ",")
}

// NodeName is node i's server_name.
func (c *NATSCluster) NodeName(i int) string { return c.nodes[i].name }

// Node returns the index of the node named name (-1: none).
func (c *NATSCluster) Node(name string) int {
	for i, nd := range c.nodes {
		if nd.name == name {
			return i
		}
	}
	return -1
}

// Start starts node i (again, after Kill) and waits until it accepts
// connections.
func (c *NATSCluster) Start(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	out := &lockedBuf{}
	nd.cmd = exec.Command(c.bin, "-c", nd.conf)
	nd.cmd.Stdout, nd.cmd.Stderr = out, out
	if err := nd.cmd.Start(); err != nil {
		c.t.Fatalf("start nats-server %s: %v", nd.name, err)
	}
	nd.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(nd.cmd, nd.done)
	up := Wait(30*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", nd.client, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	if !up {
		c.t.Fatalf("nats-server %s not listening within 30s: %s", nd.name, out.String())
	}
}

// String returns what the buffer holds.
func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Kill kills node i with SIGKILL and waits for it to be gone; a node not
// running is left alone.
func (c *NATSCluster) Kill(i int) {
	nd := c.nodes[i]
	if nd.cmd == nil || nd.cmd.Process == nil {
		return
	}
	select {
	case <-nd.done:
		return
	default:
	}
	_ = nd.cmd.Process.Signal(syscall.SIGKILL)
	<-nd.done
}

// WaitJetStream waits until JetStream answers through node i (the
// cluster has a meta leader).
func (c *NATSCluster) WaitJetStream(i int) {
	c.t.Helper()
	nc, err := nats.Connect(c.URL(i))
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	Eventually(c.t, time.Minute, "a JetStream meta leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
}

// StreamLeader returns the node index of stream's leader (-1: none or
// unknown), asked through any node that answers.
func (c *NATSCluster) StreamLeader(stream string) int {
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil || s.CachedInfo().Cluster == nil {
		return -1
	}
	return c.Node(s.CachedInfo().Cluster.Leader)
}

// PIDs returns the process ids of the running nodes.
func (c *NATSCluster) PIDs() []int {
	var out []int
	for _, nd := range c.nodes {
		if nd.cmd == nil || nd.cmd.Process == nil {
			continue
		}
		select {
		case <-nd.done:
		default:
			out = append(out, nd.cmd.Process.Pid)
		}
	}
	return out
}
