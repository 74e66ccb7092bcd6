package server

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
)

// passThrough is an interceptor that only calls the handler.
func passThrough(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(ctx, req)
}

// TestMetricsInterceptorAllocs checks that counting and timing a request
// allocates nothing once its series exist.
func TestMetricsInterceptorAllocs(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	unary := m.wrap(passThrough)
	info := &grpc.UnaryServerInfo{FullMethod: "/larder.v1.FeatureService/Rank"}
	invalid := status.Error(codes.InvalidArgument, "bad")
	for _, tc := range []struct {
		name string
		err  error
	}{{"ok", nil}, {"error", invalid}} {
		handler := func(context.Context, any) (any, error) { return nil, tc.err }
		ctx := context.Background()
		_, _ = unary(ctx, nil, info, handler) // resolve the series
		if n := testing.AllocsPerRun(1000, func() { _, _ = unary(ctx, nil, info, handler) }); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", tc.name, n)
		}
	}
}

// BenchmarkMetricsInterceptor is the interceptor's own cost per request.
func BenchmarkMetricsInterceptor(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	unary := m.wrap(passThrough)
	info := &grpc.UnaryServerInfo{FullMethod: "/larder.v1.FeatureService/Rank"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = unary(ctx, nil, info, handler)
	}
}

// TestUnaryInterceptorAllocs checks that the server's own interceptor
// (decoding errors, shedding, deadlines, panics) allocates nothing for a
// request whose client set a deadline within server.max_deadline. The
// operators' calls, which write an audit line each, are not counted.
func TestUnaryInterceptorAllocs(t *testing.T) {
	g := &GRPC{codec: &serverCodec{}, load: newLoad(larder.Server{MaxConcurrentRequests: 4})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, method := range []string{"/larder.v1.FeatureService/GetFeatures", "/grpc.health.v1.Health/Check"} {
		info := &grpc.UnaryServerInfo{FullMethod: method}
		if n := testing.AllocsPerRun(1000, func() { _, _ = g.unary(ctx, nil, info, handler) }); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", method, n)
		}
	}
	if n := len(g.load.slots); n != 0 {
		t.Errorf("%d slots still taken after the requests ended", n)
	}
}
