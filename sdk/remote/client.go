// Package remote is the host side of the hookbus plugin protocol: it starts
// a plugin binary through go-plugin and gives proxies that implement
// sdk.Sink and sdk.Source over the gRPC connection.
//
// It does not supervise: a crashed plugin stays crashed. hookbus' plugin
// host (core/pluginhost) adds restarts on top; sdk/plugintest uses this
// package directly to test a built plugin binary.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hookbus/hookbus/sdk"
	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
)

// ErrUnavailable is wrapped by errors caused by the transport rather than
// the plugin's own logic: the process crashed, hung or cannot be reached.
var ErrUnavailable = errors.New("plugin unavailable")

// flowWindow is the HTTP/2 flow-control window of the plugin connection,
// the same as the plugin side's (sdk.Serve). A fixed window turns off
// gRPC's bandwidth-delay probing, a PING round trip per burst of small
// messages: on a loopback Deliver stream about a tenth of the CPU per delivery.
const flowWindow = 1 << 20

// Options configure Start.
type Options struct {
	// Cmd is the plugin command, not yet started. Start adds the handshake
	// environment to it. When Cmd.Env is nil the plugin inherits this
	// process's environment; otherwise Cmd.Env is its whole environment.
	Cmd *exec.Cmd
	// Reattach, when set, is the address of a plugin serving in debug mode
	// (sdk.DebugEnv), e.g. "unix:/tmp/plugin123": Start attaches to it
	// instead of starting Cmd, which then only names the plugin. Kill
	// leaves that process to the developer; it exits when disconnected.
	Reattach string
	// Logger receives the plugin's log lines, each at its level (see
	// lineLogger: hclog JSON lines as sdk.Logger writes them, the standard
	// log package's and plain writes to stderr at info, a panic at error),
	// and go-plugin's own messages; nil discards them.
	Logger hclog.Logger
	// StartTimeout bounds the handshake; zero means 10s.
	StartTimeout time.Duration
	// CallTimeout bounds unary calls (Init, Close, Describe, ...) and the
	// wait for one Deliver answer; zero means 60s.
	CallTimeout time.Duration
}

// Client is one running plugin process.
type Client struct {
	pc          *plugin.Client
	conn        *grpc.ClientConn
	pid         int
	callTimeout time.Duration
	detach      func() // ends the watch of a reattached plugin, nil otherwise
}

// Start starts the plugin process and completes the handshake.
func Start(opts Options) (*Client, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	if opts.CallTimeout == 0 {
		opts.CallTimeout = 60 * time.Second
	}
	cc := &plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         plugin.PluginSet{sdk.PluginName: connPlugin{}},
		Cmd:             opts.Cmd,
		// A Cmd with its own Env carries the whole environment already;
		// go-plugin would otherwise append hookbus' environment after it
		// and override the plugin's configured values.
		SkipHostEnv:      opts.Cmd.Env != nil,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           newStderrOff(opts.Logger, opts.Cmd.Path),
		StartTimeout:     opts.StartTimeout,
		// The process's stderr, and what the plugin writes to os.Stdout and
		// os.Stderr once sdk.Serve replaced them (go-plugin streams it).
		Stderr:          newLineLogger(opts.Logger),
		SyncStdout:      newLineLogger(opts.Logger),
		SyncStderr:      newLineLogger(opts.Logger),
		GRPCDialOptions: []grpc.DialOption{grpc.WithInitialWindowSize(flowWindow), grpc.WithInitialConnWindowSize(flowWindow)},
	}
	name := filepath.Base(opts.Cmd.Path)
	detach := func() {}
	if opts.Reattach != "" {
		rc, d, err := reattachConfig(opts.Reattach)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", name, err)
		}
		cc.Cmd, cc.Reattach, cc.SkipHostEnv, detach = nil, rc, false, d
	}
	pc := plugin.NewClient(cc)
	rpc, err := pc.Client()
	if err != nil {
		pc.Kill()
		detach()
		return nil, startError(name, err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		pc.Kill()
		detach()
		return nil, fmt.Errorf("plugin %s: %w", name, err)
	}
	c := &Client{pc: pc, conn: raw.(*grpc.ClientConn), callTimeout: opts.CallTimeout, detach: detach}
	if opts.Reattach != "" {
		// go-plugin's Kill leaves a reattached plugin and its connection alone.
		c.detach = func() { detach(); _ = c.conn.Close() }
	}
	if opts.Cmd.Process != nil {
		c.pid = opts.Cmd.Process.Pid
	}
	return c, nil
}

// startError words a failed start for plugins in any language: what
// hookbus expected, with the section of sdk/PROTOCOL.md that says how.
func startError(name string, err error) error {
	msg := err.Error()
	exited := fmt.Errorf("plugin %s exited before completing the handshake; its log above says why "+
		"(a plugin must listen and print its handshake line on stdout within the start timeout, "+
		"see sdk/PROTOCOL.md sections 1-2; Go plugins do it in sdk.Serve): %w", name, ErrUnavailable)
	switch {
	case strings.Contains(msg, "Unrecognized remote plugin message"):
		line, _, _ := strings.Cut(strings.TrimPrefix(msg, "Unrecognized remote plugin message: "), "\n")
		if strings.TrimSpace(line) == "" {
			return exited
		}
		return fmt.Errorf("plugin %s: handshake failed: its first line on stdout was %q, not the handshake line "+
			"(CORE-VERSION|APP-VERSION|NETWORK|ADDRESS|grpc|CERT, sdk/PROTOCOL.md section 2): write nothing to stdout before it and log to stderr: %w",
			name, line, ErrUnavailable)
	case strings.Contains(strings.ToLower(msg), "incompatible api version"):
		return fmt.Errorf("plugin %s speaks another hookbus plugin protocol version (hookbus speaks %d, offered in PLUGIN_PROTOCOL_VERSIONS; sdk/PROTOCOL.md section 2): %v: %w",
			name, sdk.ProtocolVersion, err, ErrUnavailable)
	case strings.Contains(msg, "exited before we could connect"):
		return exited
	case strings.Contains(msg, "error parsing server cert"):
		return fmt.Errorf("plugin %s: the certificate in its handshake line (field 6) is not valid: it must be the server certificate's DER "+
			"in standard base64 without padding (sdk/PROTOCOL.md sections 2-3): %v: %w", name, err, ErrUnavailable)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("plugin %s printed no handshake line on stdout within the start timeout (sdk/PROTOCOL.md section 2): %w", name, ErrUnavailable)
	}
	return fmt.Errorf("plugin %s: start: %v: %w", name, err, ErrUnavailable)
}

// Pid is the plugin's process id.
func (c *Client) Pid() int { return c.pid }

// Exited reports whether the process has exited.
func (c *Client) Exited() bool { return c.pc.Exited() }

// Kill stops the process: gracefully first, then by force. A reattached
// plugin (Options.Reattach) is only disconnected: it goes on serving.
func (c *Client) Kill() {
	c.pc.Kill()
	c.detach()
}

// Ping checks that the plugin answers its health service.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	_, err := grpc_health_v1.NewHealthClient(c.conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return fmt.Errorf("health check: %v: %w", err, ErrUnavailable)
	}
	return nil
}

// Describe asks the plugin for its manifest.
func (c *Client) Describe(ctx context.Context) (sdk.Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := pluginv1.NewPluginClient(c.conn).Describe(ctx, &pluginv1.DescribeRequest{})
	if err != nil {
		return sdk.Manifest{}, transportError("Describe", err)
	}
	return sdk.Manifest{
		Name:         resp.Name,
		Kinds:        resp.Kinds,
		ConfigSchema: json.RawMessage(resp.ConfigSchema),
		Version:      resp.Version,
	}, nil
}

// ValidateConfig asks the plugin to check a configuration of its kind
// ("source" or "sink"). A rejection is an *Error carrying the plugin's own
// message.
func (c *Client) ValidateConfig(ctx context.Context, kind string, config json.RawMessage) error {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	resp, err := pluginv1.NewPluginClient(c.conn).ValidateConfig(ctx, &pluginv1.ValidateConfigRequest{Kind: kind, Config: config})
	if err != nil {
		return transportError("ValidateConfig", err)
	}
	return fromWire(resp.Error)
}

func transportError(call string, err error) error {
	if strings.Contains(err.Error(), "authentication handshake failed") {
		return fmt.Errorf("%s: %v (the plugin must serve TLS with the certificate of its handshake line and accept hookbus' "+
			"PLUGIN_CLIENT_CERT, negotiating h2 by ALPN; sdk/PROTOCOL.md section 3): %w", call, err, ErrUnavailable)
	}
	return fmt.Errorf("%s: %v: %w", call, err, ErrUnavailable)
}

// Error is an application error a plugin returned, with its stable code.
type Error struct {
	// Code is the protocol's error code, e.g. ERROR_CODE_INVALID_CONFIG.
	Code pluginv1.ErrorCode
	// Message is the plugin's own message.
	Message string
	// Fields lists per-field configuration problems.
	Fields []*sdk.ConfigError
}

func (e *Error) Error() string { return e.Message }

// Unwrap gives the field errors, so errors.As finds *sdk.ConfigError.
func (e *Error) Unwrap() []error {
	out := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f
	}
	return out
}

func fromWire(w *pluginv1.Error) error {
	if w == nil {
		return nil
	}
	e := &Error{Code: w.Code, Message: w.Message}
	for _, f := range w.Fields {
		e.Fields = append(e.Fields, &sdk.ConfigError{Field: f.Field, Message: f.Message})
	}
	return e
}

// connPlugin hands the raw gRPC connection to Start.
type connPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (connPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("remote: host side only")
}

func (connPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return conn, nil
}
