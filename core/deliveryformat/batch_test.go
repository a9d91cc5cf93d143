package deliveryformat

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/sdk"
)

func TestJoinBatch(t *testing.T) {
	t.Parallel()
	evs := []sdk.Event{{ID: "a", Type: "t", Data: json.RawMessage(`{"n":1}`)}, {ID: "b", Type: "t"}, {ID: "", Type: "t"}}
	parts := EncodeParts(Structured, evs, nil)
	if parts[0].Err != nil || parts[1].Err != nil || parts[2].Err == nil {
		t.Fatalf("parts %+v", parts)
	}
	m, err := JoinBatch(Structured, [][]byte{parts[0].Body, parts[1].Body})
	if err != nil || m.ContentType != MediaCloudEventsBatch || len(m.Body) != BatchSize(2, len(parts[0].Body)+len(parts[1].Body)) {
		t.Fatalf("%+v, %v", m, err)
	}
	var arr []map[string]any
	if err := json.Unmarshal(m.Body, &arr); err != nil || len(arr) != 2 || arr[1]["id"] != "b" || arr[0]["specversion"] != "1.0" {
		t.Fatalf("body %s: %v", m.Body, err)
	}
	m, _ = JoinBatch(JSON, [][]byte{[]byte(`{"id":"a"}`)})
	if string(m.Body) != `[{"id":"a"}]` || m.ContentType != MediaJSON {
		t.Fatalf("json batch %+v", m)
	}
	if _, err := JoinBatch(Binary, nil); err == nil || CheckBatch(Binary) == "" || CheckBatch(JSON) != "" {
		t.Fatal("binary mode batched")
	}
}

func TestCompress(t *testing.T) {
	t.Parallel()
	small := []byte(`{"id":"a"}`)
	if out, enc := Compress(Gzip, small); enc != "" || !bytes.Equal(out, small) {
		t.Fatalf("a small body compressed: %q", enc)
	}
	big := []byte(strings.Repeat(`{"id":"a","data":{"x":1}},`, 100))
	if out, enc := Compress(None, big); enc != "" || !bytes.Equal(out, big) {
		t.Fatal("compressed without compression")
	}
	out, enc := Compress(Gzip, big)
	if enc != "gzip" || len(out) >= len(big) {
		t.Fatalf("encoding %q, %d bytes of %d", enc, len(out), len(big))
	}
	zr, err := gzip.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(back, big) {
		t.Fatalf("round trip: %v", err)
	}
	if CheckCompression("br") == "" || CheckCompression("gzip") != "" || CheckCompression("") != "" {
		t.Fatal("CheckCompression")
	}
}
