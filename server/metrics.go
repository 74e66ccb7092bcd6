package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// LatencyBuckets are the upper bounds, in seconds, of the request latency
// histogram: from 50µs (an empty call on loopback is about 200µs) to 1s.
var LatencyBuckets = []float64{
	50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3,
	100e-3, 250e-3, 500e-3, 1,
}

// Metrics are the server's Prometheus metrics. Make them with NewMetrics,
// pass them to New in Config.Metrics, and serve the registry they were
// registered with. A nil *Metrics records nothing.
type Metrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	degraded    *prometheus.CounterVec
	reloads     *prometheus.CounterVec
	modelInfo   *prometheus.GaugeVec
	modelLoaded *prometheus.GaugeVec
	storeErrors *prometheus.CounterVec
	rowsRead    *prometheus.CounterVec
	lost        *prometheus.CounterVec
	// rowsByView holds each view's rowsRead series, by view name.
	rowsByView sync.Map
	shed       *prometheus.CounterVec
	configs    *prometheus.CounterVec
	pushed     *prometheus.CounterVec

	// methods holds the pre-resolved series of every known unary method, by
	// full method name. It is not written after NewMetrics, so the
	// interceptor reads it without a lock.
	methods map[string]*methodMetrics
}

// methodMetrics are one method's series. A request counter is resolved the
// first time its code occurs, then reused.
type methodMetrics struct {
	name    string
	latency prometheus.Observer
	codes   [numCodes]atomic.Pointer[prometheus.Counter]
	// shed counts the method's requests shed; nil for a method never shed.
	shed prometheus.Counter
}

// numCodes is the number of gRPC status codes, OK to Unauthenticated.
const numCodes = int(codes.Unauthenticated) + 1

// NewMetrics creates the server's metrics and registers them with reg.
// It returns an error if one of them is already registered there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_grpc_requests_total",
			Help: "Unary gRPC requests handled, by method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "larder_grpc_request_duration_seconds",
			Help:    "Time to handle a unary gRPC request, from its arrival at the server to its response, by method.",
			Buckets: LatencyBuckets,
		}, []string{"method"}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_rank_degraded_total",
			Help: "Rank responses served without the model (degraded mode), by ranker and reason: model_error, model_timeout or model_unavailable.",
		}, []string{"ranker", "reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_model_reloads_total",
			Help: "Attempts to replace a ranker's model, by ranker and result: ok (swapped in) or refused (the current model kept serving).",
		}, []string{"ranker", "result"}),
		modelInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "larder_model_info",
			Help: "The version of the model each ranker serves with: 1 for the current version, no series for others.",
		}, []string{"ranker", "version"}),
		modelLoaded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "larder_model_loaded_timestamp_seconds",
			Help: "When each ranker's current model was loaded or swapped in, in seconds since the Unix epoch.",
		}, []string{"ranker"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_store_read_errors_total",
			Help: "Failed reads of the online store, by the gRPC status code the error maps to.",
		}, []string{"code"}),
		rowsRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_store_rows_read_total",
			Help: "Keys looked up in the online store by the serving methods, by view and result: found, or not_found (no row for the key in the live generation). A rising not_found share of a view is an unknown entity, or rows the store lost.",
		}, []string{"view", "result"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_store_data_lost_total",
			Help: "Reads refused because the view's live generation is gone from Redis (a restart without persistence, a flush, an eviction), by view; each is answered UNAVAILABLE until the view is materialized again.",
		}, []string{"view"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_grpc_shed_total",
			Help: "FeatureService requests refused at once because server.max_concurrent_requests were in progress, by method.",
		}, []string{"method"}),
		configs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_config_reloads_total",
			Help: "Attempts to apply an edited larder.yaml to the running server, by result: ok (applied) or refused (the previous configuration kept serving).",
		}, []string{"result"}),
		pushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "larder_push_rows_total",
			Help: "Rows pushed through IngestService.Push, by view and result: written (now the entity's stored row), older (left out, the stored row being newer) or invalid (refused, with a reason in the response).",
		}, []string{"view", "result"}),
		methods: map[string]*methodMetrics{},
	}
	m.configs.WithLabelValues("ok")
	m.configs.WithLabelValues("refused")
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.degraded, m.reloads, m.modelInfo, m.modelLoaded, m.storeErrors, m.rowsRead, m.lost, m.shed, m.configs, m.pushed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	for _, desc := range []grpc.ServiceDesc{larderv1.FeatureService_ServiceDesc, larderv1.IngestService_ServiceDesc, larderv1.AdminService_ServiceDesc, larderv1.JobService_ServiceDesc, healthpb.Health_ServiceDesc} {
		for _, md := range desc.Methods {
			name := "/" + desc.ServiceName + "/" + md.MethodName
			m.methods[name] = m.newMethod(name)
			if sheds(name) {
				m.methods[name].shed = m.shed.WithLabelValues(name)
			}
		}
	}
	return m, nil
}

func (m *Metrics) newMethod(name string) *methodMetrics {
	mm := &methodMetrics{name: name, latency: m.latency.WithLabelValues(name)}
	ok := m.requests.WithLabelValues(name, codes.OK.String())
	mm.codes[codes.OK].Store(&ok)
	return mm
}

// wrap returns an interceptor that counts and times every unary request
// that next handles. It wraps next rather than joining a chain with it, since
// a chain of interceptors allocates per request. A request costs two clock
// reads, a map read and two atomic updates: the series are resolved ahead of
// time.
func (m *Metrics) wrap(next grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := next(ctx, req, info, handler)
		m.observe(info.FullMethod, time.Since(start), err)
		return resp, err
	}
}

// observe records one request of method that took elapsed and returned err.
func (m *Metrics) observe(method string, elapsed time.Duration, err error) {
	mm := m.methods[method]
	if mm == nil {
		// A method not known at start-up (none is served today): resolve
		// its series per call.
		m.latency.WithLabelValues(method).Observe(elapsed.Seconds())
		m.requests.WithLabelValues(method, status.Code(err).String()).Inc()
		return
	}
	mm.latency.Observe(elapsed.Seconds())
	mm.counter(m, status.Code(err)).Inc()
}

// counter returns the request counter of code, resolving it on first use.
func (mm *methodMetrics) counter(m *Metrics, code codes.Code) prometheus.Counter {
	if int(code) >= numCodes {
		return m.requests.WithLabelValues(mm.name, code.String())
	}
	if c := mm.codes[code].Load(); c != nil {
		return *c
	}
	c := m.requests.WithLabelValues(mm.name, code.String())
	mm.codes[code].Store(&c)
	return c
}

// initRanker creates a ranker's series at start-up, so that they exist at
// zero before the first event and rates over them are defined.
func (m *Metrics) initRanker(ranker, version string, loadedAt time.Time) {
	if m == nil {
		return
	}
	for _, reason := range []string{reasonModelError, reasonModelTimeout, reasonModelUnavailable} {
		m.degraded.WithLabelValues(ranker, reason)
	}
	m.reloads.WithLabelValues(ranker, "ok")
	m.reloads.WithLabelValues(ranker, "refused")
	m.modelInfo.WithLabelValues(ranker, version).Set(1)
	m.modelLoaded.WithLabelValues(ranker).Set(float64(loadedAt.UnixNano()) / 1e9)
}

// requestShed counts a request of method refused by load shedding.
func (m *Metrics) requestShed(method string) {
	if m == nil {
		return
	}
	if mm := m.methods[method]; mm != nil && mm.shed != nil {
		mm.shed.Inc()
		return
	}
	m.shed.WithLabelValues(method).Inc()
}

// rowsPushed counts the rows of one Push request of view by result.
func (m *Metrics) rowsPushed(view string, written, older, invalid int) {
	if m == nil {
		return
	}
	for _, c := range [...]struct {
		result string
		n      int
	}{{"written", written}, {"older", older}, {"invalid", invalid}} {
		if c.n > 0 {
			m.pushed.WithLabelValues(view, c.result).Add(float64(c.n))
		}
	}
}

func (m *Metrics) rankDegraded(ranker, reason string) {
	if m != nil {
		m.degraded.WithLabelValues(ranker, reason).Inc()
	}
}

func (m *Metrics) modelSwapped(ranker, old, current string, at time.Time) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(ranker, "ok").Inc()
	if old != current {
		m.modelInfo.DeleteLabelValues(ranker, old)
	}
	m.modelInfo.WithLabelValues(ranker, current).Set(1)
	m.modelLoaded.WithLabelValues(ranker).Set(float64(at.UnixNano()) / 1e9)
}

// rankerRemoved drops the series of a ranker a new configuration removed.
func (m *Metrics) rankerRemoved(ranker, version string) {
	if m != nil {
		m.modelInfo.DeleteLabelValues(ranker, version)
		m.modelLoaded.DeleteLabelValues(ranker)
	}
}

// CountConfigReload counts an attempt to apply an edited larder.yaml:
// ApplyProject counts its own; its caller counts the files it refused
// before (a file that does not load, for one).
func (m *Metrics) CountConfigReload(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.configs.WithLabelValues("ok").Inc()
	} else {
		m.configs.WithLabelValues("refused").Inc()
	}
}

func (m *Metrics) modelRefused(ranker string) {
	if m != nil {
		m.reloads.WithLabelValues(ranker, "refused").Inc()
	}
}

// countingStore is the Service's store when metrics are on: it counts the
// reads that fail, the generations found lost, and the keys found and not
// found by view.
type countingStore struct {
	larder.FeatureStore
	m *Metrics
}

func (c countingStore) Read(ctx context.Context, lookups []*larder.Lookup) error {
	err := c.FeatureStore.Read(ctx, lookups)
	if err != nil {
		c.m.storeErrors.WithLabelValues(status.Code(toStatus(err)).String()).Inc()
		var lost interface{ LostView() string }
		if errors.As(err, &lost) {
			c.m.lost.WithLabelValues(lost.LostView()).Inc()
		}
		return err
	}
	for _, l := range lookups {
		found := 0
		for _, f := range l.Found {
			if f {
				found++
			}
		}
		counters := c.m.viewRows(l.View.Name)
		if found > 0 {
			counters[0].Add(float64(found))
		}
		if missing := len(l.Found) - found; missing > 0 {
			counters[1].Add(float64(missing))
		}
	}
	return nil
}

// viewRows returns the found and not_found series of view's keys read,
// resolved once per view.
func (m *Metrics) viewRows(view string) *[2]prometheus.Counter {
	if c, ok := m.rowsByView.Load(view); ok {
		return c.(*[2]prometheus.Counter)
	}
	c := &[2]prometheus.Counter{m.rowsRead.WithLabelValues(view, "found"), m.rowsRead.WithLabelValues(view, "not_found")}
	got, _ := m.rowsByView.LoadOrStore(view, c)
	return got.(*[2]prometheus.Counter)
}

// Live counts a failed lookup of a live generation; a view never published
// is not a failure of the store.
func (c countingStore) Live(ctx context.Context, v *larder.View) (larder.Generation, error) {
	g, err := c.FeatureStore.Live(ctx, v)
	if err != nil && !errorsIsNoGeneration(err) {
		c.m.storeErrors.WithLabelValues(status.Code(toStatus(err)).String()).Inc()
	}
	return g, err
}
