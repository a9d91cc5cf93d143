package remote

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/hookbus/hookbus/sdk"
)

// ParseReattach parses a plugin's debug-mode address ("unix:/tmp/plugin1",
// "tcp:127.0.0.1:7000"; see sdk.DebugEnv) into its network and address.
func ParseReattach(s string) (network, address string, err error) {
	network, address, ok := strings.Cut(s, ":")
	if !ok || address == "" || network != "unix" && network != "tcp" {
		return "", "", fmt.Errorf("%q is not a plugin debug address (unix:/path/to/socket or tcp:host:port, as the plugin printed it)", s)
	}
	if network == "tcp" {
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", fmt.Errorf("%q is not a plugin debug address: %v", s, err)
		}
	}
	return network, address, nil
}

// reattachConfig is go-plugin's configuration for attaching to a plugin
// serving in debug mode. The plugin was not started by this process and
// goes on serving when the host disconnects; the runner only tells when it
// stopped listening. detach ends the runner's watch.
func reattachConfig(s string) (rc *plugin.ReattachConfig, detach func(), err error) {
	network, address, err := ParseReattach(s)
	if err != nil {
		return nil, nil, err
	}
	a := &attached{network: network, address: address, killed: make(chan struct{})}
	var addr net.Addr
	if network == "unix" {
		addr = &net.UnixAddr{Net: "unix", Name: address}
	} else if addr, err = net.ResolveTCPAddr("tcp", address); err != nil {
		return nil, nil, fmt.Errorf("plugin debug address %q: %w", s, err)
	}
	return &plugin.ReattachConfig{
		Protocol:        plugin.ProtocolGRPC,
		ProtocolVersion: 1,
		Addr:            addr,
		Test:            true,
		ReattachFunc: func() (runner.AttachedRunner, error) {
			c, err := net.DialTimeout(network, address, 5*time.Second)
			if err != nil {
				return nil, fmt.Errorf("no plugin in debug mode listens on %s (start it with %s=1 and use the address it prints): %v", s, sdk.DebugEnv, err)
			}
			_ = c.Close()
			return a, nil
		},
	}, func() { _ = a.Kill(context.Background()) }, nil
}

// attached is a plugin in debug mode: Wait returns once it no longer
// takes connections (it exited, or the debugger restarted it).
type attached struct {
	network, address string
	once             sync.Once
	killed           chan struct{}
}

func (a *attached) Wait(ctx context.Context) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.killed:
			return nil
		case <-t.C:
			c, err := net.DialTimeout(a.network, a.address, time.Second)
			if err != nil {
				return nil
			}
			_ = c.Close()
		}
	}
}

// Kill does not stop the plugin (the developer's debugger owns it); it ends Wait.
func (a *attached) Kill(context.Context) error {
	a.once.Do(func() { close(a.killed) })
	return nil
}

func (a *attached) ID() string { return a.network + ":" + a.address }

func (a *attached) PluginToHost(n, addr string) (string, string, error) { return n, addr, nil }

func (a *attached) HostToPlugin(n, addr string) (string, string, error) { return n, addr, nil }
