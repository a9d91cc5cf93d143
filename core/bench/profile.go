package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/pprof/profile"
)

// profileSegment is the length of one CPU profile taken from hookbus's
// /debug/pprof/profile; a run's CPU profile is the merge of its segments.
const profileSegment = 2 * time.Second

// profiler takes the profiles of one run from hookbus's /debug/pprof/
// routes (server.pprof) into Options.ProfileDir: CPU profiles one segment
// after another from the start of the run until stop, merged into
// <prefix>.cpu.pprof (and, for the segments taken after mark, the drain of
// Backlog, <prefix>.drain.cpu.pprof), and heap profiles on demand.
type profiler struct {
	base, prefix string
	// limit bounds the CPU profiled before mark and after it
	// (Options.ProfileSeconds); 0: no bound.
	limit int
	cl    *http.Client

	markOnce sync.Once
	markc    chan struct{}
	stopc    chan struct{}
	done     chan struct{}

	mu          sync.Mutex
	segs, drain []*profile.Profile
	files       []string
	errs        []error
}

// newProfiler starts profiling the run of o against h; it returns nil when
// o asks for no profiles or there is no hookbus (Direct). In process, the
// profiles are of the whole bench process.
func newProfiler(o Options, h host) *profiler {
	if o.ProfileDir == "" || h == nil {
		return nil
	}
	name := o.Scenario + "-" + o.Driver
	if o.withoutDead {
		name += "-without-dead"
	}
	if o.AttemptLog != "" {
		name += "-log-" + o.AttemptLog
	}
	if o.Round > 0 {
		name = "run" + strconv.Itoa(o.Round) + "-" + name
	}
	p := &profiler{
		base:   "http://" + h.addr() + "/debug/pprof/",
		prefix: filepath.Join(o.ProfileDir, name),
		limit:  max(o.ProfileSeconds, 0),
		cl:     &http.Client{Timeout: profileSegment + 30*time.Second},
		markc:  make(chan struct{}),
		stopc:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	go p.cpuLoop()
	return p
}

func (p *profiler) cpuLoop() {
	defer close(p.done)
	draining, taken := false, 0
	for {
		if !draining {
			select {
			case <-p.markc:
				draining, taken = true, 0
			default:
			}
		}
		select {
		case <-p.stopc:
			return
		default:
		}
		seg := int(profileSegment / time.Second)
		if p.limit > 0 {
			seg = min(seg, p.limit-taken)
		}
		if seg <= 0 {
			// This phase's share is profiled: wait for the drain or the end.
			if draining {
				<-p.stopc
				return
			}
			select {
			case <-p.stopc:
				return
			case <-p.markc:
				draining, taken = true, 0
			}
			continue
		}
		pr, err := p.cpuSegment(seg)
		if err != nil {
			p.fail(err)
			return
		}
		taken += seg
		p.mu.Lock()
		p.segs = append(p.segs, pr)
		if draining {
			p.drain = append(p.drain, pr)
		}
		p.mu.Unlock()
	}
}

func (p *profiler) cpuSegment(seconds int) (*profile.Profile, error) {
	b, err := p.get(context.Background(), "profile?seconds="+strconv.Itoa(seconds))
	if err != nil {
		return nil, err
	}
	pr, err := profile.ParseData(b)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	return pr, nil
}

// mark starts the drain's CPU profile with the next segment.
func (p *profiler) mark() {
	if p != nil {
		p.markOnce.Do(func() { close(p.markc) })
	}
}

// heap writes a heap profile named for when it was taken.
func (p *profiler) heap(ctx context.Context, when string) {
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	b, err := p.get(ctx, "heap")
	if err != nil {
		p.fail(err)
		return
	}
	p.write(p.prefix+"."+when+".heap.pprof", func(w io.Writer) error { _, err := w.Write(b); return err })
}

// stop ends the CPU profile with the segment under way (at most
// profileSegment later) and writes the merged profiles.
func (p *profiler) stop(ctx context.Context) {
	if p == nil {
		return
	}
	close(p.stopc)
	select {
	case <-p.done:
	case <-ctx.Done():
		p.fail(fmt.Errorf("cpu profile: %w", ctx.Err()))
		return
	}
	p.mu.Lock()
	segs, drain := p.segs, p.drain
	p.mu.Unlock()
	p.writeMerged(p.prefix+".cpu.pprof", segs)
	p.writeMerged(p.prefix+".drain.cpu.pprof", drain)
}

func (p *profiler) writeMerged(path string, segs []*profile.Profile) {
	if len(segs) == 0 {
		return
	}
	m, err := profile.Merge(segs)
	if err != nil {
		p.fail(fmt.Errorf("cpu profile: merge: %w", err))
		return
	}
	p.write(path, m.Write)
}

// report fills res with the files written and what failed.
func (p *profiler) report(res *Result) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	res.Profiles = append([]string(nil), p.files...)
	if cpu := p.prefix + ".cpu.pprof"; slices.Contains(p.files, cpu) {
		res.Profile = cpu
	}
	if err := errors.Join(p.errs...); err != nil {
		res.ProfileError = err.Error()
	}
}

func (p *profiler) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("profile: GET /debug/pprof/%s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("profile: GET /debug/pprof/%s: HTTP %d: %.200s", path, resp.StatusCode, b)
	}
	return b, nil
}

func (p *profiler) write(path string, fill func(io.Writer) error) {
	f, err := os.Create(path)
	if err != nil {
		p.fail(fmt.Errorf("profile: %w", err))
		return
	}
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		p.fail(fmt.Errorf("profile %s: %w", path, err))
		return
	}
	p.mu.Lock()
	p.files = append(p.files, path)
	p.mu.Unlock()
}

func (p *profiler) fail(err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}
