package app

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchSettle is how long the watched files must stay quiet before a
// reload: an editor's save is often several writes, or a rename and a
// create, and a reload of half a save would fail.
const watchSettle = 300 * time.Millisecond

// watcher reloads the configuration when its file or one of its scripts
// changes. It watches their directories, not the files, so a file
// replaced by a rename (as most editors and config tools save) is seen.
type watcher struct {
	w      *fsnotify.Watcher
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	files map[string]bool // absolute paths that trigger a reload
	dirs  map[string]bool
}

// watch starts watching the running configuration's files.
func (a *App) watch(ctx context.Context) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{w: fw, cancel: cancel, done: make(chan struct{}), files: map[string]bool{}, dirs: map[string]bool{}}
	w.update(a)
	go w.run(ctx, a)
	return w, nil
}

// update watches the files of the running configuration (a reload may
// have added scripts in new directories).
func (w *watcher) update(a *App) {
	rt := a.rt.Load()
	if rt == nil {
		return
	}
	files := append([]string{a.boot.File}, scriptPaths(rt.cfg)...)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.files = map[string]bool{}
	for _, f := range files {
		f = filepath.Clean(f)
		w.files[f] = true
		dir := filepath.Dir(f)
		if w.dirs[dir] {
			continue
		}
		if err := w.w.Add(dir); err != nil {
			a.log.Warn("cannot watch a directory for configuration changes", "dir", dir, "error", err)
			continue
		}
		w.dirs[dir] = true
	}
}

func (w *watcher) relevant(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.files[filepath.Clean(name)]
}

func (w *watcher) run(ctx context.Context, a *App) {
	defer close(w.done)
	var settle <-chan time.Time
	var timer *time.Timer
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod || !w.relevant(ev.Name) {
				continue
			}
			if timer != nil {
				timer.Stop()
			}
			timer = time.NewTimer(watchSettle)
			settle = timer.C
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			a.log.Warn("watching the configuration for changes", "error", err)
		case <-settle:
			settle = nil
			prev, _ := a.status.current()
			res, err := a.Reload(ctx, "watch")
			if err == nil && res.Version == prev && res.Changes.Empty() {
				a.log.Debug("configuration files touched, nothing changed")
			}
			w.update(a)
		}
	}
}

// close stops watching and waits for a reload it started.
func (w *watcher) close() {
	w.cancel()
	<-w.done
	_ = w.w.Close()
}
