package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/hookbus/hookbus/core/attempt"
	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/metrics"
)

// Delivery log upkeep.
const (
	// pruneEvery is how often the pruner deletes what is past retention.
	pruneEvery = time.Minute
	// pruneBatch is the most events and attempts one Prune deletes: each
	// batch is a short transaction, so the log's writes go on between two.
	pruneBatch = 1000
	// attemptLogLinger is how long a batch of the delivery log waits for
	// more attempts after its first: a transaction costs about the same
	// for 5 rows as for 100, and an attempt on record a few tens of
	// milliseconds later is soon enough.
	attemptLogLinger = 50 * time.Millisecond
	// attemptLogDrain bounds writing the buffered attempts at shutdown.
	attemptLogDrain = 5 * time.Second
)

// openAttemptLog opens the delivery log on the store: the Writer the
// engine records through (unless store.attempt_log is false) and the
// series of its own. Attempts is set either way, so the log already kept
// can be read.
func (a *App) openAttemptLog(cfg *config.Config) error {
	a.Attempts = a.Store
	m, err := metrics.RegisterAttemptLog(a.Metrics.Registry, func() float64 {
		if w := a.attemptWriter; w != nil {
			return float64(w.Pending())
		}
		return 0
	})
	if err != nil {
		return err
	}
	if !cfg.Store.AttemptLog {
		return nil
	}
	a.attemptWriter = attempt.NewWriter(a.Attempts, attempt.WriterOptions{
		Logger:  a.log.With("component", "attempt-log"),
		Linger:  attemptLogLinger,
		OnDrop:  func(n int) { m.Dropped.Add(float64(n)) },
		OnWrite: func(n int) { m.Written.Add(float64(n)) },
	})
	return nil
}

// recorder is what the engine records attempts through: nil (no log)
// when store.attempt_log is false.
func (a *App) recorder() attempt.Recorder {
	if a.attemptWriter == nil {
		return nil
	}
	return a.attemptWriter
}

// startPruner runs the delivery log's pruner until the app closes: at
// once, then every pruneEvery.
func (a *App) startPruner() {
	if a.Attempts == nil || a.pruneDone != nil {
		return
	}
	a.pruneDone = make(chan struct{})
	ctx := a.bgCtx
	go func() {
		defer close(a.pruneDone)
		t := time.NewTicker(pruneEvery)
		defer t.Stop()
		for {
			a.pruneAttemptLog(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// pruneAttemptLog deletes the events on record past store.event_retention
// and the attempts past store.attempt_retention (of the running
// configuration: a reload changes them), in batches of pruneBatch until
// one comes back short, and says how many rows went.
func (a *App) pruneAttemptLog(ctx context.Context) int {
	rt := a.rt.Load()
	if rt == nil || a.Attempts == nil {
		return 0
	}
	s := rt.cfg.Store
	now := time.Now()
	eventsBefore, attemptsBefore := now.Add(-s.EventRetention), now.Add(-s.AttemptRetention)
	total := 0
	for ctx.Err() == nil {
		n, err := a.Attempts.Prune(ctx, eventsBefore, attemptsBefore, pruneBatch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("delivery log: pruning failed; trying again in a minute", "deleted", total, "error", err)
			}
			break
		}
		if n < pruneBatch {
			break
		}
	}
	if total > 0 {
		a.log.Log(ctx, slog.LevelDebug, "delivery log pruned", "deleted", total,
			"event_retention", s.EventRetention, "attempt_retention", s.AttemptRetention)
	}
	return total
}

// closeAttemptLog writes what the Writer still holds (within
// attemptLogDrain; the rest is dropped and counted) and stops the pruner.
// Call it once the engine records no more, before the store closes.
func (a *App) closeAttemptLog() {
	if w := a.attemptWriter; w != nil {
		ctx, cancel := context.WithTimeout(context.Background(), attemptLogDrain)
		if err := w.Close(ctx); err != nil {
			a.log.Warn("delivery log: attempts still unwritten at shutdown were dropped", "pending", w.Pending(), "error", err)
		}
		cancel()
	}
	if a.pruneDone != nil {
		<-a.pruneDone // bgCtx is cancelled
	}
}
