// Package deliveryformat turns an event into the HTTP body and headers of
// a webhook delivery in one of the formats a webhook sink or a subscription
// may ask for (`format`):
//
//   - json (the default): the event envelope as hookbus holds it, with
//     Content-Type application/json;
//   - cloudevents-structured: a CloudEvents 1.0 JSON event, with
//     Content-Type application/cloudevents+json;
//   - cloudevents-binary: the event's data as the body, its Content-Type the
//     event's datacontenttype, and its context attributes in ce-* headers
//     (the CloudEvents HTTP protocol binding).
//
// One set of rules for the webhook sink and the subscriptions sink, so a
// CloudEvents SDK receiver accepts what either sends. The Standard Webhooks
// headers are not this package's: the sink signs the body Encode returns.
package deliveryformat

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

// Format names a delivery format (the `format` key and API member).
type Format string

// The delivery formats.
const (
	// JSON is the event envelope as JSON (hookbus' own body). "" means JSON.
	JSON Format = "json"
	// Structured is a CloudEvents 1.0 event in structured mode (JSON format).
	Structured Format = "cloudevents-structured"
	// Binary is a CloudEvents 1.0 event in binary mode.
	Binary Format = "cloudevents-binary"
)

// Formats lists the formats, the default first.
var Formats = []Format{JSON, Structured, Binary}

// Media types of the bodies.
const (
	MediaJSON        = "application/json"
	MediaCloudEvents = "application/cloudevents+json"
	mediaOctets      = "application/octet-stream"
)

// Check returns what is wrong with a format name, or "" when it names a
// format ("" names the default).
func Check(f string) string {
	if f == "" || slices.Contains(Formats, Format(f)) {
		return ""
	}
	return fmt.Sprintf("must be one of %s, %s or %s", JSON, Structured, Binary)
}

// CheckHeader returns what is wrong with an extra request header of a
// delivery in format f, or "": a binary-mode delivery's ce-* headers are its
// context attributes, so none may be configured.
func CheckHeader(f Format, name string) string {
	if f == Binary && len(name) >= 3 && strings.EqualFold(name[:3], "ce-") {
		return "ce-* headers carry the CloudEvents attributes of a cloudevents-binary delivery; set them as event attributes instead"
	}
	return ""
}

// Message is the body and headers of one delivery.
type Message struct {
	Body []byte
	// ContentType is the Content-Type header ("" for none: a binary-mode
	// event without data).
	ContentType string
	// Header holds the ce-* headers of a binary-mode event (nil otherwise).
	Header http.Header
}

// Error is an event that cannot be sent in a format (a CloudEvents
// attribute it cannot carry): a permanent failure of the delivery, not of
// the receiver.
type Error struct {
	Format Format
	// Attribute names the event member at fault.
	Attribute string
	Message   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s %s", e.Format, e.Attribute, e.Message)
}

// Encode makes the delivery of ev in format f. raw, when set, is ev as
// JSON exactly as hookbus holds it: the JSON format sends it as is. The
// error is an *Error for an event the format cannot carry.
func Encode(f Format, ev sdk.Event, raw []byte) (Message, error) {
	switch f {
	case "", JSON:
		body := raw
		if len(body) == 0 {
			var err error
			if body, err = json.Marshal(ev); err != nil {
				return Message{}, fmt.Errorf("encoding event: %w", err)
			}
		}
		return Message{Body: body, ContentType: MediaJSON}, nil
	case Structured, Binary:
		ce, err := fromEvent(f, ev)
		if err != nil {
			return Message{}, err
		}
		if f == Structured {
			return ce.structured()
		}
		return ce.binary(), nil
	}
	return Message{}, fmt.Errorf("unknown delivery format %q", f)
}

// cloudEvent is an event as CloudEvents 1.0 sees it.
type cloudEvent struct {
	id, source, typ, subject string
	time                     time.Time
	dataContentType          string
	// Exactly one of data (a JSON value) and binaryData (bytes sent as
	// data_base64) is set, or neither.
	data       json.RawMessage
	binaryData []byte
	isBinary   bool
	// ext holds the extension attributes (dataschema included) by name,
	// each a JSON string, boolean or integer.
	ext map[string]json.RawMessage
}

// Context attribute names and the members the envelope names itself.
var reserved = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "subject": true, "time": true,
	"datacontenttype": true, "data": true, "data_base64": true, "metadata": true,
}

// DefaultSource is the CloudEvents source of an event that has none
// (CloudEvents requires one).
const DefaultSource = "hookbus"

// legacyEncoding is the extension that versions before data_base64 was
// kept set beside base64 text in data; such events still on a queue are
// sent as data_base64.
const legacyEncoding = "dataencoding"

func fromEvent(f Format, ev sdk.Event) (*cloudEvent, error) {
	fail := func(attr, msg string) error { return &Error{Format: f, Attribute: attr, Message: msg} }
	ce := &cloudEvent{id: ev.ID, source: ev.Source, typ: ev.Type, subject: ev.Subject, time: ev.Time,
		dataContentType: ev.DataContentType, ext: map[string]json.RawMessage{}}
	if ce.source == "" {
		ce.source = DefaultSource
	}
	if ce.id == "" {
		return nil, fail("id", "is required by CloudEvents")
	}
	if ce.typ == "" {
		return nil, fail("type", "is required by CloudEvents")
	}
	exts := maps.Clone(ev.Extensions)
	if v, ok := exts["specversion"]; ok {
		if s, isStr := jsonString(v); !isStr || s != "1.0" {
			return nil, fail("specversion", `must be "1.0" (or absent) to be sent as CloudEvents 1.0`)
		}
		delete(exts, "specversion")
	}
	b64, hasB64 := exts["data_base64"]
	legacy := false
	if enc, ok := exts[legacyEncoding]; ok {
		if s, _ := jsonString(enc); s == "base64" {
			if _, isStr := jsonString(ev.Data); isStr && !hasB64 {
				b64, hasB64, legacy = ev.Data, true, true
				delete(exts, legacyEncoding)
			}
		}
	}
	delete(exts, "data_base64")
	switch {
	case hasB64 && len(ev.Data) > 0 && !legacy:
		return nil, fail("data_base64", "must not be given together with data")
	case hasB64:
		s, isStr := jsonString(b64)
		if !isStr {
			return nil, fail("data_base64", "must be a string of standard base64")
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fail("data_base64", "must be standard base64")
		}
		ce.binaryData, ce.isBinary = b, true
		if ce.dataContentType == "" {
			ce.dataContentType = mediaOctets
		}
	case len(ev.Data) > 0 && string(ev.Data) != "null":
		ce.data = ev.Data
		if ce.dataContentType == "" {
			ce.dataContentType = MediaJSON
		}
	}
	for _, k := range slices.Sorted(maps.Keys(exts)) {
		if reserved[k] {
			continue
		}
		v := exts[k]
		if len(v) == 0 || string(v) == "null" {
			continue // a null attribute is an absent one
		}
		if msg := checkName(k); msg != "" {
			return nil, fail(k, msg+"; rename or remove it in a transform")
		}
		if msg := checkValue(v); msg != "" {
			return nil, fail(k, msg+"; change or remove it in a transform")
		}
		ce.ext[k] = v
	}
	// metadata's string entries are extension attributes alongside the event.
	for _, k := range slices.Sorted(maps.Keys(ev.Metadata)) {
		attr := "metadata." + k
		if msg := checkName(k); msg != "" {
			return nil, fail(attr, msg+" (metadata entries are sent as extension attributes)")
		}
		v, _ := json.Marshal(ev.Metadata[k])
		if reserved[k] {
			return nil, fail(attr, "names a CloudEvents context attribute (metadata entries are sent as extension attributes)")
		}
		if prev, ok := ce.ext[k]; ok && !bytes.Equal(prev, v) {
			return nil, fail(attr, "differs from the extension attribute of the same name")
		}
		ce.ext[k] = v
	}
	if ct := ce.dataContentType; ct != "" {
		if _, _, err := mime.ParseMediaType(ct); err != nil {
			return nil, fail("datacontenttype", "must be a media type, e.g. application/json")
		}
	}
	return ce, nil
}

// checkName returns what is wrong with an extension attribute's name, or "".
func checkName(k string) string {
	if k == "" {
		return "is not a CloudEvents attribute name (it is empty)"
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return "is not a CloudEvents attribute name (lower-case letters a-z and digits only)"
		}
	}
	return ""
}

// checkValue returns what is wrong with an extension attribute's value (a
// JSON value), or "": CloudEvents attributes are strings, booleans or
// 32-bit integers.
func checkValue(v json.RawMessage) string {
	switch v[0] {
	case '"', 't', 'f':
		return ""
	case '{', '[':
		return "is an object or array; a CloudEvents attribute is a string, a boolean or an integer"
	}
	var n float64
	if err := json.Unmarshal(v, &n); err != nil || n != math.Trunc(n) || n < math.MinInt32 || n > math.MaxInt32 {
		return "is a number that is not a 32-bit integer; a CloudEvents attribute is a string, a boolean or an integer"
	}
	return ""
}

// jsonString decodes v when it is a JSON string.
func jsonString(v json.RawMessage) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// structured is the CloudEvents JSON format of the event.
func (ce *cloudEvent) structured() (Message, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"specversion":"1.0"`)
	member := func(name string, v json.RawMessage) {
		buf.WriteByte(',')
		k, _ := json.Marshal(name)
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	str := func(name, v string) {
		if v != "" {
			b, _ := json.Marshal(v)
			member(name, b)
		}
	}
	str("id", ce.id)
	str("source", ce.source)
	str("type", ce.typ)
	str("subject", ce.subject)
	if !ce.time.IsZero() {
		str("time", ce.time.Format(time.RFC3339Nano))
	}
	str("datacontenttype", ce.dataContentType)
	for _, k := range slices.Sorted(maps.Keys(ce.ext)) {
		member(k, ce.ext[k])
	}
	switch {
	case ce.isBinary:
		b, _ := json.Marshal(base64.StdEncoding.EncodeToString(ce.binaryData))
		member("data_base64", b)
	case ce.data != nil:
		var compact bytes.Buffer
		if err := json.Compact(&compact, ce.data); err != nil {
			return Message{}, &Error{Format: Structured, Attribute: "data", Message: "is not valid JSON"}
		}
		member("data", compact.Bytes())
	}
	buf.WriteByte('}')
	return Message{Body: buf.Bytes(), ContentType: MediaCloudEvents}, nil
}

// binary is the CloudEvents HTTP binary mode of the event.
func (ce *cloudEvent) binary() Message {
	h := http.Header{}
	set := func(name, v string) {
		if v != "" {
			h["Ce-"+strings.ToUpper(name[:1])+name[1:]] = []string{headerValue(v)}
		}
	}
	set("specversion", "1.0")
	set("id", ce.id)
	set("source", ce.source)
	set("type", ce.typ)
	set("subject", ce.subject)
	if !ce.time.IsZero() {
		set("time", ce.time.Format(time.RFC3339Nano))
	}
	for k, v := range ce.ext {
		s, isStr := jsonString(v)
		if !isStr {
			s = string(v) // true, false or an integer: its text is its string form
		}
		set(k, s)
	}
	m := Message{Header: h}
	switch {
	case ce.isBinary:
		m.Body, m.ContentType = ce.binaryData, ce.dataContentType
	case ce.data != nil:
		m.Body, m.ContentType = ce.data, ce.dataContentType
		// Text data is a JSON string in the envelope; its bytes are the text.
		if s, isStr := jsonString(ce.data); isStr && !isJSONMedia(ce.dataContentType) {
			m.Body = []byte(s)
		}
	}
	return m
}

// isJSONMedia reports whether a media type is JSON (application/json or
// a */*+json type).
func isJSONMedia(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == MediaJSON || strings.HasSuffix(mt, "+json") || mt == "text/json"
}

// headerValue percent-encodes what the CloudEvents HTTP binding says a
// header value must not carry as is: space, '"', '%' and anything outside
// printable ASCII (as UTF-8 bytes).
func headerValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// IsError reports whether err is an event the format cannot carry.
func IsError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
