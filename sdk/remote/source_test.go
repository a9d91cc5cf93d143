package remote

import (
	"errors"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/sdk"
	pluginv1 "github.com/hookbus/hookbus/sdk/proto/hookbus/plugin/v1"
)

// TestDecodeBatch: what only the wire shows is checked before Emit, every
// problem of the batch at once.
func TestDecodeBatch(t *testing.T) {
	big := make([]byte, sdk.MaxEventBytes+1)
	b := &pluginv1.Batch{Seq: 1, Events: []*pluginv1.Event{
		{Json: []byte(`{"id": "a", "type": "t"}`)},
		{Json: []byte(`[1]`)},
		{Json: []byte(`{"id": "c", "type": 7}`)},
		{Json: big},
	}}
	_, err := decodeBatch(b)
	var re *sdk.RejectedError
	if !errors.As(err, &re) || len(re.Rejections) != 3 {
		t.Fatalf("decodeBatch = %v, want 3 rejections", err)
	}
	if r := re.Rejections[0]; r.Index != 1 || !strings.Contains(r.Reason, "not an event envelope") {
		t.Errorf("rejection 0 = %+v", r)
	}
	if r := re.Rejections[1]; r.Index != 2 || r.Field != "type" {
		t.Errorf("rejection 1 = %+v", r)
	}
	if r := re.Rejections[2]; r.Index != 3 || !strings.Contains(r.Reason, "the limit is 1048576 (sdk.MaxEventBytes)") {
		t.Errorf("rejection 2 = %+v", r)
	}
	b.Events = b.Events[:1]
	if evs, err := decodeBatch(b); err != nil || len(evs) != 1 || evs[0].ID != "a" {
		t.Errorf("decodeBatch(valid) = %v, %v", evs, err)
	}
}
