// Package deliveryheader holds the rules for the extra request headers a
// webhook delivery may carry (a webhook sink's headers, a subscription's
// headers): one set of rules, so a header refused in the configuration is
// refused through the API as well.
package deliveryheader

import (
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Check returns what is wrong with a header name and value, or "" when the
// header may be sent: the name must be an RFC 9110 token that hookbus does
// not set itself, the value free of line breaks and control characters.
func Check(name, value string) string {
	switch {
	case !ValidName(name):
		return "invalid header name"
	case Reserved(name):
		return "hookbus sets this header itself; it cannot be overridden"
	case !httpguts.ValidHeaderFieldValue(value):
		// The rule net/http applies when sending: a value it refuses
		// would fail every delivery instead of the request that set it.
		return "header value must not contain line breaks or other control characters"
	}
	return ""
}

// Reserved reports whether hookbus sets the header itself on every
// delivery (content and connection headers, Content-Encoding included, the Standard Webhooks
// webhook-* headers), so it cannot be configured.
func Reserved(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "content-type", "content-encoding", "content-length", "host", "transfer-encoding", "connection", "te", "upgrade", "trailer", "keep-alive", "proxy-connection":
		return true
	}
	return strings.HasPrefix(n, "webhook-")
}

// ValidName reports whether name is an RFC 9110 token.
func ValidName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
