package client_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

const (
	present  = larderv1.FeatureStatus_FEATURE_STATUS_PRESENT
	stale    = larderv1.FeatureStatus_FEATURE_STATUS_STALE
	notFound = larderv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND
)

func dial(tb testing.TB, addr string, opts ...client.Option) *client.Client {
	tb.Helper()
	c, err := client.Dial(addr, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func TestGetFeatures(t *testing.T) {
	c := dial(t, serveTest(t))
	f, err := c.GetFeatures(t.Context(), client.Int64Keys(1, 2, 3), "user_profile:*", "user_profile:score")
	if err != nil {
		t.Fatal(err)
	}
	if f.Rows() != 3 || f.Columns() != 5 {
		t.Fatalf("%d rows × %d columns, want 3 × 5", f.Rows(), f.Columns())
	}
	col := func(ref string) int {
		t.Helper()
		i, ok := f.Column(ref)
		if !ok {
			t.Fatalf("no column %s", ref)
		}
		return i
	}
	age, score, country, emb, recent := col("user_profile:age"), col("user_profile:score"), col("user_profile:country"), col("user_profile:embedding"), col("user_profile:recent")
	if i, ok := f.Column("user_profile:nope"); ok || i != -1 {
		t.Errorf("Column of a feature the response lacks = %d, %v; want -1, false", i, ok)
	}
	if f.Type(score) != larderv1.ValueType_VALUE_TYPE_FLOAT64 || f.View(score) != "user_profile" || f.Generation(score) == 0 {
		t.Errorf("score: type %s, view %q, generation %d", f.Type(score), f.View(score), f.Generation(score))
	}

	// User 1: every value, fresh.
	if f.Int64(age, 0) != 34 || f.Float64(score, 0) != 0.75 || f.String(country, 0) != "fr" ||
		!slices.Equal(f.Float32Vector(emb, 0), []float32{0.5, -1}) || !slices.Equal(f.Int64List(recent, 0), []int64{7, 8, 9}) {
		t.Errorf("user 1 = %v %v %v %v %v", f.Int64(age, 0), f.Float64(score, 0), f.String(country, 0), f.Float32Vector(emb, 0), f.Int64List(recent, 0))
	}
	if f.Status(age, 0) != present || !f.EventTime(age, 0).Equal(t0.Add(-10*time.Minute)) || f.IsNull(age, 0) {
		t.Errorf("user 1: status %s, event time %s, null %v", f.Status(age, 0), f.EventTime(age, 0), f.IsNull(age, 0))
	}
	// User 2: stale, with nulls, and an empty vector that is not null.
	if f.Status(score, 1) != stale || !f.Found(score, 1) || !f.IsNull(age, 1) || !f.IsNull(country, 1) || f.IsNull(score, 1) || f.Float64(score, 1) != -2.5 {
		t.Errorf("user 2: status %s, age null %v, country null %v, score %v", f.Status(score, 1), f.IsNull(age, 1), f.IsNull(country, 1), f.Float64(score, 1))
	}
	if f.IsNull(emb, 1) || len(f.Float32Vector(emb, 1)) != 0 || !slices.Equal(f.Int64List(recent, 1), []int64{4}) {
		t.Errorf("user 2: embedding %v (null %v), recent %v", f.Float32Vector(emb, 1), f.IsNull(emb, 1), f.Int64List(recent, 1))
	}
	// Row reads the same values.
	if r := f.Row(0); !slices.Equal(r.Float32Vector(emb), []float32{0.5, -1}) || !slices.Equal(r.Int64List(recent), []int64{7, 8, 9}) || !r.Found(age) || f.Row(2).Found(age) {
		t.Errorf("row 0: embedding %v, recent %v", r.Float32Vector(emb), r.Int64List(recent))
	}
	// User 3: not found, every value null.
	for col := range f.Columns() {
		if f.Status(col, 2) != notFound || f.Found(col, 2) || !f.IsNull(col, 2) || !f.EventTime(col, 2).IsZero() || f.Value(col, 2).GetKind() != nil {
			t.Errorf("user 3 %s: status %s, null %v, event time %s", f.Name(col), f.Status(col, 2), f.IsNull(col, 2), f.EventTime(col, 2))
		}
	}
	// A typed accessor of another type panics, naming the column.
	if msg := panics(func() { f.Float64(age, 0) }); !strings.Contains(msg, `"user_profile:age", a column of type int64`) {
		t.Errorf("Float64 of an int64 column panics %q", msg)
	}

	var seen []int
	for i, row := range f.All() {
		seen = append(seen, i)
		if row.Index() != i || row.Float64(score) != f.Float64(score, i) || row.IsNull(age) != f.IsNull(age, i) {
			t.Errorf("row %d differs from the accessors of Features", i)
		}
	}
	if !slices.Equal(seen, []int{0, 1, 2}) {
		t.Errorf("All visited rows %v", seen)
	}

	_, err = c.GetFeatures(t.Context(), client.Int64Keys(1), "user_profile:nope")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "nope") {
		t.Errorf("an unknown feature: %v, want INVALID_ARGUMENT naming it", err)
	}
}

func TestRankAndListViews(t *testing.T) {
	c := dial(t, serveTest(t))
	resp, err := c.Rank(t.Context(), &larderv1.RankRequest{Ranker: "reco", ContextKey: client.Int64Key(1), CandidateKeys: client.StringKeys("a", "b", "c")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, cand := range resp.GetCandidates() {
		got = append(got, cand.GetKey().GetStringValue())
	}
	if !slices.Equal(got, []string{"a", "c"}) || resp.GetModelVersion() != "price-v1" {
		t.Errorf("Rank = %v by %q, want [a c] by price-v1", got, resp.GetModelVersion())
	}
	views, err := c.ListViews(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 2 || views[0].GetName() != "user_profile" || views[0].GetGeneration() == 0 || len(views[0].GetFeatures()) != 5 {
		t.Errorf("ListViews = %v", views)
	}
}

// TestRetries checks that a call is retried while the server answers
// UNAVAILABLE, as many times as the client allows, and that a call
// without a deadline gets the client's.
func TestRetries(t *testing.T) {
	var calls, failures atomic.Int64
	var deadline atomic.Bool
	flaky := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		if _, ok := ctx.Deadline(); ok {
			deadline.Store(true)
		}
		if failures.Load() > 0 {
			failures.Add(-1)
			return nil, status.Error(codes.Unavailable, "try again")
		}
		return h(ctx, req)
	})
	addr := serveTest(t, flaky)
	for _, tc := range []struct {
		name     string
		attempts int
		failures int64
		want     codes.Code
	}{
		{"recovers within the attempts", 4, 3, codes.OK},
		{"gives up after the attempts", 2, 2, codes.Unavailable},
		{"no retries", 1, 1, codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr, client.WithAttempts(tc.attempts))
			calls.Store(0)
			failures.Store(tc.failures)
			deadline.Store(false)
			_, err := c.ListViews(context.Background())
			if status.Code(err) != tc.want {
				t.Errorf("ListViews: %v, want %s", err, tc.want)
			}
			if n := calls.Load(); n != min(tc.failures+1, int64(tc.attempts)) {
				t.Errorf("the server saw %d calls, want %d", n, min(tc.failures+1, int64(tc.attempts)))
			}
			if !deadline.Load() {
				t.Error("a call without a deadline reached the server without the client's default")
			}
		})
	}
}

// TestRetriesWithinTheDeadline checks that a call whose deadline ends
// while it waits to try the server again fails with the server's
// UNAVAILABLE and its reason, as Dial says, not with a bare
// DEADLINE_EXCEEDED that hides why the server was not reached.
func TestRetriesWithinTheDeadline(t *testing.T) {
	var calls atomic.Int64
	down := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		return nil, status.Error(codes.Unavailable, "the store cannot be reached")
	})
	addr := serveTest(t, down)
	// 4 attempts wait 40-60, 80-120 and 160-240 ms between them: a
	// deadline of 250 ms ends in the third wait, with room for slow
	// attempts.
	c := dial(t, addr, client.WithTimeout(250*time.Millisecond))
	start := time.Now()
	_, err := c.GetFeatures(context.Background(), client.Int64Keys(1), "user_profile:age")
	if took := time.Since(start); took > time.Second {
		t.Errorf("the call took %s, past its deadline of 250ms", took)
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "the store cannot be reached") {
		t.Errorf("GetFeatures: %v, want UNAVAILABLE with the server's reason", err)
	}
	if n := calls.Load(); n < 1 || n > 3 {
		t.Errorf("the server saw %d calls, want 1 to 3 within the deadline", n)
	}

	// A caller's own deadline is kept when the call itself runs out of it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	if _, err := c.ListViews(ctx); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ListViews past its deadline: %v, want DEADLINE_EXCEEDED", err)
	}
}

func TestDialOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr string
		opts []client.Option
		want string
	}{
		{"token in clear text", "10.1.2.3:8080", []client.Option{client.WithBearerToken("0123456789abcdef")}, "clear text"},
		{"too many attempts", "127.0.0.1:1", []client.Option{client.WithAttempts(11)}, "attempts 11"},
		{"keepalive too short", "127.0.0.1:1", []client.Option{client.WithKeepalive(time.Second)}, "keepalive"},
		{"token with a blank", "127.0.0.1:1", []client.Option{client.WithBearerToken("a b")}, "blank"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Dial(tc.addr, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dial: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// A token to a loopback address in clear text is allowed.
	c, err := client.Dial("127.0.0.1:1", client.WithBearerToken("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestNewFeaturesRejects checks that a response that does not hold
// together is refused with the column or view at fault.
func TestNewFeaturesRejects(t *testing.T) {
	view := func() *larderv1.ViewRows {
		return &larderv1.ViewRows{View: "v", Statuses: []larderv1.FeatureStatus{present, present}, EventTimeMicros: []int64{1, 2}}
	}
	f64 := larderv1.ValueType_VALUE_TYPE_FLOAT64
	for _, tc := range []struct {
		name string
		resp *larderv1.GetFeaturesResponse
		want string
	}{
		{"short column", &larderv1.GetFeaturesResponse{RowCount: 2, Views: []*larderv1.ViewRows{view()},
			Columns: []*larderv1.FeatureColumn{{Name: "v:a", Type: f64, Float64Values: []float64{1}}}}, "columns[0] (v:a): 1 values"},
		{"view out of range", &larderv1.GetFeaturesResponse{RowCount: 2, Views: []*larderv1.ViewRows{view()},
			Columns: []*larderv1.FeatureColumn{{Name: "v:a", Type: f64, View: 1, Float64Values: []float64{1, 2}}}}, "view 1"},
		{"short view", &larderv1.GetFeaturesResponse{RowCount: 3, Views: []*larderv1.ViewRows{view()}}, "views[0] (v)"},
		{"null row out of range", &larderv1.GetFeaturesResponse{RowCount: 2, Views: []*larderv1.ViewRows{view()},
			Columns: []*larderv1.FeatureColumn{{Name: "v:a", Type: f64, Float64Values: []float64{1, 2}, NullRows: []int32{2}}}}, "null row 2"},
		{"list lengths", &larderv1.GetFeaturesResponse{RowCount: 2, Views: []*larderv1.ViewRows{view()},
			Columns: []*larderv1.FeatureColumn{{Name: "v:l", Type: larderv1.ValueType_VALUE_TYPE_INT64_LIST, ListLengths: []int32{1, 2}, Int64ListValues: []int64{1}}}}, "add up to 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.NewFeatures(tc.resp)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewFeatures: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// bigFeatures answers GetFeatures with rows rows of one string column of
// width bytes each, as a server whose max_response_bytes (64MiB by default)
// allows does.
type bigFeatures struct {
	larderv1.UnimplementedFeatureServiceServer
	rows, width int
}

func (b bigFeatures) GetFeatures(context.Context, *larderv1.GetFeaturesRequest) (*larderv1.GetFeaturesResponse, error) {
	col := &larderv1.FeatureColumn{Name: "doc:text", Type: larderv1.ValueType_VALUE_TYPE_STRING}
	v := &larderv1.ViewRows{View: "doc"}
	for range b.rows {
		col.StringValues = append(col.StringValues, strings.Repeat("x", b.width))
		v.Statuses = append(v.Statuses, present)
		v.EventTimeMicros = append(v.EventTimeMicros, 1)
	}
	return &larderv1.GetFeaturesResponse{RowCount: int32(b.rows), Columns: []*larderv1.FeatureColumn{col}, Views: []*larderv1.ViewRows{v}}, nil
}

// TestLargeResponse checks that the client reads a response past gRPC's
// default limit of 4 MiB, up to the 64 MiB a larder server answers by
// default (server.max_response_bytes), and that WithDialOptions can lower
// its limit.
func TestLargeResponse(t *testing.T) {
	g := grpc.NewServer()
	larderv1.RegisterFeatureServiceServer(g, bigFeatures{rows: 1000, width: 6 << 10}) // 6 MiB
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)

	f, err := dial(t, lis.Addr().String()).GetFeatures(t.Context(), client.Int64Keys(1), "doc:text")
	if err != nil {
		t.Fatalf("GetFeatures of 6 MiB: %v", err)
	}
	if f.Rows() != 1000 || len(f.String(0, 999)) != 6<<10 {
		t.Errorf("read %d rows, the last of %d bytes; want 1000 of %d", f.Rows(), len(f.String(0, 999)), 6<<10)
	}

	small := dial(t, lis.Addr().String(), client.WithDialOptions(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<20))))
	if _, err := small.GetFeatures(t.Context(), client.Int64Keys(1), "doc:text"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("GetFeatures of 6 MiB with a limit of 1 MiB: %v, want RESOURCE_EXHAUSTED", err)
	}
}
