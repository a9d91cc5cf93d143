package sdk

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-plugin"
)

// DebugEnv is the environment variable that puts Serve in debug mode: set
// it to 1 and start the plugin binary yourself, for example under a
// debugger (dlv exec ./my-plugin, or dlv debug ./cmd/my-plugin), instead of
// letting hookbus start it. Serve then listens on a local socket, prints
// the address for hookbus to attach to, and serves until the process is
// ended, hookbus runs coming and going: give the address to hookbus as
// plugins.<name>.reattach (for example through
// HOOKBUS_PLUGINS__<NAME>__REATTACH) and start hookbus as usual. The
// plugin's logs go to its own terminal. A plugin started by hookbus
// ignores the variable.
const DebugEnv = "HOOKBUS_PLUGIN_DEBUG"

// debugMode reports whether Serve runs in debug mode: DebugEnv is set and
// the process was not started by hookbus (no handshake cookie).
func debugMode() bool {
	return os.Getenv(DebugEnv) != "" && os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue
}

// ReattachAddr formats a listener's address the way plugins.<name>.reattach
// takes it: "unix:/tmp/plugin123" or "tcp:127.0.0.1:7000".
func ReattachAddr(network, address string) string { return network + ":" + address }

// serveDebug serves cfg in go-plugin's test mode (no handshake line, no
// TLS) until the process ends, announcing the address on stderr.
func serveDebug(cfg *plugin.ServeConfig, name string) {
	reattach := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	cfg.Test = &plugin.ServeTestConfig{ReattachConfigCh: reattach, CloseCh: closed}
	go plugin.Serve(cfg)
	select {
	case rc := <-reattach:
		addr := ReattachAddr(rc.Addr.Network(), rc.Addr.String())
		fmt.Fprintf(stderr, "hookbus plugin %s in debug mode (pid %d), waiting for hookbus on %s\n"+
			"start hookbus with plugins.<name>.reattach set to that address, e.g.:\n"+
			"  HOOKBUS_PLUGINS__<NAME>__REATTACH=%s hookbus run --config config.yaml\n",
			name, os.Getpid(), addr, addr)
	case <-closed:
		return
	}
	<-closed
}
