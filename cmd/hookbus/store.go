package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/app"
	"github.com/hookbus/hookbus/core/config"
	"github.com/hookbus/hookbus/core/datadir"
)

func storeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "store",
		Short: "Maintain the store (applications, subscriptions, dead letters)",
	}
	c.AddCommand(storeReencryptCmd())
	return c
}

func storeReencryptCmd() *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:   "reencrypt",
		Short: "Re-encrypt every subscription secret under the current store.encryption_key",
		Long: "Rewrites every stored subscription secret that is not encrypted under store.encryption_key\n" +
			"(encrypted under one of store.old_encryption_keys, or stored in clear) so that it is; with no\n" +
			"store.encryption_key it decrypts them and stores them in clear. Run it after every instance runs\n" +
			"with the new key (and the old one in store.old_encryption_keys); then remove the old key.\n" +
			"On SQLite the store is in data_dir, which a running hookbus holds: stop it first.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cfgPath, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				return err
			}
			if cfg.Store.Driver == config.StoreSQLite || cfg.Store.Driver == "" {
				// The running instance has the SQLite store open: it is the
				// one to stop, and the lock tells it runs.
				lock, err := datadir.Acquire(cfg.DataDir, "hookbus store reencrypt")
				if errors.Is(err, datadir.ErrLocked) {
					return fmt.Errorf("%w\nstop hookbus, run hookbus store reencrypt, then start it again", err)
				}
				if err != nil {
					return err
				}
				defer lock.Release()
			}
			ctx := context.Background()
			st, err := app.OpenStore(ctx, cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := st.Reencrypt(ctx)
			what := "re-encrypted the secrets of"
			if cfg.Store.EncryptionKey == "" {
				what = "decrypted (stored in clear) the secrets of"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d subscriptions\n", what, n)
			return err
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "config.yaml", "configuration file (its store and encryption keys)")
	return c
}
