package server_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// blockingModel is a fake Model. Score waits until its context ends, or
// until hold has passed when hold is set, then scores the candidates
// n-1, ..., 0 (request order). It signals each call on started and sends
// its result on ended, when those channels are set and have room.
type blockingModel struct {
	hold    time.Duration
	started chan struct{}
	ended   chan error
	calls   atomic.Int64
}

func (m *blockingModel) Score(ctx context.Context, x []float32, n int, out []float32) error {
	m.calls.Add(1)
	select {
	case m.started <- struct{}{}:
	default:
	}
	var timeout <-chan time.Time
	if m.hold > 0 {
		timeout = time.After(m.hold)
	}
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		for i := range out[:n] {
			out[i] = float32(n - 1 - i)
		}
	}
	select {
	case m.ended <- err:
	default:
	}
	return err
}

func (m *blockingModel) Version() string { return "fake-1" }

// panicStore is a FeatureStore whose Read panics; Live works.
type panicStore struct{ larder.FeatureStore }

func (panicStore) Read(context.Context, []*larder.Lookup) error {
	panic("store exploded")
}

// timedStore records the result and duration of its last Read.
type timedStore struct {
	larder.FeatureStore
	took atomic.Int64 // nanoseconds
	err  atomic.Pointer[error]
}

func (s *timedStore) Read(ctx context.Context, lookups []*larder.Lookup) error {
	start := time.Now()
	err := s.FeatureStore.Read(ctx, lookups)
	s.took.Store(int64(time.Since(start)))
	s.err.Store(&err)
	return err
}

func TestListViews(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	f.clock.Set(f.t0.Add(7 * time.Minute))
	resp, err := f.client.ListViews(context.Background(), &larderv1.ListViewsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetViews()) != len(f.project.Views) {
		t.Fatalf("got %d views, want %d", len(resp.GetViews()), len(f.project.Views))
	}
	types := map[larder.Type]larderv1.ValueType{
		larder.TypeInt64:         larderv1.ValueType_VALUE_TYPE_INT64,
		larder.TypeFloat64:       larderv1.ValueType_VALUE_TYPE_FLOAT64,
		larder.TypeFloat32:       larderv1.ValueType_VALUE_TYPE_FLOAT32,
		larder.TypeBool:          larderv1.ValueType_VALUE_TYPE_BOOL,
		larder.TypeString:        larderv1.ValueType_VALUE_TYPE_STRING,
		larder.TypeBytes:         larderv1.ValueType_VALUE_TYPE_BYTES,
		larder.TypeFloat32Vector: larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR,
	}
	for i, v := range f.project.Views {
		got := resp.GetViews()[i]
		t.Run(v.Name, func(t *testing.T) {
			want := &larderv1.ViewInfo{Name: v.Name, Kind: "latest", Entity: v.Entity, Schedule: v.Schedule}
			for _, feat := range v.Features {
				want.Features = append(want.Features, &larderv1.FeatureSchema{Name: feat.Name, Type: types[feat.Type]})
			}
			if v.MaxAge > 0 {
				want.MaxAge = durationpb.New(v.MaxAge)
			}
			if g, ok := f.gens[v.Name]; ok {
				want.Generation = g.ID
				want.Rows = int64(len(f.data[v.Name]))
				if g.Rows != want.Rows {
					t.Errorf("the store published %d rows, the fixture wrote %d", g.Rows, want.Rows)
				}
				if g.ID <= 0 || g.PublishedAt.Before(f.t0) {
					t.Fatalf("published generation %+v", g)
				}
				want.PublishedAt = timestamppb.New(g.PublishedAt)
				want.AsOf = timestamppb.New(g.AsOf)
				want.Age = durationpb.New(f.clock.Now().Sub(g.AsOf))
			}
			if !proto.Equal(got, want) {
				t.Errorf("got  %v\nwant %v", got, want)
			}
		})
	}
	if never := resp.GetViews()[3]; never.GetName() != "user_never" || never.GetGeneration() != 0 ||
		never.GetPublishedAt() != nil || never.GetAge() != nil || never.GetRows() != 0 {
		t.Errorf("a view never published: %v, want generation 0 and no rows, published_at or age", never)
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	ctx := context.Background()

	t.Run("view never published", func(t *testing.T) {
		_, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_profile:age", "user_never:x"}})
		wantCode(t, err, codes.FailedPrecondition, "user_never", "larder materialize")
	})
	t.Run("schema changed", func(t *testing.T) {
		// Another server whose project adds a feature to user_stats: its
		// definition no longer matches the live generation's schema.
		p := testProject(t, func(p *larder.Project) {
			v := p.Views[1]
			v.Features = append(v.Features, larder.Feature{Name: "extra", Type: larder.TypeBool})
		})
		srv := serve(t, server.Config{Project: p, Store: store.New(f.redis.Client(), p.Name, store.Options{}),
			Models: map[string]server.Model{"reco": &blockingModel{}}}, time.Second)
		_, err := srv.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_stats:clicks"}})
		wantCode(t, err, codes.FailedPrecondition, "user_stats", "schema", "materialize the view with this larder.yaml")
	})
	t.Run("panic", func(t *testing.T) {
		srv := serve(t, server.Config{Project: f.project, Store: panicStore{f.store},
			Models: map[string]server.Model{"reco": f.model}}, time.Second)
		_, err := srv.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_profile:age"}})
		wantCode(t, err, codes.Internal, "internal error")
		if strings.Contains(err.Error(), "exploded") {
			t.Errorf("the panic value reached the caller: %v", err)
		}
		_, err = srv.client.Rank(ctx, &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1"),
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(1), "mobile": boolVal(true)}})
		wantCode(t, err, codes.Internal)
		// The process keeps serving, and the panic is logged with its stack.
		if _, err := srv.client.ListViews(ctx, &larderv1.ListViewsRequest{}); err != nil {
			t.Errorf("ListViews after a panic: %v", err)
		}
		logs := srv.logs.String()
		for _, want := range []string{"panic in handler", "store exploded", "GetFeatures", "errors_test.go"} {
			if !strings.Contains(logs, want) {
				t.Errorf("the log does not mention %q:\n%s", want, logs)
			}
		}
	})
	t.Run("deadline passed", func(t *testing.T) {
		m := &blockingModel{}
		srv := serve(t, server.Config{Project: f.project, Store: f.store, Models: map[string]server.Model{"reco": m}}, time.Second)
		dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		defer cancel()
		_, err := srv.client.Rank(dctx, &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1"),
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(1), "mobile": boolVal(true)}})
		wantCode(t, err, codes.DeadlineExceeded)
		_, err = srv.client.GetFeatures(dctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_profile:age"}})
		wantCode(t, err, codes.DeadlineExceeded)
		if n := m.calls.Load(); n != 0 {
			t.Errorf("the model ran %d times for a request past its deadline", n)
		}
	})
	t.Run("deadline reaches the model", func(t *testing.T) {
		m := &blockingModel{started: make(chan struct{}, 1), ended: make(chan error, 1)}
		srv := serve(t, server.Config{Project: f.project, Store: f.store, Models: map[string]server.Model{"reco": m}}, time.Second)
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := srv.client.Rank(dctx, &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1", "i2"),
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(1), "mobile": boolVal(true)}})
		wantCode(t, err, codes.DeadlineExceeded)
		select {
		case err := <-m.ended:
			// The model, which waits only on its ctx, was released by the
			// caller's deadline: the ctx it got is the request's. The
			// server's copy of the deadline and the client's cancellation
			// race, so either error may end it.
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Errorf("the model's ctx ended with %v, want the request's deadline or cancellation", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the model is still blocked 5s after the caller's deadline: the request's ctx does not reach Score")
		}
	})
	t.Run("Read honours ctx", func(t *testing.T) {
		ts := &timedStore{FeatureStore: f.store}
		srv := serve(t, server.Config{Project: f.project, Store: ts, Models: map[string]server.Model{"reco": f.model}}, time.Second)
		// A cancelled ctx: Read gives up and says why.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := f.store.Read(cctx, []*larder.Lookup{{View: f.project.View("user_profile"), Keys: []larder.Key{larder.Int64Key(1)}}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Read with a cancelled ctx: %v, want an error wrapping context.Canceled", err)
		}
		// A deadline that passes while Redis does not answer: Redis is
		// stopped (SIGSTOP) until Read has returned, so a Read that
		// returns at all did not wait for it.
		f.redis.Pause()
		defer f.redis.Resume()
		dctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		defer cancel()
		_, err = srv.client.GetFeatures(dctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_profile:age"}})
		wantCode(t, err, codes.DeadlineExceeded)
		waitUntil(t, 30*time.Second, "Read to return while Redis is stopped", func() bool { return ts.err.Load() != nil })
		f.redis.Resume()
		if rerr := *ts.err.Load(); !errors.Is(rerr, context.DeadlineExceeded) && !errors.Is(rerr, context.Canceled) {
			t.Errorf("Read returned %v, want an error wrapping the request's ctx.Err()", rerr)
		}
		t.Logf("Read returned after %s against a stopped Redis, with a deadline of 150ms", time.Duration(ts.took.Load()))
	})
}

// TestRedisDown stops redis-server under a running server: reads fail with
// UNAVAILABLE, whether the server had the live generations cached or not.
// The stores use a client that neither retries commands nor dials, to keep
// the test short: with go-redis's defaults (3 retries, 5 dial attempts 100ms
// apart) each failing call takes 1.5 to 3.5 seconds.
func TestRedisDown(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	ctx := context.Background()
	newServer := func() *running {
		client := redis.NewClient(&redis.Options{Addr: f.redis.Addr, MaxRetries: -1, DialerRetries: 1})
		t.Cleanup(func() { client.Close() })
		st := store.New(client, f.project.Name, store.Options{})
		return serve(t, server.Config{Project: f.project, Store: st, Models: map[string]server.Model{"reco": f.model}}, time.Second)
	}
	cached, cold := newServer(), newServer()
	getReq := &larderv1.GetFeaturesRequest{Keys: intKeys(1, 2), Features: []string{"user_profile:*", "user_stats:clicks"}}
	rankReq := &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1", "i2"),
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(1), "mobile": boolVal(true)}}
	if _, err := cached.client.Rank(ctx, rankReq); err != nil {
		t.Fatal(err)
	}

	f.redis.Stop()
	for _, srv := range []struct {
		name string
		*running
	}{{"cached", cached}, {"cold", cold}} {
		t.Run(srv.name, func(t *testing.T) {
			_, err := srv.client.GetFeatures(ctx, getReq)
			wantCode(t, err, codes.Unavailable, "unavailable", "user_profile")
			_, err = srv.client.Rank(ctx, rankReq)
			wantCode(t, err, codes.Unavailable, "unavailable")
		})
	}
	t.Run("cold ListViews", func(t *testing.T) {
		_, err := cold.client.ListViews(ctx, &larderv1.ListViewsRequest{})
		wantCode(t, err, codes.Unavailable, "unavailable")
	})
}
