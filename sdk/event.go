package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"
)

// Event is the CloudEvents-compatible envelope that flows through hookbus.
//
// Top-level members other than the named ones (CloudEvents extension
// attributes, or fields a transform script adds) are kept in Extensions and
// written back at the top level when the event is encoded.
type Event struct {
	// ID identifies the event. A producer-given ID is an idempotency key
	// for queue.dedup_window on the drivers that deduplicate (see Source);
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
	if e.decodeKnown(b) {
		return nil
	}
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

// decodeKnown decodes b in one pass when it is an object with keys free of
// escapes (the usual case). It reports false, leaving e untouched, for
// anything else: escaped keys, values of an unexpected shape or malformed
// input. The full decoder then handles b and produces the errors.
func (e *Event) decodeKnown(b []byte) bool {
	var f eventFields
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i = skipSpace(b, i+1)
		if i != len(b) {
			return false
		}
		*e = Event(f)
		return true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false
		}
		end, plain := scanString(b, i)
		if end < 0 || !plain {
			return false
		}
		key := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		vend := skipValue(b, i)
		if vend < 0 || !f.setKnown(key, b[i:vend]) {
			return false
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			if skipSpace(b, i+1) != len(b) {
				return false
			}
			*e = Event(f)
			return true
		default:
			return false
		}
	}
}

// setKnown stores the value v of member key, named or extension, or
// reports false.
func (f *eventFields) setKnown(key, v []byte) bool {
	str := func(dst *string) bool {
		if len(v) < 2 || v[0] != '"' {
			return false
		}
		if end, plain := scanString(v, 0); end == len(v) && plain {
			*dst = string(v[1 : len(v)-1])
			return true
		}
		return json.Unmarshal(v, dst) == nil
	}
	switch string(key) {
	case "id":
		return str(&f.ID)
	case "type":
		return str(&f.Type)
	case "source":
		return str(&f.Source)
	case "subject":
		return str(&f.Subject)
	case "datacontenttype":
		return str(&f.DataContentType)
	case "time":
		if string(v) == "null" {
			f.Time = time.Time{}
			return true
		}
		return f.Time.UnmarshalJSON(v) == nil
	case "metadata":
		f.Metadata = nil
		return json.Unmarshal(v, &f.Metadata) == nil
	case "data":
		if !json.Valid(v) {
			return false
		}
		f.Data = bytes.Clone(v)
		return true
	}
	// An extension member (CloudEvents' specversion, say).
	if !json.Valid(v) {
		return false
	}
	if f.Extensions == nil {
		f.Extensions = map[string]json.RawMessage{}
	}
	f.Extensions[string(key)] = bytes.Clone(v)
	return true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index after the JSON string starting at b[i] (a
// quote), or -1 when it is not terminated or holds a control character.
// plain reports a string without escapes and of valid ASCII-or-UTF-8
// bytes: its JSON text between the quotes is its value.
func scanString(b []byte, i int) (end int, plain bool) {
	plain = true
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			if !ascii && !utf8.Valid(b[i+1:j]) {
				plain = false
			}
			return j + 1, plain
		case c == '\\':
			plain = false
			j++
		case c < 0x20:
			return -1, false
		case c >= 0x80:
			ascii = false
		}
	}
	return -1, false
}

// skipValue returns the index after the JSON value starting at b[i], or -1.
// It checks strings and bracket nesting only; callers validate what they
// keep.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		return end
	case '{', '[':
		var stack [64]byte
		depth := 0
		for j := i; j < len(b); j++ {
			switch c := b[j]; c {
			case '"':
				end, _ := scanString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				if depth == len(stack) {
					return -1
				}
				stack[depth] = c
				depth++
			case '}', ']':
				if depth == 0 || stack[depth-1] != c-2 {
					return -1
				}
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}
