// Package pluginhost runs hookbus' out-of-process plugins: it starts each
// plugin binary through go-plugin, supervises it (restart with backoff when
// it exits or stops answering) and hands the pipeline proxies implementing
// sdk.Sink and sdk.Source, so in-process and out-of-process components look
// the same.
//
// No plugin process outlives hookbus: on Linux each plugin gets
// Pdeathsig=SIGKILL from a dedicated OS thread that lives as long as the
// plugin, and the sdk makes every plugin exit when its parent goes away.
package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/sdk/remote"
)

// Spec says how to run a plugin binary.
type Spec struct {
	// Path is the plugin executable. It is started directly, never through a shell.
	Path string
	// SHA256, when set, is the hex SHA-256 of the executable, checked before
	// every start.
	SHA256 string
	// Args are extra command-line arguments.
	Args []string
	// Env holds extra environment variables ("KEY=value"), added to hookbus' own.
	Env []string
	// Reattach, when set, is the address of the plugin already serving in
	// debug mode (sdk.DebugEnv), e.g. "unix:/tmp/plugin123": hookbus
	// attaches to that process instead of starting Path (whose checksum
	// is then not checked), and a restart attaches again.
	Reattach string
	// CallTimeout bounds every call to the plugin, including the wait for
	// one Deliver answer; a plugin that takes longer is restarted. Zero means 60s.
	CallTimeout time.Duration
	// HealthInterval is how often the plugin's health service is checked.
	// Zero means 5s.
	HealthInterval time.Duration
	// StartTimeout bounds the handshake. Zero means 10s.
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a restart; it doubles
	// from MinBackoff after each quick failure. Zero means 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

func (s *Spec) setDefaults() {
	if s.CallTimeout == 0 {
		s.CallTimeout = 60 * time.Second
	}
	if s.HealthInterval == 0 {
		s.HealthInterval = 5 * time.Second
	}
	if s.StartTimeout == 0 {
		s.StartTimeout = 10 * time.Second
	}
	if s.MinBackoff == 0 {
		s.MinBackoff = 100 * time.Millisecond
	}
	if s.MaxBackoff == 0 {
		s.MaxBackoff = 30 * time.Second
	}
}

// Validate checks the spec without starting anything.
func (s Spec) Validate() error {
	var errs []error
	if s.Path == "" {
		errs = append(errs, errors.New("path: required"))
	}
	if s.Reattach != "" {
		if _, _, err := remote.ParseReattach(s.Reattach); err != nil {
			errs = append(errs, fmt.Errorf("reattach: %w", err))
		}
	}
	if s.SHA256 != "" {
		if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("sha256: %q is not a hex SHA-256", s.SHA256))
		}
	}
	return errors.Join(errs...)
}

// ErrChecksum is wrapped by the error of a start refused because the
// executable does not match Spec.SHA256.
var ErrChecksum = errors.New("plugin checksum mismatch")

func verifyChecksum(path, want string) error {
	if want == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if !strings.EqualFold(got, want) {
		return fmt.Errorf("%w: %s has sha256 %s, config says %s", ErrChecksum, path, got, want)
	}
	return nil
}

// Host starts and supervises plugins.
type Host struct {
	logger   *slog.Logger
	restarts *prometheus.CounterVec

	mu      sync.Mutex
	plugins map[*Plugin]struct{}
	closed  bool
}

// New returns a Host logging to logger. When reg is not nil the counter
// hookbus_plugin_restarts_total{plugin} is registered with it.
func New(logger *slog.Logger, reg prometheus.Registerer) *Host {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	restarts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookbus_plugin_restarts_total",
		Help: "Restarts of out-of-process plugins after a crash, hang or failed health check.",
	}, []string{"plugin"})
	if reg != nil {
		if err := reg.Register(restarts); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					restarts = existing
				}
			} else {
				logger.Error("register plugin metrics", "error", err)
			}
		}
	}
	return &Host{logger: logger, restarts: restarts, plugins: map[*Plugin]struct{}{}}
}

// Start starts the plugin binary and its supervisor. name identifies the
// plugin in logs (attr plugin=<name>) and metrics. The first start's error
// is returned; later crashes are handled by restarts.
func (h *Host) Start(ctx context.Context, name string, spec Spec) (*Plugin, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("plugin %q: %w", name, err)
	}
	spec.setDefaults()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("plugin %q: host is closed", name)
	}
	h.mu.Unlock()
	p := newPlugin(h, name, spec)
	inst, err := p.launch(ctx)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		inst.kill()
		return nil, fmt.Errorf("plugin %q: host is closed", name)
	}
	h.plugins[p] = struct{}{}
	h.mu.Unlock()
	p.setCurrent(inst)
	go p.supervise(inst)
	return p, nil
}

// Close stops every plugin.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	ps := make([]*Plugin, 0, len(h.plugins))
	for p := range h.plugins {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Close() }()
	}
	wg.Wait()
	return nil
}

func (h *Host) forget(p *Plugin) {
	h.mu.Lock()
	delete(h.plugins, p)
	h.mu.Unlock()
}
