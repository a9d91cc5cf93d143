package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

// SourceConfig is the `config` block of a file source.
type SourceConfig struct {
	// Path is the JSON-lines file to tail: one event envelope per line.
	Path string `json:"path"`
	// OffsetPath is where the committed read offset is kept. Default: Path + ".offset".
	OffsetPath string `json:"offset_path,omitempty"`
	// BatchSize is the most events per batch, up to sdk.MaxBatchEvents. Default 100.
	BatchSize int `json:"batch_size,omitempty"`
	// PollInterval is how long to wait at the end of the file. Default "200ms".
	PollInterval string `json:"poll_interval,omitempty"`
}

const sourceSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["path"],
  "properties": {
    "path": {"type": "string", "minLength": 1, "description": "JSON-lines file to tail"},
    "offset_path": {"type": "string"},
    "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000},
    "poll_interval": {"type": "string"}
  }
}`

// Source tails a JSON-lines file. It commits its read offset to OffsetPath
// only after hookbus acked a batch, so a nacked batch, or one in flight when
// the plugin died, is offered again.
type Source struct {
	cfg    SourceConfig
	poll   time.Duration
	logger *slog.Logger
}

// NewSource returns a file source that logs to logger (nil: sdk.Logger()).
func NewSource(logger *slog.Logger) *Source {
	if logger == nil {
		logger = sdk.Logger()
	}
	return &Source{logger: logger}
}

// Describe returns the source's manifest.
func (s *Source) Describe() sdk.Manifest {
	return sdk.Manifest{Name: "file", Kinds: []string{sdk.KindSource}, ConfigSchema: json.RawMessage(sourceSchema), Version: "1.0.0"}
}

// ValidateConfig checks a configuration without touching the file.
func (s *Source) ValidateConfig(config json.RawMessage) error {
	_, _, err := parseSourceConfig(config)
	return err
}

func parseSourceConfig(config json.RawMessage) (SourceConfig, time.Duration, error) {
	var c SourceConfig
	errs := decodeConfig(config, &c)
	if c.Path == "" {
		errs = append(errs, &sdk.ConfigError{Field: "path", Message: "file source needs a path"})
	}
	if c.OffsetPath == "" {
		c.OffsetPath = c.Path + ".offset"
	}
	if c.BatchSize < 0 {
		errs = append(errs, &sdk.ConfigError{Field: "batch_size", Message: "must be positive"})
	}
	if c.BatchSize > sdk.MaxBatchEvents {
		errs = append(errs, &sdk.ConfigError{Field: "batch_size", Message: fmt.Sprintf("%d is over hookbus' limit of %d events per batch", c.BatchSize, sdk.MaxBatchEvents)})
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	poll := 200 * time.Millisecond
	if c.PollInterval != "" {
		d, err := time.ParseDuration(c.PollInterval)
		if err != nil || d <= 0 {
			errs = append(errs, &sdk.ConfigError{Field: "poll_interval", Message: fmt.Sprintf("%q is not a positive duration", c.PollInterval)})
		}
		poll = d
	}
	return c, poll, errors.Join(errs...)
}

// Init checks the configuration.
func (s *Source) Init(_ context.Context, config json.RawMessage) error {
	c, poll, err := parseSourceConfig(config)
	if err != nil {
		return err
	}
	if s.logger == nil {
		s.logger = sdk.Logger()
	}
	s.cfg, s.poll = c, poll
	return nil
}

// Close has nothing to release: Run closes the file when it returns.
func (s *Source) Close(context.Context) error { return nil }

// Run tails the file from the committed offset until ctx is done.
func (s *Source) Run(ctx context.Context, emit sdk.Emitter) error {
	offset, err := s.readOffset()
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		events, next, err := s.readBatch(offset)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			if next != offset { // only invalid lines: skip them
				if err := s.commit(next); err != nil {
					return err
				}
				offset = next
				continue
			}
			s.wait(ctx)
			continue
		}
		if err := s.emit(ctx, emit, events); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.logger.Warn("batch not queued; offering it again", "path", s.cfg.Path, "offset", offset, "error", err)
			s.wait(ctx)
			continue
		}
		if err := s.commit(next); err != nil {
			return err
		}
		offset = next
	}
	return nil
}

// emit emits events until hookbus queued them, skipping (and logging)
// those it rejects: they would be rejected again however often they were
// offered. An error is a transient failure: offer the batch again.
func (s *Source) emit(ctx context.Context, emit sdk.Emitter, events []sdk.Event) error {
	for len(events) > 0 {
		err := emit.Emit(ctx, events)
		var re *sdk.RejectedError
		if !errors.As(err, &re) {
			return err
		}
		rest := re.Remaining(events)
		if rest == nil {
			return err // the batch as a whole; batch_size keeps within the limit
		}
		for _, r := range re.Rejections {
			s.logger.Warn("skipping an event hookbus rejected", "path", s.cfg.Path, "rejection", r.String())
		}
		events = rest
	}
	return nil
}

func (s *Source) wait(ctx context.Context) {
	t := time.NewTimer(s.poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// readBatch reads up to BatchSize complete lines from offset. An event
// without an id gets one from its position in the file, so an offered-again
// batch carries the same ids.
func (s *Source) readBatch(offset int64) ([]sdk.Event, int64, error) {
	f, err := os.Open(s.cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, offset, nil
	}
	if err != nil {
		return nil, offset, fmt.Errorf("file source: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset, fmt.Errorf("file source: seek %s: %w", s.cfg.Path, err)
	}
	r := bufio.NewReader(f)
	var events []sdk.Event
	pos := offset
	for len(events) < s.cfg.BatchSize {
		line, err := r.ReadBytes('\n')
		if err != nil { // EOF, or a line still being written
			break
		}
		start := pos
		pos += int64(len(line))
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var ev sdk.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			s.logger.Error("skipping a line that is not an event", "path", s.cfg.Path, "offset", start, "error", err)
			continue
		}
		// hookbus refuses the whole batch for such a number; skip the line
		// here, saying why, so it does not hold back the lines after it.
		if err := ev.CheckNumbers(); err != nil {
			s.logger.Error("skipping an event hookbus would refuse", "path", s.cfg.Path, "offset", start, "error", err)
			continue
		}
		if ev.ID == "" {
			ev.ID = "file-" + strconv.FormatInt(start, 10)
		}
		events = append(events, ev)
	}
	return events, pos, nil
}

func (s *Source) readOffset() (int64, error) {
	b, err := os.ReadFile(s.cfg.OffsetPath)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("file source: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("file source: offset file %s: %w", s.cfg.OffsetPath, err)
	}
	return n, nil
}

// commit writes the offset atomically (temp file, fsync, rename).
func (s *Source) commit(offset int64) error {
	tmp := s.cfg.OffsetPath + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("file source: commit offset: %w", err)
	}
	_, err = f.WriteString(strconv.FormatInt(offset, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.cfg.OffsetPath)
	}
	if err != nil {
		return fmt.Errorf("file source: commit offset: %w", err)
	}
	return nil
}

var (
	_ sdk.Source          = (*Source)(nil)
	_ sdk.Describer       = (*Source)(nil)
	_ sdk.ConfigValidator = (*Source)(nil)
)
