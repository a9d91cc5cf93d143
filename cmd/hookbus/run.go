package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/app"
	"github.com/hookbus/hookbus/core/config"
)

func addConfigFlag(c *cobra.Command, p *string) {
	c.Flags().StringVarP(p, "config", "c", "config.yaml", "configuration file")
}

// loadConfig loads and validates the configuration; problems are usage errors.
func loadConfig(path string, log *slog.Logger) (*config.Config, error) {
	cfg, err := app.LoadConfig(path, log)
	if err != nil {
		var errs *config.Errors
		if errors.As(err, &errs) {
			return nil, usageError{fmt.Errorf("invalid configuration:\n%s", err)}
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usage("configuration file %s not found (pass --config FILE)", path)
		}
		return nil, usageError{err}
	}
	return cfg, nil
}

// invalidConfig turns problems that plugins and components found in the
// configuration at path (*config.Errors) into a usage error (exit 2), in
// the format of Load's: file, line, key path, every problem. Other errors
// come back as they are.
func invalidConfig(path string, err error) error {
	var errs *config.Errors
	if !errors.As(err, &errs) {
		return err
	}
	located := config.Locate(path, *errs)
	return usageError{fmt.Errorf("invalid configuration:\n%w", &located)}
}

func newLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "run",
		Short: "Run hookbus with a configuration file",
		Long: "Run hookbus: serve the ingest endpoint and management API, run the pipelines and deliver events.\n" +
			"SIGINT or SIGTERM stops taking requests and drains in-flight work. SIGHUP reloads the configuration\n" +
			"(as do a change of the file or of a script it uses, and POST /v1/admin/reload).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			boot := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			cfg, err := loadConfig(path, boot)
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg)
			slog.SetDefault(log)
			if limit := app.ApplyMemoryLimit(cfg.Server.MemoryLimit); limit < math.MaxInt64 {
				log.Info("soft memory limit", "bytes", limit)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go app.ReturnMemory(ctx, log)
			a, err := app.New(ctx, cfg, log)
			if err != nil {
				// Config blocks the plugins rejected, all of them, exit 2 like validate.
				return invalidConfig(path, err)
			}
			if err := a.Start(ctx); err != nil {
				_ = a.Shutdown(context.Background())
				return invalidConfig(path, err)
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
		wait:
			for {
				select {
				case <-ctx.Done():
					break wait
				case <-hup:
					// Reload logs its outcome; a refused reload changes nothing.
					_, _ = a.Reload(ctx, "signal")
				}
			}
			stop()
			log.Info("shutting down: draining in-flight work", "timeout", cfg.Server.ShutdownTimeout)
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout+5*time.Second)
			defer cancel()
			if err := a.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			log.Info("stopped")
			return nil
		},
	}
	addConfigFlag(c, &path)
	return c
}

func validateCmd() *cobra.Command {
	var path string
	var skipPlugins bool
	c := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration file and report every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			cfg, err := loadConfig(path, log)
			if err != nil {
				return err
			}
			if len(cfg.Plugins) > 0 && !skipPlugins {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if err := app.ValidatePlugins(ctx, cfg, log); err != nil {
					return invalidConfig(path, err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d sources, %d sinks, %d pipelines)\n", path, len(cfg.Sources), len(cfg.Sinks), len(cfg.Pipelines))
			return nil
		},
	}
	c.Flags().BoolVar(&skipPlugins, "skip-plugins", false, "do not start plugins to check their config blocks")
	addConfigFlag(c, &path)
	return c
}
