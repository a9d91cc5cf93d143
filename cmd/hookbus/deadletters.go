package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/core/app"
	"github.com/hookbus/hookbus/core/datadir"
	"github.com/hookbus/hookbus/core/deadletter"
)

func deadLettersCmd() *cobra.Command {
	c := &cobra.Command{
		Use:     "dead-letters",
		Aliases: []string{"dlq"},
		Short:   "List and replay dead-lettered events",
		Long: "List and replay dead letters, either of a running instance (--url) or directly from the\n" +
			"data dir of a stopped one (--config). Replay queues the events for their sink again, starting at attempt 1.",
	}
	c.AddCommand(dlListCmd(), dlReplayCmd())
	return c
}

type dlTarget struct {
	url, key, config string
	asJSON           bool
}

func (t *dlTarget) flags(c *cobra.Command) {
	c.Flags().StringVar(&t.url, "url", "", "base URL of a running hookbus (default: read the data dir of --config)")
	c.Flags().StringVar(&t.key, "api-key", envOr("HOOKBUS_API_KEY", ""), "API key (env HOOKBUS_API_KEY)")
	c.Flags().StringVarP(&t.config, "config", "c", "config.yaml", "configuration file whose data dir to read when --url is not given")
}

func dlListCmd() *cobra.Command {
	var t dlTarget
	var sink string
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var dls []api.DeadLetterJSON
			if t.url != "" {
				q := url.Values{"limit": {strconv.Itoa(limit)}}
				if sink != "" {
					q.Set("sink", sink)
				}
				status, body, err := apiClient{base: t.url, key: t.key}.do(http.MethodGet, "/v1/dead-letters?"+q.Encode(), "", nil)
				if err != nil {
					return err
				}
				if status != http.StatusOK {
					return fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(body)))
				}
				var resp struct {
					DeadLetters []api.DeadLetterJSON `json:"dead_letters"`
				}
				if err := json.Unmarshal(body, &resp); err != nil {
					return err
				}
				dls = resp.DeadLetters
			} else {
				cfg, err := loadConfig(t.config, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					return err
				}
				st, err := app.OpenStore(context.Background(), cfg)
				if err != nil {
					return err
				}
				defer st.Close()
				list, err := st.ListDeadLetters(context.Background(), deadletter.Filter{Sink: sink, Limit: limit})
				if err != nil {
					return err
				}
				for _, dl := range list {
					dls = append(dls, api.ToJSON(dl))
				}
			}
			out := cmd.OutOrStdout()
			if t.asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(dls)
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSINK\tPIPELINE\tEVENT\tATTEMPTS\tDEAD AT\tREASON")
			for _, d := range dls {
				evID := ""
				if m, ok := d.Event.(map[string]any); ok {
					evID, _ = m["id"].(string)
				} else if b, err := json.Marshal(d.Event); err == nil {
					var m struct{ ID string }
					_ = json.Unmarshal(b, &m)
					evID = m.ID
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Sink, d.Pipeline, evID, d.Attempts, d.DeadAt, d.Reason)
			}
			return tw.Flush()
		},
	}
	t.flags(c)
	c.Flags().StringVar(&sink, "sink", "", "only this sink")
	c.Flags().IntVar(&limit, "limit", 100, "at most this many")
	c.Flags().BoolVar(&t.asJSON, "json", false, "print JSON")
	return c
}

func dlReplayCmd() *cobra.Command {
	var t dlTarget
	var req api.ReplayRequest
	c := &cobra.Command{
		Use:   "replay [ID...] [--sink NAME | --all]",
		Short: "Queue dead letters for delivery again",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.IDs = args
			if len(args) == 0 && req.Sink == "" && !req.All {
				return usage("say what to replay: IDs, --sink NAME or --all")
			}
			var n int
			if t.url != "" {
				body, _ := json.Marshal(req)
				status, resp, err := apiClient{base: t.url, key: t.key}.do(http.MethodPost, "/v1/dead-letters/replay", "application/json", body)
				if err != nil {
					return err
				}
				if status != http.StatusAccepted {
					return fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(resp)))
				}
				var r struct {
					Replayed int
					Skipped  string
				}
				_ = json.Unmarshal(resp, &r)
				n = r.Replayed
				if r.Skipped != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "replayed %d dead letters\n", n)
					return errors.New(r.Skipped)
				}
			} else {
				log := slog.New(slog.NewTextHandler(io.Discard, nil))
				cfg, err := loadConfig(t.config, log)
				if err != nil {
					return err
				}
				if app.UsesDataDir(cfg) {
					// A running instance would not see events queued into its
					// data dir behind its back (nor their removal from the
					// store) until a restart: the lock tells one is running.
					lock, err := datadir.Acquire(cfg.DataDir, "hookbus dead-letters replay")
					if errors.Is(err, datadir.ErrLocked) {
						return fmt.Errorf("%w\nreplay through the running instance instead: hookbus dead-letters replay --url http://%s ...", err, cfg.Server.Listen)
					}
					if err != nil {
						return err
					}
					defer lock.Release()
				}
				ctx := context.Background()
				q, err := app.OpenQueue(ctx, cfg, log)
				if err != nil {
					return fmt.Errorf("open queue (is hookbus running? then use --url): %w", err)
				}
				defer q.Close()
				st, err := app.OpenStore(ctx, cfg)
				if err != nil {
					return err
				}
				defer st.Close()
				n, err = api.ReplayDeadLetters(ctx, st, q, req, func(name string) bool { _, ok := cfg.Sinks[name]; return ok })
				if err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "replayed %d dead letters\n", n)
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replayed %d dead letters\n", n)
			return nil
		},
	}
	t.flags(c)
	c.Flags().StringVar(&req.Sink, "sink", "", "replay every dead letter of this sink")
	c.Flags().BoolVar(&req.All, "all", false, "replay every dead letter")
	return c
}
