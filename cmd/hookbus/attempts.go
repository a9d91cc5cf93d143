package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/api"
)

// The delivery log's commands: attempts list|get, events get, resend,
// recover and stats, clients of the /v1 delivery-log routes.

// prefix is where the delivery-log routes are for this client: with an
// application token and app, that application's routes (scoped reports
// true); otherwise the admin routes, where app is a filter.
func (pc *platformClient) prefix(app string) (path string, scoped bool) {
	if app != "" && strings.HasPrefix(pc.key, api.TokenPrefix) {
		return "/v1/applications/" + esc(app), true
	}
	return "/v1", false
}

// parseWhen reads a time flag: RFC 3339, or a duration back from now
// ("90m", "24h", "7d").
func parseWhen(flag, v string) (string, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok && err != nil {
		n, nerr := strconv.Atoi(days)
		d, err = time.Duration(n)*24*time.Hour, nerr
	}
	if err != nil || d < 0 {
		return "", usage("--%s %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or how long ago (90m, 24h, 7d)", flag, v)
	}
	return time.Now().Add(-d).UTC().Format(time.RFC3339Nano), nil
}

// statusText is a status code for a table ("-" without a response).
func statusText(code *int) string {
	if code == nil {
		return "-"
	}
	return strconv.Itoa(*code)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return cell(s)
}

// ms formats milliseconds without an exponent.
func ms(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// shorten cuts s for a table column.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func attemptsCmd() *cobra.Command {
	pc := &platformClient{}
	c := &cobra.Command{
		Use:   "attempts",
		Short: "Look up delivery attempts in the delivery log",
		Long: "List and show the delivery attempts of a running hookbus: what was sent where, what the endpoint\n" +
			"answered, how long it took (--url, --api-key or HOOKBUS_API_KEY: an admin key, or an application\n" +
			"token with --application).",
	}
	pc.flags(c)
	c.AddCommand(attemptsListCmd(pc), attemptsGetCmd(pc))
	return c
}

func attemptsListCmd(pc *platformClient) *cobra.Command {
	var app, sub, sink, eventID, eventType, outcome, status, since, until, cursor string
	var limit int
	var all bool
	c := &cobra.Command{
		Use:   "list [--application APP] [--subscription SUB] [--sink NAME] [--event-id ID] [--event-type TYPE] [--outcome delivered|retry|failed] [--status CODE] [--since T] [--until T]",
		Short: "List attempts, newest first",
		Example: "  hookbus attempts list --application acme --subscription sub_01J... --outcome failed --since 24h\n" +
			"  hookbus attempts list --event-id order-1001",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"subscription": sub, "sink": sink, "event_id": eventID, "event_type": eventType,
				"outcome": outcome, "status": status} {
				if v != "" {
					q.Set(k, v)
				}
			}
			for flag, v := range map[string]string{"since": since, "until": until} {
				if v != "" {
					t, err := parseWhen(flag, v)
					if err != nil {
						return err
					}
					q.Set(flag, t)
				}
			}
			prefix, scoped := pc.prefix(app)
			if app != "" && !scoped {
				q.Set("application", app)
			}
			items, body, next, err := pc.listPages(prefix+"/attempts", q, limit, cursor, all)
			if err != nil {
				return err
			}
			return pc.print(cmd, body, nil, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tSTARTED\tEVENT\tTYPE\tSINK\tSUBSCRIPTION\tN\tOUTCOME\tSTATUS\tMS\tERROR")
				for _, raw := range items {
					var a api.AttemptJSON
					_ = json.Unmarshal(raw, &a)
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", a.ID, a.StartedAt, cell(a.EventID), cell(a.EventType), cell(a.Sink),
						orDash(a.Subscription), a.Number, a.Outcome, statusText(a.StatusCode), ms(a.DurationMS), orDash(shorten(a.Error, 60)))
				}
				moreHint(cmd, next)
			})
		},
	}
	c.Flags().StringVar(&app, "application", "", "only this application's (with an application token: required, its own, and only its subscriptions' attempts are shown)")
	c.Flags().StringVar(&sub, "subscription", "", "only this subscription's")
	c.Flags().StringVar(&sink, "sink", "", "only this sink's")
	c.Flags().StringVar(&eventID, "event-id", "", "only this event's")
	c.Flags().StringVar(&eventType, "event-type", "", "only events of this type")
	c.Flags().StringVar(&outcome, "outcome", "", "only this outcome: delivered, retry or failed")
	c.Flags().StringVar(&status, "status", "", "only attempts answered with this HTTP status")
	c.Flags().StringVar(&since, "since", "", "only attempts started at or after this time (RFC 3339, or how long ago: 90m, 24h, 7d)")
	c.Flags().StringVar(&until, "until", "", "only attempts started before this time (RFC 3339, or how long ago)")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many per page (default: the API's, 50)")
	c.Flags().StringVar(&cursor, "cursor", "", "start at this cursor (from a previous page)")
	c.Flags().BoolVar(&all, "all-pages", false, "follow the cursors to the end")
	return c
}

// attemptRows prints one attempt in full.
func attemptRows(tw *tabwriter.Writer, a api.AttemptJSON) {
	received := "-"
	if a.ReceivedAt != nil {
		received = *a.ReceivedAt
	}
	rows := [][2]string{
		{"ID", a.ID}, {"EVENT", cell(a.EventID)}, {"TYPE", cell(a.EventType)}, {"SINK", cell(a.Sink)}, {"PIPELINE", orDash(a.Pipeline)},
		{"APPLICATION", orDash(a.Application)}, {"SUBSCRIPTION", orDash(a.Subscription)}, {"NUMBER", strconv.Itoa(a.Number)},
		{"OUTCOME", a.Outcome}, {"STATUS", statusText(a.StatusCode)}, {"ERROR", orDash(a.Error)}, {"RECEIVED", received},
		{"STARTED", a.StartedAt}, {"DURATION", ms(a.DurationMS) + " ms"}, {"URL", orDash(a.URL)}, {"WEBHOOK ID", orDash(a.WebhookID)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	headerRows(tw, "REQUEST HEADER", a.RequestHeaders)
	headerRows(tw, "RESPONSE HEADER", a.ResponseHeaders)
	if a.ResponseBody != nil {
		label := "RESPONSE BODY"
		if a.ResponseBodyEncoding == api.BodyBase64 {
			label += " (base64)"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, orDash(*a.ResponseBody))
	}
}

func headerRows(tw *tabwriter.Writer, label string, h map[string][]string) {
	for _, k := range slices.Sorted(maps.Keys(h)) {
		fmt.Fprintf(tw, "%s\t%s: %s\n", label, cell(k), cell(strings.Join(h[k], ", ")))
	}
}

func attemptsGetCmd(pc *platformClient) *cobra.Command {
	var app string
	c := &cobra.Command{
		Use:   "get ID [--application APP]",
		Short: "Show one attempt: the request, what the endpoint answered, the error",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix, _ := pc.prefix(app)
			resp, err := pc.call(http.MethodGet, prefix+"/attempts/"+esc(args[0]), nil, http.StatusOK)
			if err != nil {
				return err
			}
			var a api.AttemptJSON
			return pc.print(cmd, resp, &a, func(tw *tabwriter.Writer) { attemptRows(tw, a) })
		},
	}
	c.Flags().StringVar(&app, "application", "", "the attempt's application (needed with an application token)")
	return c
}

func eventsCmd() *cobra.Command {
	pc := &platformClient{}
	c := &cobra.Command{
		Use:   "events",
		Short: "Look up events on record in the delivery log",
		Long: "Show an event as hookbus recorded it (its payload per sink) with every attempt to deliver it\n" +
			"(--url, --api-key or HOOKBUS_API_KEY: an admin key, or an application token with --application).",
	}
	pc.flags(c)
	var app string
	get := &cobra.Command{
		Use:     "get ID [--application APP]",
		Short:   "Show an event on record with its attempts",
		Example: "  hookbus events get order-1001",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix, _ := pc.prefix(app)
			resp, err := pc.call(http.MethodGet, prefix+"/events/"+esc(args[0]), nil, http.StatusOK)
			if err != nil {
				return err
			}
			var ev api.EventJSON
			return pc.print(cmd, resp, &ev, func(tw *tabwriter.Writer) {
				received := "-"
				if ev.ReceivedAt != nil {
					received = *ev.ReceivedAt
				}
				fmt.Fprintf(tw, "ID\t%s\nTYPE\t%s\nSOURCE\t%s\nAPPLICATION\t%s\nRECEIVED\t%s\n", cell(ev.ID), cell(ev.Type), orDash(ev.Source), orDash(ev.Application), received)
				for _, r := range ev.Records {
					fmt.Fprintf(tw, "PAYLOAD (%s)\t%s\n", cell(r.Sink), cell(string(compactJSON(r.Payload))))
				}
				fmt.Fprintln(tw)
				fmt.Fprintln(tw, "ATTEMPT\tSTARTED\tSINK\tSUBSCRIPTION\tN\tOUTCOME\tSTATUS\tMS\tERROR")
				for _, a := range ev.Attempts {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", a.ID, a.StartedAt, cell(a.Sink), orDash(a.Subscription), a.Number,
						a.Outcome, statusText(a.StatusCode), ms(a.DurationMS), orDash(shorten(a.Error, 60)))
				}
				if ev.AttemptsNextCursor != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "more attempts: hookbus attempts list --event-id %s --cursor %s\n", ev.ID, *ev.AttemptsNextCursor)
				}
			})
		},
	}
	get.Flags().StringVar(&app, "application", "", "the event's application (needed with an application token)")
	c.AddCommand(get)
	return c
}

func compactJSON(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

func resendCmd() *cobra.Command {
	pc := &platformClient{}
	var app, sub, sink string
	c := &cobra.Command{
		Use:   "resend (--subscription SUB | --sink NAME) [--application APP] EVENT_ID...",
		Short: "Send events on record again now, to one subscription or one sink",
		Long: "Queue the given events again now: to a subscription (a new delivery, attempt 1, the same webhook-id)\n" +
			"or to a sink. With an application token, give --application and --subscription.",
		Example: "  hookbus resend --subscription sub_01J... order-1001 order-1002\n  hookbus resend --sink partner order-1001",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (sub == "") == (sink == "") {
				return usage("give --subscription or --sink (one of them)")
			}
			body := map[string]any{"event_ids": args}
			if sub != "" {
				body["subscription"] = sub
			} else {
				body["sink"] = sink
			}
			prefix, _ := pc.prefix(app)
			resp, err := pc.call(http.MethodPost, prefix+"/resend", body, http.StatusAccepted)
			if err != nil {
				return err
			}
			var r api.ResendJSON
			return pc.print(cmd, resp, &r, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, "queued %d\n", r.Queued) })
		},
	}
	pc.flags(c)
	c.Flags().StringVar(&sub, "subscription", "", "send to this subscription")
	c.Flags().StringVar(&sink, "sink", "", "send to this sink")
	c.Flags().StringVar(&app, "application", "", "the application the events and the subscription are of (needed with an application token; ignored with an admin key)")
	return c
}

func recoverCmd() *cobra.Command {
	pc := &platformClient{}
	var app, sub, sink, since, until, cursor string
	var all bool
	var limit int
	c := &cobra.Command{
		Use:   "recover (--subscription SUB | --application APP | --sink NAME) --since T [--until T] [--all]",
		Short: "Send again the failed (or, with --all, every) deliveries of a time range",
		Long: "Queue again the deliveries of a subscription, an application or a sink whose events were received\n" +
			"between --since and --until (default: now) and whose last attempt failed (with --all: all of them).\n" +
			"The range is done page by page, the progress shown on stderr; a delivery already queued again and not\n" +
			"attempted since is not queued twice, so running the same recover again is safe.",
		Example: "  hookbus recover --subscription sub_01J... --since 2026-01-02T00:00:00Z --until 2026-01-02T06:00:00Z\n" +
			"  hookbus recover --sink partner --since 24h --all",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if sub == "" && app == "" && sink == "" {
				return usage("give --subscription, --application or --sink: whose deliveries to recover")
			}
			if since == "" {
				return usage("--since is required: the start of the range (RFC 3339, or how long ago: 90m, 24h, 7d)")
			}
			from, err := parseWhen("since", since)
			if err != nil {
				return err
			}
			body := map[string]any{"since": from}
			if until != "" {
				to, err := parseWhen("until", until)
				if err != nil {
					return err
				}
				body["until"] = to
			}
			if sub != "" {
				body["subscription"] = sub
			}
			if sink != "" {
				body["sink"] = sink
			}
			if all {
				body["outcome"] = "all"
			}
			if limit > 0 {
				body["limit"] = limit
			}
			prefix, scoped := pc.prefix(app)
			if app != "" && !scoped {
				body["application"] = app
			}
			var total api.RecoverJSON
			next := cursor
			for page := 1; ; page++ {
				if next != "" {
					body["cursor"] = next
				}
				resp, err := pc.call(http.MethodPost, prefix+"/recover", body, http.StatusAccepted)
				if err != nil {
					if total.Scanned > 0 {
						fmt.Fprintf(cmd.ErrOrStderr(), "stopped after queuing %d of %d scanned; to go on: --cursor %s\n", total.Queued, total.Scanned, next)
					}
					return err
				}
				var r api.RecoverJSON
				if err := json.Unmarshal(resp, &r); err != nil {
					return fmt.Errorf("unexpected answer: %w", err)
				}
				total.Queued += r.Queued
				total.Scanned += r.Scanned
				if r.NextCursor == nil {
					break
				}
				if *r.NextCursor == next {
					return fmt.Errorf("the server answered the same cursor twice (%s); stopping", next)
				}
				next = *r.NextCursor
				fmt.Fprintf(cmd.ErrOrStderr(), "queued %d of %d scanned (page %d)…\n", total.Queued, total.Scanned, page)
			}
			out, _ := json.Marshal(total)
			return pc.print(cmd, out, nil, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "queued %d of %d scanned\n", total.Queued, total.Scanned)
			})
		},
	}
	pc.flags(c)
	c.Flags().StringVar(&sub, "subscription", "", "the deliveries of this subscription")
	c.Flags().StringVar(&app, "application", "", "the deliveries of this application (with an application token: required, its own, with --subscription)")
	c.Flags().StringVar(&sink, "sink", "", "the deliveries of this sink")
	c.Flags().StringVar(&since, "since", "", "events received at or after this time (RFC 3339, or how long ago: 90m, 24h, 7d; required)")
	c.Flags().StringVar(&until, "until", "", "events received before this time (default: now)")
	c.Flags().BoolVar(&all, "all", false, "every delivery in range, not only those whose last attempt failed")
	c.Flags().IntVar(&limit, "page-size", 0, "deliveries per request (default: the API's, 500)")
	c.Flags().StringVar(&cursor, "cursor", "", "go on from this cursor (printed when a recover stopped)")
	return c
}

func statsCmd() *cobra.Command {
	pc := &platformClient{}
	var sub, app, sink, window string
	c := &cobra.Command{
		Use:   "stats (--subscription APP/SUB | --application APP | --sink NAME) [--window 1h|24h|7d]",
		Short: "Show a subscription's, an application's or a sink's delivery figures",
		Long: "Attempts, deliveries, retries and failures, the success rates, attempt latency and ingest-to-delivery\n" +
			"delay (p50/p99) over the window, the oldest event still waiting for a retry, and the attempts step by\n" +
			"step (per minute for 1h, per hour above; --json gives each step's figures).\n" +
			"An application's figures are those of all its subscriptions.",
		Example: "  hookbus stats --subscription acme/sub_01J... --window 1h\n  hookbus stats --application acme\n  hookbus stats --sink partner",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := statsPath(sub, app, sink)
			if err != nil {
				return err
			}
			resp, err := pc.call(http.MethodGet, path+"?window="+url.QueryEscape(window), nil, http.StatusOK)
			if err != nil {
				return err
			}
			var s api.StatsJSON
			return pc.print(cmd, resp, &s, func(tw *tabwriter.Writer) {
				oldest := "-"
				if s.OldestWaiting != nil {
					oldest = *s.OldestWaiting
				}
				fmt.Fprintf(tw, "WINDOW\t%s\nATTEMPTS\t%d\nDELIVERED\t%d\nRETRIED\t%d\nFAILED\t%d\n", s.Window, s.Attempts, s.Delivered, s.Retried, s.Failed)
				fmt.Fprintf(tw, "SUCCESS RATE\t%.2f%%\nDELIVERY SUCCESS RATE\t%.2f%%\n", 100*s.SuccessRate, 100*s.DeliverySuccessRate)
				fmt.Fprintf(tw, "LATENCY P50\t%s ms\nLATENCY P99\t%s ms\nDELAY P50\t%s ms\nDELAY P99\t%s ms\nOLDEST WAITING\t%s\n",
					ms(s.LatencyP50MS), ms(s.LatencyP99MS), ms(s.DelayP50MS), ms(s.DelayP99MS), oldest)
				if len(s.Series) > 0 {
					fmt.Fprintf(tw, "ATTEMPTS OVER TIME\t%s (from %s)\n", sparkline(s.Series), s.Series[0].Start)
				}
			})
		},
	}
	pc.flags(c)
	c.Flags().StringVar(&sub, "subscription", "", "a subscription, as APP/SUB")
	c.Flags().StringVar(&app, "application", "", "an application: all its subscriptions")
	c.Flags().StringVar(&sink, "sink", "", "a configured sink")
	c.Flags().StringVar(&window, "window", "24h", "the window: 1h, 24h or 7d")
	return c
}

// statsPath is the API path of the figures of exactly one of a
// subscription (APP/SUB), an application and a sink.
func statsPath(sub, app, sink string) (string, error) {
	set := 0
	for _, v := range []string{sub, app, sink} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return "", usage("give --subscription APP/SUB, --application APP or --sink NAME (one of them)")
	}
	switch {
	case sub != "":
		a, id, ok := strings.Cut(sub, "/")
		if !ok || a == "" || id == "" {
			return "", usage("--subscription %q: want APP/SUB, e.g. acme/sub_01J...", sub)
		}
		return subPath(a, id) + "/stats", nil
	case app != "":
		return "/v1/applications/" + esc(app) + "/stats", nil
	}
	return "/v1/sinks/" + esc(sink) + "/stats", nil
}

// sparkline draws the attempts of a series as one block character per
// step, the tallest for the busiest step (a space for none).
func sparkline(points []api.PointJSON) string {
	const blocks = "▁▂▃▄▅▆▇█"
	levels := []rune(blocks)
	var top int64
	for _, p := range points {
		top = max(top, p.Attempts)
	}
	var b strings.Builder
	for _, p := range points {
		if p.Attempts == 0 || top == 0 {
			b.WriteRune(' ')
			continue
		}
		b.WriteRune(levels[p.Attempts*int64(len(levels)-1)/top])
	}
	return b.String()
}
