package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/api"
	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/core/subscription"
)

// platformClient is what the apps, subscriptions and tokens commands share:
// the running instance they talk to and how they print.
type platformClient struct {
	url, key string
	asJSON   bool
}

func (pc *platformClient) flags(c *cobra.Command) {
	c.PersistentFlags().StringVar(&pc.url, "url", envOr("HOOKBUS_URL", "http://127.0.0.1:8080"), "base URL of a running hookbus (env HOOKBUS_URL)")
	c.PersistentFlags().StringVar(&pc.key, "api-key", os.Getenv("HOOKBUS_API_KEY"), "admin key or application token (env HOOKBUS_API_KEY)")
	c.PersistentFlags().BoolVar(&pc.asJSON, "json", false, "print the API's JSON instead of a table")
}

// call sends a request and returns the answer's body when its status is
// want; any other answer is an error carrying the problem's detail and
// field errors.
func (pc *platformClient) call(method, path string, body any, want int) ([]byte, error) {
	var b []byte
	ct := ""
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, err
		}
		ct = "application/json"
	}
	status, resp, err := apiClient{base: pc.url, key: pc.key}.do(method, path, ct, b)
	if err != nil {
		return nil, err
	}
	if status != want {
		return nil, problemError(status, resp)
	}
	return resp, nil
}

// problemError turns an error answer into an error: "HTTP 422
// validation_failed: invalid subscription" and a line per field error.
func problemError(status int, body []byte) error {
	var p problem.Problem
	if json.Unmarshal(body, &p) != nil || p.Status == 0 {
		return fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(body)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d %s: %s", status, p.Code, p.Detail)
	for _, fe := range p.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", fe.Field, fe.Message)
	}
	return errors.New(b.String())
}

// print writes the API's JSON (--json) or, with table, a table.
func (pc *platformClient) print(cmd *cobra.Command, body []byte, v any, table func(tw *tabwriter.Writer)) error {
	out := cmd.OutOrStdout()
	if pc.asJSON {
		_, err := out.Write(append(bytes.TrimRight(body, "\n"), '\n'))
		return err
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return fmt.Errorf("unexpected answer: %w", err)
		}
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// listPages gets one page of a list, or every page with all, and returns
// the items' JSON with the answer as --json prints it.
func (pc *platformClient) listPages(path string, q url.Values, limit int, cursor string, all bool) ([]json.RawMessage, []byte, string, error) {
	var items []json.RawMessage
	next := cursor
	for {
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		if limit > 0 {
			qq.Set("limit", strconv.Itoa(limit))
		}
		if next != "" {
			qq.Set("cursor", next)
		}
		p := path
		if len(qq) > 0 {
			p += "?" + qq.Encode()
		}
		body, err := pc.call(http.MethodGet, p, nil, http.StatusOK)
		if err != nil {
			return nil, nil, "", err
		}
		var page struct {
			Data       []json.RawMessage `json:"data"`
			NextCursor *string           `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, nil, "", fmt.Errorf("unexpected answer: %w", err)
		}
		items = append(items, page.Data...)
		next = ""
		if page.NextCursor != nil {
			next = *page.NextCursor
		}
		if !all || next == "" {
			if !all {
				return items, body, next, nil
			}
			merged, _ := json.MarshalIndent(map[string]any{"data": items, "next_cursor": nil}, "", "  ")
			return items, merged, "", nil
		}
	}
}

func esc(s string) string { return url.PathEscape(s) }

// cell makes text an application or a receiver chose safe to print in a
// table on a terminal: control characters (escape sequences, line breaks,
// tabs that would shift the columns) and bidirectional overrides are
// shown as Go escapes (\x1b, \n, \u202e) instead of acting.
func cell(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafeRune(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }

func appsCmd() *cobra.Command {
	pc := &platformClient{}
	c := &cobra.Command{
		Use:     "apps",
		Aliases: []string{"applications"},
		Short:   "Manage the applications of a running hookbus",
		Long: "Create, list, show, update and delete applications (the third parties that register callback URLs)\n" +
			"through the management API of a running instance (--url, --api-key or HOOKBUS_API_KEY).",
	}
	pc.flags(c)
	c.AddCommand(appsCreateCmd(pc), appsListCmd(pc), appsGetCmd(pc), appsUpdateCmd(pc), appsDeleteCmd(pc), appsPortalCmd(pc))
	return c
}

// appsPortalCmd makes a portal link (POST /v1/applications/{app}/portal)
// and prints its URL alone on stdout, so a script can capture it; when it
// expires goes to stderr.
func appsPortalCmd(pc *platformClient) *cobra.Command {
	var ttl string
	c := &cobra.Command{
		Use:   "portal APP [--ttl 1h]",
		Short: "Make a short-lived link to an application's portal (admin keys only)",
		Long: "Make a portal link for the application and print its URL. Whoever opens it manages that application's\n" +
			"subscriptions and sees its delivery log until the link expires (--ttl, 1m to 24h; default\n" +
			"console.portal.link_ttl) or its token is revoked (hookbus tokens delete APP TOKEN_ID).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if ttl != "" {
				body["ttl"] = ttl
			}
			resp, err := pc.call(http.MethodPost, "/v1/applications/"+esc(args[0])+"/portal", body, http.StatusCreated)
			if err != nil {
				return err
			}
			var link api.PortalLinkJSON
			if err := json.Unmarshal(resp, &link); err != nil {
				return fmt.Errorf("portal link answer: %w", err)
			}
			if pc.asJSON {
				_, err := cmd.OutOrStdout().Write(append(bytes.TrimRight(resp, "\n"), '\n'))
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), link.URL)
			fmt.Fprintf(cmd.ErrOrStderr(), "expires at %s; revoke it with: hookbus tokens delete %s %s\n", link.ExpiresAt, args[0], link.TokenID)
			return nil
		},
	}
	c.Flags().StringVar(&ttl, "ttl", "", "how long the link lasts, 1m to 24h (default: console.portal.link_ttl)")
	return c
}

func appTable(a api.ApplicationJSON) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		md, _ := json.Marshal(a.Metadata)
		fmt.Fprintf(tw, "ID\t%s\nNAME\t%s\nMETADATA\t%s\nCREATED\t%s\nUPDATED\t%s\n", a.ID, cell(a.Name), md, a.CreatedAt, a.UpdatedAt)
	}
}

// jsonObject parses a flag holding a JSON object.
func jsonObject(flag, v string) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(v), &m); err != nil || m == nil {
		return nil, usage("--%s: must be a JSON object, e.g. '{\"plan\": \"gold\"}'", flag)
	}
	return m, nil
}

func appsCreateCmd(pc *platformClient) *cobra.Command {
	var id, name, metadata string
	c := &cobra.Command{
		Use:     "create --name NAME [--id ID] [--metadata JSON]",
		Short:   "Create an application",
		Example: `  hookbus apps create --id acme --name "Acme Inc"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"name": name}
			if id != "" {
				body["id"] = id
			}
			if metadata != "" {
				m, err := jsonObject("metadata", metadata)
				if err != nil {
					return err
				}
				body["metadata"] = m
			}
			resp, err := pc.call(http.MethodPost, "/v1/applications", body, http.StatusCreated)
			if err != nil {
				return err
			}
			var a api.ApplicationJSON
			return pc.print(cmd, resp, &a, func(tw *tabwriter.Writer) { appTable(a)(tw) })
		},
	}
	c.Flags().StringVar(&id, "id", "", "the application's id (default: generated, app_...)")
	c.Flags().StringVar(&name, "name", "", "the application's name (required)")
	c.Flags().StringVar(&metadata, "metadata", "", "metadata, a JSON object")
	_ = c.MarkFlagRequired("name")
	return c
}

func appsListCmd(pc *platformClient) *cobra.Command {
	var limit int
	var cursor string
	var all bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List applications",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			items, body, next, err := pc.listPages("/v1/applications", nil, limit, cursor, all)
			if err != nil {
				return err
			}
			return pc.print(cmd, body, nil, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tNAME\tCREATED")
				for _, raw := range items {
					var a api.ApplicationJSON
					_ = json.Unmarshal(raw, &a)
					fmt.Fprintf(tw, "%s\t%s\t%s\n", a.ID, cell(a.Name), a.CreatedAt)
				}
				moreHint(cmd, next)
			})
		},
	}
	listFlags(c, &limit, &cursor, &all)
	return c
}

func listFlags(c *cobra.Command, limit *int, cursor *string, all *bool) {
	c.Flags().IntVar(limit, "limit", 0, "at most this many per page (default: the API's, 50)")
	c.Flags().StringVar(cursor, "cursor", "", "start at this cursor (from a previous page)")
	c.Flags().BoolVar(all, "all", false, "follow the cursors to the end")
}

// moreHint tells, on stderr, how to get the next page.
func moreHint(cmd *cobra.Command, next string) {
	if next != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "more: --cursor %s (or --all)\n", next)
	}
}

func appsGetCmd(pc *platformClient) *cobra.Command {
	return &cobra.Command{
		Use:   "get APP",
		Short: "Show an application",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := pc.call(http.MethodGet, "/v1/applications/"+esc(args[0]), nil, http.StatusOK)
			if err != nil {
				return err
			}
			var a api.ApplicationJSON
			return pc.print(cmd, resp, &a, func(tw *tabwriter.Writer) { appTable(a)(tw) })
		},
	}
}

func appsUpdateCmd(pc *platformClient) *cobra.Command {
	var name, metadata string
	c := &cobra.Command{
		Use:   "update APP [--name NAME] [--metadata JSON]",
		Short: "Change an application's name or metadata (only the flags given)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if cmd.Flags().Changed("name") {
				body["name"] = name
			}
			if cmd.Flags().Changed("metadata") {
				m, err := jsonObject("metadata", metadata)
				if err != nil {
					return err
				}
				body["metadata"] = m
			}
			if len(body) == 0 {
				return usage("nothing to change: give --name or --metadata")
			}
			resp, err := pc.call(http.MethodPatch, "/v1/applications/"+esc(args[0]), body, http.StatusOK)
			if err != nil {
				return err
			}
			var a api.ApplicationJSON
			return pc.print(cmd, resp, &a, func(tw *tabwriter.Writer) { appTable(a)(tw) })
		},
	}
	c.Flags().StringVar(&name, "name", "", "the new name")
	c.Flags().StringVar(&metadata, "metadata", "", "the new metadata, a JSON object (replaces the old)")
	return c
}

func appsDeleteCmd(pc *platformClient) *cobra.Command {
	return &cobra.Command{
		Use:   "delete APP",
		Short: "Delete an application with its subscriptions and tokens",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := pc.call(http.MethodDelete, "/v1/applications/"+esc(args[0]), nil, http.StatusNoContent); err != nil {
				return err
			}
			if !pc.asJSON {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted application %s\n", args[0])
			}
			return nil
		},
	}
}

func subscriptionsCmd() *cobra.Command {
	pc := &platformClient{}
	c := &cobra.Command{
		Use:     "subscriptions",
		Aliases: []string{"subs"},
		Short:   "Manage the subscriptions (callback URLs) of an application",
		Long: "Register, list, show, change and delete an application's callback URLs, read and rotate their\n" +
			"signing secrets and send test events, through the management API of a running instance\n" +
			"(--url, --api-key or HOOKBUS_API_KEY: an admin key, or the application's token).",
	}
	pc.flags(c)
	c.AddCommand(subsCreateCmd(pc), subsListCmd(pc), subsGetCmd(pc), subsUpdateCmd(pc), subsDeleteCmd(pc),
		subsSecretCmd(pc), subsRotateCmd(pc), subsTestCmd(pc), subsPublicKeysCmd(pc), subsRotateKeyCmd(pc))
	return c
}

func subPath(app, sub string) string {
	return "/v1/applications/" + esc(app) + "/subscriptions/" + esc(sub)
}

func subTable(s api.SubscriptionJSON) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		headers, _ := json.Marshal(s.Headers)
		md, _ := json.Marshal(s.Metadata)
		rows := [][2]string{
			{"ID", s.ID}, {"APPLICATION", s.Application}, {"URL", s.URL}, {"EVENT TYPES", strings.Join(s.EventTypes, ", ")},
			{"DESCRIPTION", cell(s.Description)}, {"HEADERS", string(headers)}, {"RATE LIMIT", strconv.FormatFloat(s.RateLimit, 'g', -1, 64)},
			{"MAX IN FLIGHT", strconv.Itoa(s.MaxInFlight)}, {"FORMAT", s.Format}, {"FILTER", filterSummary(s.Filter)}, {"DISABLED", strconv.FormatBool(s.Disabled)},
		}
		if s.DisabledReason != "" {
			rows = append(rows, [2]string{"DISABLED REASON", cell(s.DisabledReason)})
		}
		rows = append(rows, [2]string{"METADATA", string(md)}, [2]string{"CREATED", s.CreatedAt}, [2]string{"UPDATED", s.UpdatedAt})
		if s.PublicKey != "" {
			rows = append(rows, [2]string{"SIGNING", s.Signing}, [2]string{"PUBLIC KEY", s.PublicKey})
		}
		if s.Secret != "" {
			rows = append(rows, [2]string{"SECRET", s.Secret})
		}
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
		}
	}
}

func filterSummary(f string) string {
	if f == "" {
		return "-"
	}
	return fmt.Sprintf("%d bytes of JavaScript", len(f))
}

// subFlags are the flags that set a subscription's fields.
type subFlags struct {
	url, description, secret, filter, metadata, format string
	signing                                            string
	eventTypes, headers                                []string
	rateLimit                                          float64
	maxInFlight                                        int
	disabled                                           bool
}

func (f *subFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.url, "endpoint", "", "the callback URL (http or https)")
	c.Flags().StringArrayVarP(&f.eventTypes, "event-type", "e", nil, "an event type to receive: order.paid, order.* or * (repeat, or separate with commas)")
	c.Flags().StringVar(&f.description, "description", "", "a description")
	c.Flags().StringVar(&f.secret, "secret", "", "the whsec_ signing secret (default: generated)")
	c.Flags().StringVar(&f.signing, "signing", "", `"ed25519": an Ed25519 key signs too (v1a signatures); "hmac": secrets only`)
	c.Flags().StringArrayVarP(&f.headers, "header", "H", nil, "an extra request header, Name=value (repeat)")
	c.Flags().Float64Var(&f.rateLimit, "rate-limit", 0, "at most this many deliveries per second (0: no limit)")
	c.Flags().IntVar(&f.maxInFlight, "max-in-flight", 0, "at most this many deliveries at once (0: the sink's default)")
	c.Flags().StringVar(&f.format, "format", "", "the body's format: json (the default), cloudevents-structured or cloudevents-binary")
	c.Flags().StringVar(&f.filter, "filter", "", "a JavaScript file defining filter(event), - for stdin (admin keys only)")
	c.Flags().BoolVar(&f.disabled, "disabled", false, "disabled (no deliveries)")
	c.Flags().StringVar(&f.metadata, "metadata", "", "metadata, a JSON object")
}

// body returns the members of the flags given (all of them with create's defaults).
func (f *subFlags) body(cmd *cobra.Command) (map[string]any, error) {
	changed := cmd.Flags().Changed
	b := map[string]any{}
	if changed("endpoint") {
		b["url"] = f.url
	}
	if changed("event-type") {
		var types []string
		for _, e := range f.eventTypes {
			for _, t := range strings.Split(e, ",") {
				if t = strings.TrimSpace(t); t != "" {
					types = append(types, t)
				}
			}
		}
		b["event_types"] = types
	}
	if changed("description") {
		b["description"] = f.description
	}
	if changed("secret") {
		b["secret"] = f.secret
	}
	if changed("signing") {
		b["signing"] = f.signing
	}
	if changed("header") {
		h := map[string]string{}
		for _, kv := range f.headers {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				k, v, ok = strings.Cut(kv, ":")
			}
			if !ok || strings.TrimSpace(k) == "" {
				return nil, usage("--header %q: want Name=value", kv)
			}
			h[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
		b["headers"] = h
	}
	if changed("rate-limit") {
		b["rate_limit"] = f.rateLimit
	}
	if changed("max-in-flight") {
		b["max_in_flight"] = f.maxInFlight
	}
	if changed("format") {
		b["format"] = f.format
	}
	if changed("filter") {
		src := ""
		if f.filter != "" {
			var data []byte
			var err error
			if f.filter == "-" {
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
			} else {
				data, err = os.ReadFile(f.filter)
			}
			if err != nil {
				return nil, usage("--filter: %v", err)
			}
			src = string(data)
		}
		b["filter"] = src
	}
	if changed("disabled") {
		b["disabled"] = f.disabled
	}
	if changed("metadata") {
		m, err := jsonObject("metadata", f.metadata)
		if err != nil {
			return nil, err
		}
		b["metadata"] = m
	}
	return b, nil
}

func subsCreateCmd(pc *platformClient) *cobra.Command {
	var f subFlags
	c := &cobra.Command{
		Use:   "create APP --endpoint URL --event-type TYPE... [flags]",
		Short: "Register a callback URL for an application",
		Long: "Register a callback URL. The answer shows its signing secret (generated unless --secret is given);\n" +
			"later, `hookbus subscriptions secret APP SUB` shows it again.",
		Example: `  hookbus subscriptions create acme --endpoint https://acme.example/hooks -e order.paid -e 'user.*'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := f.body(cmd)
			if err != nil {
				return err
			}
			resp, err := pc.call(http.MethodPost, "/v1/applications/"+esc(args[0])+"/subscriptions", body, http.StatusCreated)
			if err != nil {
				return err
			}
			var s api.SubscriptionJSON
			return pc.print(cmd, resp, &s, func(tw *tabwriter.Writer) { subTable(s)(tw) })
		},
	}
	f.add(c)
	return c
}

func subsListCmd(pc *platformClient) *cobra.Command {
	var eventType, disabled, cursor string
	var limit int
	var all bool
	c := &cobra.Command{
		Use:   "list APP [--event-type TYPE] [--disabled true|false]",
		Short: "List an application's subscriptions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if eventType != "" {
				q.Set("event_type", eventType)
			}
			if disabled != "" {
				q.Set("disabled", disabled)
			}
			items, body, next, err := pc.listPages("/v1/applications/"+esc(args[0])+"/subscriptions", q, limit, cursor, all)
			if err != nil {
				return err
			}
			return pc.print(cmd, body, nil, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tURL\tEVENT TYPES\tDISABLED\tDESCRIPTION")
				for _, raw := range items {
					var s api.SubscriptionJSON
					_ = json.Unmarshal(raw, &s)
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", s.ID, s.URL, strings.Join(s.EventTypes, ","), s.Disabled, cell(s.Description))
				}
				moreHint(cmd, next)
			})
		},
	}
	c.Flags().StringVarP(&eventType, "event-type", "e", "", "only those an event of this type goes to")
	c.Flags().StringVar(&disabled, "disabled", "", "only the disabled (true) or the enabled (false) ones")
	listFlags(c, &limit, &cursor, &all)
	return c
}

func subsGetCmd(pc *platformClient) *cobra.Command {
	return &cobra.Command{
		Use:   "get APP SUB",
		Short: "Show a subscription (without its secret)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := pc.call(http.MethodGet, subPath(args[0], args[1]), nil, http.StatusOK)
			if err != nil {
				return err
			}
			var s api.SubscriptionJSON
			return pc.print(cmd, resp, &s, func(tw *tabwriter.Writer) { subTable(s)(tw) })
		},
	}
}

func subsUpdateCmd(pc *platformClient) *cobra.Command {
	var f subFlags
	c := &cobra.Command{
		Use:     "update APP SUB [flags]",
		Short:   "Change a subscription (only the flags given)",
		Example: "  hookbus subscriptions update acme sub_01J... --disabled=false\n  hookbus subscriptions update acme sub_01J... -e order.paid -e order.refunded",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := f.body(cmd)
			if err != nil {
				return err
			}
			if len(body) == 0 {
				return usage("nothing to change: give at least one flag")
			}
			resp, err := pc.call(http.MethodPatch, subPath(args[0], args[1]), body, http.StatusOK)
			if err != nil {
				return err
			}
			var s api.SubscriptionJSON
			return pc.print(cmd, resp, &s, func(tw *tabwriter.Writer) { subTable(s)(tw) })
		},
	}
	f.add(c)
	return c
}

func subsDeleteCmd(pc *platformClient) *cobra.Command {
	return &cobra.Command{
		Use:   "delete APP SUB",
		Short: "Delete a subscription",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := pc.call(http.MethodDelete, subPath(args[0], args[1]), nil, http.StatusNoContent); err != nil {
				return err
			}
			if !pc.asJSON {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted subscription %s\n", args[1])
			}
			return nil
		},
	}
}

// printSecret prints a {"secret"} answer: the secret alone, or the JSON.
func (pc *platformClient) printSecret(cmd *cobra.Command, resp []byte) error {
	if pc.asJSON {
		return pc.print(cmd, resp, nil, nil)
	}
	var s struct{ Secret string }
	if err := json.Unmarshal(resp, &s); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), s.Secret)
	return nil
}

func subsSecretCmd(pc *platformClient) *cobra.Command {
	return &cobra.Command{
		Use:   "secret APP SUB",
		Short: "Print a subscription's current signing secret",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := pc.call(http.MethodGet, subPath(args[0], args[1])+"/secret", nil, http.StatusOK)
			if err != nil {
				return err
			}
			return pc.printSecret(cmd, resp)
		},
	}
}

func subsRotateCmd(pc *platformClient) *cobra.Command {
	var secret, overlap string
	c := &cobra.Command{
		Use:   "rotate-secret APP SUB [--secret whsec_...] [--overlap 24h]",
		Short: "Make a new signing secret; the old one keeps signing beside it for --overlap",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if secret != "" {
				body["secret"] = secret
			}
			if cmd.Flags().Changed("overlap") {
				body["overlap"] = overlap
			}
			resp, err := pc.call(http.MethodPost, subPath(args[0], args[1])+"/rotate-secret", body, http.StatusOK)
			if err != nil {
				return err
			}
			return pc.printSecret(cmd, resp)
		},
	}
	c.Flags().StringVar(&secret, "secret", "", "the new whsec_ secret (default: generated)")
	c.Flags().StringVar(&overlap, "overlap", "24h", "how long the old secret keeps signing (0s: it stops at once)")
	return c
}

func subsTestCmd(pc *platformClient) *cobra.Command {
	var typ, data string
	c := &cobra.Command{
		Use:   "test APP SUB [--type TYPE] [--data JSON]",
		Short: "Send a test event to a subscription now and show what its endpoint answered",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if typ != "" {
				body["type"] = typ
			}
			if data != "" {
				if !json.Valid([]byte(data)) {
					return usage("--data: not valid JSON")
				}
				body["data"] = json.RawMessage(data)
			}
			resp, err := pc.call(http.MethodPost, subPath(args[0], args[1])+"/test", body, http.StatusOK)
			if err != nil {
				return err
			}
			var r subscription.TestResult
			return pc.print(cmd, resp, &r, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "OUTCOME\t%s\nSTATUS\t%d\nLATENCY\t%d ms\nRESPONSE\t%s\n", r.Outcome, r.StatusCode, r.LatencyMS, cell(r.Response))
			})
		},
	}
	c.Flags().StringVarP(&typ, "type", "t", "", "the event type (default hookbus.test)")
	c.Flags().StringVarP(&data, "data", "d", "", "the event's data (JSON)")
	return c
}

func tokensCmd() *cobra.Command {
	pc := &platformClient{}
	c := &cobra.Command{
		Use:   "tokens",
		Short: "Manage application tokens (admin keys only)",
		Long: "Create, list and revoke application tokens: bearer credentials that reach only their application's\n" +
			"routes. A token is shown once, when created.",
	}
	pc.flags(c)
	c.AddCommand(tokensCreateCmd(pc), tokensListCmd(pc), tokensDeleteCmd(pc))
	return c
}

func tokensCreateCmd(pc *platformClient) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "create APP [--name LABEL]",
		Short: "Create an application token (printed once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if name != "" {
				body["name"] = name
			}
			resp, err := pc.call(http.MethodPost, "/v1/applications/"+esc(args[0])+"/tokens", body, http.StatusCreated)
			if err != nil {
				return err
			}
			var tok api.TokenJSON
			return pc.print(cmd, resp, &tok, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "ID\t%s\nAPPLICATION\t%s\nNAME\t%s\nTOKEN\t%s\n", tok.ID, tok.Application, cell(tok.Name), tok.Token)
				fmt.Fprintln(cmd.ErrOrStderr(), "keep the token now: it is not shown again")
			})
		},
	}
	c.Flags().StringVar(&name, "name", "", "a label for the token")
	return c
}

func tokensListCmd(pc *platformClient) *cobra.Command {
	return &cobra.Command{
		Use:   "list APP",
		Short: "List an application's tokens (without their values)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := pc.call(http.MethodGet, "/v1/applications/"+esc(args[0])+"/tokens", nil, http.StatusOK)
			if err != nil {
				return err
			}
			var page struct{ Data []api.TokenJSON }
			return pc.print(cmd, resp, &page, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tNAME\tKIND\tCREATED\tLAST USED\tEXPIRES")
				for _, t := range page.Data {
					last, expires := "-", "never"
					if t.LastUsedAt != nil {
						last = *t.LastUsedAt
					}
					if t.ExpiresAt != nil {
						expires = *t.ExpiresAt
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, cell(t.Name), t.Kind, t.CreatedAt, last, expires)
				}
			})
		},
	}
}

func tokensDeleteCmd(pc *platformClient) *cobra.Command {
	return &cobra.Command{
		Use:   "delete APP TOKEN_ID",
		Short: "Revoke an application token",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := pc.call(http.MethodDelete, "/v1/applications/"+esc(args[0])+"/tokens/"+esc(args[1]), nil, http.StatusNoContent); err != nil {
				return err
			}
			if !pc.asJSON {
				fmt.Fprintf(cmd.OutOrStdout(), "revoked token %s\n", args[1])
			}
			return nil
		},
	}
}

// printPublicKeys prints a {"keys"} answer, one key a line: its id, the
// whpk_ key and, for a rotated-out key, when it stops signing.
func (pc *platformClient) printPublicKeys(cmd *cobra.Command, resp []byte) error {
	if pc.asJSON {
		return pc.print(cmd, resp, nil, nil)
	}
	var ks struct {
		Keys []struct {
			ID        string `json:"id"`
			PublicKey string `json:"public_key"`
			Expires   string `json:"expires"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(resp, &ks); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	if len(ks.Keys) == 0 {
		fmt.Fprintln(cmd.OutOrStdout(), "no Ed25519 keys: the subscription signs with its secrets only (v1)")
	}
	for _, k := range ks.Keys {
		line := k.ID + "  " + k.PublicKey
		if k.Expires != "" {
			line += "  expires " + k.Expires
		}
		fmt.Fprintln(cmd.OutOrStdout(), line)
	}
	return nil
}

func subsPublicKeysCmd(pc *platformClient) *cobra.Command {
	return &cobra.Command{
		Use:   "public-keys APP SUB",
		Short: "Print the Ed25519 public keys (whpk_) that check a subscription's v1a signatures",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := pc.call(http.MethodGet, subPath(args[0], args[1])+"/public-keys", nil, http.StatusOK)
			if err != nil {
				return err
			}
			return pc.printPublicKeys(cmd, resp)
		},
	}
}

func subsRotateKeyCmd(pc *platformClient) *cobra.Command {
	var overlap string
	c := &cobra.Command{
		Use:   "rotate-signing-key APP SUB [--overlap 24h]",
		Short: "Make a new Ed25519 signing key; the old one keeps signing beside it for --overlap",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if cmd.Flags().Changed("overlap") {
				body["overlap"] = overlap
			}
			resp, err := pc.call(http.MethodPost, subPath(args[0], args[1])+"/rotate-signing-key", body, http.StatusOK)
			if err != nil {
				return err
			}
			return pc.printPublicKeys(cmd, resp)
		},
	}
	c.Flags().StringVar(&overlap, "overlap", "24h", "how long the old key keeps signing (0s: it stops at once)")
	return c
}
