package metrics

import "github.com/prometheus/client_golang/prometheus"

// AttemptLog holds the delivery log's own series: what its writer wrote,
// what it had to drop, and what waits to be written.
type AttemptLog struct {
	// Written counts the attempts written to the store.
	Written prometheus.Counter
	// Dropped counts the attempts left out of the log (its buffer was
	// full while the store was slow or unreachable, or hookbus stopped
	// before they could be written). The deliveries themselves went on.
	Dropped prometheus.Counter
}

// RegisterAttemptLog registers the delivery log's series on r; pending,
// read at each scrape, is the number of attempts waiting to be written.
func RegisterAttemptLog(r prometheus.Registerer, pending func() float64) (*AttemptLog, error) {
	m := &AttemptLog{
		Written: prometheus.NewCounter(prometheus.CounterOpts{Name: "hookbus_attempt_log_written_total",
			Help: "Delivery attempts written to the delivery log."}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "hookbus_attempt_log_dropped_total",
			Help: "Delivery attempts left out of the delivery log (its buffer was full, or hookbus stopped first); the deliveries went on."}),
	}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hookbus_attempt_log_pending",
		Help: "Delivery attempts waiting to be written to the delivery log."}, pending)
	for _, c := range []prometheus.Collector{m.Written, m.Dropped, gauge} {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
