package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/script"
)

func scriptCmd() *cobra.Command {
	c := &cobra.Command{Use: "script", Short: "Work with filter and transform scripts"}
	var eventPath, pipeline, sink, key string
	var timeout time.Duration
	run := &cobra.Command{
		Use:   "run FILE --event EVENT.json",
		Short: "Run a script's filter and transform on one event, or aggregate on several, and print the result",
		Long: "Run a script on an event from a file (or - for stdin) and print what it returns,\nor its error with file:line:column. Exits 1 when the script fails.\n\n" +
			"Given a JSON array of events, a script defining aggregate(events, ctx) gets them as one\n" +
			"window (ctx.key from --key; window_start and window_end the first and last event's time)\n" +
			"and one result is printed; a script without aggregate runs on each event, and an array\n" +
			"of results is printed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if eventPath == "" {
				return usage("--event is required (a JSON file with one event, or - for stdin)")
			}
			var data []byte
			var err error
			if eventPath == "-" {
				data, err = readAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(eventPath)
			}
			if err != nil {
				return usage("--event: %v", err)
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			opts := script.Options{Timeout: timeout, Logger: log}
			if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
				results, aggregated, err := script.RunFileEvents(context.Background(), args[0], data, script.CaseContext{Pipeline: pipeline, Sink: sink, Attempt: 1, Key: key}, opts)
				if err != nil {
					return err
				}
				if aggregated {
					fmt.Fprintln(cmd.OutOrStdout(), string(results[0].JSON()))
					return nil
				}
				var parts [][]byte
				for _, r := range results {
					parts = append(parts, bytes.TrimSpace(r.JSON()))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "[\n%s\n]\n", bytes.Join(parts, []byte(",\n")))
				return nil
			}
			res, err := script.RunFile(context.Background(), args[0], data, script.Context{Pipeline: pipeline, Sink: sink, Attempt: 1}, opts)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(res.JSON()))
			return nil
		},
	}
	run.Flags().StringVarP(&eventPath, "event", "e", "", "event JSON file (- for stdin)")
	run.Flags().StringVar(&pipeline, "pipeline", "cli", "ctx.pipeline seen by the script")
	run.Flags().StringVar(&sink, "sink", "cli", "ctx.sink seen by the script")
	run.Flags().StringVar(&key, "key", "", "ctx.key seen by aggregate (with an array of events)")
	run.Flags().DurationVar(&timeout, "timeout", script.DefaultTimeout, "deadline of one call")
	c.AddCommand(run)
	return c
}
