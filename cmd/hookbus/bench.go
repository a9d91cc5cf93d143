package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/bench"
)

// benchReport is the --json document.
type benchReport struct {
	Options struct {
		Scenarios   []string `json:"scenarios"`
		Drivers     []string `json:"drivers"`
		Events      int      `json:"events"`
		Concurrency int      `json:"concurrency"`
		Batch       int      `json:"batch"`
		Rate        float64  `json:"rate,omitempty"`
		Runs        int      `json:"runs"`
		AttemptLog  string   `json:"attempt_log"`
	} `json:"options"`
	// Runs holds each round's results, the direct baseline first.
	Runs      [][]bench.Result `json:"runs"`
	Summaries []bench.Summary  `json:"summaries"`
}

func benchCmd() *cobra.Command {
	var drivers, url, scenarios, mode, cpuprofile, attemptLog string
	var o bench.Options
	var runs int
	var progress, asJSON, inProcess bool
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure events/s, latency, CPU and memory per scenario against a direct baseline",
		Long: "Push events from a generator through ingest -> queue -> the scenario's pipeline -> signed webhook delivery to\n" +
			"local receivers, and beside each scenario the same generator straight to the same receiver (--mode direct, the\n" +
			"physical baseline), in interleaved rounds; report events/s, the ratio to the baseline of the same round,\n" +
			"ingest-to-delivery p50/p99/p999, CPU per event and memory of the hookbus process, and the medians over --runs.\n" +
			"Scenarios: passthrough, transform (default), fanout, subscriptions, subscriptions-dead, plugin-sink, slow-endpoint,\n" +
			"backlog, ordered. hookbus runs as a child `hookbus run` so its CPU and memory are its own. A run that does not finish\n" +
			"reports what it delivered and why it stopped.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			out := cmd.OutOrStdout()
			list := splitList(scenarios)
			switch mode {
			case "direct":
				list = nil
			case "hookbus":
			default:
				return usage("--mode: want hookbus or direct, got %q", mode)
			}
			for _, s := range list {
				if !slices.Contains(bench.Scenarios, s) {
					return usage("--scenario: unknown scenario %q (want %s)", s, strings.Join(bench.Scenarios, ", "))
				}
			}
			if o.WebhookPlugin != "" && mode == "hookbus" && !slices.Contains(list, bench.PluginSink) {
				list = append(list, bench.PluginSink)
			}
			if slices.Contains(list, bench.PluginSink) && o.WebhookPlugin == "" {
				p, err := findWebhookPlugin()
				if err != nil {
					return usage("scenario plugin-sink: %v; pass --webhook-plugin PATH", err)
				}
				o.WebhookPlugin = p
			}
			var logSettings []string // the delivery log settings each scenario runs with
			switch attemptLog {
			case "on", "off":
				if cmd.Flags().Changed("attempt-log") {
					logSettings = []string{attemptLog}
				}
			case "both":
				logSettings = []string{"off", "on"}
			default:
				return usage("--attempt-log: want on, off or both, got %q", attemptLog)
			}
			if o.Dead != "503" && o.Dead != "hang" {
				return usage("--dead: want 503 or hang, got %q", o.Dead)
			}
			if o.Circuit != "" && o.Circuit != "on" && o.Circuit != "off" {
				return usage("--circuit: want on or off, got %q", o.Circuit)
			}
			if o.DeadSubscriptions == 0 && cmd.Flags().Changed("dead-subscriptions") {
				o.DeadSubscriptions = -1 // none, not the default tenth
			}
			if slices.Contains(list, bench.SubscriptionsDead) {
				if o.AttemptTimeout <= 0 {
					return usage("--attempt-timeout: must be positive, got %s", o.AttemptTimeout)
				}
				dead := o.DeadSubscriptions
				if dead == 0 {
					dead = o.Subscriptions / 10
				}
				if err := bench.CheckDeadLayout(o.Subscriptions, max(dead, 0)); err != nil {
					return usage("scenario %s: %v", bench.SubscriptionsDead, err)
				}
			}
			if !inProcess {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find the hookbus binary to run: %w", err)
				}
				o.Binary = exe
			}
			if o.ProfileDir != "" {
				if cpuprofile != "" && inProcess {
					return usage("--profile and --cpuprofile with --in-process both profile this process: pass one")
				}
				if o.ProfileSeconds < 0 {
					return usage("--profile-seconds: must be 0 (the whole run) or positive, got %d", o.ProfileSeconds)
				}
				if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
					return usage("--profile: %v", err)
				}
			}
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
			errw := cmd.ErrOrStderr()
			live := progress || isTerminal(errw)
			var rep benchReport
			rep.Options.Scenarios, rep.Options.Drivers = list, splitList(drivers)
			rep.Options.Events, rep.Options.Concurrency, rep.Options.Batch, rep.Options.Rate, rep.Options.Runs = o.Events, o.Concurrency, o.Batch, o.Rate, runs
			rep.Options.AttemptLog = attemptLog
			for r := 1; r <= runs && ctx.Err() == nil; r++ {
				var round []bench.Result
				measure := func(ro bench.Options) {
					if live {
						ro.Progress = func(p bench.Progress) {
							fmt.Fprintf(errw, "\r\033[Krun %d %s %s: %d/%d delivered (%d accepted), %.0f events/s, %s",
								r, p.Scenario, p.Phase, p.Delivered, p.Total, p.Accepted, p.Rate, p.Elapsed.Round(time.Second))
						}
					}
					res, err := bench.Run(ctx, ro)
					if live {
						fmt.Fprint(errw, "\r\033[K")
					}
					if err != nil {
						res.Partial, res.Reason = true, err.Error()
					}
					round = append(round, res)
				}
				do := o
				do.Scenario = bench.Direct
				measure(do)
				for _, d := range splitList(drivers) {
					for _, s := range list {
						so := o
						so.Round = r
						so.Scenario, so.Driver = s, d
						so.QueueURL = ""
						if d == "nats" {
							so.QueueURL = url
						}
						if len(logSettings) == 0 {
							measure(so)
							continue
						}
						// Both settings in every round, in turn first, so
						// neither always runs on a warmer machine.
						settings := slices.Clone(logSettings)
						if r%2 == 0 {
							slices.Reverse(settings)
						}
						for _, l := range settings {
							so.AttemptLog = l
							measure(so)
						}
					}
				}
				bench.Compare(round)
				if !asJSON {
					for _, res := range round {
						fmt.Fprintf(out, "run %d  %s\n", r, res)
					}
				}
				rep.Runs = append(rep.Runs, round)
			}
			rep.Summaries = bench.Summarize(rep.Runs)
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			for _, s := range rep.Summaries {
				fmt.Fprintf(out, "%s\n", s)
			}
			return nil
		},
	}
	c.Flags().StringVar(&mode, "mode", "hookbus", "hookbus: each scenario beside the direct baseline; direct: only the generator straight to the receiver")
	c.Flags().StringVar(&scenarios, "scenario", bench.Transform, "comma-separated scenarios: "+strings.Join(bench.Scenarios, ", "))
	c.Flags().StringVar(&drivers, "drivers", "embedded", "comma-separated queue drivers to measure")
	c.Flags().StringVar(&url, "nats-url", "nats://127.0.0.1:4222", "NATS URL for the nats driver")
	c.Flags().IntVar(&o.Events, "events", 20000, "events per run")
	c.Flags().IntVar(&o.Concurrency, "concurrency", 32, "concurrent producers")
	c.Flags().IntVar(&o.Batch, "batch", 1, "events per ingest request")
	c.Flags().IntVar(&o.Payload, "payload", 32, "bytes of padding in each event")
	c.Flags().Float64Var(&o.Rate, "rate", 0, "offer this many events/s whatever the answers (open loop; latency counts from the scheduled send time); 0: as fast as the producers go")
	c.Flags().IntVar(&runs, "runs", 3, "rounds; each runs the direct baseline then every scenario and driver")
	c.Flags().StringVar(&o.WebhookPlugin, "webhook-plugin", "", "path of the hookbus-webhook plugin binary for plugin-sink (default: beside hookbus or on PATH); adds plugin-sink")
	c.Flags().StringVar(&o.Dead, "dead", "503", "how slow-endpoint's dead endpoint fails: 503 or hang")
	c.Flags().StringVar(&o.Circuit, "circuit", "", "slow-endpoint: the dead sink's circuit breaker, on (its default) or off (circuit: {enabled: false}: every dead event attempted)")
	c.Flags().IntVar(&o.Subscriptions, "subscriptions", bench.DefaultSubscriptions, "subscriptions-dead: subscriptions in all, 10 per application")
	c.Flags().IntVar(&o.DeadSubscriptions, "dead-subscriptions", 0, "subscriptions-dead: how many of them never answer (default: a tenth of --subscriptions)")
	c.Flags().DurationVar(&o.AttemptTimeout, "attempt-timeout", bench.DefaultAttemptTimeout, "subscriptions-dead: the subscriptions sink's timeout, which ends each attempt to a dead subscription")
	c.Flags().IntVar(&o.Keys, "keys", 1000, "ordered: ordering keys the events are spread over")
	c.Flags().DurationVar(&o.ReceiverDelay, "receiver-delay", 0, "how long the receivers wait before answering a delivery (default: none; ordered: 5ms)")
	c.Flags().DurationVar(&o.Timeout, "timeout", 0, "bound on one run (default: 1m + 5ms per event + twice the time --rate needs; 3× for backlog)")
	c.Flags().StringVar(&o.ProfileDir, "profile", "", "turn on server.pprof in hookbus and write to this directory, per run (run<N>-<scenario>-<driver>.*): the CPU profile of the whole run merged from 2 s segments (.cpu.pprof; backlog: also .drain.cpu.pprof) and heap profiles (.end.heap.pprof; backlog: also .queued and .settled)")
	c.Flags().StringVar(&attemptLog, "attempt-log", "on", "the delivery log (store.attempt_log) of the hookbus under test: on, off, or both (each scenario with and without it in every round, reported with the ratio)")
	c.Flags().StringVar(&o.MemoryLimit, "memory-limit", "", "server.memory_limit of the hookbus under test, like 160MiB (default: none, or GOMEMLIMIT)")
	c.Flags().IntVar(&o.ProfileSeconds, "profile-seconds", 0, "with --profile, profile the CPU of only the first N seconds of each run (and of the backlog drain); 0: the whole run")
	c.Flags().BoolVar(&progress, "progress", false, "print a live progress line on stderr (default when stderr is a terminal)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document with every run and the medians")
	c.Flags().BoolVar(&inProcess, "in-process", false, "run hookbus inside the bench process (CPU and memory then include the generator and receivers)")
	c.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the bench process to this file (with --in-process, of hookbus too)")
	return c
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// findWebhookPlugin looks for hookbus-webhook beside this executable, then on PATH.
func findWebhookPlugin() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "hookbus-webhook")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("hookbus-webhook")
	if err != nil {
		return "", fmt.Errorf("hookbus-webhook is neither beside hookbus nor on PATH (build it: go build -o bin/hookbus-webhook ./plugins/webhook/cmd/hookbus-webhook)")
	}
	return p, nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
