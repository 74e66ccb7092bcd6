package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
)

// freshnessScrapeTimeout bounds the Redis reads of one scrape of the
// freshness gauges, for every view together.
const freshnessScrapeTimeout = 2 * time.Second

// freshnessCollector exports the freshness of every view as gauges read at
// scrape time: the live generation and its as-of and age (from the store,
// never from a cache), the last success and failure (from the run records)
// and the next and latest due runs (from the schedule).
type freshnessCollector struct {
	f   *freshness
	log *slog.Logger

	generation, asOf, age, maxAge, lastSuccess, lastFailure, nextRun, due *prometheus.Desc
}

var _ prometheus.Collector = (*freshnessCollector)(nil)

// newFreshnessCollector returns the collector of the freshness gauges of
// p's views, each labelled with view, read from st at every scrape with
// now as the clock. A scrape never fails because of it: a view whose reads
// fail is logged at level WARN and left out of that scrape, and reads that
// take longer than two seconds in all are given up. log may be nil.
func newFreshnessCollector(p *larder.Project, st *store.Store, now func() time.Time, log *slog.Logger) prometheus.Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"view"}, nil)
	}
	return &freshnessCollector{
		f:   newFreshness(p, st, now),
		log: log,
		generation: desc("larder_view_generation",
			"The id of the view's live generation; 0 when the view has never been published."),
		asOf: desc("larder_view_as_of_timestamp_seconds",
			"The instant the live generation was computed as of (its publish, for a generation written without one), in seconds since the Unix epoch. Absent when the view has no live generation."),
		age: desc("larder_view_age_seconds",
			"How old the live generation's data are: the time of the scrape minus larder_view_as_of_timestamp_seconds. Absent when the view has no live generation."),
		maxAge: desc("larder_view_max_age_seconds",
			"The view's max_age, after which reads report its values stale; 0 when they never go stale."),
		lastSuccess: desc("larder_view_last_success_timestamp_seconds",
			"When the view's last successful run ended, in seconds since the Unix epoch. Absent when none is known."),
		lastFailure: desc("larder_view_last_failure_timestamp_seconds",
			"When the view's last failed or abandoned run ended, in seconds since the Unix epoch. Absent when none is recorded."),
		nextRun: desc("larder_view_next_run_timestamp_seconds",
			"When the view's schedule runs it next, after the time of the scrape, in seconds since the Unix epoch. Scheduled views only."),
		due: desc("larder_view_due_timestamp_seconds",
			"When the view's latest scheduled run was due: its schedule's newest tick at or before the time of the scrape, in seconds since the Unix epoch. Scheduled views only."),
	}
}

// Describe sends the descriptions of the gauges.
func (c *freshnessCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.generation, c.asOf, c.age, c.maxAge, c.lastSuccess, c.lastFailure, c.nextRun, c.due} {
		ch <- d
	}
}

// Collect reads every view and sends its gauges. The reads of a view come
// first, so that a view whose reads fail sends nothing rather than part of
// its gauges.
func (c *freshnessCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), freshnessScrapeTimeout)
	defer cancel()
	now := c.f.now()
	for i, v := range c.f.p.Views {
		ms, err := c.view(ctx, v, now)
		switch {
		case err == nil:
			for _, m := range ms {
				ch <- m
			}
		case ctx.Err() != nil:
			c.log.Warn("freshness gauges: reading the store took too long; views left out of this scrape",
				"timeout", freshnessScrapeTimeout, "views", len(c.f.p.Views)-i, "err", err)
			return
		default:
			c.log.Warn("freshness gauges: view left out of this scrape", "view", v.Name, "err", err)
		}
	}
}

// view returns the gauges of v at now.
func (c *freshnessCollector) view(ctx context.Context, v *larder.View, now time.Time) ([]prometheus.Metric, error) {
	live, err := c.f.st.LiveFresh(ctx, v)
	if err != nil && !errors.Is(err, larder.ErrNoGeneration) {
		return nil, err
	}
	f, err := c.f.view(ctx, v, live, now)
	if err != nil {
		return nil, err
	}
	ms := make([]prometheus.Metric, 0, 8)
	gauge := func(d *prometheus.Desc, value float64) {
		ms = append(ms, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, value, v.Name))
	}
	gauge(c.generation, float64(live.ID))
	if live.ID != 0 {
		at := live.AsOf
		if at.IsZero() {
			at = live.PublishedAt
		}
		gauge(c.asOf, unixSeconds(at))
		gauge(c.age, now.Sub(at).Seconds())
	}
	gauge(c.maxAge, v.MaxAge.Seconds())
	if f.LastSuccess != nil {
		gauge(c.lastSuccess, unixSeconds(finishedAt(f.LastSuccess)))
	}
	if f.LastFailure != nil {
		gauge(c.lastFailure, unixSeconds(finishedAt(f.LastFailure)))
	}
	if !f.NextRun.IsZero() {
		gauge(c.nextRun, unixSeconds(f.NextRun))
	}
	if due, ok := c.f.due(v, now); ok {
		gauge(c.due, unixSeconds(due))
	}
	return ms, nil
}

// unixSeconds returns t in seconds since the Unix epoch, to the
// microsecond.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }
