package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/bench"
)

func benchCmd() *cobra.Command {
	var drivers, url string
	var o bench.Options
	var runs int
	var cpuprofile, plugin string
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure events/s and ingest-to-delivery latency on this machine",
		Long: "Push events through ingest -> queue -> a no-op transform -> signed webhook delivery to a local receiver,\n" +
			"for each queue driver in turn, and report events/s and p50/p99 latency (medians over --runs).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			out := cmd.OutOrStdout()
			if cpuprofile != "" {
				f, err := os.Create(cpuprofile)
				if err != nil {
					return usage("--cpuprofile: %v", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			sinks := []string{""}
			if plugin != "" {
				sinks = append(sinks, plugin)
			}
			var all [][]bench.Result
			for r := 1; r <= runs; r++ {
				var results []bench.Result
				for _, d := range strings.Split(drivers, ",") {
					for _, p := range sinks {
						o.Driver = strings.TrimSpace(d)
						o.WebhookPlugin = p
						o.QueueURL = ""
						if o.Driver == "nats" {
							o.QueueURL = url
						}
						res, err := bench.Run(ctx, o)
						if err != nil {
							return fmt.Errorf("%s: %w", o.Driver, err)
						}
						fmt.Fprintf(out, "run %d  %s\n", r, res)
						results = append(results, res)
					}
				}
				all = append(all, results)
			}
			for _, s := range bench.Summarize(all) {
				fmt.Fprintf(out, "%s\n", s)
			}
			return nil
		},
	}
	c.Flags().StringVar(&drivers, "drivers", "embedded,memory", "comma-separated queue drivers to measure")
	c.Flags().StringVar(&url, "nats-url", "nats://127.0.0.1:4222", "NATS URL for the nats driver")
	c.Flags().IntVar(&o.Events, "events", 20000, "events per run")
	c.Flags().IntVar(&o.Concurrency, "concurrency", 32, "concurrent producers")
	c.Flags().IntVar(&o.Batch, "batch", 1, "events per ingest request")
	c.Flags().IntVar(&runs, "runs", 3, "runs per driver (alternating drivers)")
	c.Flags().StringVar(&plugin, "webhook-plugin", "", "also measure each driver with the sink out of process: path of the hookbus-webhook plugin binary")
	c.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	return c
}
