package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/core/signing"
)

// keygenCmd makes a Standard Webhooks Ed25519 signing key, or prints the
// public key of one, for a webhook sink's signing_key.
func keygenCmd() *cobra.Command {
	var from string
	c := &cobra.Command{
		Use:   "keygen [--from whsk_...]",
		Short: "Make an Ed25519 signing key (whsk_) for v1a signatures, and print its public key (whpk_)",
		Long: "Print a new Standard Webhooks Ed25519 signing key and its public key, one per line:\n" +
			"  signing_key: whsk_...   (keep it secret: the value of a webhook sink's signing_key)\n" +
			"  public_key:  whpk_...   (give it to the receivers; GET /v1/sinks/{sink}/public-keys serves it too)\n" +
			"--from prints the public key of an existing signing key instead of making one.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			text := from
			if text == "" {
				var err error
				if text, err = signing.GenerateSigningKey(); err != nil {
					return err
				}
			}
			key, err := signing.ParseSigningKey(text)
			if err != nil {
				return usage("--from: %v", err)
			}
			if from == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "signing_key: %s\n", key)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "public_key:  %s\n", key.PublicKey())
			return nil
		},
	}
	c.Flags().StringVar(&from, "from", "", "an existing whsk_ signing key: print its public key only")
	return c
}
