package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr   string
		reason string // "" = allowed
	}{
		// allowed public addresses
		{"93.184.215.14", ""},
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"172.32.0.1", ""},  // just outside 172.16/12
		{"100.128.0.1", ""}, // just outside 100.64/10
		{"169.253.255.255", ""},
		{"2606:4700:4700::1111", ""},
		{"2a00:1450:4001:82a::200e", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", ""},  // 6to4 of 8.8.8.8
		// loopback
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		// private
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"::ffff:10.1.2.3", "private"},
		{"::ffff:192.168.0.1", "private"},
		{"fc00::1", "private"},
		{"fd12:3456:789a::1", "private"},
		// link-local and metadata
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"169.254.169.254", "metadata"},
		{"::ffff:169.254.169.254", "metadata"},
		{"fd00:ec2::254", "metadata"},
		{"169.254.170.2", "metadata"},
		{"64:ff9b::a9fe:a9fe", "metadata"}, // NAT64 of 169.254.169.254
		{"2002:a9fe:a9fe::", "metadata"},   // 6to4 of 169.254.169.254
		{"2002:7f00:1::", "loopback"},      // 6to4 of 127.0.0.1
		// unspecified, this-network
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"::ffff:0.0.0.0", "unspecified"},
		// CGNAT
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.255", "carrier-grade NAT"},
		// multicast, broadcast, reserved
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		// others
		{"192.0.2.1", "documentation"},
		{"2001:db8::1", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"::127.0.0.1", "IPv4-compatible"},
		{"fec0::1", "site-local"},
		{"2001::1", "Teredo"},

		// One representative of every block of the IANA IPv4 Special-Purpose
		// Address Registry (those not already above).
		{"192.0.0.9", "IETF"}, // PCP anycast, globally reachable but refused
		{"192.0.0.170", "IETF"},
		{"192.31.196.1", "AS112"},
		{"192.52.193.1", "AMT"},
		{"192.88.99.1", "6to4 relay"},
		{"192.175.48.6", "AS112"},
		{"198.19.255.1", "benchmarking"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.9", "documentation"},
		{"255.255.255.254", "reserved"},
		{"192.0.1.1", ""},    // between 192.0.0/24 and 192.0.2/24
		{"192.31.197.1", ""}, // just outside AS112
		{"198.20.0.1", ""},   // just outside 198.18/15

		// One representative of every block of the IANA IPv6 Special-Purpose
		// Address Registry, plus the deprecated ones.
		{"::ffff:0:7f00:1", "loopback address (via IPv4-translated)"}, // issue 8 item 14
		{"::ffff:0:a00:1", "private address (via IPv4-translated)"},
		{"::ffff:0:a9fe:a9fe", "metadata address (via IPv4-translated)"},
		{"::ffff:0:808:808", ""},
		{"64:ff9b::7f00:1", "loopback address (via NAT64)"},
		{"64:ff9b::c0a8:1", "private address (via NAT64)"},
		{"64:ff9b:1::808:808", "local-use NAT64"},
		{"100::1", "discard-only"},
		{"100:0:0:1::1", "dummy"},
		{"2001:5::1", "IETF protocol assignment"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
		{"2001:1::1", "PCP anycast"},
		{"2001:1::2", "TURN anycast"},
		{"2001:1::3", "DNS-SD SRP anycast"},
		{"2001:1::4", "IETF protocol assignment"},
		{"2001:2::1", "benchmarking"},
		{"2001:3::1", "AMT"},
		{"2001:4:112::1", "AS112"},
		{"2001:10::1", "ORCHID"},
		{"2001:20::1", "ORCHID"},
		{"2001:30::1", "DRIP"},
		{"2001:1ff:ffff::1", "IETF protocol assignment"},
		{"2001:200::1", ""}, // first address after 2001::/23
		{"2002:c000:201::1", "documentation address (via 6to4)"},
		{"2002:ac10:1::", "private address (via 6to4)"},
		{"2620:4f:8000::1", "AS112"},
		{"2620:4f:8001::1", ""},
		{"3fff:fff::1", "documentation"},
		{"3fff:1000::1", ""}, // just outside 3fff::/20
		{"5f00::1", "SRv6"},
		{"fdff:ffff::1", "private"},
		{"febf::1", "link-local"},
		{"feff::1", "site-local"},
		{"ff05::2", "multicast"},
		{"::8.8.8.8", "IPv4-compatible"},
		{"::1:2", "IPv4-compatible"},
		{"1::1", "reserved"},
		{"4000::1", "reserved"},
		{"e000::1", "reserved"},
		{"2000::1", ""},
		{"3ffe:ffff::1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			reason, blocked := Classify(netip.MustParseAddr(tt.addr))
			if tt.reason == "" {
				if blocked {
					t.Fatalf("blocked (%s), want allowed", reason)
				}
				return
			}
			if !blocked || !strings.Contains(reason, tt.reason) {
				t.Fatalf("Classify = %q, %v; want blocked with reason containing %q", reason, blocked, tt.reason)
			}
			// The dial-time hook must agree.
			ap := netip.AddrPortFrom(netip.MustParseAddr(tt.addr), 443)
			err := control(false, "tcp", ap.String())
			var be *BlockedError
			if !errors.As(err, &be) || be.Addr != ap.String() {
				t.Fatalf("control = %v, want *BlockedError for %s", err, ap)
			}
			if err := control(true, "tcp", ap.String()); err != nil {
				t.Fatalf("control with allowPrivate = %v, want nil", err)
			}
		})
	}
}

func TestControlRefusesNonTCP(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		if err := control(allow, "udp", "8.8.8.8:53"); err == nil {
			t.Errorf("allowPrivate=%v: udp allowed", allow)
		}
	}
}

func TestBlockedErrorMessage(t *testing.T) {
	t.Parallel()
	err := control(false, "tcp4", "127.0.0.1:8080")
	want := "refusing to connect to 127.0.0.1:8080: loopback address (set allow_private_networks to allow)"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
}

func clientWith(allowPrivate bool) *http.Client {
	tr := &http.Transport{DialContext: Dialer(allowPrivate).DialContext, Proxy: nil}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestDialerWithRealServer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	for _, target := range []string{srv.URL, "http://localhost:" + port} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			_, err := clientWith(false).Get(target)
			var be *BlockedError
			if !errors.As(err, &be) {
				t.Fatalf("Get without allowPrivate: err = %v, want *BlockedError", err)
			}
			if !strings.Contains(be.Reason, "loopback") || !strings.HasSuffix(be.Addr, ":"+port) {
				t.Fatalf("BlockedError = %+v", be)
			}

			resp, err := clientWith(true).Get(target)
			if err != nil {
				t.Fatalf("Get with allowPrivate: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status = %d", resp.StatusCode)
			}
		})
	}
}

func TestDialerDirect(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = Dialer(false).DialContext(ctx, "tcp", ln.Addr().String())
	var be *BlockedError
	if !errors.As(err, &be) {
		t.Fatalf("DialContext = %v, want *BlockedError", err)
	}
	c, err := Dialer(true).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		wantErr string
	}{
		{"https://partner.example/hooks", ""},
		{"http://partner.example:8080/hooks?x=1", ""},
		{"http://127.0.0.1:9000/", ""}, // decided at dial time
		{"https://[2001:db8::1]:443/x", ""},
		{"", "empty"},
		{"partner.example/hooks", "no scheme"},
		{"ftp://partner.example/", `scheme "ftp" not allowed`},
		{"file:///etc/passwd", `scheme "file" not allowed`},
		{"https:///nohost", "no host"},
		{"https:opaque", "no host"},
		{"https://user:pass@partner.example/", "credentials"},
		{"https://partner.example:99999/", "invalid port"},
		{"https://partner.example:0/", "invalid port"},
		{"http://[::1", "invalid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := CheckURL(tt.url)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckURL = %v, want containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "pass") {
				t.Fatalf("error leaks credentials: %v", err)
			}
		})
	}
}

func TestCheckHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host    string
		blocked bool
	}{
		{"partner.example", false},
		{"localhost", false}, // hostnames are judged at dial time
		{"8.8.8.8", false},
		{"127.0.0.1", true},
		{"[::1]", true},
		{"::1", true},
		{"169.254.169.254", true},
	}
	for _, tt := range tests {
		err := CheckHost(tt.host)
		var be *BlockedError
		if got := errors.As(err, &be); got != tt.blocked {
			t.Errorf("CheckHost(%q) = %v, want blocked=%v", tt.host, err, tt.blocked)
		}
	}
}
