package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbus/hookbus/sdk"
	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
	"github.com/hookbus/hookbus/sdk/remote"
)

// ErrClosed is returned by calls on a closed Plugin.
var ErrClosed = errors.New("plugin closed")

// Plugin is one supervised plugin process (restarted as needed).
type Plugin struct {
	host   *Host
	name   string
	spec   Spec
	logger *slog.Logger

	mu       sync.Mutex
	cur      *instance
	changed  chan struct{} // closed and replaced whenever cur changes
	closed   bool
	restarts int
	manifest *sdk.Manifest
	served   map[string]bool

	closing chan struct{}
	done    chan struct{}
}

// instance is one run of the plugin process.
type instance struct {
	client  *remote.Client
	started time.Time
	// progress is set once the instance delivered something, so a plugin
	// that crashes now and then, but works in between, restarts quickly.
	progress   atomic.Bool
	brokenOnce sync.Once
	broken     chan struct{}
	reason     error
	exited     chan struct{} // releases the thread that started the process
	killOnce   sync.Once
}

func (i *instance) markBroken(err error) {
	i.brokenOnce.Do(func() {
		i.reason = err
		close(i.broken)
	})
}

func (i *instance) kill() {
	i.killOnce.Do(func() {
		i.client.Kill()
		close(i.exited)
	})
}

func newPlugin(h *Host, name string, spec Spec) *Plugin {
	return &Plugin{
		host:    h,
		name:    name,
		spec:    spec,
		logger:  h.logger.With("plugin", name),
		changed: make(chan struct{}),
		served:  map[string]bool{},
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Name is the plugin's name.
func (p *Plugin) Name() string { return p.name }

// Restarts counts the restarts so far.
func (p *Plugin) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Pid is the current process id, 0 while the plugin is restarting.
func (p *Plugin) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.client.Pid()
}

// launch verifies the executable and starts one process. The process is
// started from a goroutine locked to its OS thread, and that thread stays
// parked until the process is gone: Pdeathsig fires when the thread that
// forked the child exits.
func (p *Plugin) launch(ctx context.Context) (*instance, error) {
	if p.spec.Reattach != "" {
		p.logger.Warn("attaching to the plugin in debug mode instead of starting it", "address", p.spec.Reattach)
	} else if err := verifyChecksum(p.spec.Path, p.spec.SHA256); err != nil {
		return nil, fmt.Errorf("plugin %q: %w", p.name, err)
	}
	type result struct {
		c   *remote.Client
		err error
	}
	res := make(chan result, 1)
	inst := &instance{broken: make(chan struct{}), exited: make(chan struct{}), started: time.Now()}
	go func() {
		runtime.LockOSThread()
		// Never unlocked: when this goroutine returns the thread exits, and
		// the kernel kills a plugin still running.
		cmd := exec.Command(p.spec.Path, p.spec.Args...)
		cmd.Env = pluginEnv(p.spec.Env)
		setDeathSignal(cmd)
		c, err := remote.Start(remote.Options{
			Cmd:          cmd,
			Reattach:     p.spec.Reattach,
			Logger:       newSlogAdapter(p.logger),
			StartTimeout: p.spec.StartTimeout,
			CallTimeout:  p.spec.CallTimeout,
		})
		res <- result{c, err}
		if err != nil {
			return
		}
		<-inst.exited
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return nil, fmt.Errorf("plugin %q: %w", p.name, r.err)
		}
		inst.client = r.c
		p.logger.Info("plugin started", "pid", r.c.Pid(), "path", p.spec.Path)
		return inst, nil
	case <-ctx.Done():
		go func() {
			if r := <-res; r.err == nil {
				inst.client = r.c
				inst.kill()
			}
		}()
		return nil, fmt.Errorf("plugin %q: start: %w", p.name, ctx.Err())
	}
}

func (p *Plugin) setCurrent(inst *instance) {
	p.mu.Lock()
	p.cur = inst
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// supervise watches the running instance and restarts the process when it
// exits, fails its health check or is marked broken by a proxy.
func (p *Plugin) supervise(inst *instance) {
	defer close(p.done)
	backoff := p.spec.MinBackoff
	for {
		p.setCurrent(inst)
		reason := p.watch(inst)
		p.setCurrent(nil)
		inst.kill()
		if reason == nil { // closing
			return
		}
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
		p.host.restarts.WithLabelValues(p.name).Inc()
		if time.Since(inst.started) > time.Minute || inst.progress.Load() {
			backoff = p.spec.MinBackoff
		}
		p.logger.Warn("plugin failed; restarting", "reason", reason.Error(), "backoff", backoff)
		for {
			if !p.sleep(backoff) {
				return
			}
			backoff = min(backoff*2, p.spec.MaxBackoff)
			next, err := p.launch(context.Background())
			if err == nil {
				inst = next
				break
			}
			p.logger.Error("plugin restart failed", "error", err, "backoff", backoff)
		}
	}
}

func (p *Plugin) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.closing:
		return false
	}
}

// watch returns why inst must be replaced, or nil when the plugin closes.
func (p *Plugin) watch(inst *instance) error {
	exitTick := time.NewTicker(100 * time.Millisecond)
	defer exitTick.Stop()
	health := time.NewTicker(p.spec.HealthInterval)
	defer health.Stop()
	for {
		select {
		case <-p.closing:
			return nil
		case <-inst.broken:
			return inst.reason
		case <-exitTick.C:
			if inst.client.Exited() {
				return errors.New("plugin process exited")
			}
		case <-health.C:
			ctx, cancel := context.WithTimeout(context.Background(), p.spec.CallTimeout)
			err := inst.client.Ping(ctx)
			cancel()
			if err != nil {
				return err
			}
		}
	}
}

// current waits for a running instance.
func (p *Plugin) current(ctx context.Context) (*instance, error) {
	for {
		p.mu.Lock()
		inst, closed, changed := p.cur, p.closed, p.changed
		p.mu.Unlock()
		if closed {
			return nil, fmt.Errorf("plugin %q: %w", p.name, ErrClosed)
		}
		if inst != nil {
			select {
			case <-inst.broken:
			default:
				return inst, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("plugin %q is restarting: %w", p.name, ctx.Err())
		case <-p.closing:
		}
	}
}

// Describe returns the plugin's manifest (asked once, then cached).
func (p *Plugin) Describe(ctx context.Context) (sdk.Manifest, error) {
	p.mu.Lock()
	m := p.manifest
	p.mu.Unlock()
	if m != nil {
		return *m, nil
	}
	inst, err := p.current(ctx)
	if err != nil {
		return sdk.Manifest{}, err
	}
	got, err := inst.client.Describe(ctx)
	if err != nil {
		return sdk.Manifest{}, fmt.Errorf("plugin %q: %w", p.name, err)
	}
	p.mu.Lock()
	p.manifest = &got
	p.mu.Unlock()
	return got, nil
}

// Validate checks a config block for the plugin's kind ("source" or
// "sink"): against the JSON Schema of its manifest and with the plugin's
// own ValidateConfig, both, so that one round reports every problem. A
// rejected block is a *remote.Error with code ERROR_CODE_INVALID_CONFIG
// whose Fields are every problem (*sdk.ConfigError, errors.As finds them):
// the schema's, then the plugin's own for fields the schema did not
// already report. A plugin that cannot be reached gives an error wrapping
// remote.ErrUnavailable instead.
func (p *Plugin) Validate(ctx context.Context, kind string, config json.RawMessage) error {
	m, err := p.Describe(ctx)
	if err != nil {
		return err
	}
	if !hasKind(m, kind) {
		return fmt.Errorf("plugin %q serves %v, not a %s", p.name, m.Kinds, kind)
	}
	var problems []*sdk.ConfigError
	if err := ValidateSchema(m.ConfigSchema, config); err != nil {
		problems = configProblems(err)
	}
	inst, err := p.current(ctx)
	if err != nil {
		return err
	}
	if err := inst.client.ValidateConfig(ctx, kind, config); err != nil {
		var re *remote.Error
		if !errors.As(err, &re) {
			return err // the plugin did not answer: nothing to report yet
		}
		reported := map[string]bool{}
		for _, ce := range problems {
			reported[ce.Field] = true
		}
		own := re.Fields
		if len(own) == 0 {
			own = []*sdk.ConfigError{{Message: re.Message}}
		}
		for _, ce := range own {
			if ce.Field == "" || !reported[ce.Field] {
				problems = append(problems, ce)
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	msgs := make([]string, len(problems))
	for i, ce := range problems {
		msgs[i] = ce.Error()
	}
	return &remote.Error{Code: pluginv1.ErrorCode_ERROR_CODE_INVALID_CONFIG, Message: strings.Join(msgs, "; "), Fields: problems}
}

func hasKind(m sdk.Manifest, kind string) bool {
	for _, k := range m.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

func (p *Plugin) claim(kind string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.served[kind] {
		return fmt.Errorf("plugin %q already serves a %s: start one plugin per configured %s", p.name, kind, kind)
	}
	p.served[kind] = true
	return nil
}

// Close stops the supervisor and kills the process.
func (p *Plugin) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closed = true
	close(p.closing)
	p.mu.Unlock()
	<-p.done
	p.host.forget(p)
	return nil
}

// pluginEnv is a plugin process's environment: Go runtime defaults, then
// hookbus' own environment, then the plugin's configured env (later wins).
// A plugin shares the machine with hookbus, which does the heavy lifting:
// letting both Go runtimes use every core makes them spin against each
// other, and a plugin's small heap makes the default GOGC collect after
// every few hundred events. Both cost more CPU than they gain.
func pluginEnv(spec []string) []string {
	env := []string{"GOMAXPROCS=" + strconv.Itoa(max(1, runtime.NumCPU()/2)), "GOGC=400"}
	env = append(env, os.Environ()...)
	return append(env, spec...)
}
