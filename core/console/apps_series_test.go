package console

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSubscriptionCharts: the stats' series, when the API gives one, is
// drawn as charts; without it, the figures stand alone.
func TestSubscriptionCharts(t *testing.T) {
	for _, withSeries := range []bool{true, false} {
		api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			switch r.URL.Path {
			case "/v1/applications/a1/subscriptions/s1":
				_ = json.NewEncoder(w).Encode(map[string]any{"id": "s1", "application": "a1", "url": "https://r.example/h",
					"event_types": []string{"*"}, "created_at": "2026-01-02T03:04:05.000Z"})
			case "/v1/applications/a1/subscriptions/s1/stats":
				st := map[string]any{"window": r.URL.Query().Get("window"), "attempts": 4, "delivered": 3, "failed": 1,
					"success_rate": 0.75, "delay_p99_ms": 120}
				if withSeries {
					st["series"] = []map[string]any{
						{"start": "2026-01-02T03:00:00Z", "attempts": 2, "delivered": 2, "failed": 0, "success_rate": 1, "delay_p99_ms": 10},
						{"start": "2026-01-02T03:05:00Z", "attempts": 2, "delivered": 1, "failed": 1, "success_rate": 0.5, "delay_p99_ms": 120},
					}
				}
				_ = json.NewEncoder(w).Encode(st)
			default:
				http.NotFound(w, r)
			}
		})
		c, err := New(Options{API: api})
		if err != nil {
			t.Fatal(err)
		}
		val, err := c.seal.seal(consoleCookie, session{Bearer: "k", CSRF: "c", Expires: time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "/console/applications/a1/subscriptions/s1", nil)
		req.AddCookie(&http.Cookie{Name: consoleCookie, Value: val})
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Fatalf("series %v: %d %s", withSeries, rec.Code, body)
		}
		for _, want := range []string{`data-testid="delivered">3<`, `data-testid="failed">1<`, `data-testid="success-rate">75.0%<`, `data-testid="delay-p99">120 ms<`} {
			if !strings.Contains(body, want) {
				t.Errorf("series %v: no %q", withSeries, want)
			}
		}
		charts := strings.Count(body, `<svg class="spark"`)
		if withSeries && (charts != 8 || !strings.Contains(body, `aria-label="Delivered, last 1h"`)) {
			t.Errorf("with a series: %d charts: %s", charts, body)
		}
		if !withSeries && charts != 0 {
			t.Errorf("without a series: %d charts", charts)
		}
	}
}
