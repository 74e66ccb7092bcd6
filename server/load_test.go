package server_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// gateStore is a FeatureStore whose Read, once it has the store's answer,
// signals on entered and waits until gate is closed or its request ends:
// a store slow on demand, for filling a server's slots.
type gateStore struct {
	larder.FeatureStore
	entered chan struct{}
	gate    chan struct{}
}

func (s *gateStore) Read(ctx context.Context, lookups []*larder.Lookup) error {
	err := s.FeatureStore.Read(ctx, lookups)
	s.entered <- struct{}{}
	select {
	case <-s.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// TestLoadShedding fills the slots of a server of max_concurrent_requests 2
// with requests held in the store: one more FeatureService request is
// refused at once with RESOURCE_EXHAUSTED and counted, while health checks
// and the AdminService answer; once the held requests end, requests are
// served again.
func TestLoadShedding(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	p := testProject(t, func(p *larder.Project) {
		p.Server.MaxConcurrentRequests = 2
		// The held requests wait for the gate, not for a deadline.
		p.Server.DefaultDeadline, p.Server.MaxDeadline = time.Hour, time.Hour
	})
	reg := prometheus.NewRegistry()
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	gs := &gateStore{FeatureStore: f.store, entered: make(chan struct{}, 2), gate: make(chan struct{})}
	srv := serve(t, server.Config{Project: p, Store: gs, Models: map[string]server.Model{"reco": f.model}, Metrics: metrics}, 5*time.Second)
	ctx := t.Context()
	get := &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_profile:age"}}

	held := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := srv.client.GetFeatures(ctx, get)
			held <- err
		}()
	}
	for range 2 {
		select {
		case <-gs.entered:
		case err := <-held:
			t.Fatalf("a request to hold ended: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("two requests are not in the store after 30s")
		}
	}

	// Both slots are taken: the next requests are shed, whatever they ask.
	_, err = srv.client.GetFeatures(ctx, get)
	wantCode(t, err, codes.ResourceExhausted, "server busy: 2 requests are in progress", "server.max_concurrent_requests", "retry later, with backoff")
	_, err = srv.client.Rank(ctx, rankRequest("i1"))
	wantCode(t, err, codes.ResourceExhausted, "server busy")
	_, err = srv.client.ListViews(ctx, &larderv1.ListViewsRequest{})
	wantCode(t, err, codes.ResourceExhausted, "server busy")
	// Even a request that is wrong is shed before it is looked at.
	_, err = srv.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{})
	wantCode(t, err, codes.ResourceExhausted, "server busy")

	// Health checks and the operators' services are not.
	h, err := healthpb.NewHealthClient(srv.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: larderv1.FeatureService_ServiceDesc.ServiceName})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check of a busy server = %v, %v; want SERVING", h, err)
	}
	if _, err := larderv1.NewAdminServiceClient(srv.conn).ListModels(ctx, &larderv1.ListModelsRequest{}); err != nil {
		t.Errorf("ListModels on a busy server: %v", err)
	}

	shed := func(method string) float64 {
		return testutil.ToFloat64(metricVec(t, reg, "larder_grpc_shed_total", "method", "/larder.v1.FeatureService/"+method))
	}
	if g, r, l := shed("GetFeatures"), shed("Rank"), shed("ListViews"); g != 2 || r != 1 || l != 1 {
		t.Errorf("larder_grpc_shed_total: GetFeatures %v, Rank %v, ListViews %v; want 2, 1, 1", g, r, l)
	}
	if n := testutil.ToFloat64(metricVec(t, reg, "larder_grpc_requests_total", "method", "/larder.v1.FeatureService/GetFeatures", "code", "ResourceExhausted")); n != 2 {
		t.Errorf("larder_grpc_requests_total{GetFeatures, ResourceExhausted} = %v, want 2", n)
	}

	close(gs.gate)
	for range 2 {
		if err := <-held; err != nil {
			t.Errorf("a held request: %v", err)
		}
	}
	// The slots are free again.
	gs.entered = make(chan struct{}, 8)
	for range 3 {
		if _, err := srv.client.GetFeatures(ctx, get); err != nil {
			t.Fatalf("GetFeatures once the slots are free: %v", err)
		}
	}
}

// metricVec returns the collector of the series of name with the given
// label pairs in reg, failing when there is none.
func metricVec(tb testing.TB, reg *prometheus.Registry, name string, labels ...string) prometheus.Collector {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return constCollector{m.GetCounter().GetValue()}
		}
	}
	tb.Fatalf("no series %s%v", name, labels)
	return nil
}

// constCollector is one counter's value, for testutil.ToFloat64.
type constCollector struct{ v float64 }

func (c constCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- prometheus.NewDesc("v", "v", nil, nil)
}

func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("v", "v", nil, nil), prometheus.CounterValue, c.v)
}

// TestLoadDeadline pauses Redis (SIGSTOP) under a server: a request whose
// client set no deadline ends with DEADLINE_EXCEEDED at the server's
// default deadline, one whose client set a later deadline than
// max_deadline at max_deadline, and once Redis answers again, so does the
// server.
func TestLoadDeadline(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	p := testProject(t, func(p *larder.Project) {
		p.Server.DefaultDeadline, p.Server.MaxDeadline = 300*time.Millisecond, 600*time.Millisecond
	})
	srv := serve(t, server.Config{Project: p, Store: f.store, Models: map[string]server.Model{"reco": f.model}}, 5*time.Second)
	// ListViews answers from the server's cache of live generations once
	// they are read: a server that has not read them yet reads Redis.
	cold := serve(t, server.Config{Project: p, Store: store.New(f.redis.Client(), p.Name, store.Options{}),
		Models: map[string]server.Model{"reco": f.model}}, 5*time.Second)
	bg := context.Background() // no deadline
	get := &larderv1.GetFeaturesRequest{Keys: intKeys(1, 2), Features: []string{"user_profile:*", "user_stats:clicks"}}
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"GetFeatures", func(ctx context.Context) error { _, err := srv.client.GetFeatures(ctx, get); return err }},
		{"Rank", func(ctx context.Context) error { _, err := srv.client.Rank(ctx, rankRequest("i1", "i2")); return err }},
	}
	for _, c := range calls {
		if err := c.call(bg); err != nil {
			t.Fatalf("%s before the pause: %v", c.name, err)
		}
	}
	calls = append(calls, struct {
		name string
		call func(context.Context) error
	}{"ListViews", func(ctx context.Context) error {
		_, err := cold.client.ListViews(ctx, &larderv1.ListViewsRequest{})
		return err
	}})

	f.redis.Pause()
	t.Cleanup(f.redis.Resume)
	// within runs call and fails the test when it has not returned after
	// a generous bound: the server's deadline is far shorter.
	within := func(t *testing.T, call func(context.Context) error, ctx context.Context) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- call(ctx) }()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("no answer within 20s from a server whose deadline is 600ms at most")
			return nil
		}
	}
	for _, c := range calls {
		t.Run(c.name+" without a deadline", func(t *testing.T) {
			err := within(t, c.call, bg)
			wantCode(t, err, codes.DeadlineExceeded, "the server's deadline passed (server.default_deadline, 300ms, for a request that sets none)")
		})
		t.Run(c.name+" with a deadline past max_deadline", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(bg, time.Hour)
			defer cancel()
			err := within(t, c.call, ctx)
			wantCode(t, err, codes.DeadlineExceeded, "the server's deadline passed (server.max_deadline, 600ms, shorter than the request's own)")
		})
	}
	t.Run("a client's own deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
		defer cancel()
		err := within(t, calls[0].call, ctx)
		wantCode(t, err, codes.DeadlineExceeded)
		if strings.Contains(err.Error(), "server's deadline") {
			t.Errorf("a request ended by its own deadline blames the server's: %v", err)
		}
	})
	// Health checks do not wait on Redis.
	if _, err := healthpb.NewHealthClient(srv.conn).Check(bg, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check while Redis is paused: %v", err)
	}

	f.redis.Resume()
	for _, c := range calls {
		// The pool may hand out a connection broken by the pause once.
		var err error
		for range 3 {
			if err = c.call(bg); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("%s after Redis resumed: %v", c.name, err)
		}
	}
}

// TestLoadAmplification sends the request of issue 10, 1000 keys × 400
// copies of a view:* reference, ten at once: of user_profile (7 features)
// it is folded to 7 columns and answered; of a view of 120 features, 1000 ×
// 120 values is past server.max_request_cells, and it is refused without a
// read. The bytes the process allocates for the ten are bounded: before
// the limits, each allocated over a gigabyte.
func TestLoadAmplification(t *testing.T) {
	wide := &larder.View{Name: "user_wide", Kind: larder.KindLatest, Entity: "user", Source: "events"}
	for i := range 120 {
		wide.Features = append(wide.Features, larder.Feature{Name: fmt.Sprintf("f%03d", i), Type: larder.TypeFloat64})
	}
	cs := &countingStore{}
	f := newFixture(t, fixtureConfig{
		edit: func(p *larder.Project) {
			p.Server.MaxEntities = 1000
			p.Views = append(p.Views, wide)
		},
		wrap: func(fs larder.FeatureStore) larder.FeatureStore {
			cs.FeatureStore = fs
			return cs
		},
	})
	keys := make([]*larderv1.EntityKey, 1000)
	for i := range keys {
		keys[i] = intKey(int64(i%5 + 1))
	}
	request := func(view string) *larderv1.GetFeaturesRequest {
		refs := make([]string, 400)
		for i := range refs {
			refs[i] = view + ":*"
		}
		return &larderv1.GetFeaturesRequest{Keys: keys, Features: refs}
	}
	for _, tc := range []struct {
		view  string
		code  codes.Code
		reads int
		// most bounds the bytes allocated for the ten requests, by the
		// server and by the client that sends them and decodes the
		// answers.
		most uint64
	}{
		{"user_wide", codes.ResourceExhausted, 0, 10 << 20},
		{"user_profile", codes.OK, 10, 10 * 16 << 20},
	} {
		t.Run(tc.view, func(t *testing.T) {
			cs.take()
			reqs := make([]*larderv1.GetFeaturesRequest, 10)
			for i := range reqs {
				reqs[i] = request(tc.view)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var wg sync.WaitGroup
			errs := make([]error, len(reqs))
			cols := make([]int, len(reqs))
			for i, req := range reqs {
				wg.Go(func() {
					resp, err := f.client.GetFeatures(t.Context(), req)
					errs[i], cols[i] = err, len(resp.GetColumns())
				})
			}
			wg.Wait()
			runtime.ReadMemStats(&after)
			for i, err := range errs {
				if tc.code != codes.OK {
					wantCode(t, err, tc.code, "1000 keys × 120 columns is 120000 values", "server.max_request_cells")
					continue
				}
				if err != nil || cols[i] != 7 {
					t.Fatalf("request %d: %d columns, %v; want the 7 of user_profile", i, cols[i], err)
				}
			}
			if n := len(cs.take()); n != tc.reads {
				t.Errorf("%d reads of the store, want %d", n, tc.reads)
			}
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("10 requests of 1000 keys × 400 × %s:*: %s; %.1f MB allocated, heap in use %.1f MB before, %.1f MB after",
				tc.view, tc.code, float64(allocated)/(1<<20), float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20))
			if allocated > tc.most {
				t.Errorf("the ten requests allocated %d bytes, want at most %d", allocated, tc.most)
			}
		})
	}
}
