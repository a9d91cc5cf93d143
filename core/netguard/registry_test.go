package netguard

import (
	"net/netip"
	"strings"
	"testing"
)

// The IANA IPv4 and IPv6 Special-Purpose Address Registries
// (https://www.iana.org/assignments/iana-ipv4-special-registry,
// https://www.iana.org/assignments/iana-ipv6-special-registry), written out
// here independently of the tables in netguard.go. Every block is refused
// except the translation prefixes, which carry an IPv4 address (at offset)
// that decides.
type special struct {
	prefix string
	name   string // part of the expected reason
	offset int    // > 0: translation prefix, embedded IPv4 at this byte offset
}

var ianaV4 = []special{
	{"0.0.0.0/8", "unspecified", 0},
	{"10.0.0.0/8", "private", 0},
	{"100.64.0.0/10", "carrier-grade NAT", 0},
	{"127.0.0.0/8", "loopback", 0},
	{"169.254.0.0/16", "", 0}, // link-local, metadata inside
	{"172.16.0.0/12", "private", 0},
	{"192.0.0.0/24", "IETF", 0},
	{"192.0.2.0/24", "documentation", 0},
	{"192.31.196.0/24", "AS112", 0},
	{"192.52.193.0/24", "AMT", 0},
	{"192.88.99.0/24", "6to4 relay", 0},
	{"192.168.0.0/16", "private", 0},
	{"192.175.48.0/24", "AS112", 0},
	{"198.18.0.0/15", "benchmarking", 0},
	{"198.51.100.0/24", "documentation", 0},
	{"203.0.113.0/24", "documentation", 0},
	{"224.0.0.0/4", "multicast", 0},
	{"240.0.0.0/4", "", 0}, // reserved; its last address is the broadcast address
	{"255.255.255.255/32", "broadcast", 0},
	{"100.100.100.200/32", "metadata", 0}, // Alibaba Cloud, not IANA
}

var ianaV6 = []special{
	{"::1/128", "loopback", 0},
	{"::/128", "unspecified", 0},
	{"::/96", "", 0}, // IPv4-compatible (deprecated); contains ::1 and ::
	{"::ffff:0:0/96", "", 12},
	{"::ffff:0:0:0/96", "", 12}, // IPv4-translated (RFC 2765)
	{"64:ff9b::/96", "", 12},
	{"64:ff9b:1::/48", "local-use NAT64", 0},
	{"100::/64", "discard-only", 0},
	{"100:0:0:1::/64", "dummy", 0},
	{"2001::/23", "", 0},
	{"2001::/32", "Teredo", 0},
	{"2001:1::1/128", "PCP", 0},
	{"2001:1::2/128", "TURN", 0},
	{"2001:1::3/128", "SRP", 0},
	{"2001:2::/48", "benchmarking", 0},
	{"2001:3::/32", "AMT", 0},
	{"2001:4:112::/48", "AS112", 0},
	{"2001:10::/28", "ORCHID", 0},
	{"2001:20::/28", "ORCHID", 0},
	{"2001:30::/28", "DRIP", 0},
	{"2001:db8::/32", "documentation", 0},
	{"2002::/16", "", 2},
	{"2620:4f:8000::/48", "AS112", 0},
	{"3fff::/20", "documentation", 0},
	{"5f00::/16", "SRv6", 0},
	{"fc00::/7", "", 0}, // unique local; the EC2 metadata address is inside
	{"fe80::/10", "link-local", 0},
	{"fec0::/10", "site-local", 0},
	{"ff00::/8", "multicast", 0},
}

// wantBlocked is the reference classification the fuzzer compares Classify
// with: built only from the tables above.
func wantBlocked(a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	if a.Is4() {
		for _, s := range ianaV4 {
			if netip.MustParsePrefix(s.prefix).Contains(a) {
				return true
			}
		}
		return false
	}
	b := a.As16()
	for _, s := range ianaV6 {
		if s.offset > 0 && netip.MustParsePrefix(s.prefix).Contains(a) {
			return wantBlocked(netip.AddrFrom4([4]byte(b[s.offset : s.offset+4])))
		}
	}
	for _, s := range ianaV6 {
		if netip.MustParsePrefix(s.prefix).Contains(a) {
			return true
		}
	}
	// Outside 2000::/3 IPv6 is unallocated.
	return b[0]&0xe0 != 0x20
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestClassifyRegistry checks the first and last address of every registry
// block; translation blocks with a loopback and a public IPv4 inside.
func TestClassifyRegistry(t *testing.T) {
	t.Parallel()
	for _, s := range append(append([]special{}, ianaV4...), ianaV6...) {
		t.Run(s.prefix, func(t *testing.T) {
			p := netip.MustParsePrefix(s.prefix)
			if s.offset > 0 {
				b := p.Masked().Addr().As16()
				copy(b[s.offset:], []byte{127, 0, 0, 1})
				lo := netip.AddrFrom16(b)
				if r, bl := Classify(lo); !bl || !strings.Contains(r, "loopback") {
					t.Errorf("Classify(%s) = %q, %v; want loopback", lo, r, bl)
				}
				copy(b[s.offset:], []byte{8, 8, 8, 8})
				pub := netip.AddrFrom16(b)
				if r, bl := Classify(pub); bl {
					t.Errorf("Classify(%s) = %q, blocked; want allowed (public IPv4 inside)", pub, r)
				}
				return
			}
			for _, a := range []netip.Addr{p.Masked().Addr(), lastAddr(p)} {
				r, bl := Classify(a)
				if !bl || !strings.Contains(r, s.name) {
					t.Errorf("Classify(%s) = %q, %v; want blocked with reason containing %q", a, r, bl, s.name)
				}
				if err := CheckHost("[" + a.String() + "]"); err == nil {
					t.Errorf("CheckHost(%s) = nil, want refused", a)
				}
			}
		})
	}
}

// FuzzClassify compares Classify with the reference tables above, for
// 4- and 16-byte addresses (with and without a zone), and checks that the
// dial-time hook and CheckHost agree with it.
func FuzzClassify(f *testing.F) {
	for _, s := range append(append([]special{}, ianaV4...), ianaV6...) {
		p := netip.MustParsePrefix(s.prefix)
		f.Add(p.Masked().Addr().AsSlice(), "")
		f.Add(lastAddr(p).AsSlice(), "")
	}
	for _, a := range []string{"8.8.8.8", "::ffff:0:7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::", "2001:200::1", "2606:4700::1111"} {
		f.Add(netip.MustParseAddr(a).AsSlice(), "")
	}
	f.Add(netip.MustParseAddr("fe80::1").AsSlice(), "eth0")
	f.Fuzz(func(t *testing.T, raw []byte, zone string) {
		a, ok := netip.AddrFromSlice(raw)
		if !ok {
			return
		}
		if a.Is6() && zone != "" {
			a = a.WithZone(zone)
		}
		reason, blocked := Classify(a)
		if want := wantBlocked(a); blocked != want {
			t.Fatalf("Classify(%s) = %q, %v; reference tables say blocked=%v", a, reason, blocked, want)
		}
		if blocked && reason == "" {
			t.Fatalf("Classify(%s) blocked without a reason", a)
		}
		ap := netip.AddrPortFrom(a, 443).String()
		if err := control(false, "tcp", ap); (err != nil) != blocked {
			t.Fatalf("control(%s) = %v, Classify blocked=%v", ap, err, blocked)
		}
		if err := control(true, "tcp", ap); err != nil {
			t.Fatalf("control(%s) with allowPrivate = %v", ap, err)
		}
		if a.Zone() == "" {
			if err := CheckHost("[" + a.String() + "]"); (err != nil) != blocked {
				t.Fatalf("CheckHost(%s) = %v, Classify blocked=%v", a, err, blocked)
			}
		}
	})
}

// FuzzCheckHost feeds arbitrary host strings: never a panic, and an IP
// literal is refused exactly when the reference tables say so.
func FuzzCheckHost(f *testing.F) {
	for _, h := range []string{"example.com", "[::1]", "127.0.0.1", "::ffff:0:7f00:1", "[64:ff9b::a9fe:a9fe]", "fe80::1%eth0", "[", "]", "0x7f.1", "2130706433", "::ffff:127.0.0.1"} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		err := CheckHost(host)
		h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if len(host) < 2 || host[0] != '[' || host[len(host)-1] != ']' {
			h = host
		}
		a, perr := netip.ParseAddr(h)
		if perr != nil {
			if err != nil {
				t.Fatalf("CheckHost(%q) = %v for a non-IP host", host, err)
			}
			return
		}
		if (err != nil) != wantBlocked(a) {
			t.Fatalf("CheckHost(%q) = %v; reference tables say blocked=%v", host, err, wantBlocked(a))
		}
	})
}
