package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hookbus/hookbus/core/pipeline"
	"github.com/hookbus/hookbus/sdk"
)

func openStores(t *testing.T) map[string]*Store {
	t.Helper()
	ctx := context.Background()
	out := map[string]*Store{}
	s, err := Open(ctx, "sqlite", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	out["sqlite"] = s
	if c, err := net.DialTimeout("tcp", "127.0.0.1:5432", 2*time.Second); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is not running on 127.0.0.1:5432 (required in CI): %v", err)
		}
		t.Logf("PostgreSQL not running; testing sqlite only")
		return out
	} else {
		c.Close()
	}
	pg, err := Open(ctx, "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	out["postgres"] = pg
	return out
}

func TestDeadLetters(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			prefix := fmt.Sprintf("t%d-", time.Now().UnixNano())
			sink := prefix + "partner"
			for i := range 3 {
				dl := pipeline.DeadLetter{
					ID: fmt.Sprintf("%s%d", prefix, i), Sink: sink, Pipeline: "p", Kind: "permanent", Reason: "HTTP 400",
					Attempts: i + 1, DeadAt: time.Unix(1700000000+int64(i), 0).UTC(),
					Event: sdk.Event{ID: fmt.Sprintf("ev%d", i), Type: "order.paid", Data: []byte(`{"n":1}`)},
				}
				if err := s.RecordDeadLetter(ctx, dl); err != nil {
					t.Fatal(err)
				}
				// Recording the same dead letter again (a redelivered queue message) keeps one.
				if err := s.RecordDeadLetter(ctx, dl); err != nil {
					t.Fatal(err)
				}
			}
			list, err := s.ListDeadLetters(ctx, DeadLetterFilter{Sink: sink})
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 3 || list[0].Event.ID != "ev0" || list[2].Attempts != 3 || string(list[1].Event.Data) != `{"n":1}` {
				t.Fatalf("list = %+v", list)
			}
			got, err := s.GetDeadLetter(ctx, prefix+"1")
			if err != nil || got.Reason != "HTTP 400" || !got.DeadAt.Equal(time.Unix(1700000001, 0)) {
				t.Fatalf("get = %+v, %v", got, err)
			}
			if err := s.DeleteDeadLetter(ctx, prefix+"1"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetDeadLetter(ctx, prefix+"1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after delete: %v", err)
			}
			if err := s.DeleteDeadLetter(ctx, prefix+"1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
			first, _ := s.ListDeadLetters(ctx, DeadLetterFilter{Sink: sink, Limit: 1})
			if len(first) != 1 || first[0].ID != prefix+"0" {
				t.Fatalf("limit: %+v", first)
			}
			rest, _ := s.ListDeadLetters(ctx, DeadLetterFilter{Sink: sink, After: first[0].ID})
			if len(rest) != 1 || rest[0].ID != prefix+"2" {
				t.Fatalf("after %s: %+v", first[0].ID, rest)
			}
		})
	}
}
