package script

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/sdk"
)

// benchEvent is an order event of about 1 KB.
func benchEvent(b *testing.B) sdk.Event {
	b.Helper()
	var items []string
	for i := range 8 {
		items = append(items, fmt.Sprintf(`{"sku":"SKU-%04d","name":"Widget number %d","quantity":%d,"price":%d.99}`, i, i, i+1, i+3))
	}
	data := `{"id":"o-123456","amount":129.95,"currency":"eur","status":"paid",` +
		`"customer":{"id":"c-987","email":"ada@example.com","name":"Ada Lovelace","address":{"line1":"12 Analytical St","city":"London","zip":"N1 9GU","country":"GB"}},` +
		`"items":[` + strings.Join(items, ",") + `],"notes":"leave at the door, ring twice"}`
	ev := sdk.Event{
		ID: "01JABCDEF0123456789XYZ", Type: "order.paid", Source: "shop", Subject: "orders/o-123456",
		Time: time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC), Data: json.RawMessage(data),
		Metadata: map[string]string{"tenant": "acme", "region": "eu-west-1"},
	}
	if n, _ := json.Marshal(ev); len(n) < 900 || len(n) > 1300 {
		b.Fatalf("bench event is %d bytes, want about 1 KB", len(n))
	}
	return ev
}

func benchScript(b *testing.B, name string) *Script {
	b.Helper()
	s, err := Compile(filepath.Join("..", "..", "scripts", name), Options{})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkTransform(b *testing.B) {
	s := benchScript(b, "to_partner_format.js")
	ev := benchEvent(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if out, err := s.Transform(ctx, ev, Context{Pipeline: "p", Attempt: 1}); err != nil || len(out) != 1 {
			b.Fatal(out, err)
		}
	}
}

func BenchmarkTransformParallel(b *testing.B) {
	s := benchScript(b, "to_partner_format.js")
	ev := benchEvent(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if out, err := s.Transform(ctx, ev, Context{Pipeline: "p", Attempt: 1}); err != nil || len(out) != 1 {
				b.Error(out, err)
				return
			}
		}
	})
}

func BenchmarkFilter(b *testing.B) {
	s := benchScript(b, "only_paid.js")
	ev := benchEvent(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if keep, err := s.Filter(ctx, ev, Context{Pipeline: "p", Attempt: 1}); err != nil || !keep {
			b.Fatal(keep, err)
		}
	}
}

func BenchmarkFilterParallel(b *testing.B) {
	s := benchScript(b, "only_paid.js")
	ev := benchEvent(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if keep, err := s.Filter(ctx, ev, Context{Pipeline: "p", Attempt: 1}); err != nil || !keep {
				b.Error(keep, err)
				return
			}
		}
	})
}

// BenchmarkNewRuntime measures what a new pooled runtime costs (warm-up,
// and every replacement after a timeout, a memory interrupt or a stack
// overflow): globals, the hardening prelude, the script's top-level code.
func BenchmarkNewRuntime(b *testing.B) {
	s := benchScript(b, "to_partner_format.js")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.newSlot(); err != nil {
			b.Fatal(err)
		}
	}
}
