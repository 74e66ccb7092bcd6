package server

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
