package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/google/pprof/profile"
)

// profileSegment is the length of one CPU profile taken from hookbus's
// /debug/pprof/profile; a run's profile is the merge of its segments.
const profileSegment = 2 * time.Second

// profiler takes CPU profiles of the hookbus at addr one segment after
// another until stopped, and writes their merge to path.
type profiler struct {
	addr, path string
	stopc      chan struct{}
	done       chan error
}

func startProfiler(addr, path string) *profiler {
	p := &profiler{addr: addr, path: path, stopc: make(chan struct{}), done: make(chan error, 1)}
	go func() { p.done <- p.run() }()
	return p
}

func (p *profiler) run() error {
	cl := &http.Client{Timeout: profileSegment + 30*time.Second}
	defer cl.CloseIdleConnections()
	var segs []*profile.Profile
	for {
		select {
		case <-p.stopc:
			return p.write(segs)
		default:
		}
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.addr, int(profileSegment/time.Second))
		resp, err := cl.Get(url)
		if err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("profile: GET /debug/pprof/profile: HTTP %d: %.200s", resp.StatusCode, b)
		}
		pr, err := profile.ParseData(b)
		if err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		segs = append(segs, pr)
	}
}

func (p *profiler) write(segs []*profile.Profile) error {
	if len(segs) == 0 {
		return nil
	}
	m, err := profile.Merge(segs)
	if err != nil {
		return fmt.Errorf("profile: merge: %w", err)
	}
	f, err := os.Create(p.path)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if err := m.Write(f); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	return f.Close()
}

// stop ends the profile with the segment under way (at most
// profileSegment later) and writes it.
func (p *profiler) stop(ctx context.Context) error {
	close(p.stopc)
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
