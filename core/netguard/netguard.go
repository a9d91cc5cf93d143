// Package netguard keeps outbound HTTP away from internal networks (SSRF
// protection). The check runs in net.Dialer.Control, that is after DNS
// resolution and on the very address being connected to, so a hostname that
// resolves (or re-resolves, DNS rebinding) to a private address is refused
// just like an IP literal.
//
// Do not combine a guarded dialer with an HTTP proxy: the dial would then
// go to the proxy and the target address would never be checked.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// BlockedError is returned (wrapped in *net.OpError) when a connection to a
// refused address was attempted. Find it with errors.As.
type BlockedError struct {
	// Addr is the "ip:port" that was refused.
	Addr string
	// Reason names the kind of address, e.g. "loopback address".
	Reason string
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("refusing to connect to %s: %s (set allow_private_networks to allow)", e.Addr, e.Reason)
}

// Dialer returns a net.Dialer that refuses loopback, private, link-local,
// multicast, unspecified, CGNAT, reserved, documentation and cloud metadata
// addresses, every other block of the IANA special-purpose registries, and
// IPv6 forms that embed a refused IPv4 address (IPv4-mapped,
// IPv4-translated, NAT64, 6to4), with a
// *BlockedError, unless allowPrivate is true. Only TCP is allowed either way.
func Dialer(allowPrivate bool) *net.Dialer {
	return &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			return control(allowPrivate, network, address)
		},
	}
}

func control(allowPrivate bool, network, address string) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return &BlockedError{Addr: address, Reason: "network " + network + " not allowed"}
	}
	if allowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Control always gets a resolved numeric address; anything else is suspect.
		return &BlockedError{Addr: address, Reason: "unparseable address"}
	}
	if reason, blocked := Classify(ap.Addr()); blocked {
		return &BlockedError{Addr: address, Reason: reason}
	}
	return nil
}

type rule struct {
	prefix netip.Prefix
	reason string
}

func mustRules(pairs ...string) []rule {
	rs := make([]rule, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		rs = append(rs, rule{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return rs
}

// The tables follow the IANA IPv4 and IPv6 Special-Purpose Address
// Registries. Every registered block is refused, the globally reachable
// anycast and identifier ones too (PCP, TURN, DNS-SD SRP, AMT, AS112, ORCHIDv2,
// DRIP): no webhook receiver lives there, and the anycast services answer
// from the network's own gateway or relay. Only the translation prefixes are
// judged by the IPv4 address they carry (see Classify).
//
// Order matters: the first matching rule names the reason, so the specific
// metadata addresses come before the ranges that contain them.
var v4Rules = mustRules(
	"169.254.169.254/32", "cloud metadata address",
	"169.254.170.2/32", "cloud metadata address", // ECS task metadata
	"100.100.100.200/32", "cloud metadata address", // Alibaba
	"0.0.0.0/8", "unspecified (\"this network\") address",
	"127.0.0.0/8", "loopback address",
	"10.0.0.0/8", "private address",
	"172.16.0.0/12", "private address",
	"192.168.0.0/16", "private address",
	"100.64.0.0/10", "carrier-grade NAT (shared) address",
	"169.254.0.0/16", "link-local address",
	"192.0.0.0/24", "IETF protocol assignment address", // includes PCP and TURN anycast
	"192.0.2.0/24", "documentation address",
	"198.51.100.0/24", "documentation address",
	"203.0.113.0/24", "documentation address",
	"198.18.0.0/15", "benchmarking address",
	"192.31.196.0/24", "AS112 DNS sink address",
	"192.175.48.0/24", "AS112 DNS sink address",
	"192.52.193.0/24", "AMT relay anycast address",
	"192.88.99.0/24", "6to4 relay anycast address",
	"224.0.0.0/4", "multicast address",
	"255.255.255.255/32", "broadcast address",
	"240.0.0.0/4", "reserved address",
)

var v6Rules = mustRules(
	"fd00:ec2::254/128", "cloud metadata address",
	"::/128", "unspecified address",
	"::1/128", "loopback address",
	"::/96", "IPv4-compatible address (deprecated)",
	"64:ff9b:1::/48", "local-use NAT64 address",
	"100::/64", "discard-only address",
	"100:0:0:1::/64", "dummy address",
	"2001::/32", "Teredo address",
	"2001:1::1/128", "PCP anycast address",
	"2001:1::2/128", "TURN anycast address",
	"2001:1::3/128", "DNS-SD SRP anycast address",
	"2001:2::/48", "benchmarking address",
	"2001:3::/32", "AMT address",
	"2001:4:112::/48", "AS112 DNS sink address",
	"2001:10::/28", "ORCHID identifier (not an address)",
	"2001:20::/28", "ORCHID identifier (not an address)",
	"2001:30::/28", "DRIP entity tag (not an address)",
	"2001:db8::/32", "documentation address",
	"3fff::/20", "documentation address",
	"2001::/23", "IETF protocol assignment address",
	"2620:4f:8000::/48", "AS112 DNS sink address",
	"5f00::/16", "SRv6 segment identifier address",
	"fc00::/7", "private (unique local) address",
	"fe80::/10", "link-local address",
	"fec0::/10", "site-local address (deprecated)",
	"ff00::/8", "multicast address",
)

// Translation prefixes carry an IPv4 address: a NAT64 gateway, a 6to4 relay
// or a SIIT translator forwards to it, so that IPv4 address decides.
var translations = []struct {
	prefix netip.Prefix
	offset int // of the embedded IPv4 address in the 16 bytes
	via    string
}{
	{netip.MustParsePrefix("64:ff9b::/96"), 12, "NAT64"},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), 12, "IPv4-translated"}, // RFC 2765 SIIT
	{netip.MustParsePrefix("2002::/16"), 2, "6to4"},
}

// Everything outside 2000::/3 that the tables do not name is unallocated
// (IETF reserved) space: nothing legitimate is reachable there.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// Classify reports whether a connection to addr is refused by the guard and
// why ("loopback address", "private address", ...). IPv6 forms that embed
// an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-translated
// ::ffff:0:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that
// IPv4 address. A zoned address is judged without its zone.
func Classify(addr netip.Addr) (reason string, blocked bool) {
	addr = addr.WithZone("")
	if !addr.IsValid() {
		return "invalid address", true
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return classify4(addr)
	}
	b := addr.As16()
	for _, t := range translations {
		if t.prefix.Contains(addr) {
			if r, bl := classify4(netip.AddrFrom4([4]byte(b[t.offset : t.offset+4]))); bl {
				return r + " (via " + t.via + ")", true
			}
			return "", false
		}
	}
	for _, r := range v6Rules {
		if r.prefix.Contains(addr) {
			return r.reason, true
		}
	}
	if !globalUnicast6.Contains(addr) {
		return "reserved address (outside 2000::/3)", true
	}
	return "", false
}

func classify4(addr netip.Addr) (string, bool) {
	for _, r := range v4Rules {
		if r.prefix.Contains(addr) {
			return r.reason, true
		}
	}
	return "", false
}

// CheckURL validates a delivery URL without any DNS lookup: it must be
// absolute, http or https, with a host, a valid port if one is given, and no
// user credentials. Whether the host is allowed is decided at dial time.
func CheckURL(u string) error {
	if u == "" {
		return errors.New("URL is empty")
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		if p.Scheme == "" {
			return fmt.Errorf("URL %q has no scheme; use http:// or https://", u)
		}
		return fmt.Errorf("URL scheme %q not allowed; use http or https", p.Scheme)
	}
	if p.Opaque != "" || p.Hostname() == "" {
		return fmt.Errorf("URL %q has no host", u)
	}
	if p.User != nil {
		return fmt.Errorf("URL %q must not contain credentials; use headers instead", redact(p))
	}
	if port := p.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("URL %q has an invalid port %q", u, port)
		}
	}
	return nil
}

func redact(p *url.URL) string {
	c := *p
	c.User = url.User("xxxxx")
	return c.String()
}

// CheckHost reports, without DNS, whether host (an IP literal, possibly in
// brackets) is an address the guard would refuse. Hostnames pass: they are
// checked when dialled. It gives early, friendly configuration errors.
func CheckHost(host string) error {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	if reason, blocked := Classify(addr); blocked {
		return &BlockedError{Addr: host, Reason: reason}
	}
	return nil
}
