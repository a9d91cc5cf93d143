// Package deploy holds what operators load beside hookbus: Prometheus
// rules (prometheus/), a Grafana dashboard (grafana/), and the files of a
// clustered deployment: three NATS JetStream node configs (nats/), systemd
// units (systemd/) and one instance's hookbus config (hookbus/). Its tests
// check them with promtool, nats-server, systemd-analyze and hookbus
// validate, and against the metrics hookbus exports.
package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hookbus/hookbus/core/metrics"
	"github.com/hookbus/hookbus/internal/testenv"
)

const (
	rulesFile     = "prometheus/hookbus.rules.yml"
	rulesTestFile = "prometheus/hookbus.rules.test.yml"
	dashboardFile = "grafana/hookbus-dashboard.json"
)

// promtool runs promtool with args in dir and fails the test with its
// output when it fails.
func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.NeedCommand(t, "promtool"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The rules are valid and their unit tests pass.
func TestPrometheusRules(t *testing.T) {
	promtool(t, ".", "check", "rules", rulesFile)
	promtool(t, "prometheus", "test", "rules", filepath.Base(rulesTestFile))
}

// exported lists the metric names hookbus exports (histograms as their
// _bucket, _sum and _count series): a registry with one of every
// component declared, as the application builds it.
func exported(t *testing.T) []string {
	t.Helper()
	m := metrics.New()
	m.Declare(metrics.Topology{Sources: []string{"s"}, Routes: []metrics.Route{{Pipeline: "p", Sink: "k"}}, Sinks: []string{"k"},
		FanoutSinks: []string{"k"}, Scripts: []string{"x.js"}, DeadLetterKinds: []string{"exhausted"}})
	m.ComponentReady.WithLabelValues("sink k").Set(1)
	m.PluginInitFailures.WithLabelValues("plugin", "sink k")
	m.RegisterBacklog(metrics.BacklogFunc(func(context.Context) ([]metrics.Backlog, error) {
		return []metrics.Backlog{{Group: "sink-k", Topic: "hookbus.out.k"}}, nil
	}))
	m.RegisterOldestWaiting(metrics.WaitingFunc(func(context.Context) (map[string]time.Time, error) { return nil, nil }), metrics.WaitingOptions{})
	if _, err := metrics.RegisterAttemptLog(m.Registry, func() float64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		n := mf.GetName()
		if mf.GetType().String() == "HISTOGRAM" {
			names = append(names, n+"_bucket", n+"_sum", n+"_count")
			continue
		}
		names = append(names, n)
	}
	return names
}

// nameRef finds the metric and recording rule names (and label names and
// functions) an expression holds, outside strings.
var (
	nameRef   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	stringLit = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// checkNames fails for every hookbus metric expr names that hookbus does
// not export, and every recording rule name (level:metric:operations) that
// is not in records.
func checkNames(t *testing.T, where, expr string, names, records []string) {
	t.Helper()
	for _, ref := range nameRef.FindAllString(stringLit.ReplaceAllString(expr, `""`), -1) {
		switch {
		case strings.Contains(ref, ":"):
			if !slices.Contains(records, ref) {
				t.Errorf("%s: %s is not a recording rule of %s (expression %q)", where, ref, rulesFile, expr)
			}
		case strings.HasPrefix(ref, "hookbus_"):
			if !slices.Contains(names, ref) {
				t.Errorf("%s: %s is not a metric hookbus exports (expression %q)", where, ref, expr)
			}
		}
	}
}

// The rules read only metrics hookbus exports (besides Prometheus' up).
func TestRulesNameExportedMetrics(t *testing.T) {
	var f struct {
		Groups []struct {
			Rules []struct {
				Record, Alert, Expr string
			}
		}
	}
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	names := exported(t)
	var records []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				records = append(records, r.Record)
			}
		}
	}
	n := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			checkNames(t, r.Record+r.Alert, r.Expr, names, records)
			n++
		}
	}
	if n == 0 || len(records) == 0 {
		t.Fatalf("%d rules, %d recording rules read", n, len(records))
	}
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// grafanaVars are what Grafana puts for the dashboard's variables: every
// sink, and a rate interval.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "${sink}", ".*", "$sink", ".*")

// checkExpressions parses every expression with promtool, as recording
// rules of a generated rules file, and returns its complaint.
func checkExpressions(t *testing.T, exprs map[string]string) error {
	t.Helper()
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for _, name := range slices.Sorted(maps.Keys(exprs)) {
		rules = append(rules, rule{Record: name, Expr: exprs[name]})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testenv.NeedCommand(t, "promtool"), "check", "rules", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// The dashboard is valid JSON with a datasource and a sink variable; every
// panel reads the datasource variable, and its PromQL parses (promtool)
// and names only metrics hookbus exports, covering the figures it is for.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: title %q, uid %q, %d panels", dashboardFile, d.Title, d.UID, len(d.Panels))
	}
	names := exported(t)
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" {
			checkNames(t, "variable "+v.Name, v.Definition, names, nil)
		}
	}
	if vars["datasource"] != "datasource" || vars["sink"] != "query" {
		t.Errorf("variables %v, want datasource (datasource) and sink (query)", vars)
	}
	exprs := map[string]string{}
	ids := map[int]bool{}
	var all strings.Builder
	for _, p := range d.Panels {
		if ids[p.ID] || p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: duplicate id, no title or no target", p.ID, p.Title)
		}
		ids[p.ID] = true
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		for i, tg := range p.Targets {
			e := grafanaVars.Replace(tg.Expr)
			if strings.Contains(e, "$") {
				t.Errorf("panel %q: unknown variable in %q", p.Title, tg.Expr)
			}
			checkNames(t, "panel "+p.Title, e, names, nil)
			exprs[fmt.Sprintf("dashboard_panel_%d_%d", p.ID, i)] = e
			all.WriteString(e + "\n")
		}
	}
	for _, want := range []string{"hookbus_events_delivered_total", "hookbus_events_dead_lettered_total", "hookbus_delivery_attempts_total",
		"hookbus_delivery_delay_seconds_bucket", "hookbus_oldest_waiting_seconds", "hookbus_queue_pending"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("no panel reads %s", want)
		}
	}
	if err := checkExpressions(t, exprs); err != nil {
		t.Errorf("dashboard expressions: %v", err)
	}
	// The check catches a broken expression.
	if err := checkExpressions(t, map[string]string{"broken": "sum(rate(hookbus_events_delivered_total[5m])"}); err == nil {
		t.Error("promtool accepted an unbalanced expression")
	}
}
