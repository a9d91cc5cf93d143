package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(io.LimitReader(r, 64<<20)) }

// apiClient talks to a running instance.
type apiClient struct {
	base string
	key  string
	http *http.Client
}

func addAPIFlags(c *cobra.Command, url, key *string) {
	c.Flags().StringVar(url, "url", envOr("HOOKBUS_URL", "http://127.0.0.1:8080"), "base URL of a running hookbus (env HOOKBUS_URL)")
	c.Flags().StringVar(key, "api-key", os.Getenv("HOOKBUS_API_KEY"), "API key (env HOOKBUS_API_KEY)")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (c apiClient) do(method, path, contentType string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, strings.TrimRight(c.base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, usage("--url: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	hc := c.http
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}

func sendCmd() *cobra.Command {
	var url, key, file, typ, subject, data, id, application string
	c := &cobra.Command{
		Use:   "send SOURCE [--file EVENT.json | --type TYPE --data JSON]",
		Short: "Post an event to a running hookbus",
		Long:  "Post one event (or a JSON array of events) to the ingest endpoint of a running hookbus.\nEither --file (a JSON file, - for stdin) or --type with optional --data, --subject, --id and --application.",
		Example: `  hookbus send shop --type order.paid --data '{"order_id": 42, "amount": 19.99}'
  hookbus send shop --type order.paid --application acme --data '{"order_id": 43}'
  hookbus send shop --file event.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body []byte
			var err error
			switch {
			case file != "" && typ != "":
				return usage("use either --file or --type, not both")
			case file == "-":
				body, err = readAll(cmd.InOrStdin())
			case file != "":
				body, err = os.ReadFile(file)
			case typ != "":
				ev := map[string]any{"type": typ}
				if subject != "" {
					ev["subject"] = subject
				}
				if id != "" {
					ev["id"] = id
				}
				if application != "" {
					ev["application"] = application
				}
				if data != "" {
					if !json.Valid([]byte(data)) {
						return usage("--data: not valid JSON")
					}
					ev["data"] = json.RawMessage(data)
				}
				body, err = json.Marshal(ev)
			default:
				return usage("nothing to send: pass --file or --type")
			}
			if err != nil {
				return usage("%v", err)
			}
			cl := apiClient{base: url, key: key}
			status, resp, err := cl.do(http.MethodPost, "/v1/sources/"+args[0]+"/events", "application/json", body)
			if err != nil {
				return err
			}
			if status != http.StatusAccepted {
				return fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(resp)))
			}
			fmt.Fprintln(cmd.OutOrStdout(), strings.TrimSpace(string(resp)))
			return nil
		},
	}
	addAPIFlags(c, &url, &key)
	c.Flags().StringVarP(&file, "file", "f", "", "event JSON file (- for stdin)")
	c.Flags().StringVarP(&typ, "type", "t", "", "event type")
	c.Flags().StringVarP(&data, "data", "d", "", "event data (JSON)")
	c.Flags().StringVar(&subject, "subject", "", "event subject")
	c.Flags().StringVar(&id, "id", "", "event id (idempotency key)")
	c.Flags().StringVar(&application, "application", "", "the application the event is for (its subscriptions receive it)")
	return c
}
