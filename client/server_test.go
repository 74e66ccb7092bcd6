package client_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// project is the project the tests serve: users keyed by int64 with a
// profile of several types (max age 1h), and items keyed by string, with a
// ranker over both.
func project() *larder.Project {
	p := &larder.Project{
		Name:     "clienttest",
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}, {Name: "item", Key: "item_id", KeyType: larder.TypeString}},
		Sources:  []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "user_profile", Kind: larder.KindLatest, Entity: "user", Source: "events", MaxAge: time.Hour, Features: []larder.Feature{
				{Name: "age", Type: larder.TypeInt64},
				{Name: "score", Type: larder.TypeFloat64},
				{Name: "country", Type: larder.TypeString},
				{Name: "embedding", Type: larder.TypeFloat32Vector},
				{Name: "recent", Type: larder.TypeInt64List},
			}},
			{Name: "item_info", Kind: larder.KindLatest, Entity: "item", Source: "events", Features: []larder.Feature{
				{Name: "price", Type: larder.TypeFloat64},
			}},
		},
		Rankers: []*larder.Ranker{{Name: "reco", Model: "reco.onnx", Context: "user", Candidate: "item", TopK: 2,
			Inputs: []larder.RankerInput{{Ref: "user_profile:score"}, {Ref: "item_info:price"}}}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

// The data the tests publish, as of t0: user 1 fresh, user 2 stale (2h
// old) with a null age and country, user 3 missing; items a, b, c.
var t0 = time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)

func fill(ctx context.Context, st *store.Store, p *larder.Project) error {
	rows := map[string]map[larder.Key]larder.Row{
		"user_profile": {
			larder.Int64Key(1): {EventTime: t0.Add(-10 * time.Minute), Values: []larder.Value{
				larder.Int64Value(34), larder.Float64Value(0.75), larder.StringValue("fr"),
				larder.Float32VectorValue([]float32{0.5, -1}), larder.Int64ListValue([]int64{7, 8, 9})}},
			larder.Int64Key(2): {EventTime: t0.Add(-2 * time.Hour), Values: []larder.Value{
				larder.Null, larder.Float64Value(-2.5), larder.Null,
				larder.Float32VectorValue([]float32{}), larder.Int64ListValue([]int64{4})}},
		},
		"item_info": {
			larder.StringKey("a"): {EventTime: t0, Values: []larder.Value{larder.Float64Value(3)}},
			larder.StringKey("b"): {EventTime: t0, Values: []larder.Value{larder.Float64Value(1)}},
			larder.StringKey("c"): {EventTime: t0, Values: []larder.Value{larder.Float64Value(2)}},
		},
	}
	for view, rs := range rows {
		w, err := st.BeginSized(ctx, p.View(view), int64(len(rs)))
		if err != nil {
			return err
		}
		for k, r := range rs {
			if err := w.Put(ctx, k, r); err != nil {
				return err
			}
		}
		if _, err := w.Publish(ctx); err != nil {
			return err
		}
	}
	return nil
}

// priceModel scores each candidate by the price it is given (its second
// input): the most expensive first.
type priceModel struct{}

func (priceModel) Score(_ context.Context, x []float32, n int, out []float32) error {
	for i := range n {
		out[i] = x[i*2+1]
	}
	return nil
}

func (priceModel) Version() string { return "price-v1" }

// serve fills rdb with the test data and serves it over gRPC on a loopback
// port, with opts; it returns the address and a function that stops the
// server.
func serve(rdb redis.UniversalClient, opts ...grpc.ServerOption) (addr string, stop func(), err error) {
	p := project()
	st := store.New(rdb, p.Name, store.Options{})
	ctx := context.Background()
	if err := fill(ctx, st, p); err != nil {
		return "", nil, err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := server.New(server.Config{Project: p, Store: st, Models: map[string]server.Model{"reco": priceModel{}},
		Now: func() time.Time { return t0 }, Logger: logger})
	if err != nil {
		return "", nil, err
	}
	g := server.NewGRPC(svc, logger, opts...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		g.Serve(ctx, lis, time.Second)
		close(done)
	}()
	return lis.Addr().String(), func() { cancel(); <-done }, nil
}

// serveTest serves the test data from a real redis-server for the test.
func serveTest(tb testing.TB, opts ...grpc.ServerOption) string {
	tb.Helper()
	addr, stop, err := serve(redistest.Start(tb).Client(), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return addr
}

// exampleServer serves the test data from larder's embedded Redis-protocol
// server, for the examples, which have no testing.TB to start a
// redis-server with; it returns the address.
func exampleServer() (addr string, stop func()) {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	addr, stopServer, err := serve(rdb)
	if err != nil {
		panic(err)
	}
	return addr, func() { stopServer(); rdb.Close(); m.Close() }
}
