package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/pluginhost"
)

func pluginsCmd() *cobra.Command {
	c := &cobra.Command{Use: "plugins", Short: "Inspect out-of-process plugins"}
	var sha string
	describe := &cobra.Command{
		Use:   "describe PATH",
		Short: "Start a plugin briefly and print its manifest (name, kinds, version, config schema)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := filepath.Abs(args[0])
			if err != nil {
				return usage("%v", err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			h := pluginhost.New(log, nil)
			defer h.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			m, err := h.Describe(ctx, filepath.Base(path), pluginhost.Spec{Path: path, SHA256: sha})
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	describe.Flags().StringVar(&sha, "sha256", "", "expected SHA-256 of the binary")
	c.AddCommand(describe)
	return c
}
