package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
)

// Handshake is the go-plugin handshake shared by hookbus and its plugins.
// It is not a security measure: it only makes sure a plugin binary was
// started by hookbus (a user running it by hand gets a helpful message) and
// speaks protocol version 1.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "HOOKBUS_PLUGIN",
	MagicCookieValue: "hookbus-plugin-7c4f1e2a",
}

// flowWindow is the HTTP/2 flow-control window both ends of the plugin
// connection use (sdk/remote sets the same on the host side). A fixed window turns off gRPC's bandwidth-delay probing,
// which costs a PING round trip per burst of small messages; on a loopback
// Deliver stream that cut the CPU per delivery by about a tenth.
const flowWindow = 1 << 20

// maxMessage is the largest gRPC message a plugin takes, as large as the
// host's (go-plugin's dial options): a Deliver request holds up to 64
// deliveries of events of up to 1 MiB each (and scripts may grow them),
// far above gRPC's default limit of 4 MiB.
const maxMessage = math.MaxInt32

// PluginName is the key under which a plugin process serves the hookbus
// protocol in go-plugin's plugin set.
const PluginName = "hookbus"

// Kind names what a plugin serves.
const (
	KindSource = "source"
	KindSink   = "sink"
)

// ServeOptions is what a plugin's main hands to Serve.
type ServeOptions struct {
	// Source, when set, is served as the plugin's source.
	Source Source
	// Sink, when set, is served as the plugin's sink.
	Sink Sink
	// Manifest describes the plugin. Kinds is filled in from Source and Sink
	// when empty; an empty Name is taken from a Source or Sink implementing
	// Describer.
	Manifest Manifest
}

// Serve serves a source and/or a sink to hookbus over gRPC and returns only
// when hookbus stops the plugin. Call it from main and do nothing else: the
// plugin must write nothing to stdout before Serve (hookbus reads its
// handshake there); log to stderr, e.g. through Logger.
//
// Serve points the standard log package at hookbus' log (each line at
// info, without log's own date and time). Once Serve runs, what the plugin
// writes to os.Stdout or os.Stderr reaches hookbus' log at info too.
//
// Serve exits the process when its parent (hookbus) goes away.
func Serve(opts ServeOptions) {
	m := manifestOf(opts)
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       m.Name,
		Output:     lockedStderr{},
		JSONFormat: true,
		Level:      hclog.Debug,
	})
	routeStdLog()
	cfg := serveConfig(opts, m, logger)
	if debugMode() {
		serveDebug(cfg, m.Name)
		return
	}
	go watchParent(logger)
	plugin.Serve(cfg)
}

func serveConfig(opts ServeOptions, m Manifest, logger hclog.Logger) *plugin.ServeConfig {
	return &plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &servedPlugin{opts: opts, manifest: m}},
		GRPCServer: func(o []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(o, grpc.InitialWindowSize(flowWindow), grpc.InitialConnWindowSize(flowWindow),
				grpc.MaxRecvMsgSize(maxMessage)))
		},
		Logger: logger,
	}
}

func manifestOf(opts ServeOptions) Manifest {
	m := opts.Manifest
	for _, v := range []any{opts.Sink, opts.Source} {
		if d, ok := v.(Describer); ok && v != nil {
			dm := d.Describe()
			if m.Name == "" {
				m.Name = dm.Name
			}
			if len(m.ConfigSchema) == 0 {
				m.ConfigSchema = dm.ConfigSchema
			}
			if m.Version == "" {
				m.Version = dm.Version
			}
		}
	}
	if len(m.Kinds) == 0 {
		if opts.Source != nil {
			m.Kinds = append(m.Kinds, KindSource)
		}
		if opts.Sink != nil {
			m.Kinds = append(m.Kinds, KindSink)
		}
	}
	if m.Name == "" {
		m.Name = "plugin"
	}
	return m
}

// watchParent exits the plugin when its parent process changes (hookbus
// died, even by kill -9, and the plugin was re-parented). hookbus also
// asks the kernel to kill its plugins on Linux; this covers the rest.
func watchParent(logger hclog.Logger) {
	parent := os.Getppid()
	if parent <= 1 {
		return
	}
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			logger.Error("hookbus (the parent process) is gone; exiting", "parent_pid", parent)
			os.Exit(3)
		}
	}
}

// stderr is the process's own standard error, taken before Serve: go-plugin
// then points os.Stderr at a pipe it streams to hookbus over the
// connection, which a crash can cut short. hookbus reads this one directly.
var stderr = os.Stderr

// stderrMu serialises whole lines written to stderr by Logger and the
// standard log package.
var stderrMu sync.Mutex

// lockedStderr writes each call's bytes to stderr in one piece.
type lockedStderr struct{}

func (lockedStderr) Write(p []byte) (int, error) {
	stderrMu.Lock()
	defer stderrMu.Unlock()
	return stderr.Write(p)
}

// hclogTime is the timestamp layout hookbus (through go-plugin) reads in a
// plugin's JSON log lines: exactly six fractional digits.
const hclogTime = "2006-01-02T15:04:05.000000Z07:00"

// Logger returns a logger for plugin code, usable before and after Serve.
// It writes JSON lines to the process's standard error in the form hookbus
// reads (hclog's: @timestamp, @level, @message), and each shows up in
// hookbus' log at its level with plugin=<name>, the other attributes
// kept. The standard log package's lines (Serve routes them) and plain
// writes to os.Stderr show up at info.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(lockedStderr{}, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
				if t, ok := a.Value.Any().(time.Time); ok {
					a.Value = slog.StringValue(t.Format(hclogTime))
				}
			case slog.MessageKey:
				a.Key = "@message"
			case slog.LevelKey:
				a.Key = "@level"
				a.Value = slog.StringValue(hclogLevel(a.Value.Any()))
			}
			return a
		},
	}))
}

// stdLogWriter turns each line of the standard log package into an hclog
// JSON line at info on stderr.
type stdLogWriter struct{}

func (stdLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	b, err := json.Marshal(map[string]string{
		"@timestamp": time.Now().Format(hclogTime),
		"@level":     "info",
		"@message":   msg,
	})
	if err != nil {
		return 0, err
	}
	if _, err := (lockedStderr{}).Write(append(b, '\n')); err != nil {
		return 0, err
	}
	return len(p), nil
}

// routeStdLog points the standard log package at hookbus' log (at info),
// without its date and time: hookbus stamps every line.
func routeStdLog() {
	log.SetOutput(stdLogWriter{})
	log.SetFlags(log.Flags() &^ (log.Ldate | log.Ltime | log.Lmicroseconds | log.LUTC))
}

func hclogLevel(v any) string {
	l, ok := v.(slog.Level)
	if !ok {
		return "info"
	}
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}

// servedPlugin is the go-plugin side of Serve.
type servedPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	opts     ServeOptions
	manifest Manifest
}

func (p *servedPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginv1.RegisterPluginServer(s, &pluginServer{opts: p.opts, manifest: p.manifest})
	if p.opts.Sink != nil {
		pluginv1.RegisterSinkServer(s, &sinkServer{sink: p.opts.Sink})
	}
	if p.opts.Source != nil {
		pluginv1.RegisterSourceServer(s, &sourceServer{src: p.opts.Source})
	}
	return nil
}

func (p *servedPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("sdk: the plugin side has no client")
}
