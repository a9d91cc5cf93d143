package httpsource

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hookbus/hookbus/core/problem"
	"github.com/hookbus/hookbus/sdk"
)

// Media types the ingest endpoint accepts without ce-* headers.
const (
	// MediaJSON carries one event envelope or a JSON array of them (also assumed without Content-Type).
	MediaJSON = "application/json"
	// MediaCloudEvents carries one CloudEvent in structured mode.
	MediaCloudEvents = "application/cloudevents+json"
	// MediaCloudEventsBatch carries a JSON array of CloudEvents.
	MediaCloudEventsBatch = "application/cloudevents-batch+json"
)

// Limits on envelope members, in bytes. Longer values are rejected with 400.
const (
	// MaxIDLen bounds id.
	MaxIDLen = 256
	// MaxTypeLen bounds type.
	MaxTypeLen = 256
	// MaxSourceLen bounds source.
	MaxSourceLen = 256
	// MaxSubjectLen bounds subject.
	MaxSubjectLen = 1024
)

// DataEncodingExtension is the extension attribute that versions before
// data_base64 was kept set to "base64" beside base64 text in Data (from a
// CloudEvents data_base64 member or a non-UTF-8 binary-mode body). Parse no
// longer sets it: binary data is the data_base64 member, as CloudEvents
// says. Events made that way and still queued are delivered as binary data
// in the CloudEvents formats (core/deliveryformat).
const DataEncodingExtension = "dataencoding"

// DataBase64Member is the member holding binary data as standard base64
// (CloudEvents' data_base64), in place of data.
const DataBase64Member = "data_base64"

// Parse reads the events of an ingest request: one JSON envelope, a JSON
// array of them, or CloudEvents in structured, batch or binary mode (see the
// package documentation). It validates every event and returns them in
// request order, or a *problem.Problem naming the offending field and index
// (status 400, 413 for a body over a http.MaxBytesReader limit or a batch of
// more than maxBatch events, 415 for an unsupported content type). Parse does
// not assign ids, source or time; see Fill. maxBatch <= 0 means DefaultMaxBatch.
// Parse reads the whole body: callers bound it with http.MaxBytesReader.
func Parse(r *http.Request, maxBatch int) ([]sdk.Event, error) {
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	ctHeader := r.Header.Get("Content-Type")
	mediaType := ""
	if ctHeader != "" {
		mt, params, err := mime.ParseMediaType(ctHeader)
		if err != nil {
			return nil, unsupported(ctHeader, "it cannot be parsed: "+err.Error())
		}
		mediaType = mt
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !isStructured(mt) && !isBinaryMode(r.Header) {
			return nil, unsupported(ctHeader, "only the utf-8 charset is accepted")
		}
	}

	switch {
	case mediaType == MediaCloudEvents || mediaType == MediaCloudEventsBatch:
		// Structured mode wins over ce-* headers, as the CloudEvents HTTP binding says.
	case isBinaryMode(r.Header):
		body, err := readBody(r)
		if err != nil {
			return nil, err
		}
		ev, err := parseBinary(r.Header, ctHeader, mediaType, body)
		if err != nil {
			return nil, err
		}
		return []sdk.Event{ev}, nil
	case mediaType == "" || mediaType == MediaJSON:
	default:
		return nil, unsupported(ctHeader, "")
	}

	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	return parseJSON(body, mediaType, maxBatch)
}

// DefaultMaxBatch is the default largest number of events in one request:
// sdk.MaxBatchEvents, the limit of a plugin source's Emit too.
const DefaultMaxBatch = sdk.MaxBatchEvents

func isStructured(mt string) bool { return mt == MediaCloudEvents || mt == MediaCloudEventsBatch }

// isBinaryMode reports whether the request carries a CloudEvent in binary
// mode: its context attributes in ce-* headers, its data in the body.
func isBinaryMode(h http.Header) bool {
	for _, k := range [...]string{"Ce-Specversion", "Ce-Type", "Ce-Id", "Ce-Source"} {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

func unsupported(ct, why string) *problem.Problem {
	detail := fmt.Sprintf("content type %q is not accepted", ct)
	if why != "" {
		detail += " (" + why + ")"
	}
	detail += "; send " + MediaJSON + ", " + MediaCloudEvents + ", " + MediaCloudEventsBatch +
		", or any content type with ce-specversion and ce-type headers (CloudEvents binary mode)"
	return problem.New(http.StatusUnsupportedMediaType, detail)
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, problem.New(http.StatusRequestEntityTooLarge,
				fmt.Sprintf("request body is larger than the limit of %d bytes; split the batch into smaller requests", mbe.Limit))
		}
		return nil, problem.New(http.StatusBadRequest, "reading request body: "+err.Error())
	}
	return body, nil
}

// parseJSON parses a plain JSON or structured CloudEvents body.
func parseJSON(body []byte, mediaType string, maxBatch int) ([]sdk.Event, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, problem.New(http.StatusBadRequest, "request body is empty; send one event (a JSON object) or a JSON array of events")
	}
	isArray := trimmed[0] == '['
	switch {
	case mediaType == MediaCloudEvents && isArray:
		return nil, problem.New(http.StatusBadRequest,
			MediaCloudEvents+" carries one event (a JSON object); send arrays as "+MediaCloudEventsBatch)
	case mediaType == MediaCloudEventsBatch && !isArray && trimmed[0] == '{':
		return nil, problem.New(http.StatusBadRequest,
			MediaCloudEventsBatch+" carries a JSON array of events; send a single event as "+MediaCloudEvents)
	}

	var raws []json.RawMessage
	if isArray {
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, jsonProblem(body, err)
		}
		if len(raws) == 0 {
			return nil, problem.New(http.StatusBadRequest, "the array of events is empty; send at least one event")
		}
		if len(raws) > maxBatch {
			return nil, problem.New(http.StatusRequestEntityTooLarge,
				fmt.Sprintf("the batch has %d events, more than the limit of %d; split it into smaller requests", len(raws), maxBatch))
		}
	} else {
		if trimmed[0] != '{' {
			if !json.Valid(body) {
				return nil, jsonProblem(body, json.Unmarshal(body, new(json.RawMessage)))
			}
			return nil, problem.New(http.StatusBadRequest, "request body must be a JSON object (one event) or a JSON array of events")
		}
		// Decode the whole body, not trimmed, so syntax error offsets (trailing
		// garbage included) point into what the client sent.
		raws = []json.RawMessage{body}
	}

	events := make([]sdk.Event, len(raws))
	var errs []problem.FieldError
	for i, raw := range raws {
		prefix := ""
		if isArray {
			prefix = "[" + strconv.Itoa(i) + "]"
		}
		if err := events[i].UnmarshalJSON(raw); err != nil {
			if _, ok := errors.AsType[*json.SyntaxError](err); ok && !isArray {
				return nil, jsonProblem(body, err)
			}
			errs = append(errs, decodeError(prefix, err))
			continue
		}
		errs = append(errs, validate(&events[i], prefix)...)
	}
	if len(errs) > 0 {
		return nil, invalid(errs)
	}
	return events, nil
}

// invalid is the problem for a request whose events fail validation. It
// lists at most maxReported field errors, so a huge bad batch gives a
// readable answer.
func invalid(errs []problem.FieldError) *problem.Problem {
	const maxReported = 100
	detail := "the request has invalid events; nothing was accepted"
	if len(errs) == 1 {
		detail = "the request has an invalid event; nothing was accepted"
	}
	if len(errs) > maxReported {
		detail += fmt.Sprintf(" (%d errors, the first %d listed)", len(errs), maxReported)
		errs = errs[:maxReported]
	}
	return problem.New(http.StatusBadRequest, detail).WithErrors(errs...)
}

// jsonProblem describes a JSON syntax error with its position in body.
func jsonProblem(body []byte, err error) *problem.Problem {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		// Offset counts the bytes read up to and including the offending one;
		// at the end of the input there is no offending byte, point past the last.
		idx := se.Offset - 1
		if se.Offset >= int64(len(body)) && strings.Contains(se.Error(), "end of JSON input") {
			idx = int64(len(body))
		}
		line, col := position(body, idx)
		return problem.New(http.StatusBadRequest,
			fmt.Sprintf("malformed JSON at line %d, column %d (byte offset %d): %s", line, col, idx, se.Error()))
	}
	return problem.New(http.StatusBadRequest, "malformed JSON: "+err.Error())
}

// position turns a 0-based byte index into a 1-based line and column.
func position(body []byte, idx int64) (line, col int) {
	idx = max(0, min(idx, int64(len(body))))
	before := body[:idx]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(idx) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// decodeError turns an sdk.Event decoding error into a field error.
func decodeError(prefix string, err error) problem.FieldError {
	if fe, ok := errors.AsType[*sdk.FieldError](err); ok {
		msg := "has the wrong type"
		switch fe.Field {
		case "id", "type", "source", "subject", "datacontenttype":
			msg = "must be a string"
		case "time":
			msg = "must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z"
		case "metadata":
			msg = "must be an object of string values"
		}
		return problem.FieldError{Field: join(prefix, fe.Field), Message: msg}
	}
	field := prefix
	if field == "" {
		field = "$"
	}
	return problem.FieldError{Field: field, Message: "must be a JSON object (an event)"}
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// validate checks one decoded event and normalises CloudEvents data_base64.
func validate(ev *sdk.Event, prefix string) []problem.FieldError {
	var errs []problem.FieldError
	add := func(field, msg string) {
		errs = append(errs, problem.FieldError{Field: join(prefix, field), Message: msg})
	}
	if ev.Type == "" {
		add("type", "is required")
	}
	checkString := func(field, v string, limit int) {
		if len(v) > limit {
			add(field, fmt.Sprintf("is longer than %d bytes", limit))
		} else if hasControl(v) {
			add(field, "must not contain control characters")
		}
	}
	checkString("id", ev.ID, MaxIDLen)
	checkString("type", ev.Type, MaxTypeLen)
	checkString("source", ev.Source, MaxSourceLen)
	checkString("subject", ev.Subject, MaxSubjectLen)
	if ev.DataContentType != "" {
		if _, _, err := mime.ParseMediaType(ev.DataContentType); err != nil {
			add("datacontenttype", "must be a media type, e.g. application/json")
		}
	}
	if raw, ok := ev.Extensions["specversion"]; ok {
		var v string
		if json.Unmarshal(raw, &v) != nil || v != "1.0" {
			add("specversion", `must be "1.0"`)
		}
	}
	if err := ev.CheckNumbers(); err != nil {
		errs = append(errs, numberProblem(prefix, err))
	}
	if raw, ok := ev.Extensions["data_base64"]; ok {
		var s string
		switch {
		case len(ev.Data) > 0:
			add("data_base64", "must not be given together with data")
		case json.Unmarshal(raw, &s) != nil:
			add("data_base64", "must be a string")
		default:
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				add("data_base64", "must be standard base64")
			}
			// Kept as it came, a member of its own: CloudEvents deliveries
			// send it as data_base64 (structured) or as the decoded bytes
			// (binary), the json format as it is.
		}
	}
	return errs
}

// numberProblem turns an sdk.Event.CheckNumbers error into a field error:
// a number scripts could not read is refused here rather than dead-lettered
// by every pipeline later.
func numberProblem(prefix string, err error) problem.FieldError {
	if fe, ok := errors.AsType[*sdk.FieldError](err); ok {
		return problem.FieldError{Field: join(prefix, fe.Field), Message: fe.Err.Error()}
	}
	return problem.FieldError{Field: join(prefix, "data"), Message: err.Error()}
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// parseBinary builds the event of a CloudEvents binary-mode request.
func parseBinary(h http.Header, ctHeader, mediaType string, body []byte) (sdk.Event, error) {
	var ev sdk.Event
	var errs []problem.FieldError
	for _, key := range slices.Sorted(maps.Keys(h)) { // sorted: errors come in a stable order
		vals := h[key]
		lk := strings.ToLower(key)
		if !strings.HasPrefix(lk, "ce-") || len(vals) == 0 {
			continue
		}
		name := lk[len("ce-"):]
		v := vals[0]
		if dec, err := url.PathUnescape(v); err == nil {
			v = dec // the binding percent-encodes non-printable characters
		}
		field := lk
		switch name {
		case "id":
			ev.ID = v
		case "type":
			ev.Type = v
		case "source":
			ev.Source = v
		case "subject":
			ev.Subject = v
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				errs = append(errs, problem.FieldError{Field: field, Message: "must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z"})
			}
			ev.Time = t
		case "data", "data_base64", "datacontenttype", "metadata", "":
			errs = append(errs, problem.FieldError{Field: field, Message: "is not allowed in binary mode (the body is the data, Content-Type its media type)"})
		default:
			setExt(&ev, name, v)
		}
	}
	// The header loop renamed fields to ce-*; validate then rename its errors.
	for _, fe := range validate(&ev, "") {
		switch fe.Field {
		case "id", "type", "source", "subject", "specversion":
			fe.Field = "ce-" + fe.Field
		}
		errs = append(errs, fe)
	}
	if len(errs) > 0 {
		return sdk.Event{}, invalid(errs)
	}

	if len(body) == 0 {
		return ev, nil
	}
	if mediaType == "" || mediaType == MediaJSON || strings.HasSuffix(mediaType, "+json") {
		if !json.Valid(body) {
			p := jsonProblem(body, json.Unmarshal(body, new(json.RawMessage)))
			p.Detail = "data: " + p.Detail
			return sdk.Event{}, p.WithErrors(problem.FieldError{Field: "data", Message: "must be valid JSON for content type " + strconv.Quote(ctHeader)})
		}
		ev.Data = bytes.Clone(body)
		if err := ev.CheckNumbers(); err != nil {
			return sdk.Event{}, invalid([]problem.FieldError{numberProblem("", err)})
		}
		// The Content-Type is the event's datacontenttype, kept as sent.
		ev.DataContentType = ctHeader
		return ev, nil
	}
	ev.DataContentType = ctHeader
	if utf8.Valid(body) {
		ev.Data, _ = json.Marshal(string(body))
	} else {
		setExt(&ev, DataBase64Member, base64.StdEncoding.EncodeToString(body))
	}
	return ev, nil
}

func setExt(ev *sdk.Event, name, value string) {
	if ev.Extensions == nil {
		ev.Extensions = map[string]json.RawMessage{}
	}
	b, _ := json.Marshal(value)
	ev.Extensions[name] = b
}
