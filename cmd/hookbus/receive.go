package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/signing"
)

// receiveCmd is a tiny webhook receiver for trying hookbus out: it verifies
// each request's Standard Webhooks signature and prints the event.
func receiveCmd() *cobra.Command {
	var listen, secret string
	var failEvery int
	c := &cobra.Command{
		Use:   "receive --secret whsec_... [--listen 127.0.0.1:9000]",
		Short: "Run a tiny webhook receiver that verifies signatures and prints events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sec, err := signing.ParseSecret(secret)
			if err != nil {
				return usage("--secret: %v", err)
			}
			out := cmd.OutOrStdout()
			n := 0
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
				err := signing.Verify(sec, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, 5*time.Minute, time.Now())
				if err != nil {
					fmt.Fprintf(out, "REJECTED %s: %v\n", r.Header.Get("webhook-id"), err)
					http.Error(w, "invalid signature", http.StatusUnauthorized)
					return
				}
				n++
				if failEvery > 0 && n%failEvery == 0 {
					fmt.Fprintf(out, "FAILING (503) %s on purpose\n", r.Header.Get("webhook-id"))
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				var pretty any
				if json.Unmarshal(body, &pretty) == nil {
					body, _ = json.Marshal(pretty)
				}
				fmt.Fprintf(out, "verified %s: %s\n", r.Header.Get("webhook-id"), body)
				w.WriteHeader(http.StatusNoContent)
			})
			srv := &http.Server{Addr: listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(cmd.ErrOrStderr(), "receiving webhooks on http://%s/ (Ctrl-C stops)\n", listen)
			go func() {
				ch := make(chan os.Signal, 1)
				signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
				<-ch
				srv.Close()
			}()
			if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:9000", "address to listen on")
	c.Flags().StringVar(&secret, "secret", "", "Standard Webhooks secret (whsec_...)")
	c.Flags().IntVar(&failEvery, "fail-every", 0, "answer 503 to every Nth request (to watch retries)")
	return c
}
