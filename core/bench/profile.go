package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// profileSeq numbers the profiled runs of this process, so rounds of one
// scenario do not overwrite each other's files.
var profileSeq atomic.Int64

// profiler fetches the child hookbus's profiles from its /debug/pprof/
// routes (server.pprof) into Options.ProfileDir.
type profiler struct {
	base, prefix string
	log          func(error)
	wg           sync.WaitGroup
}

// newProfiler returns nil when o asks for no profiles or hookbus is not a
// child process.
func newProfiler(o Options, h host) *profiler {
	if o.ProfileDir == "" || h == nil {
		return nil
	}
	if _, ok := h.(*childHost); !ok {
		return nil
	}
	return &profiler{
		base:   "http://" + h.addr() + "/debug/pprof/",
		prefix: filepath.Join(o.ProfileDir, o.Scenario+"-"+strconv.FormatInt(profileSeq.Add(1), 10)),
		log:    func(err error) { o.Logger.Warn("bench profile", "error", err) },
	}
}

// cpu starts a CPU profile of the next seconds in the background, named
// for when it starts; wait waits for it. The runtime takes one CPU profile
// at a time: one asked for while another runs is skipped.
func (p *profiler) cpu(ctx context.Context, when string, seconds int) {
	if p == nil {
		return
	}
	p.wg.Go(func() {
		p.fetch(ctx, "profile?seconds="+strconv.Itoa(seconds), "."+when+".cpu.pprof", time.Duration(seconds+30)*time.Second)
	})
}

// heap writes a heap profile named for when it was taken.
func (p *profiler) heap(ctx context.Context, when string) {
	if p == nil {
		return
	}
	p.fetch(ctx, "heap", "."+when+".heap.pprof", 30*time.Second)
}

func (p *profiler) wait() {
	if p != nil {
		p.wg.Wait()
	}
}

func (p *profiler) fetch(ctx context.Context, path, suffix string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		p.log(err)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.log(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		p.log(fmt.Errorf("%s: HTTP %d", path, resp.StatusCode))
		return
	}
	f, err := os.Create(p.prefix + suffix)
	if err != nil {
		p.log(err)
		return
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		p.log(err)
	}
	if err := f.Close(); err != nil {
		p.log(err)
	}
}
