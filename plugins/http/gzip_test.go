package httpsource_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/core/problem"
	httpsource "github.com/hookbus/hookbus/plugins/http"
)

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A gzip body is accepted and parsed as the decoded body; max_body
// applies after decompression; a body that is not gzip is 400 and any
// other coding 415, with a problem that says so.
func TestGzipBodies(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	url := server(t, rec, httpsource.Options{MaxBody: 4096}) + "/v1/sources/shop/events"
	events := []byte(`[{"type":"order.paid","data":{"n":1}},{"type":"order.paid","data":{"n":2}}]`)

	r := do(t, http.MethodPost, url, "application/json", map[string]string{"Content-Encoding": "gzip"}, gzipped(t, events))
	if r.status != http.StatusAccepted || len(r.ids) != 2 {
		t.Fatalf("gzip body: %d %s", r.status, r.raw)
	}
	if b := rec.all(); len(b) != 1 || len(b[0].events) != 2 || string(b[0].events[1].Data) != `{"n":2}` {
		t.Fatalf("published %+v", b)
	}
	// Case and identity are as HTTP has them.
	r = do(t, http.MethodPost, url, "application/json", map[string]string{"Content-Encoding": "identity, GZIP"}, gzipped(t, events))
	if r.status != http.StatusAccepted {
		t.Fatalf("identity, GZIP: %d %s", r.status, r.raw)
	}

	// 3 KiB compressed well under the limit, 8 KiB decoded: over it.
	big := []byte(`{"type":"t","data":"` + strings.Repeat("a", 8192) + `"}`)
	r = do(t, http.MethodPost, url, "application/json", map[string]string{"Content-Encoding": "gzip"}, gzipped(t, big))
	if r.status != http.StatusRequestEntityTooLarge || r.problem.Code != problem.CodePayloadTooLarge || !strings.Contains(r.problem.Detail, "4096") {
		t.Fatalf("inflating over max_body: %d %s", r.status, r.raw)
	}

	r = do(t, http.MethodPost, url, "application/json", map[string]string{"Content-Encoding": "gzip"}, events)
	if r.status != http.StatusBadRequest || !strings.Contains(r.problem.Detail, "not gzip") {
		t.Fatalf("plain body sent as gzip: %d %s", r.status, r.raw)
	}
	corrupt := gzipped(t, events)
	corrupt[len(corrupt)-12] ^= 0xff // the deflate data's end (and so its CRC)
	r = do(t, http.MethodPost, url, "application/json", map[string]string{"Content-Encoding": "gzip"}, corrupt)
	if r.status != http.StatusBadRequest {
		t.Fatalf("corrupt gzip: %d %s", r.status, r.raw)
	}

	for _, enc := range []string{"br", "deflate", "zstd", "gzip, gzip"} {
		r = do(t, http.MethodPost, url, "application/json", map[string]string{"Content-Encoding": enc}, events)
		if r.status != http.StatusUnsupportedMediaType || r.problem.Code != problem.CodeUnsupportedMediaType ||
			!strings.Contains(r.problem.Detail, "not supported") || r.header.Get("Accept-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding %s: %d %v %s", enc, r.status, r.header, r.raw)
		}
	}
	if n := len(rec.all()); n != 2 {
		t.Fatalf("%d batches published, want only the 2 accepted", n)
	}
}

// A zip bomb: 1 MiB of gzip (64 members of 16 KiB, each 16 MiB of zeros:
// deflate's ratio stops near 1:1030, so no smaller body can)
// that inflates to 1 GiB gets 413 under the default max_body (1 MiB),
// having allocated a few MiB, not the gigabyte: the decoder is read
// through the bound. Not parallel, so the allocation count is this
// test's.
func TestGzipBombIsRefusedWithLittleMemory(t *testing.T) {
	member := gzipped(t, make([]byte, 16<<20))
	bomb := bytes.Repeat(member, 64)
	if len(bomb) > int(httpsource.DefaultMaxBody) {
		t.Fatalf("the bomb is %d bytes, over max_body as sent", len(bomb))
	}
	h := httpsource.NewHandler(&recorder{}, httpsource.Options{})
	serve := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/sources/shop/events", bytes.NewReader(bomb))
		req.SetPathValue("source", "shop")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	serve() // warm up pools
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	w := serve()
	runtime.ReadMemStats(&after)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("zip bomb: %d %s", w.Code, w.Body)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("1 GiB zip bomb: %d bytes allocated to refuse it", alloc)
	if alloc > 32<<20 {
		t.Fatalf("refusing the bomb allocated %d MiB", alloc>>20)
	}
}
