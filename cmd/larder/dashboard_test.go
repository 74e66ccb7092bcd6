package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/server"
)

// dashboardFile is the Grafana dashboard shipped for larder's metrics.
const dashboardFile = "../../deploy/grafana/larder.json"

// exportedMetric is a metric larder registers: its label names, and whether
// it is a histogram (queried through _bucket, _sum and _count).
type exportedMetric struct {
	labels    []string
	histogram bool
}

// recordingRegisterer registers collectors with a registry, as serve,
// schedule, worker and ingest do, and keeps them to be described.
type recordingRegisterer struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recordingRegisterer) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// descName and descLabels read a Desc's name and variable labels from its
// String, the only place the client library shows them.
var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// exportedMetrics builds every metric larder's processes register (the
// server's, the freshness gauges, the runs, schedules, jobs and cleanup,
// and ingest's) in-process and returns them by name.
func exportedMetrics(tb testing.TB) map[string]exportedMetric {
	tb.Helper()
	r := &recordingRegisterer{reg: prometheus.NewRegistry()}
	if _, err := server.NewMetrics(r); err != nil {
		tb.Fatal(err)
	}
	if _, err := newOpsMetrics(r); err != nil {
		tb.Fatal(err)
	}
	r.MustRegister(newFreshnessCollector(&larder.Project{}, nil, nil, nil))
	a := &app{stderr: &strings.Builder{}, now: time.Now}
	if _, err := a.startIngest(tb.Context(), &backend{}, nil, r, ingestSettings{name: "dashboard"}); err != nil {
		tb.Fatal(err)
	}
	metrics := map[string]exportedMetric{}
	for _, c := range r.collectors {
		_, histogram := c.(*prometheus.HistogramVec)
		descs := make(chan *prometheus.Desc)
		go func() {
			c.Describe(descs)
			close(descs)
		}()
		for d := range descs {
			s := d.String()
			name := descName.FindStringSubmatch(s)
			labels := descLabels.FindStringSubmatch(s)
			if name == nil || labels == nil {
				tb.Fatalf("cannot read the name and labels of %s", s)
			}
			m := exportedMetric{histogram: histogram}
			if labels[1] != "" {
				m.labels = strings.Split(labels[1], ",")
			}
			metrics[name[1]] = m
		}
	}
	if len(metrics) < 30 {
		tb.Fatalf("found %d metrics registered, want every one larder exports: %v", len(metrics), metrics)
	}
	return metrics
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title      string           `json:"title"`
	UID        string           `json:"uid"`
	Panels     []dashboardPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type dashboardPanel struct {
	ID      int              `json:"id"`
	Type    string           `json:"type"`
	Title   string           `json:"title"`
	Panels  []dashboardPanel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// query is one PromQL expression of the dashboard and where it is.
type query struct{ where, expr string }

// queries returns every query of the dashboard: its panels' (rows' too)
// and its variables'.
func (d *dashboard) queries(tb testing.TB) []query {
	tb.Helper()
	var qs []query
	ids := map[int]string{}
	var walk func(ps []dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if other, ok := ids[p.ID]; ok {
				tb.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			walk(p.Panels)
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if len(p.Targets) == 0 {
				tb.Errorf("panel %q has no query", p.Title)
			}
			for _, t := range p.Targets {
				qs = append(qs, query{where: fmt.Sprintf("panel %q", p.Title), expr: t.Expr})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		switch q := v.Query.(type) {
		case string:
			qs = append(qs, query{where: "variable " + v.Name, expr: q})
		case map[string]any:
			if s, ok := q["query"].(string); ok {
				qs = append(qs, query{where: "variable " + v.Name, expr: s})
			}
		}
	}
	return qs
}

var (
	// metricRef is a larder metric named in a query, with its selector.
	metricRef = regexp.MustCompile(`\b(larder_[a-zA-Z0-9_]+)(\{[^}]*\})?`)
	// matcherLabel is the label of one matcher of a selector.
	matcherLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	// grouping is a by, without, on or ignoring clause, or label_values'.
	grouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)|label_values\([^,]+,\s*([a-zA-Z_][a-zA-Z0-9_]*)\)`)
)

// scrapeLabels are the labels Prometheus adds to every series it scrapes.
var scrapeLabels = []string{"instance", "job"}

// TestDashboardMetrics checks deploy/grafana/larder.json against the
// metrics larder registers: every metric a query names is exported (a
// histogram through _bucket, _sum or _count), every label it selects or
// groups by is one of the metric's (or instance, job, le), and every
// metric exported is on the dashboard, or listed here as left off.
func TestDashboardMetrics(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard has no uid or title")
	}
	exported := exportedMetrics(t)
	// leftOff are the metrics exported that the dashboard does not show,
	// and why.
	leftOff := map[string]string{
		"larder_view_as_of_timestamp_seconds":    "the age shown is computed from it",
		"larder_view_next_run_timestamp_seconds": "a time to come, for alerts rather than a graph",
	}
	used := map[string]bool{}
	qs := d.queries(t)
	if len(qs) < 20 {
		t.Errorf("found %d queries in the dashboard, want its panels' and variables'", len(qs))
	}
	for _, q := range qs {
		for _, pair := range []string{"()", "{}", "[]"} {
			if strings.Count(q.expr, pair[:1]) != strings.Count(q.expr, pair[1:]) {
				t.Errorf("%s: unbalanced %s: %s", q.where, pair, q.expr)
			}
		}
		labels := slices.Clone(scrapeLabels)
		for _, m := range metricRef.FindAllStringSubmatch(q.expr, -1) {
			name, selector := m[1], m[2]
			base := name
			metric, ok := exported[name]
			if !ok {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, found := strings.CutSuffix(name, suffix); found {
						base = b
						break
					}
				}
				metric, ok = exported[base]
				if !ok || !metric.histogram || base == name {
					t.Errorf("%s: %s is not a metric larder exports: %s", q.where, name, q.expr)
					continue
				}
			}
			used[base] = true
			own := append(slices.Clone(scrapeLabels), metric.labels...)
			if name == base+"_bucket" {
				own = append(own, "le")
			}
			for _, l := range matcherLabel.FindAllStringSubmatch(selector, -1) {
				if !slices.Contains(own, l[1]) {
					t.Errorf("%s: %s has no label %s (it has %v): %s", q.where, name, l[1], own, q.expr)
				}
			}
			labels = append(labels, own...)
		}
		for _, g := range grouping.FindAllStringSubmatch(q.expr, -1) {
			for _, l := range strings.Split(g[1]+","+g[2], ",") {
				if l = strings.TrimSpace(l); l != "" && !slices.Contains(labels, l) {
					t.Errorf("%s: groups by %s, a label none of its metrics has: %s", q.where, l, q.expr)
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(exported)) {
		_, off := leftOff[name]
		switch {
		case !used[name] && !off:
			t.Errorf("%s is exported but not on the dashboard: add a panel, or list it in leftOff with the reason", name)
		case used[name] && off:
			t.Errorf("%s is on the dashboard and listed in leftOff", name)
		}
	}
}
