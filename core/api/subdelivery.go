package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hookbus/hookbus/core/batching"
	"github.com/hookbus/hookbus/core/statuspolicy"
	"github.com/hookbus/hookbus/core/subscription"
	"github.com/hookbus/hookbus/sdk"
)

// The members of a subscription's delivery options (see
// subscription.DeliveryOptions); each null or left out is the sink's.
var subscriptionDeliveryFields = []string{"timeout", "retry_schedule", "retry_on", "permanent_on", "compression", "batch"}

// deliveryJSON is the API form of a subscription's delivery options:
// durations as Go duration strings, null for an option the sink decides.
type deliveryJSON struct {
	Timeout       *string            `json:"timeout"`
	RetrySchedule []string           `json:"retry_schedule"`
	RetryOn       *statuspolicy.List `json:"retry_on"`
	PermanentOn   *statuspolicy.List `json:"permanent_on"`
	Compression   *string            `json:"compression"`
	Batch         *batching.Policy   `json:"batch"`
}

func deliveryOptionsJSON(d subscription.DeliveryOptions) deliveryJSON {
	var out deliveryJSON
	if d.Timeout > 0 {
		s := d.Timeout.String()
		out.Timeout = &s
	}
	if d.RetrySchedule != nil {
		out.RetrySchedule = make([]string, len(d.RetrySchedule))
		for i, w := range d.RetrySchedule {
			out.RetrySchedule[i] = w.String()
		}
	}
	if d.RetryOn != nil {
		out.RetryOn = &d.RetryOn
	}
	if d.PermanentOn != nil {
		out.PermanentOn = &d.PermanentOn
	}
	if d.Compression != "" {
		c := d.Compression
		out.Compression = &c
	}
	if d.Batch.On() {
		b := d.Batch
		out.Batch = &b
	}
	return out
}

// isNull tells whether a member's raw value is JSON null.
func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// applyDelivery sets the delivery options o gives on d; problems are
// field errors in o, named down to the item ("retry_schedule[1]").
func applyDelivery(o *object, d *subscription.DeliveryOptions) {
	if raw, ok := o.members["timeout"]; ok {
		d.Timeout = 0
		if !isNull(raw) {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				o.fail("timeout", `must be a duration string like "5s" or "500ms" (null: the sink's timeout)`)
			} else if t, err := time.ParseDuration(strings.TrimSpace(s)); err != nil {
				o.fail("timeout", fmt.Sprintf(`invalid duration %q: use a number with a unit, like "5s" or "500ms"`, s))
			} else if t <= 0 {
				o.fail("timeout", "must be positive (null: the sink's timeout)")
			} else {
				d.Timeout = t
			}
		}
	}
	if raw, ok := o.members["compression"]; ok {
		d.Compression = ""
		if !isNull(raw) && json.Unmarshal(raw, &d.Compression) != nil {
			o.fail("compression", `must be "gzip" or "none" (null: none)`)
		}
		if d.Compression == "none" {
			d.Compression = "" // stored as the default
		}
	}
	if raw, ok := o.members["batch"]; ok {
		d.Batch = batching.Policy{}
		if err := d.Batch.UnmarshalJSON(raw); err != nil {
			var ce *sdk.ConfigError
			if errors.As(err, &ce) {
				o.fail("batch"+ce.Field, ce.Message)
			} else {
				o.fail("batch", err.Error())
			}
		}
	}
	if raw, ok := o.members["retry_schedule"]; ok {
		d.RetrySchedule = nil
		if !isNull(raw) {
			d.RetrySchedule = parseSchedule(o, raw)
		}
	}
	for _, m := range []struct {
		key string
		dst *statuspolicy.List
	}{{"retry_on", &d.RetryOn}, {"permanent_on", &d.PermanentOn}} {
		raw, ok := o.members[m.key]
		if !ok {
			continue
		}
		*m.dst = nil
		if isNull(raw) {
			continue
		}
		var l statuspolicy.List
		if err := l.UnmarshalJSON(raw); err != nil {
			var ce *sdk.ConfigError
			if errors.As(err, &ce) {
				o.fail(m.key+ce.Field, ce.Message)
			} else {
				o.fail(m.key, err.Error())
			}
			continue
		}
		*m.dst = l
	}
}

// parseSchedule reads a retry_schedule member: a list of duration
// strings (an empty list: a single attempt, no retry).
func parseSchedule(o *object, raw json.RawMessage) []time.Duration {
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil || items == nil {
		o.fail("retry_schedule", `must be a list of durations like ["1s", "1m", "1h"] (null: the sink's schedule; []: no retry)`)
		return nil
	}
	if len(items) > subscription.MaxRetryScheduleEntries {
		o.fail("retry_schedule", fmt.Sprintf("at most %d waits (%d attempts), got %d", subscription.MaxRetryScheduleEntries,
			subscription.MaxRetryScheduleEntries+1, len(items)))
		return nil
	}
	out := make([]time.Duration, 0, len(items))
	for i, item := range items {
		field := fmt.Sprintf("retry_schedule[%d]", i)
		var s string
		if json.Unmarshal(item, &s) != nil {
			o.fail(field, `must be a duration string like "30s" or "5m"`)
			continue
		}
		w, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			o.fail(field, fmt.Sprintf(`invalid duration %q: use a number with a unit, like "30s" or "5m"`, s))
			continue
		}
		out = append(out, w)
	}
	return out
}
