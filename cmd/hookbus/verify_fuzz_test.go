package main

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// FuzzSplitRequest feeds `hookbus verify --request` arbitrary saved
// requests: never a panic, and what it returns as the body is the file's
// tail byte for byte (the signature covers exactly those bytes).
func FuzzSplitRequest(f *testing.F) {
	f.Add([]byte("POST /hooks HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_1\r\nwebhook-timestamp: 1700000000\r\nwebhook-signature: v1,abc=\r\n\r\n{\"a\":1}\r\n\r\n"))
	f.Add([]byte("webhook-id: msg_1\nwebhook-timestamp: 1700000000\nwebhook-signature: v1,abc=\n\n{}"))
	f.Add([]byte("POST /hooks HTTP/1.1\n\n"))
	f.Add([]byte("a: b\n\r\n\r\nbody\n\nmore"))
	f.Add([]byte("no headers here"))
	f.Add([]byte("webhook-id: a\rb\n\n"))
	f.Add([]byte(":method: POST\n:authority: p.example\nwebhook-id: m\n\n{}"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, body, err := splitRequest(raw)
		if err != nil {
			return
		}
		if !bytes.HasSuffix(raw, body) {
			t.Fatalf("body %q is not the tail of the file", body)
		}
		for name, values := range h {
			for _, v := range values {
				if strings.ContainsAny(name+v, "\r\n") {
					t.Fatalf("header %q: %q holds a line break", name, v)
				}
			}
		}
	})
}

// FuzzSplitRequestRoundTrip writes a request the way `hookbus receive` or a
// proxy log would (with or without a request line, CRLF or LF) and checks
// that the three Standard Webhooks headers and the body come back exactly.
func FuzzSplitRequestRoundTrip(f *testing.F) {
	f.Add("msg_1", "1700000000", "v1,abc= v1,def=", []byte(`{"a":1}`), true, true)
	f.Add("msg_2", "1", "v1,x", []byte("\r\n\r\nbody with blank lines\n\n"), false, false)
	f.Add("a HTTP/1.1", "2", "v1,y", []byte{}, false, true)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte, requestLine, crlf bool) {
		for _, v := range []string{id, ts, sig} {
			if v == "" || !httpguts.ValidHeaderFieldValue(v) || strings.TrimSpace(v) != v {
				return // not a value a header line can carry
			}
		}
		nl := "\n"
		if crlf {
			nl = "\r\n"
		}
		var b strings.Builder
		if requestLine {
			b.WriteString("POST /hooks HTTP/1.1" + nl)
		}
		b.WriteString("webhook-id: " + id + nl + "webhook-timestamp: " + ts + nl + "webhook-signature: " + sig + nl + nl)
		b.Write(body)
		h, got, err := splitRequest([]byte(b.String()))
		if err != nil {
			t.Fatalf("splitRequest(%q): %v", b.String(), err)
		}
		if h.Get("webhook-id") != id || h.Get("webhook-timestamp") != ts || h.Get("webhook-signature") != sig || !bytes.Equal(got, body) {
			t.Fatalf("splitRequest(%q) = %v, %q; want id %q, timestamp %q, signature %q, body %q", b.String(), h, got, id, ts, sig, body)
		}
	})
}

// A dump of an HTTP/2 request starts with pseudo-headers; they are skipped,
// not taken for headers or refused.
func TestSplitRequestHTTP2Dump(t *testing.T) {
	t.Parallel()
	h, body, err := splitRequest([]byte(":method: POST\r\n:path: /hooks\r\nwebhook-id: msg_1\r\n\r\n{}"))
	if err != nil || h.Get("webhook-id") != "msg_1" || len(h) != 1 || string(body) != "{}" {
		t.Fatalf("splitRequest = %v, %q, %v", h, body, err)
	}
}
