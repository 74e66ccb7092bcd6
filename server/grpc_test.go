package server_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// TestGracefulDrain cancels Serve's context while a slow Rank is in flight:
// health turns NOT_SERVING, new calls fail, the slow call completes, and
// Serve returns nil well before its drain limit.
func TestGracefulDrain(t *testing.T) {
	const (
		hold = 300 * time.Millisecond
		// A limit far above the hold, so that a server that waits for
		// its limit, rather than for the call, is told apart however
		// busy the machine.
		drain = time.Minute
	)
	m := &blockingModel{hold: hold, started: make(chan struct{}, 1), ended: make(chan error, 1)}
	f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": m}, drain: drain, edit: noModelTimeout})
	ctx := context.Background()
	health := healthpb.NewHealthClient(f.conn)

	for _, svc := range []string{"", larderv1.FeatureService_ServiceDesc.ServiceName} {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health check %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q is %s before shutdown, want SERVING", svc, resp.GetStatus())
		}
	}
	// A watch sees the change of status as it happens: once the drain has
	// begun, no new call (a Check included) can be made.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := health.Watch(watchCtx, &healthpb.HealthCheckRequest{Service: larderv1.FeatureService_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v %v, want SERVING", resp, err)
	}

	type result struct {
		resp *larderv1.RankResponse
		err  error
	}
	var slowDone atomic.Bool
	slow := make(chan result, 1)
	go func() {
		resp, err := f.client.Rank(ctx, &larderv1.RankRequest{
			Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1", "i2", "i3"), TopK: 2,
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(1), "mobile": boolVal(true)},
		})
		slowDone.Store(true)
		slow <- result{resp, err}
	}()
	select {
	case <-m.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow Rank did not reach the model")
	}
	stopping := time.Now()
	f.cancel()

	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health watch after shutdown began: %v %v, want NOT_SERVING", resp, err)
	}
	stopWatch() // the watch is a call in flight too: end it so the drain can finish

	// New calls fail while the slow call is still in flight.
	var newErr error
	waitUntil(t, hold, "a new call to fail during the drain", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, newErr = f.client.GetFeatures(cctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_profile:age"}})
		return newErr != nil
	})
	if slowDone.Load() {
		t.Fatalf("the slow call ended before a new call failed: the drain is not proven")
	}
	wantCode(t, newErr, codes.Unavailable)

	r := <-slow
	if r.err != nil {
		t.Fatalf("the call in flight during the drain failed: %v", r.err)
	}
	// The fake model scores in reverse request order.
	if got := r.resp.GetCandidates(); len(got) != 2 || got[0].GetKey().GetStringValue() != "i1" || got[1].GetKey().GetStringValue() != "i2" {
		t.Errorf("the call in flight got %v, want i1 then i2", got)
	}
	if err := <-m.ended; err != nil {
		t.Errorf("the model's run ended with %v", err)
	}

	err, ok := f.wait(drain)
	if !ok {
		t.Fatalf("Serve did not return within the drain limit of %s", drain)
	}
	if err != nil {
		t.Fatalf("Serve returned %v, want nil", err)
	}
	if took := time.Since(stopping); took > drain/2 {
		t.Errorf("the drain took %s: the server waited for its limit instead of the call in flight", took)
	}
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Errorf("a health check after Serve returned succeeded")
	} else {
		wantCode(t, err, codes.Unavailable)
	}
}

// TestDrainLimit checks that a call longer than the drain limit is cut off
// and that Serve still returns nil.
func TestDrainLimit(t *testing.T) {
	m := &blockingModel{started: make(chan struct{}, 1)} // blocks until its ctx ends
	f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": m}, drain: 200 * time.Millisecond, edit: noModelTimeout})
	slow := make(chan error, 1)
	go func() {
		_, err := f.client.Rank(context.Background(), &larderv1.RankRequest{
			Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1"),
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(1), "mobile": boolVal(true)},
		})
		slow <- err
	}()
	<-m.started
	start := time.Now()
	f.cancel()
	// The call blocks until its ctx ends: Serve returns only if it cuts
	// the call off at the limit.
	err, ok := f.wait(30 * time.Second)
	if !ok || err != nil {
		t.Fatalf("Serve: returned %v, %v; want nil after the drain limit", ok, err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("Serve returned %s after its ctx ended, want after the drain limit of 200ms", took)
	}
	select {
	case err := <-slow:
		if err == nil {
			t.Errorf("the call cut off by the drain limit succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call cut off by the drain limit never returned")
	}
}

func TestReflection(t *testing.T) {
	f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": &blockingModel{}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(f.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"larder.v1.FeatureService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %q, want %s among them", names, want)
		}
	}
	// The descriptors are there too, so that grpcurl can build requests.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "larder.v1.FeatureService"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("no file descriptor for larder.v1.FeatureService: %v", resp)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}
