// Package sdk is what a hookbus plugin author imports: the Event envelope,
// the Source and Sink interfaces and (in sub-packages) the plugin protocol
// and a conformance test kit. It never imports hookbus' core.
package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Event is the CloudEvents-compatible envelope that flows through hookbus.
//
// Top-level members other than the named ones (CloudEvents extension
// attributes, or fields a transform script adds) are kept in Extensions and
// written back at the top level when the event is encoded.
type Event struct {
	// ID identifies the event. A producer-given ID is an idempotency key;
	// hookbus assigns a ULID when the producer gives none.
	ID string `json:"id"`
	// Type is the event type, e.g. "order.paid". Required.
	Type string `json:"type"`
	// Source names where the event came from.
	Source string `json:"source,omitempty"`
	// Subject is an optional subject of the event (e.g. an order id).
	Subject string `json:"subject,omitempty"`
	// Time is when the event happened (RFC 3339 on the wire).
	Time time.Time `json:"time,omitzero"`
	// DataContentType is the media type of Data, when not JSON.
	DataContentType string `json:"datacontenttype,omitempty"`
	// Data is the payload, any JSON value.
	Data json.RawMessage `json:"data,omitempty"`
	// Metadata carries string key/values alongside the event.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Extensions holds any other top-level members.
	Extensions map[string]json.RawMessage `json:"-"`
}

var knownMembers = map[string]bool{
	"id": true, "type": true, "source": true, "subject": true, "time": true,
	"datacontenttype": true, "data": true, "metadata": true,
}

// eventFields is Event without its methods, so encoding/json handles the
// named members and we add the extensions ourselves.
type eventFields Event

// MarshalJSON encodes the envelope with extensions at the top level.
func (e Event) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(eventFields(e))
	if err != nil || len(e.Extensions) == 0 {
		return b, err
	}
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	// Sorted, so an event always encodes to the same bytes.
	for _, k := range slices.Sorted(maps.Keys(e.Extensions)) {
		v := e.Extensions[k]
		if knownMembers[k] {
			continue
		}
		kb, _ := json.Marshal(k)
		buf.WriteByte(',')
		buf.Write(kb)
		buf.WriteByte(':')
		if len(v) == 0 {
			buf.WriteString("null")
		} else {
			buf.Write(v)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON decodes the envelope, keeping unknown members as extensions.
func (e *Event) UnmarshalJSON(b []byte) error {
	return e.unmarshalMembers(b)
}

func (e *Event) unmarshalMembers(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw == nil {
		return errors.New("event must be a JSON object")
	}
	var f eventFields
	for k, v := range raw {
		var err error
		switch k {
		case "id":
			err = json.Unmarshal(v, &f.ID)
		case "type":
			err = json.Unmarshal(v, &f.Type)
		case "source":
			err = json.Unmarshal(v, &f.Source)
		case "subject":
			err = json.Unmarshal(v, &f.Subject)
		case "time":
			if string(v) != "null" {
				err = json.Unmarshal(v, &f.Time)
			}
		case "datacontenttype":
			err = json.Unmarshal(v, &f.DataContentType)
		case "data":
			f.Data = v
		case "metadata":
			err = json.Unmarshal(v, &f.Metadata)
		default:
			if f.Extensions == nil {
				f.Extensions = map[string]json.RawMessage{}
			}
			f.Extensions[k] = v
		}
		if err != nil {
			return &FieldError{Field: k, Err: err}
		}
	}
	*e = Event(f)
	return nil
}

// FieldError reports an envelope member with a value of the wrong shape.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q: %v", e.Field, e.Err) }
func (e *FieldError) Unwrap() error { return e.Err }
