package remote

import (
	"strings"
	"testing"
)

func TestParseReattach(t *testing.T) {
	tests := []struct {
		in, network, address, err string
	}{
		{"unix:/tmp/plugin123", "unix", "/tmp/plugin123", ""},
		{"tcp:127.0.0.1:7000", "tcp", "127.0.0.1:7000", ""},
		{"127.0.0.1:7000", "", "", "is not a plugin debug address"},
		{"unix:", "", "", "is not a plugin debug address"},
		{"tcp:127.0.0.1", "", "", "is not a plugin debug address"},
		{"/tmp/plugin123", "", "", "is not a plugin debug address"},
	}
	for _, tt := range tests {
		n, a, err := ParseReattach(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseReattach(%q) = %q %q %v, want error %q", tt.in, n, a, err, tt.err)
			}
			continue
		}
		if err != nil || n != tt.network || a != tt.address {
			t.Errorf("ParseReattach(%q) = %q %q %v", tt.in, n, a, err)
		}
	}
}
