package config

import (
	"errors"
	"testing"
)

// operational_events names a source of its own, which pipelines may read
// without declaring it; a name declared under sources, one no pipeline
// reads, a bad name or failing_after below 1 is an error naming the key.
func TestOperationalEvents(t *testing.T) {
	t.Parallel()
	const base = `version: 1
sources: {shop: {type: http}}
sinks: {pager: {type: subscriptions}}
pipelines:
  ops-to-pager: {from: [hookbus-ops], to: [pager]}
`
	path := writeConfig(t, base+"operational_events: {source: hookbus-ops}\n")
	cfg, err := Load(path, LoadOptions{Env: []string{}, Checkers: testCheckers()})
	if err != nil {
		t.Fatal(err)
	}
	if o := cfg.OperationalEvents; o.Source != "hookbus-ops" || o.FailingAfter != 5 {
		t.Errorf("operational_events = %+v, want source hookbus-ops and failing_after 5 (the default)", o)
	}

	for _, tc := range []struct {
		name, yaml string
		want       []wantErr
	}{
		{"not declared, not read", base + "operational_events: {source: ops2}\n",
			[]wantErr{
				{"pipelines.ops-to-pager.from[0]", 5, `unknown source "hookbus-ops" (defined sources: ops2, shop)`},
				{"operational_events.source", 6, `no pipeline reads "ops2"`},
			}},
		{"the pipeline's source without operational_events", base,
			[]wantErr{{"pipelines.ops-to-pager.from[0]", 5, `unknown source "hookbus-ops"`}}},
		{"declared under sources", base + "operational_events: {source: shop, failing_after: 0}\n",
			[]wantErr{
				{"pipelines.ops-to-pager.from[0]", 5, `unknown source "hookbus-ops"`},
				{"operational_events.failing_after", 6, "must be at least 1"},
				{"operational_events.source", 6, `"shop" is also declared under sources`},
			}},
		{"bad name", base + "operational_events: {source: \"a b\"}\n",
			[]wantErr{
				{"pipelines.ops-to-pager.from[0]", 5, `unknown source "hookbus-ops" (defined sources: shop)`},
				{"operational_events.source", 6, `"a b": use letters`},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.yaml), LoadOptions{Env: []string{}, Checkers: testCheckers()})
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load = %v, want *Errors", err)
			}
			checkErrors(t, *errs, tc.want)
		})
	}
}
