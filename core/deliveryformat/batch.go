package deliveryformat

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"slices"
	"sync"

	"github.com/hookbus/hookbus/sdk"
)

// MediaCloudEventsBatch is the media type of a CloudEvents batch (the JSON
// event format's batch mode: an array of structured events).
const MediaCloudEventsBatch = "application/cloudevents-batch+json"

// CheckBatch returns what is wrong with batching deliveries in format f,
// or "": a binary-mode event has its attributes in the headers, so a
// request cannot carry several.
func CheckBatch(f Format) string {
	if f == Binary {
		return "cloudevents-binary carries one event per request; use format cloudevents-structured (sent as a batch, application/cloudevents-batch+json) or json with batch"
	}
	return ""
}

// Part is one event encoded as an item of a batch.
type Part struct {
	// Body is the event as the batch's array holds it.
	Body []byte
	// Err, when set, is why the event cannot be sent in the format (an
	// *Error): it is not part of any batch.
	Err error
}

// EncodeParts encodes each event of a batch in format f (json or
// cloudevents-structured): raws[i], when set, is events[i] as hookbus
// holds it, sent as is in the json format.
func EncodeParts(f Format, events []sdk.Event, raws [][]byte) []Part {
	out := make([]Part, len(events))
	for i, ev := range events {
		var raw []byte
		if i < len(raws) {
			raw = raws[i]
		}
		m, err := Encode(f, ev, raw)
		out[i] = Part{Body: m.Body, Err: err}
	}
	return out
}

// BatchSize is the size of the body JoinBatch makes of parts of these
// sizes: the items, their commas and the brackets.
func BatchSize(n, itemBytes int) int { return itemBytes + max(n-1, 0) + 2 }

// JoinBatch makes the request of a batch in format f from its items: a
// JSON array, with Content-Type application/json (json) or
// application/cloudevents-batch+json (cloudevents-structured).
func JoinBatch(f Format, items [][]byte) (Message, error) {
	if msg := CheckBatch(f); msg != "" {
		return Message{}, fmt.Errorf("%s", msg)
	}
	n := 0
	for _, it := range items {
		n += len(it)
	}
	body := make([]byte, 0, BatchSize(len(items), n))
	body = append(body, '[')
	for i, it := range items {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, it...)
	}
	body = append(body, ']')
	ct := MediaJSON
	if f == Structured {
		ct = MediaCloudEventsBatch
	}
	return Message{Body: body, ContentType: ct}, nil
}

// Compression names a request body's content coding (the `compression`
// key and API member).
type Compression string

// The compressions.
const (
	// None sends bodies as they are. "" means None.
	None Compression = "none"
	// Gzip sends bodies of at least GzipMinBytes with Content-Encoding gzip.
	Gzip Compression = "gzip"
)

// GzipMinBytes is the smallest body gzip compresses: below it the gzip
// header and trailer make the body bigger, so it goes as it is, without
// Content-Encoding.
const GzipMinBytes = 1024

// CheckCompression returns what is wrong with a compression name, or "".
func CheckCompression(c string) string {
	if c == "" || c == string(None) || c == string(Gzip) {
		return ""
	}
	return fmt.Sprintf("must be %s or %s", None, Gzip)
}

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
	return w
}}

// Compress returns body as c codes it and the Content-Encoding to send
// ("" when body goes as it is: no compression, or a body under
// GzipMinBytes). The signature is made over body, not over what Compress
// returns: a receiver checks it after decoding the request.
func Compress(c Compression, body []byte) ([]byte, string) {
	if c != Gzip || len(body) < GzipMinBytes {
		return body, ""
	}
	var buf bytes.Buffer
	buf.Grow(len(body)/3 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	_, _ = zw.Write(body) // a bytes.Buffer does not fail
	_ = zw.Close()
	gzipWriters.Put(zw)
	return slices.Clip(buf.Bytes()), "gzip"
}
