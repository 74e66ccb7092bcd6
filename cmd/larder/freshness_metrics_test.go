package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// gauges scrapes c through a registry of its own and returns every sample
// as "name{view}" -> value. The scrape itself must succeed.
func gauges(tb testing.TB, c prometheus.Collector) map[string]float64 {
	tb.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		tb.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("the scrape failed: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			view := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "view" {
					view = l.GetValue()
				}
			}
			out[mf.GetName()+"{"+view+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}

func unix(t time.Time) float64 { return float64(t.Unix()) }

// TestFreshnessCollector scrapes the freshness gauges of the fresh
// project from a real redis-server.
func TestFreshnessCollector(t *testing.T) {
	t.Parallel()
	fp := newFreshProject(t)
	now := func() time.Time { return t0 }
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := newFreshnessCollector(fp.p, fp.store, now, log)

	want := map[string]float64{
		"larder_view_generation{user_profile}":                     1,
		"larder_view_as_of_timestamp_seconds{user_profile}":        unix(freshProfileAsOf),
		"larder_view_age_seconds{user_profile}":                    (11 * time.Hour).Seconds(),
		"larder_view_max_age_seconds{user_profile}":                (24 * time.Hour).Seconds(),
		"larder_view_last_success_timestamp_seconds{user_profile}": unix(freshProfileAsOf.Add(2 * time.Minute)),
		"larder_view_last_failure_timestamp_seconds{user_profile}": unix(t0.Add(-35*time.Hour + time.Minute)),
		// 03:00 in Paris, tomorrow and today.
		"larder_view_next_run_timestamp_seconds{user_profile}": unix(t0.Add(13 * time.Hour)),
		"larder_view_due_timestamp_seconds{user_profile}":      unix(freshProfileAsOf),

		"larder_view_generation{item_stats}":                     1,
		"larder_view_as_of_timestamp_seconds{item_stats}":        unix(freshStatsAsOf),
		"larder_view_age_seconds{item_stats}":                    (5 * time.Hour).Seconds(),
		"larder_view_max_age_seconds{item_stats}":                (2 * time.Hour).Seconds(),
		"larder_view_last_success_timestamp_seconds{item_stats}": unix(freshStatsAsOf.Add(30 * time.Second)),
		// The failure, not the later cancelled run.
		"larder_view_last_failure_timestamp_seconds{item_stats}": unix(t0.Add(-time.Hour + 30*time.Second)),

		// Never published, runs abandoned: no as-of, age nor success.
		"larder_view_generation{user_country}":                     0,
		"larder_view_max_age_seconds{user_country}":                0,
		"larder_view_last_failure_timestamp_seconds{user_country}": unix(t0.Add(-19 * time.Minute)),
		"larder_view_next_run_timestamp_seconds{user_country}":     unix(t0.Add(15 * time.Minute)),
		"larder_view_due_timestamp_seconds{user_country}":          unix(t0),

		// No run record: the success is the publish of the live generation.
		"larder_view_generation{user_legacy}":                     1,
		"larder_view_as_of_timestamp_seconds{user_legacy}":        unix(freshLegacyAt),
		"larder_view_age_seconds{user_legacy}":                    (26 * time.Hour).Seconds(),
		"larder_view_max_age_seconds{user_legacy}":                0,
		"larder_view_last_success_timestamp_seconds{user_legacy}": unix(freshLegacyAt.Add(time.Minute)),
	}
	check := func(t *testing.T, want map[string]float64) {
		t.Helper()
		got := gauges(t, c)
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if g, ok := got[k]; !ok || g != want[k] {
				t.Errorf("%s = %v (present %v), want %v", k, g, ok, want[k])
			}
		}
		for _, k := range slices.Sorted(maps.Keys(got)) {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected sample %s = %v", k, got[k])
			}
		}
	}

	t.Run("every view", func(t *testing.T) {
		check(t, want)
		problems, err := testutil.CollectAndLint(c)
		if err != nil || len(problems) > 0 {
			t.Errorf("lint: %v %v", problems, err)
		}
		const generation = `
# HELP larder_view_generation The id of the view's live generation; 0 when the view has never been published.
# TYPE larder_view_generation gauge
larder_view_generation{view="item_stats"} 1
larder_view_generation{view="user_country"} 0
larder_view_generation{view="user_legacy"} 1
larder_view_generation{view="user_profile"} 1
`
		if err := testutil.CollectAndCompare(c, strings.NewReader(generation), "larder_view_generation"); err != nil {
			t.Error(err)
		}
	})

	t.Run("a publish the store's cache has not heard of", func(t *testing.T) {
		// fp.store caches item_stats' generation 1; its stopped clock
		// never lets the cache expire, and no Watch runs.
		v := fp.p.View("item_stats")
		if g, err := fp.store.Live(t.Context(), v); err != nil || g.ID != 1 {
			t.Fatalf("Live = %d, %v; want the cached generation 1", g.ID, err)
		}
		other := store.New(fp.redis.Client(), "fresh", store.Options{Now: func() time.Time { return t0.Add(-time.Minute) }})
		w, err := other.BeginWith(t.Context(), v, larder.BeginOptions{ExpectedRows: -1, Run: larder.RunInfo{AsOf: t0.Add(-2 * time.Minute)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Put(t.Context(), larder.StringKey("A-1"), larder.Row{EventTime: t0, Values: []larder.Value{larder.Float64Value(2)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Publish(t.Context()); err != nil {
			t.Fatal(err)
		}
		if g, _ := fp.store.Live(t.Context(), v); g.ID != 1 {
			t.Fatalf("Live = %d, want the cached 1 (the test relies on it)", g.ID)
		}
		want := maps.Clone(want)
		want["larder_view_generation{item_stats}"] = 2
		want["larder_view_as_of_timestamp_seconds{item_stats}"] = unix(t0.Add(-2 * time.Minute))
		want["larder_view_age_seconds{item_stats}"] = 120
		// The published generation has no run record: its publish is the
		// newest success now.
		want["larder_view_last_success_timestamp_seconds{item_stats}"] = unix(t0.Add(-time.Minute))
		check(t, want)
	})

	t.Run("a view whose reads fail is left out", func(t *testing.T) {
		// A run list that is not a list: LRANGE answers WRONGTYPE.
		if err := fp.redis.Client().Set(t.Context(), "larder:fresh:runs:user_legacy", "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		got := gauges(t, c)
		for k := range got {
			if strings.HasSuffix(k, "{user_legacy}") {
				t.Errorf("%s = %v: the view whose reads fail sends nothing", k, got[k])
			}
		}
		if got["larder_view_generation{user_profile}"] != 1 || got["larder_view_generation{item_stats}"] != 2 {
			t.Errorf("the other views are missing: %v", got)
		}
		if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "view=user_legacy") || !strings.Contains(l, "WRONGTYPE") {
			t.Errorf("log:\n%s\nwant a warning naming the view and the error", l)
		}
	})

	t.Run("Redis down", func(t *testing.T) {
		fp.redis.Stop()
		defer fp.redis.Restart()
		got := gauges(t, c)
		if len(got) != 0 {
			t.Errorf("with Redis down, the scrape has samples: %v", got)
		}
		if l := logs.String(); !strings.Contains(l, "freshness gauges") {
			t.Errorf("log:\n%s\nwant a warning", l)
		}
	})
}

// TestFreshnessCollectorDescribe checks that the collector describes every
// gauge it sends, as a registry checks at registration.
func TestFreshnessCollectorDescribe(t *testing.T) {
	fp := newFreshProject(t)
	c := newFreshnessCollector(fp.p, fp.store, func() time.Time { return t0 }, nil)
	ch := make(chan *prometheus.Desc, 16)
	c.Describe(ch)
	close(ch)
	var names []string
	for d := range ch {
		names = append(names, d.String())
	}
	want := []string{"larder_view_generation", "larder_view_as_of_timestamp_seconds", "larder_view_age_seconds", "larder_view_max_age_seconds",
		"larder_view_last_success_timestamp_seconds", "larder_view_last_failure_timestamp_seconds", "larder_view_next_run_timestamp_seconds",
		"larder_view_due_timestamp_seconds"}
	if len(names) != len(want) {
		t.Fatalf("%d descriptions, want %d: %v", len(names), len(want), names)
	}
	for i, n := range want {
		if !strings.Contains(names[i], fmt.Sprintf("fqName: %q", n)) || !strings.Contains(names[i], "variableLabels: {view}") {
			t.Errorf("description %d = %s, want %s labelled by view", i, names[i], n)
		}
	}
}

// alertRules is a Prometheus rule file, decoded strictly.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// freshnessDocs returns the "Freshness and alerts" section of
// docs/operations.md.
func freshnessDocs(tb testing.TB) string {
	tb.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		tb.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Freshness and alerts\n")
	if !ok {
		tb.Fatal(`docs/operations.md has no section "## Freshness and alerts"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	return section
}

// TestDocumentedAlertRules decodes the alerting rules of docs/operations.md
// and checks that they name only the gauges the collector exports, and that
// the page lists every gauge and shows what larder views prints.
func TestDocumentedAlertRules(t *testing.T) {
	section := freshnessDocs(t)
	var blocks []string
	for rest := section; ; {
		var block string
		var ok bool
		if _, rest, ok = strings.Cut(rest, "```yaml\n"); !ok {
			break
		}
		if block, rest, ok = strings.Cut(rest, "```"); !ok {
			t.Fatal("a yaml block of the section does not end")
		}
		blocks = append(blocks, block)
	}
	if len(blocks) != 1 {
		t.Fatalf("the section has %d yaml blocks, want the rule file", len(blocks))
	}
	var rules alertRules
	if err := yaml.UnmarshalWithOptions([]byte(blocks[0]), &rules, yaml.Strict(), yaml.DisallowUnknownField()); err != nil {
		t.Fatalf("the rules do not decode: %v", err)
	}

	exported := map[string]bool{}
	ch := make(chan *prometheus.Desc, 16)
	newFreshnessCollector(&larder.Project{}, nil, nil, nil).Describe(ch)
	close(ch)
	nameRE := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range ch {
		exported[nameRE.FindStringSubmatch(d.String())[1]] = true
	}

	metricRE := regexp.MustCompile(`\blarder_[a-z_]+\b`)
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("rule %q: want alert, expr, a severity label, a summary and a description", r.Alert)
			}
			if d, err := time.ParseDuration(r.For); err != nil || d <= 0 {
				t.Errorf("rule %s: for %q is not a duration", r.Alert, r.For)
			}
			for _, m := range metricRE.FindAllString(r.Expr, -1) {
				if !exported[m] {
					t.Errorf("rule %s: %s is not a gauge the collector exports", r.Alert, m)
				}
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("rule %s: unbalanced parentheses in %q", r.Alert, r.Expr)
			}
			for _, a := range r.Annotations {
				if strings.Count(a, "{{") != strings.Count(a, "}}") {
					t.Errorf("rule %s: unbalanced template in %q", r.Alert, a)
				}
			}
		}
	}
	want := []string{"LarderViewOlderThanMaxAge", "LarderViewRunsFailing", "LarderScheduledRunMissing", "LarderFreshnessUnknown"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}

	// The table of gauges lists every gauge, once.
	listed := map[string]int{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(larder_view_[a-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		listed[m[1]]++
	}
	for m := range exported {
		if listed[m] != 1 {
			t.Errorf("the table of gauges lists %s %d times, want once", m, listed[m])
		}
	}
	if len(listed) != len(exported) {
		t.Errorf("the table of gauges lists %v, the collector exports %v", listed, exported)
	}

	// The example of larder views is what the freshness test prints.
	_, example, ok := strings.Cut(section, "$ larder views\n")
	example, _, _ = strings.Cut(example, "```")
	golden, err := os.ReadFile(filepath.Join("testdata", "views_fresh.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if !ok || example != string(golden) {
		t.Errorf("the example of larder views:\n%s\ndiffers from testdata/views_fresh.golden:\n%s", example, golden)
	}
}
