package bench

import (
	"context"
	"testing"
)

// TestRunMeasures runs the bench end to end on the memory and embedded
// queues with few events: every event arrives and the figures are filled.
func TestRunMeasures(t *testing.T) {
	for _, driver := range []string{"memory", "embedded"} {
		t.Run(driver, func(t *testing.T) {
			r, err := Run(context.Background(), Options{Driver: driver, Events: 300, Concurrency: 4, Batch: 3})
			if err != nil {
				t.Fatal(err)
			}
			if r.Delivered != 300 || r.Sink != "webhook" || r.EventsPerS <= 0 {
				t.Errorf("result = %+v", r)
			}
			if r.P50 <= 0 || r.P99 < r.P50 || r.IngestP50 <= 0 || r.CPUPerEvent <= 0 {
				t.Errorf("figures not measured: %+v", r)
			}
		})
	}
}
