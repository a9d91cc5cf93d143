package deliveryheader

import "testing"

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, value string
		ok          bool
	}{
		{"Authorization", "Bearer x", true},
		{"X-Tenant", "a b c", true},
		{"", "x", false},
		{"X Bad", "x", false},
		{"X:Bad", "x", false},
		{"Content-Type", "text/plain", false},
		{"host", "evil.example", false},
		{"Webhook-Signature", "v1,x", false},
		{"webhook-id", "x", false},
		{"X-Ok", "line\nbreak", false},
		{"X-Ok", "nul\x00", false},
	} {
		if got := Check(tt.name, tt.value); (got == "") != tt.ok {
			t.Errorf("Check(%q, %q) = %q, want ok=%v", tt.name, tt.value, got, tt.ok)
		}
	}
}
