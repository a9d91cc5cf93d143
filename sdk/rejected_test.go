package sdk_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/sdk"
)

func TestCheckBatch(t *testing.T) {
	ok := sdk.Event{ID: "ok", Type: "t"}
	if err := sdk.CheckBatch([]sdk.Event{ok}); err != nil {
		t.Fatalf("CheckBatch(valid) = %v", err)
	}
	batch := []sdk.Event{ok, {ID: "no-type"}, {Type: "t", Data: json.RawMessage(`{"n": 1e999}`)}}
	err := sdk.CheckBatch(batch)
	if !errors.Is(err, sdk.ErrRejected) || errors.Is(err, sdk.ErrNotQueued) {
		t.Fatalf("CheckBatch = %v, want sdk.ErrRejected", err)
	}
	var re *sdk.RejectedError
	if !errors.As(err, &re) || len(re.Rejections) != 2 {
		t.Fatalf("CheckBatch = %#v, want 2 rejections", err)
	}
	if r := re.Rejections[0]; r.Index != 1 || r.ID != "no-type" || r.Field != "type" {
		t.Errorf("rejection 0 = %+v", r)
	}
	if r := re.Rejections[1]; r.Index != 2 || r.Field != "data.n" || !strings.Contains(r.Reason, "float64") {
		t.Errorf("rejection 1 = %+v", r)
	}
	if got := re.Remaining(batch); len(got) != 1 || got[0].ID != "ok" {
		t.Errorf("Remaining = %+v, want the valid event", got)
	}
	want := `hookbus rejected the batch (nothing of it was queued): event 1 (id "no-type"): field "type": required; event 2: field "data.n": `
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Error() = %q, want prefix %q", err.Error(), want)
	}
}

func TestCheckBatchLimit(t *testing.T) {
	batch := make([]sdk.Event, sdk.MaxBatchEvents+1)
	for i := range batch {
		batch[i] = sdk.Event{ID: fmt.Sprint(i), Type: "t"}
	}
	err := sdk.CheckBatch(batch)
	var re *sdk.RejectedError
	if !errors.As(err, &re) || len(re.Rejections) != 1 || re.Rejections[0].Index != -1 ||
		!strings.Contains(err.Error(), "1001 events in one batch; the limit is 1000 (sdk.MaxBatchEvents)") {
		t.Fatalf("CheckBatch(%d events) = %v", len(batch), err)
	}
	if got := re.Remaining(batch); got != nil {
		t.Errorf("Remaining of a batch rejected whole = %d events, want nil", len(got))
	}
	if err := sdk.CheckBatch(batch[:sdk.MaxBatchEvents]); err != nil {
		t.Errorf("CheckBatch(%d events) = %v", sdk.MaxBatchEvents, err)
	}
}

func TestRejectedErrorShortensLongLists(t *testing.T) {
	batch := make([]sdk.Event, 8)
	err := sdk.CheckBatch(batch)
	if !strings.HasSuffix(err.Error(), "; and 3 more") {
		t.Fatalf("Error() = %q", err.Error())
	}
}
