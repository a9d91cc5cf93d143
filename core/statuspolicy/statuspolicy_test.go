package statuspolicy

import (
	"encoding/json"
	"testing"
)

func list(t *testing.T, s string) List {
	t.Helper()
	var l List
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return l
}

func TestDefaultTable(t *testing.T) {
	for code, want := range map[int]Verdict{400: Permanent, 401: Permanent, 403: Permanent, 404: Permanent, 408: Retry, 409: Permanent,
		410: Permanent, 422: Permanent, 429: Retry, 499: Permanent, 500: Retry, 502: Retry, 503: Retry, 504: Retry, 599: Retry} {
		if got := (Policy{}).Judge(code); got != want {
			t.Errorf("default %d = %v, want %v", code, got, want)
		}
	}
}

func TestJudge(t *testing.T) {
	cases := []struct {
		retry, permanent string
		code             int
		want             Verdict
	}{
		{`[401]`, `[]`, 401, Retry},
		{`[401]`, `[]`, 403, Permanent},
		{`[]`, `[503]`, 503, Permanent},
		{`[]`, `[503]`, 502, Retry},
		{`["4xx"]`, `[]`, 418, Retry},
		{`[]`, `["5xx"]`, 500, Permanent},
		{`[503]`, `["5xx"]`, 503, Retry},
		{`[503]`, `["5xx"]`, 504, Permanent},
		{`["4xx"]`, `[404]`, 404, Permanent},
		{`["4xx"]`, `[404]`, 400, Retry},
		{`["429"]`, `[]`, 429, Retry},
	}
	for _, c := range cases {
		p := Policy{RetryOn: list(t, c.retry), PermanentOn: list(t, c.permanent)}
		if got := p.Judge(c.code); got != c.want {
			t.Errorf("retry_on %s permanent_on %s: %d = %v, want %v", c.retry, c.permanent, c.code, got, c.want)
		}
	}
}

func TestParseAndCheck(t *testing.T) {
	for _, bad := range []string{`[200]`, `[399]`, `[600]`, `["3xx"]`, `["abc"]`, `[true]`, `[1.5]`, `"5xx"`, `{}`} {
		var l List
		if err := json.Unmarshal([]byte(bad), &l); err == nil {
			t.Errorf("%s accepted as %v", bad, l)
		}
	}
	l := list(t, `[408, "429", " 5XX ", "4xx"]`)
	if b, _ := json.Marshal(l); string(b) != `[408,429,"5xx","4xx"]` {
		t.Fatalf("round trip: %s", b)
	}
	p := Policy{RetryOn: list(t, `[401, "5xx", 401]`), PermanentOn: list(t, `[404, "5xx", 401]`)}
	got := map[string]bool{}
	for _, pr := range p.Check("x.") {
		got[pr.Field] = true
	}
	for _, f := range []string{"x.retry_on[2]", "x.permanent_on[1]", "x.permanent_on[2]"} {
		if !got[f] {
			t.Errorf("Check misses %s: %v", f, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("Check reports %v, want 3 problems", got)
	}
	if len((Policy{RetryOn: list(t, `[503]`), PermanentOn: list(t, `["5xx"]`)}).Check("")) != 0 {
		t.Error("a code beside its class in the other list is refused; it is meaningful (the code wins)")
	}
}

func TestOverride(t *testing.T) {
	sink := Policy{RetryOn: list(t, `[404]`)}
	if got := sink.Override(Policy{}); len(got.RetryOn) != 1 {
		t.Fatalf("empty override replaced the sink's policy: %+v", got)
	}
	own := Policy{PermanentOn: list(t, `[429]`)}
	if got := sink.Override(own); got.RetryOn != nil || len(got.PermanentOn) != 1 {
		t.Fatalf("override %+v, want the subscription's policy alone", got)
	}
	if got := sink.Override(Policy{RetryOn: List{}}); got.RetryOn == nil || len(got.RetryOn) != 0 {
		t.Fatalf("an empty list set is a policy of its own: %+v", got)
	}
}
