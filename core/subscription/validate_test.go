package subscription

import (
	"errors"
	"strings"
	"testing"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestValidate(t *testing.T) {
	t.Parallel()
	valid := func() Subscription {
		return Subscription{URL: "https://partner.example/hooks", EventTypes: []string{"order.paid", "user.*", "*"},
			Secrets: []Secret{{Value: testSecret}}, Headers: map[string]string{"Authorization": "Bearer x"}, RateLimit: 5, MaxInFlight: 8}
	}
	rules := Rules{CompileFilter: func(src string) error {
		if strings.Contains(src, "{{") {
			return errors.New("filter:2:3: Unexpected token {")
		}
		return nil
	}}
	for _, tt := range []struct {
		name   string
		change func(*Subscription)
		rules  *Rules
		field  string // "" = valid
		msg    string
	}{
		{"valid", func(*Subscription) {}, nil, "", ""},
		{"no url", func(s *Subscription) { s.URL = "" }, nil, "url", "is required"},
		{"ftp", func(s *Subscription) { s.URL = "ftp://x.example/" }, nil, "url", `scheme "ftp" not allowed`},
		{"credentials", func(s *Subscription) { s.URL = "https://u:p@x.example/" }, nil, "url", "must not contain credentials"},
		{"loopback", func(s *Subscription) { s.URL = "http://127.0.0.1:9/" }, nil, "url", "loopback address"},
		{"metadata", func(s *Subscription) { s.URL = "http://169.254.169.254/" }, nil, "url", "refused"},
		{"loopback allowed", func(s *Subscription) { s.URL = "http://127.0.0.1:9/" }, &Rules{AllowPrivateNetworks: true}, "", ""},
		{"no event types", func(s *Subscription) { s.EventTypes = nil }, nil, "event_types", "is required"},
		{"infix wildcard", func(s *Subscription) { s.EventTypes = []string{"order.paid", "order*"} }, nil, "event_types[1]", `"*" may only end`},
		{"leading wildcard", func(s *Subscription) { s.EventTypes = []string{"*.paid"} }, nil, "event_types[0]", `"*" may only end`},
		{"bare dot wildcard", func(s *Subscription) { s.EventTypes = []string{".*"} }, nil, "event_types[0]", `"*" may only end`},
		{"space", func(s *Subscription) { s.EventTypes = []string{"order paid"} }, nil, "event_types[0]", "spaces"},
		{"duplicate", func(s *Subscription) { s.EventTypes = []string{"a", "b", "a"} }, nil, "event_types[2]", "repeats event_types[0]"},
		{"bad secret", func(s *Subscription) { s.Secrets = []Secret{{Value: "hunter2"}} }, nil, "secret", "whsec_"},
		{"bad old secret", func(s *Subscription) { s.Secrets = append(s.Secrets, Secret{Value: "whsec_!!"}) }, nil, "secrets[1]", "base64"},
		{"reserved header", func(s *Subscription) { s.Headers = map[string]string{"Webhook-Id": "x"} }, nil, "headers.Webhook-Id", "sets this header itself"},
		{"bad header name", func(s *Subscription) { s.Headers = map[string]string{"X Y": "x"} }, nil, "headers.X Y", "invalid header name"},
		{"header value", func(s *Subscription) { s.Headers = map[string]string{"X-Y": "a\r\nb"} }, nil, "headers.X-Y", "line breaks"},
		{"negative rate", func(s *Subscription) { s.RateLimit = -1 }, nil, "rate_limit", "between 0"},
		{"negative in flight", func(s *Subscription) { s.MaxInFlight = -1 }, nil, "max_in_flight", "between 0"},
		{"huge in flight", func(s *Subscription) { s.MaxInFlight = MaxInFlightLimit + 1 }, nil, "max_in_flight", "between 0"},
		{"filter syntax", func(s *Subscription) { s.Filter = "function filter(e) {\n  {{\n}" }, nil, "filter", "filter:2:3"},
		{"filter too long", func(s *Subscription) { s.Filter = strings.Repeat(" ", MaxFilterBytes+1) }, nil, "filter", "longer than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.change(&s)
			r := rules
			if tt.rules != nil {
				r = *tt.rules
			}
			errs := r.Validate(s)
			if tt.field == "" {
				if len(errs) > 0 {
					t.Fatalf("valid subscription refused: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tt.field || !strings.Contains(errs[0].Message, tt.msg) {
				t.Fatalf("errors = %+v, want one on %s containing %q", errs, tt.field, tt.msg)
			}
		})
	}
}

func TestValidateApplication(t *testing.T) {
	t.Parallel()
	if errs := ValidateApplication(Application{ID: "acme:prod_1.a-b", Name: "Acme"}); len(errs) > 0 {
		t.Fatalf("valid application refused: %v", errs)
	}
	errs := ValidateApplication(Application{ID: "a/b", Name: " "})
	if len(errs) != 2 || errs[0].Field != "id" || errs[1].Field != "name" {
		t.Fatalf("errors = %+v, want id and name", errs)
	}
	if errs := ValidateApplication(Application{ID: strings.Repeat("a", 129), Name: "x"}); len(errs) != 1 {
		t.Fatalf("129-character id: %+v", errs)
	}
}
