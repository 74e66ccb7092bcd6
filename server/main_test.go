package server_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/models"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// ortRuntime is the ONNX Runtime every test loads its models from. TestMain
// opens it once, so that the process-wide ORT environment is not torn down
// and set up again between tests.
var ortRuntime *models.Runtime

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	lib, err := models.EnsureLibrary(ctx, os.Stderr)
	cancel()
	if err != nil {
		// Fail, never skip: Rank is only proven against a real model.
		fmt.Fprintf(os.Stderr, "FAIL: package server tests need the ONNX Runtime library: %v\n", err)
		os.Exit(1)
	}
	rt, err := models.NewRuntime(lib)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: package server tests: %v\n", err)
		os.Exit(1)
	}
	ortRuntime = rt
	code := m.Run()
	if err := rt.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: close the ONNX Runtime: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// Limits of the test project, small so that the limit checks are cheap.
const (
	testMaxEntities   = 64
	testMaxCandidates = 16
)

// testProject returns a validated project: an int64-keyed user with a view
// of every value type (user_profile, max age 1h), a view that never goes
// stale (user_stats) and one that is never published (user_never); a
// string-keyed item with one view (item_info, max age 24h); and the ranker
// reco over context, candidate and request inputs. edit, when not nil, may
// change the project before defaults and validation.
func testProject(tb testing.TB, edit func(*larder.Project)) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name: "srvtest",
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "item_id", KeyType: larder.TypeString},
		},
		Sources: []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views: []*larder.View{
			{
				Name: "user_profile", Kind: larder.KindLatest, Entity: "user", Source: "events",
				MaxAge: time.Hour, Schedule: "@hourly",
				Features: []larder.Feature{
					{Name: "age", Type: larder.TypeInt64},
					{Name: "score", Type: larder.TypeFloat64},
					{Name: "ratio", Type: larder.TypeFloat32},
					{Name: "active", Type: larder.TypeBool},
					{Name: "country", Type: larder.TypeString},
					{Name: "avatar", Type: larder.TypeBytes},
					{Name: "embedding", Type: larder.TypeFloat32Vector},
				},
			},
			{
				Name: "user_stats", Kind: larder.KindLatest, Entity: "user", Source: "events",
				Features: []larder.Feature{
					{Name: "clicks", Type: larder.TypeInt64},
					{Name: "spend", Type: larder.TypeFloat64},
				},
			},
			{
				Name: "item_info", Kind: larder.KindLatest, Entity: "item", Source: "events",
				MaxAge: 24 * time.Hour,
				Features: []larder.Feature{
					{Name: "price", Type: larder.TypeFloat64},
					{Name: "popularity", Type: larder.TypeFloat32},
					{Name: "in_stock", Type: larder.TypeBool},
					{Name: "title", Type: larder.TypeString},
				},
			},
			{
				Name: "user_never", Kind: larder.KindLatest, Entity: "user", Source: "events",
				Features: []larder.Feature{{Name: "x", Type: larder.TypeInt64}},
			},
		},
		Rankers: []*larder.Ranker{{
			Name: "reco", Model: "reco.onnx", Context: "user", Candidate: "item", TopK: 3,
			Inputs: []larder.RankerInput{
				{Ref: "user_profile:age", Default: -1},
				{Ref: "user_profile:score", Default: 0.5},
				{Ref: "user_stats:clicks"},
				{Ref: "item_info:price", Default: 9.5},
				{Ref: "item_info:popularity", Default: 0.25},
				{Ref: "item_info:in_stock"},
				{Ref: "request:hour"},
				{Ref: "request:mobile", Type: larder.TypeBool},
			},
		}},
	}
	p.Server.MaxEntities = testMaxEntities
	p.Server.MaxCandidates = testMaxCandidates
	if edit != nil {
		edit(p)
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("test project: %v", err)
	}
	return p
}

// clock is a settable clock for server.Config.Now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.Set(t)
	return c
}

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// testData is what the fixture writes, by view and entity key; t0 is the
// fixture's time, against which event times are set.
type testData map[string]map[larder.Key]larder.Row

// fixtureData returns the rows of the test project's views at t0:
//
//	user 1: fresh profile and stats
//	user 2: stale profile (2h old, max age 1h), stats
//	user 3: fresh profile with null age, country, avatar and embedding; stats
//	user 4: no profile; stats 1000h old (user_stats never goes stale)
//	items i1, i2, i6 fresh; i3 with null popularity; i4 stale (48h); i5 none
func fixtureData(t0 time.Time) testData {
	fresh := t0.Add(-10 * time.Minute)
	return testData{
		"user_profile": {
			larder.Int64Key(1): {EventTime: fresh, Values: []larder.Value{
				larder.Int64Value(34), larder.Float64Value(0.8), larder.Float32Value(0.25), larder.BoolValue(true),
				larder.StringValue("fr"), larder.BytesValue([]byte{0, 1, 2, 255}), larder.Float32VectorValue([]float32{0.5, -1.25, 3}),
			}},
			larder.Int64Key(2): {EventTime: t0.Add(-2 * time.Hour), Values: []larder.Value{
				larder.Int64Value(51), larder.Float64Value(0.1), larder.Float32Value(-7.5), larder.BoolValue(false),
				larder.StringValue("de"), larder.BytesValue(nil), larder.Float32VectorValue([]float32{}),
			}},
			larder.Int64Key(3): {EventTime: fresh.Add(-time.Minute), Values: []larder.Value{
				larder.Null, larder.Float64Value(0.3), larder.Float32Value(1.5), larder.BoolValue(false),
				larder.Null, larder.Null, larder.Null,
			}},
		},
		"user_stats": {
			larder.Int64Key(1): {EventTime: fresh, Values: []larder.Value{larder.Int64Value(12), larder.Float64Value(99.5)}},
			larder.Int64Key(2): {EventTime: fresh, Values: []larder.Value{larder.Int64Value(40), larder.Float64Value(0)}},
			larder.Int64Key(3): {EventTime: fresh, Values: []larder.Value{larder.Int64Value(7), larder.Null}},
			larder.Int64Key(4): {EventTime: t0.Add(-1000 * time.Hour), Values: []larder.Value{larder.Int64Value(90), larder.Float64Value(-3.25)}},
		},
		"item_info": {
			larder.StringKey("i1"): {EventTime: t0.Add(-time.Hour), Values: []larder.Value{
				larder.Float64Value(3.5), larder.Float32Value(0.9), larder.BoolValue(true), larder.StringValue("apple")}},
			larder.StringKey("i2"): {EventTime: t0.Add(-time.Hour), Values: []larder.Value{
				larder.Float64Value(12), larder.Float32Value(0.1), larder.BoolValue(false), larder.StringValue("pear")}},
			larder.StringKey("i3"): {EventTime: t0.Add(-time.Hour), Values: []larder.Value{
				larder.Float64Value(7.25), larder.Null, larder.BoolValue(true), larder.StringValue("plum")}},
			larder.StringKey("i4"): {EventTime: t0.Add(-48 * time.Hour), Values: []larder.Value{
				larder.Float64Value(15), larder.Float32Value(0.5), larder.BoolValue(true), larder.StringValue("fig")}},
			larder.StringKey("i6"): {EventTime: t0.Add(-3 * time.Hour), Values: []larder.Value{
				larder.Float64Value(1), larder.Float32Value(0.4), larder.BoolValue(true), larder.StringValue("kiwi")}},
		},
	}
}

// newStore returns a Store of p on a new redis-server, and the server.
func newStore(tb testing.TB, p *larder.Project) (*store.Store, *redistest.Server) {
	tb.Helper()
	rs := redistest.Start(tb)
	return store.New(rs.Client(), p.Name, store.Options{}), rs
}

// publish writes rows as a new generation of the named view and publishes it.
func publish(tb testing.TB, st *store.Store, p *larder.Project, view string, rows map[larder.Key]larder.Row) larder.Generation {
	tb.Helper()
	ctx := context.Background()
	v := p.View(view)
	if v == nil {
		tb.Fatalf("publish: no view %q", view)
	}
	w, err := st.BeginSized(ctx, v, int64(len(rows)))
	if err != nil {
		tb.Fatalf("begin %s: %v", view, err)
	}
	for k, row := range rows {
		if err := w.Put(ctx, k, row); err != nil {
			tb.Fatalf("put %s %v: %v", view, k, err)
		}
	}
	g, err := w.Publish(ctx)
	if err != nil {
		tb.Fatalf("publish %s: %v", view, err)
	}
	return g
}

// trainRanker trains a small MLP for the reco ranker on random rows spread
// over the ranges of the fixture's values (so that no test input saturates
// the sigmoid), exports it to ONNX and loads it.
func trainRanker(tb testing.TB, r *larder.Ranker) (*models.Net, *models.Model) {
	tb.Helper()
	const rows = 400
	f := len(r.Inputs)
	// Scale of each input (age, score, clicks, price, popularity, in_stock,
	// hour, mobile); 0 marks a 0-or-1 input.
	scale := []float64{60, 1, 100, 20, 1, 0, 24, 0}
	weight := []float64{-0.015, 0.8, 0.008, -0.07, 1, 0.4, 0.02, -0.3}
	if len(scale) != f {
		tb.Fatalf("trainRanker: the reco ranker has %d inputs, the training data %d", f, len(scale))
	}
	rng := rand.New(rand.NewPCG(42, 1))
	x := make([]float32, rows*f)
	y := make([]float32, rows)
	for i := 0; i < rows; i++ {
		logit := 0.0
		for j := 0; j < f; j++ {
			v := rng.Float64() * scale[j]
			if scale[j] == 0 {
				v = float64(rng.IntN(2))
			}
			x[i*f+j] = float32(v)
			logit += weight[j] * v
		}
		if logit+rng.NormFloat64() > 0.5 {
			y[i] = 1
		}
	}
	net, err := models.Train(x, y, f, models.TrainConfig{Hidden: 8, Epochs: 30, L2: 1e-3, Seed: 7})
	if err != nil {
		tb.Fatalf("train: %v", err)
	}
	return net, loadNet(tb, net, r)
}

// loadNet exports net as the ONNX model of r and loads it; the model is
// closed when the test ends.
func loadNet(tb testing.TB, net *models.Net, r *larder.Ranker) *models.Model {
	tb.Helper()
	var buf bytes.Buffer
	if err := net.WriteONNX(&buf, r.ModelInput, r.ModelOutput); err != nil {
		tb.Fatalf("export: %v", err)
	}
	path := filepath.Join(tb.TempDir(), r.Name+".onnx")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	m, err := ortRuntime.Load(path, models.Spec{Input: r.ModelInput, Output: r.ModelOutput, Features: len(r.Inputs)})
	if err != nil {
		tb.Fatalf("load model: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// running is a server.GRPC serving on a loopback port, and a client of it.
type running struct {
	svc    *server.Service
	grpc   *server.GRPC
	conn   *grpc.ClientConn
	client larderv1.FeatureServiceClient
	logs   *syncBuffer

	cancel   context.CancelFunc
	done     chan struct{} // closed when Serve returns
	serveErr error         // Serve's result, set before done closes
}

// wait waits up to d for Serve to return and returns its result; ok is false
// when it did not return in time.
func (r *running) wait(d time.Duration) (err error, ok bool) {
	select {
	case <-r.done:
		return r.serveErr, true
	case <-time.After(d):
		return nil, false
	}
}

// serve starts a Service for cfg behind server.NewGRPC on 127.0.0.1:0 and
// connects a client. The server is stopped, and Serve must return nil, when
// the test ends. drain bounds the graceful stop.
func serve(tb testing.TB, cfg server.Config, drain time.Duration) *running {
	tb.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Logger == nil {
		cfg.Logger = logger
	}
	svc, err := server.New(cfg)
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	g := server.NewGRPC(svc, logger)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{svc: svc, grpc: g, logs: logs, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.serveErr = g.Serve(ctx, lis, drain)
		close(r.done)
	}()
	tb.Cleanup(func() {
		cancel()
		err, ok := r.wait(drain + 5*time.Second)
		switch {
		case !ok:
			tb.Errorf("Serve did not return within %s after its context ended", drain+5*time.Second)
		case err != nil:
			tb.Errorf("Serve returned %v, want nil", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), server.CodecDialOption())
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	tb.Cleanup(func() { conn.Close() })
	r.conn = conn
	r.client = larderv1.NewFeatureServiceClient(conn)
	return r
}

// fixture is the test project, filled with fixtureData in a real
// redis-server, served over gRPC with a real ONNX model for reco.
type fixture struct {
	project *larder.Project
	store   *store.Store
	redis   *redistest.Server
	clock   *clock
	t0      time.Time
	data    testData
	gens    map[string]larder.Generation // the published generation by view
	net     *models.Net                  // the reco model's weights
	model   *models.Model                // the reco model, when trained
	*running
}

// fixtureConfig changes what newFixture builds.
type fixtureConfig struct {
	edit   func(*larder.Project)
	models map[string]server.Model // replaces the trained reco model
	// wrap, when not nil, wraps the store the server reads from.
	wrap  func(larder.FeatureStore) larder.FeatureStore
	drain time.Duration
	// tracing, when not nil, is the server's Config.Tracing.
	tracing trace.TracerProvider
}

func newFixture(tb testing.TB, fc fixtureConfig) *fixture {
	tb.Helper()
	p := testProject(tb, fc.edit)
	st, rs := newStore(tb, p)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	f := &fixture{project: p, store: st, redis: rs, clock: newClock(t0), t0: t0,
		data: fixtureData(t0), gens: map[string]larder.Generation{}}
	for _, view := range []string{"user_profile", "user_stats", "item_info"} {
		f.gens[view] = publish(tb, st, p, view, f.data[view])
	}
	ms := fc.models
	if ms == nil {
		f.net, f.model = trainRanker(tb, p.Ranker("reco"))
		ms = map[string]server.Model{"reco": f.model}
	}
	var fs larder.FeatureStore = st
	if fc.wrap != nil {
		fs = fc.wrap(st)
	}
	if fc.drain == 0 {
		fc.drain = 5 * time.Second
	}
	f.running = serve(tb, server.Config{Project: p, Store: fs, Models: ms, Now: f.clock.Now, Tracing: fc.tracing}, fc.drain)
	return f
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Request builders.

func intKey(v int64) *larderv1.EntityKey {
	return &larderv1.EntityKey{Key: &larderv1.EntityKey_Int64Value{Int64Value: v}}
}

func strKey(v string) *larderv1.EntityKey {
	return &larderv1.EntityKey{Key: &larderv1.EntityKey_StringValue{StringValue: v}}
}

func intKeys(ids ...int64) []*larderv1.EntityKey {
	keys := make([]*larderv1.EntityKey, len(ids))
	for i, id := range ids {
		keys[i] = intKey(id)
	}
	return keys
}

func strKeys(ids ...string) []*larderv1.EntityKey {
	keys := make([]*larderv1.EntityKey, len(ids))
	for i, id := range ids {
		keys[i] = strKey(id)
	}
	return keys
}

func intVal(v int64) *larderv1.Value {
	return &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: v}}
}
func boolVal(v bool) *larderv1.Value {
	return &larderv1.Value{Kind: &larderv1.Value_BoolValue{BoolValue: v}}
}
func f64Val(v float64) *larderv1.Value {
	return &larderv1.Value{Kind: &larderv1.Value_Float64Value{Float64Value: v}}
}
func f32Val(v float32) *larderv1.Value {
	return &larderv1.Value{Kind: &larderv1.Value_Float32Value{Float32Value: v}}
}
func strVal(v string) *larderv1.Value {
	return &larderv1.Value{Kind: &larderv1.Value_StringValue{StringValue: v}}
}

// wantCode fails tb unless err is a gRPC status with code and a message
// holding every one of substrs.
func wantCode(tb testing.TB, err error, code codes.Code, substrs ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want %s", code)
	}
	st, ok := status.FromError(err)
	if !ok {
		tb.Fatalf("got error %v (%T), want a gRPC status %s", err, err, code)
	}
	if st.Code() != code {
		tb.Fatalf("got %s %q, want %s", st.Code(), st.Message(), code)
	}
	for _, s := range substrs {
		if !strings.Contains(st.Message(), s) {
			tb.Errorf("%s message %q does not contain %q", code, st.Message(), s)
		}
	}
}

// waitUntil polls cond every few milliseconds until it holds, failing tb
// after d.
func waitUntil(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
