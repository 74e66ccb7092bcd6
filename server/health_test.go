package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// TestHealthFollowsRedis checks that health turns NOT_SERVING while no view
// is live and while Redis is down, and SERVING again by itself.
func TestHealthFollowsRedis(t *testing.T) {
	p := testProject(t, nil)
	st, rs := newStore(t, p)
	cfg := server.Config{Project: p, Store: st, Models: map[string]server.Model{"reco": newFakeModel("v1", 1)}}
	svc, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := serve(t, cfg, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		server.WatchHealth(ctx, svc, 50*time.Millisecond, r.grpc)
	}()
	defer func() { cancel(); <-done }()

	hc := healthpb.NewHealthClient(r.conn)
	waitStatus := func(want healthpb.HealthCheckResponse_ServingStatus, what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			for _, name := range []string{"", "larder.v1.FeatureService"} {
				resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
				if err == nil && resp.GetStatus() == want && name != "" {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("health did not turn %v %s", want, what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStatus(healthpb.HealthCheckResponse_NOT_SERVING, "while no view is live")
	publish(t, st, p, "user_stats", fixtureData(time.Now())["user_stats"])
	waitStatus(healthpb.HealthCheckResponse_SERVING, "once a view is live")
	rs.Stop()
	waitStatus(healthpb.HealthCheckResponse_NOT_SERVING, "while Redis is down")
	rs.Restart()
	// The restarted server kept nothing: the view is published again.
	publish(t, store.New(rs.Client(), p.Name, store.Options{}), p, "user_stats", fixtureData(time.Now())["user_stats"])
	waitStatus(healthpb.HealthCheckResponse_SERVING, "once Redis answers again")
}

// TestReadyBehindWrappers checks that Ready asks the store itself, not the
// wrapper that metrics or tracing put around it: with Redis down it is not
// ready, whatever a cache of live generations says.
func TestReadyBehindWrappers(t *testing.T) {
	tests := []struct {
		name string
		edit func(tb testing.TB, cfg *server.Config)
	}{
		{"metrics", func(tb testing.TB, cfg *server.Config) {
			m, err := server.NewMetrics(prometheus.NewRegistry())
			if err != nil {
				tb.Fatal(err)
			}
			cfg.Metrics = m
		}},
		{"tracing", func(tb testing.TB, cfg *server.Config) {
			tp := sdktrace.NewTracerProvider()
			tb.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			cfg.Tracing = tp
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testProject(t, nil)
			st, rs := newStore(t, p)
			publish(t, st, p, "user_stats", fixtureData(time.Now())["user_stats"])
			cfg := server.Config{Project: p, Store: st, Models: map[string]server.Model{"reco": newFakeModel("v1", 1)}}
			tc.edit(t, &cfg)
			svc, err := server.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := svc.Ready(ctx); err != nil {
				t.Fatalf("Ready with a live view = %v, want nil", err)
			}
			rs.Stop()
			if err := svc.Ready(ctx); err == nil {
				t.Errorf("Ready with Redis down = nil, want an error")
			}
		})
	}
}
