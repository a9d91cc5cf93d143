package console

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/core/api"
)

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		st      api.StatsJSON
		failing bool
		why     string
	}{
		{api.StatsJSON{}, false, "No deliveries in the last hour"},
		{api.StatsJSON{Attempts: 100, Delivered: 100, SuccessRate: 1}, false, "Healthy in the last hour"},
		{api.StatsJSON{Attempts: 3, Delivered: 2, Failed: 1, SuccessRate: 2.0 / 3}, true, "1 delivery failed in the last hour"},
		{api.StatsJSON{Attempts: 9, Delivered: 2, Failed: 7}, true, "7 deliveries failed in the last hour"},
		// Retries without a failure yet: a success rate below 99%.
		{api.StatsJSON{Attempts: 100, Delivered: 95, Retried: 5, SuccessRate: 0.95}, true, "Success rate 95.0% in the last hour (below 99.0%)"},
	} {
		failing, why := judge(tc.st)
		if failing != tc.failing || why != tc.why {
			t.Errorf("judge(%+v) = %v %q, want %v %q", tc.st, failing, why, tc.failing, tc.why)
		}
	}
}

func TestChartsCarryTheRateOverQuietSteps(t *testing.T) {
	delivered, success, delay := charts([]api.PointJSON{
		{}, {Attempts: 2, Delivered: 1, SuccessRate: 0.5, DelayP99MS: 12}, {}, {Attempts: 1, Delivered: 1, SuccessRate: 1, DelayP99MS: 3},
	})
	want := [][]float64{{0, 1, 0, 1}, {1, 0.5, 0.5, 1}, {0, 12, 0, 3}}
	for i, got := range [][]float64{delivered, success, delay} {
		if len(got) != len(want[i]) {
			t.Fatalf("chart %d: %v", i, got)
		}
		for j := range got {
			if got[j] != want[i][j] {
				t.Errorf("chart %d: %v, want %v", i, got, want[i])
				break
			}
		}
	}
}

// statsOffAPI is an API whose stats routes are not there (404), as an
// instance without a delivery log answers, and that has one sink.
func statsOffAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dead-letters", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"dead_letters":[]}`)
	})
	mux.HandleFunc("GET /v1/admin/status", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"version":4,"loaded_at":"2026-01-02T03:04:05Z","sinks":["partner"],"last_reload":null}`)
	})
	mux.HandleFunc("GET /v1/applications", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"status":503,"title":"Service Unavailable","detail":"the store is not ready"}`)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"status":404,"title":"Not Found","detail":"no such endpoint: `+r.Method+` `+r.URL.Path+`"}`)
	})
	return mux
}

func TestOverviewWithoutStats(t *testing.T) {
	c, err := New(Options{API: statsOffAPI()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	read := func(resp *http.Response, err error) (int, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, body := read(cl.Get(srv.URL + "/console/login"))
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("login page: %s", body)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/console/login",
		strings.NewReader(url.Values{"csrf": {m[1]}, "key": {"k"}, "next": {"/console/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", srv.URL)
	if code, body := read(cl.Do(req)); code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", code, body)
	}
	code, body := read(cl.Get(srv.URL + "/console/"))
	if code != http.StatusOK {
		t.Fatalf("overview: %d %s", code, body)
	}
	for _, want := range []string{`data-name="partner"`, `data-testid="card-nofigures">No figures: this instance keeps no delivery log for it (no such endpoint: GET /v1/sinks/partner/stats).`,
		`data-testid="apps-error">No applications to show: the store is not ready`, `data-testid="overview-version">4<`} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q: %s", want, body)
		}
	}
	if strings.Contains(body, `data-testid="overview-empty"`) {
		t.Error("without figures, the overview still asks for an event")
	}
}
