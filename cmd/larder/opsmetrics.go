package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/queue"
	"github.com/larder-dev/larder/store"
)

// opsMetrics are the counts of the batch side: schedule ticks, runs,
// sweeps and jobs, for `larder schedule`, `larder worker` and `larder serve`.
type opsMetrics struct {
	ticks       *prometheus.CounterVec
	tickDelay   *prometheus.HistogramVec
	runs        *prometheus.CounterVec
	runDuration *prometheus.HistogramVec
	cleaned     *prometheus.CounterVec
	sweepErrors prometheus.Counter
	jobs        *prometheus.CounterVec
}

// newOpsMetrics registers the batch side's metrics with reg; a nil reg
// gives metrics that count but are not exported.
func newOpsMetrics(reg prometheus.Registerer) (*opsMetrics, error) {
	m := &opsMetrics{
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_schedule_ticks_total",
			Help: "Schedule ticks this scheduler claimed, by view and outcome: started (it ran or queued the tick) or skipped (the view's previous run was still going).",
		}, []string{"view", "outcome"}),
		tickDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "larder_schedule_tick_delay_seconds",
			Help:    "Time from a schedule tick's instant to the start (or queueing) of its run, by view.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"view"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_runs_total",
			Help: "Materialization runs that ended in this process, by view, state (ok, failed, cancelled, skipped) and trigger.",
		}, []string{"view", "state", "trigger"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "larder_run_duration_seconds",
			Help:    "Duration of the materialization runs that published, by view.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 14),
		}, []string{"view"}),
		cleaned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_cleanup_generations_total",
			Help: "Generations deleted by the sweep and by larder cleanup in this process, by reason: expired (replaced, grace period over) or abandoned (its run was killed).",
		}, []string{"reason"}),
		sweepErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "larder_cleanup_errors_total",
			Help: "Sweeps that failed for at least one view; the next sweep retries.",
		}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_jobs_total",
			Help: "Job events seen by this process, by kind and event: submitted, started, succeeded, failed, retried, reclaimed (its worker died), cancelled.",
		}, []string{"kind", "event"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.ticks, m.tickDelay, m.runs, m.runDuration, m.cleaned, m.sweepErrors, m.jobs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, reason := range store.CleanedReasons {
		m.cleaned.WithLabelValues(reason)
	}
	return m, nil
}

// ran counts a run that ended.
func (m *opsMetrics) ran(r larder.Run, _ materializer.Report) {
	trigger := string(r.Trigger)
	if trigger == "" {
		trigger = "-"
	}
	m.runs.WithLabelValues(r.View, string(r.Result()), trigger).Inc()
	if r.Result() == larder.RunOK {
		m.runDuration.WithLabelValues(r.View).Observe(r.Duration.Seconds())
	}
}

// claimed counts a tick claim.
func (m *opsMetrics) claimed(v *larder.View, outcome larder.TickOutcome, delay time.Duration) {
	m.ticks.WithLabelValues(v.Name, string(outcome)).Inc()
	if outcome == larder.TickStarted {
		m.tickDelay.WithLabelValues(v.Name).Observe(max(0, delay.Seconds()))
	}
}

// swept counts what a sweep deleted.
func (m *opsMetrics) swept(rep store.CleanupReport, err error) {
	for _, c := range rep.Cleaned {
		m.cleaned.WithLabelValues(c.Reason).Inc()
	}
	if err != nil {
		m.sweepErrors.Inc()
	}
}

// job counts a job event.
func (m *opsMetrics) job(kind larder.JobKind, ev queue.Event) {
	m.jobs.WithLabelValues(string(kind), string(ev)).Inc()
}

// metricsEndpoint serves a registry's metrics on addr at /metrics.
type metricsEndpoint struct {
	addr string
	srv  *http.Server
}

// serveMetrics starts serving reg's metrics (with the Go and process
// collectors) on addr. The endpoint's address says where, for a port 0.
func (a *app) serveMetrics(addr string, reg *prometheus.Registry) (*metricsEndpoint, error) {
	// Its callers (ingest, schedule, worker) read --metrics-listen only,
	// not server.metrics_listen, which is serve's.
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w (pass another --metrics-listen)", addr, err)
	}
	return a.serveMetricsOn(lis, reg), nil
}

// listenMetrics listens on addr for /metrics.
func (a *app) listenMetrics(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w (pass another --metrics-listen, or set server.metrics_listen)", addr, err)
	}
	return lis, nil
}

// serveMetricsOn serves reg, with the Go and process collectors, at /metrics
// on lis, which it takes over.
func (a *app) serveMetricsOn(lis net.Listener, reg *prometheus.Registry) *metricsEndpoint {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	e := &metricsEndpoint{addr: lis.Addr().String(), srv: a.httpServer(mux)}
	go func() {
		if err := e.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("serving metrics stopped", "err", err)
		}
	}()
	return e
}

// close stops the endpoint.
func (e *metricsEndpoint) close() {
	if e == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = e.srv.Shutdown(ctx)
}

// startOpsMetrics returns the batch side's metrics of a long-running
// command and, when addr is not empty, serves them with the freshness
// gauges of p's views at http://addr/metrics. stop stops the endpoint.
func (a *app) startOpsMetrics(addr string, p *larder.Project, st *store.Store) (m *opsMetrics, stop func(), err error) {
	reg := prometheus.NewRegistry()
	if m, err = newOpsMetrics(reg); err != nil {
		return nil, nil, err
	}
	if addr == "" {
		return m, func() {}, nil
	}
	reg.MustRegister(newFreshnessCollector(p, st, a.now, a.logger))
	e, err := a.serveMetrics(addr, reg)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(a.stderr, "metrics at http://%s/metrics\n", e.addr)
	return m, e.close, nil
}
