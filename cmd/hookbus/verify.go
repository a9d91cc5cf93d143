package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/textproto"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/http/httpguts"

	"github.com/hookbus/hookbus/core/signing"
)

// verifyCmd checks a Standard Webhooks signature the way a receiver does.
func verifyCmd() *cobra.Command {
	var secrets, publicKeys []string
	var id, timestamp, signature, bodyPath, requestPath string
	var tolerance time.Duration
	c := &cobra.Command{
		Use:   "verify (--secret whsec_... | --public-key whpk_...) (--request FILE | --id ID --timestamp TS --signature SIG --body FILE)",
		Short: "Check a webhook's Standard Webhooks signature",
		Long: "Check that a webhook request was signed with the secret, as a receiver would: the webhook-id,\n" +
			"webhook-timestamp and webhook-signature headers and the exact body bytes.\n\n" +
			"--request reads a saved HTTP request: an optional request line, the headers, a blank line, and the\n" +
			"body byte for byte (mind a trailing newline an editor adds). --body - reads the body from stdin.\n" +
			"Repeat --secret to try several (during a rotation). --public-key whpk_... checks the asymmetric\n" +
			"Ed25519 signatures (\"v1a,\" entries) with a public key, repeatable too; give secrets, public keys or\n" +
			"both: one matching signature is enough. --tolerance 0 skips the timestamp check, for requests saved\n" +
			"earlier. Exits 0 when valid, 1 when not.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(secrets) == 0 && len(publicKeys) == 0 {
				return usage("give --secret whsec_... or --public-key whpk_... (or both)")
			}
			checks, err := verifiers(secrets, publicKeys)
			if err != nil {
				return err
			}
			var body []byte
			switch {
			case requestPath != "":
				raw, err := os.ReadFile(requestPath)
				if err != nil {
					return usage("--request: %v", err)
				}
				h, b, err := splitRequest(raw)
				if err != nil {
					return usage("--request %s: %v", requestPath, err)
				}
				id, timestamp, signature, body = cmp.Or(id, h.Get("webhook-id")), cmp.Or(timestamp, h.Get("webhook-timestamp")), cmp.Or(signature, h.Get("webhook-signature")), b
			case bodyPath == "-":
				b, err := readAll(cmd.InOrStdin())
				if err != nil {
					return usage("--body: %v", err)
				}
				body = b
			case bodyPath != "":
				b, err := os.ReadFile(bodyPath)
				if err != nil {
					return usage("--body: %v", err)
				}
				body = b
			default:
				return usage("give --request FILE, or --body FILE (- for stdin) with --id, --timestamp and --signature")
			}
			for _, h := range [][2]string{{"webhook-id (--id)", id}, {"webhook-timestamp (--timestamp)", timestamp}, {"webhook-signature (--signature)", signature}} {
				if h[1] == "" {
					return usage("%s is missing", h[0])
				}
			}
			now, tol := time.Now(), tolerance
			if tolerance == 0 {
				if unix, err := strconv.ParseInt(timestamp, 10, 64); err == nil {
					now, tol = time.Unix(unix, 0), time.Second
				}
			}
			for _, check := range checks {
				if err = check.verify(id, timestamp, signature, body, tol, now); err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "valid: webhook-id %s, signed at %s, %d-byte body (%s)\n", id, timestampText(timestamp), len(body), check.what)
					return nil
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "invalid: %v\n", err)
			return errors.New("signature not valid")
		},
	}
	c.Flags().StringArrayVar(&secrets, "secret", nil, "whsec_ secret (repeatable)")
	c.Flags().StringArrayVar(&publicKeys, "public-key", nil, "whpk_ Ed25519 public key, checks v1a signatures (repeatable)")
	c.Flags().StringVar(&requestPath, "request", "", "saved HTTP request (headers, blank line, body)")
	c.Flags().StringVar(&id, "id", "", "webhook-id header")
	c.Flags().StringVar(&timestamp, "timestamp", "", "webhook-timestamp header")
	c.Flags().StringVar(&signature, "signature", "", "webhook-signature header")
	c.Flags().StringVar(&bodyPath, "body", "", "file with the exact body (- for stdin)")
	c.Flags().DurationVar(&tolerance, "tolerance", 5*time.Minute, "how far the timestamp may be from now (0: skip the check)")
	return c
}

// requestLine matches "POST /hooks HTTP/1.1": a method token (no colon,
// unlike a header name) before the target. A mere " HTTP/" would also skip
// a first header whose value holds that text.
var requestLine = regexp.MustCompile(`^[!#$%&'*+.^_|~0-9A-Za-z-]+ \S+ HTTP/[0-9.]+$`)

// splitRequest parses a saved HTTP request: an optional request line,
// header lines, a blank line, then the body byte for byte.
func splitRequest(raw []byte) (textproto.MIMEHeader, []byte, error) {
	// The first blank line ends the headers, whichever line endings the
	// file uses; the body may hold either.
	crlf, lf := bytes.Index(raw, []byte("\r\n\r\n")), bytes.Index(raw, []byte("\n\n"))
	var head, body []byte
	switch {
	case crlf >= 0 && (lf < 0 || crlf < lf):
		head, body = raw[:crlf], raw[crlf+4:]
	case lf >= 0:
		head, body = raw[:lf], raw[lf+2:]
	default:
		return nil, nil, errors.New("no blank line between the headers and the body")
	}
	h := textproto.MIMEHeader{}
	for i, line := range strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n") {
		if i == 0 && requestLine.MatchString(line) || strings.HasPrefix(line, ":") {
			continue // the request line, or an HTTP/2 pseudo-header (":method: POST") from a dump
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		// A stray carriage return or a space in the name would otherwise
		// end up inside a header, unlike anything a server would accept.
		if !ok || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return nil, nil, fmt.Errorf("line %d: %q is not a header", i+1, line)
		}
		h.Add(name, value)
	}
	return h, body, nil
}

func timestampText(ts string) string {
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ts
	}
	return time.Unix(unix, 0).UTC().Format(time.RFC3339)
}

// verifier checks one signature scheme with one key; what names it in the
// answer ("v1 secret 1", "v1a key key_…").
type verifier struct {
	what   string
	verify func(id, timestamp, header string, body []byte, tolerance time.Duration, now time.Time) error
}

// verifiers parses the --secret and --public-key values, secrets first.
func verifiers(secrets, publicKeys []string) ([]verifier, error) {
	var out []verifier
	for i, s := range secrets {
		sec, err := signing.ParseSecret(s)
		if err != nil {
			return nil, usage("--secret: %v", err)
		}
		out = append(out, verifier{what: fmt.Sprintf("v1, secret %d", i+1), verify: func(id, ts, h string, b []byte, tol time.Duration, now time.Time) error {
			return signing.Verify(sec, id, ts, h, b, tol, now)
		}})
	}
	for _, s := range publicKeys {
		pub, err := signing.ParsePublicKey(s)
		if err != nil {
			return nil, usage("--public-key: %v", err)
		}
		out = append(out, verifier{what: "v1a, public key " + pub.ID(), verify: func(id, ts, h string, b []byte, tol time.Duration, now time.Time) error {
			return signing.VerifyV1a(pub, id, ts, h, b, tol, now)
		}})
	}
	return out, nil
}
