package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// These tests isolate the server's Push layer (request checks, conversion
// of values by the view's types, value rules, outcomes in order, codes,
// roles, metrics) with fakePush, an in-memory larder.PushStore. What the
// store does with a pushed row (write-if-newer in Redis, the replay into a
// run written meanwhile) is the store's own tests' business; the test of
// Push end to end, through the Redis store, is TestPushThroughStore.

// fakePush is a larder.PushStore that keeps the rows pushed to it in
// memory, with write-if-newer by event time, over a FeatureStore that
// serves everything else (nil when nothing else is called).
type fakePush struct {
	larder.FeatureStore

	mu sync.Mutex
	// live lists the views that have a live generation; Push into another
	// is ErrNoGeneration.
	live  map[string]bool
	rows  map[string]map[larder.Key]larder.Row
	calls int
	// got is every row given to Push, in order.
	got []larder.PushRow
	// err, when set, is Push's answer.
	err error
}

var _ larder.PushStore = (*fakePush)(nil)

func newFakePush(fs larder.FeatureStore, live ...string) *fakePush {
	f := &fakePush{FeatureStore: fs, live: map[string]bool{}, rows: map[string]map[larder.Key]larder.Row{}}
	for _, v := range live {
		f.live[v] = true
	}
	return f
}

func (f *fakePush) Push(ctx context.Context, v *larder.View, rows []larder.PushRow) ([]larder.PushOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !f.live[v.Name] {
		return nil, fmt.Errorf("push %s: %w", v.Name, larder.ErrNoGeneration)
	}
	if f.rows[v.Name] == nil {
		f.rows[v.Name] = map[larder.Key]larder.Row{}
	}
	out := make([]larder.PushOutcome, len(rows))
	for i, r := range rows {
		f.got = append(f.got, r)
		if err := r.Key.Check(v.EntityDef()); err != nil {
			out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: err.Error()}
			continue
		}
		if len(r.Row.Values) != len(v.Features) {
			out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: fmt.Sprintf("%d values for %d features", len(r.Row.Values), len(v.Features))}
			continue
		}
		if old, ok := f.rows[v.Name][r.Key]; ok && old.EventTime.After(r.Row.EventTime) {
			out[i] = larder.PushOutcome{Result: larder.PushOlder}
			continue
		}
		f.rows[v.Name][r.Key] = larder.Row{EventTime: r.Row.EventTime, Values: slices.Clone(r.Row.Values)}
		out[i] = larder.PushOutcome{Result: larder.PushWritten}
	}
	return out, nil
}

// stored returns the row of key in view, and whether there is one.
func (f *fakePush) stored(view string, key larder.Key) (larder.Row, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rows[view][key]
	return r, ok
}

// pushProject is the test project without its ranker (Push needs no
// model), with a latest view whose value rules refuse (user_strict), one
// whose rules keep non-finite values (user_keep), and a candidates view,
// which Push does not take.
func pushProject(tb testing.TB, edit func(*larder.Project)) *larder.Project {
	tb.Helper()
	return testProject(tb, func(p *larder.Project) {
		p.Rankers = nil
		p.Views = append(p.Views,
			&larder.View{
				Name: "user_strict", Kind: larder.KindLatest, Entity: "user", Source: "events",
				MaxValueBytes: 8, NonFinite: larder.PolicyReject, Oversize: larder.PolicyReject,
				Features: []larder.Feature{
					{Name: "score", Type: larder.TypeFloat64},
					{Name: "name", Type: larder.TypeString},
					{Name: "tags", Type: larder.TypeStringList},
				},
			},
			&larder.View{
				Name: "user_keep", Kind: larder.KindLatest, Entity: "user", Source: "events",
				MaxValueBytes: 8, NonFinite: larder.PolicyKeep,
				Features: []larder.Feature{
					{Name: "score", Type: larder.TypeFloat32},
					{Name: "name", Type: larder.TypeString},
				},
			},
			&larder.View{
				Name: "user_recs", Kind: larder.KindCandidates, Entity: "user", Source: "events",
				Candidates: &larder.Candidates{Entity: "item", ScoreColumn: "score", TopK: 3},
			},
		)
		if edit != nil {
			edit(p)
		}
	})
}

// pushServer is a Service of a pushProject over a fakePush, behind
// NewGRPC on loopback.
type pushServer struct {
	*running
	store  *fakePush
	ingest larderv1.IngestServiceClient
	clock  *clock
	t0     time.Time
}

func servePush(tb testing.TB, edit func(*larder.Project), cfgEdit func(*server.Config)) *pushServer {
	tb.Helper()
	p := pushProject(tb, edit)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ps := &pushServer{store: newFakePush(nil, "user_profile", "user_stats", "item_info", "user_strict", "user_keep"), clock: newClock(t0), t0: t0}
	cfg := server.Config{Project: p, Store: ps.store, Now: ps.clock.Now}
	if cfgEdit != nil {
		cfgEdit(&cfg)
	}
	ps.running = serve(tb, cfg, 5*time.Second)
	ps.ingest = larderv1.NewIngestServiceClient(ps.conn)
	return ps
}

// pushRow builds a row of a Push request.
func pushRow(key *larderv1.EntityKey, at time.Time, vals map[string]*larderv1.Value) *larderv1.PushRow {
	r := &larderv1.PushRow{Key: key, Values: vals}
	if !at.IsZero() {
		r.EventTime = timestamppb.New(at)
	}
	return r
}

// outcome is a PushOutcome in a form that compares.
type outcome struct {
	result larderv1.PushResult
	reason string // a part of the reason
}

var (
	written = outcome{result: larderv1.PushResult_PUSH_RESULT_WRITTEN}
	older   = outcome{result: larderv1.PushResult_PUSH_RESULT_OLDER}
)

func invalid(reason string) outcome {
	return outcome{result: larderv1.PushResult_PUSH_RESULT_INVALID, reason: reason}
}

// checkOutcomes fails tb unless resp holds want, in order, and counts them.
func checkOutcomes(tb testing.TB, resp *larderv1.PushResponse, want ...outcome) {
	tb.Helper()
	got := resp.GetOutcomes()
	if len(got) != len(want) {
		tb.Fatalf("%d outcomes, want %d: %v", len(got), len(want), got)
	}
	var w, o, inv int32
	for i, g := range got {
		if g.GetResult() != want[i].result || !strings.Contains(g.GetReason(), want[i].reason) {
			tb.Errorf("outcome of rows[%d] = %s %q, want %s with a reason containing %q", i, g.GetResult(), g.GetReason(), want[i].result, want[i].reason)
		}
		if g.GetResult() != larderv1.PushResult_PUSH_RESULT_INVALID && g.GetReason() != "" {
			tb.Errorf("outcome of rows[%d] is %s with a reason %q", i, g.GetResult(), g.GetReason())
		}
		switch want[i].result {
		case larderv1.PushResult_PUSH_RESULT_WRITTEN:
			w++
		case larderv1.PushResult_PUSH_RESULT_OLDER:
			o++
		default:
			inv++
		}
	}
	if resp.GetWritten() != w || resp.GetOlder() != o || resp.GetInvalid() != inv {
		tb.Errorf("counts written %d, older %d, invalid %d; want %d, %d, %d", resp.GetWritten(), resp.GetOlder(), resp.GetInvalid(), w, o, inv)
	}
}

// TestPushOutcomes pushes rows of every kind into a latest view: valid rows
// are written or found older, in request order, and each row that is wrong
// alone is invalid with a reason naming its field, while the others are
// written.
func TestPushOutcomes(t *testing.T) {
	ps := servePush(t, nil, nil)
	ctx := t.Context()
	t0 := ps.t0
	full := map[string]*larderv1.Value{
		"age":       intVal(34),
		"score":     intVal(3), // an exact integer for a float64
		"ratio":     f64Val(0.25),
		"active":    boolVal(true),
		"country":   strVal("fr"),
		"avatar":    {Kind: &larderv1.Value_BytesValue{BytesValue: []byte{0, 255}}},
		"embedding": {Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{Values: []float32{0.5, -1}}}},
	}
	resp, err := ps.ingest.Push(ctx, &larderv1.PushRequest{View: "user_profile", Rows: []*larderv1.PushRow{
		pushRow(intKey(1), t0.Add(-time.Minute), full),
		pushRow(intKey(2), t0.Add(-time.Minute), map[string]*larderv1.Value{"age": intVal(51), "country": {}}),
		pushRow(intKey(1), t0.Add(-time.Hour), map[string]*larderv1.Value{"age": intVal(1)}),
		pushRow(strKey("1"), t0, nil),
		pushRow(nil, t0, nil),
		pushRow(intKey(3), time.Time{}, nil),
		pushRow(intKey(3), t0.Add(2*time.Minute), nil),
		pushRow(intKey(3), t0, map[string]*larderv1.Value{"agee": intVal(1), "zzz": intVal(2)}),
		pushRow(intKey(3), t0, map[string]*larderv1.Value{"age": strVal("34")}),
		pushRow(intKey(3), t0, map[string]*larderv1.Value{"score": intVal(1<<53 + 1)}),
		pushRow(intKey(3), t0, map[string]*larderv1.Value{"ratio": f64Val(1e300)}),
		pushRow(intKey(3), t0, map[string]*larderv1.Value{"ratio": intVal(1<<24 + 1)}),
		pushRow(intKey(3), t0, map[string]*larderv1.Value{"country": strVal("a\xffb")}),
		pushRow(intKey(3), t0, map[string]*larderv1.Value{"embedding": f32Val(1)}),
		pushRow(intKey(2), t0, map[string]*larderv1.Value{"age": intVal(52)}),
		{Key: intKey(4), EventTime: &timestamppb.Timestamp{Seconds: -1 << 62}},
	}})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	checkOutcomes(t, resp,
		written,
		written,
		older,
		invalid(`rows[3].key: entity user is keyed by int64 user_id, got a string key`),
		invalid(`rows[4].key: missing key (entity user is keyed by int64 user_id)`),
		invalid(`rows[5].event_time: required`),
		invalid(`rows[6].event_time: 2026-12-01T12:02:00Z is more than 1m0s past the server's clock`),
		invalid(`rows[7].values: view "user_profile" has no feature "agee" (features: age, score, ratio, active, country, avatar, embedding)`),
		invalid(`rows[8].values["age"]: must be an int64 value (the feature is int64); got a string value`),
		invalid(`rows[9].values["score"]: got int64 value 9007199254740993, which float64 does not hold exactly`),
		invalid(`rows[10].values["ratio"]: got float64 value 1e+300, beyond the range of float32`),
		invalid(`rows[11].values["ratio"]: got int64 value 16777217, which float32 does not hold exactly`),
		invalid(`rows[12].values["country"]: the string "a\xffb" is not valid UTF-8`),
		invalid(`rows[13].values["embedding"]: must be a float32_vector value (the feature is float32_vector); got a float32 value`),
		written,
		invalid(`rows[15].event_time: proto:`),
	)

	// The store was given the valid rows alone, in request order.
	ps.store.mu.Lock()
	var keys []string
	for _, r := range ps.store.got {
		keys = append(keys, r.Key.String())
	}
	ps.store.mu.Unlock()
	if want := []string{"1", "2", "1", "2"}; !slices.Equal(keys, want) {
		t.Errorf("the store was given the rows of keys %v, want %v", keys, want)
	}

	row, ok := ps.store.stored("user_profile", larder.Int64Key(1))
	want := []larder.Value{larder.Int64Value(34), larder.Float64Value(3), larder.Float32Value(0.25), larder.BoolValue(true),
		larder.StringValue("fr"), larder.BytesValue([]byte{0, 255}), larder.Float32VectorValue([]float32{0.5, -1})}
	if !ok || !row.EventTime.Equal(t0.Add(-time.Minute)) || !equalValues(row.Values, want) {
		t.Errorf("user 1 = %v, want %v at %s", row, want, t0.Add(-time.Minute))
	}
	// Features left out, or sent with no kind, are null: a row replaces
	// the whole stored row.
	row, _ = ps.store.stored("user_profile", larder.Int64Key(2))
	want = []larder.Value{larder.Int64Value(52), larder.Null, larder.Null, larder.Null, larder.Null, larder.Null, larder.Null}
	if !equalValues(row.Values, want) {
		t.Errorf("user 2 = %v, want %v", row.Values, want)
	}
}

func equalValues(a, b []larder.Value) bool {
	return slices.EqualFunc(a, b, larder.Value.Equal)
}

// TestPushValueKinds converts a value of each kind for each feature type:
// the kind of the type's name always, floats of the other width and exact
// integers for float features, an empty vector or list as a value, not
// null.
func TestPushValueKinds(t *testing.T) {
	ps := servePush(t, func(p *larder.Project) {
		p.Views = append(p.Views, &larder.View{
			Name: "user_lists", Kind: larder.KindLatest, Entity: "user", Source: "events",
			Features: []larder.Feature{
				{Name: "ids", Type: larder.TypeInt64List},
				{Name: "tags", Type: larder.TypeStringList},
				{Name: "vec", Type: larder.TypeFloat32Vector},
				{Name: "f64", Type: larder.TypeFloat64},
			},
		})
	}, nil)
	ps.store.mu.Lock()
	ps.store.live["user_lists"] = true
	ps.store.mu.Unlock()
	for _, tc := range []struct {
		name string
		vals map[string]*larderv1.Value
		want []larder.Value
	}{
		{"lists", map[string]*larderv1.Value{
			"ids":  {Kind: &larderv1.Value_Int64ListValue{Int64ListValue: &larderv1.Int64List{Values: []int64{3, -1}}}},
			"tags": {Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{Values: []string{"a", ""}}}},
			"vec":  {Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{Values: []float32{1.5}}}},
			"f64":  f32Val(0.5),
		}, []larder.Value{larder.Int64ListValue([]int64{3, -1}), larder.StringListValue([]string{"a", ""}), larder.Float32VectorValue([]float32{1.5}), larder.Float64Value(0.5)}},
		{"empty lists", map[string]*larderv1.Value{
			"ids":  {Kind: &larderv1.Value_Int64ListValue{Int64ListValue: &larderv1.Int64List{}}},
			"tags": {Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{}}},
			"vec":  {Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{}}},
			"f64":  intVal(-(1 << 53)),
		}, []larder.Value{larder.Int64ListValue([]int64{}), larder.StringListValue([]string{}), larder.Float32VectorValue([]float32{}), larder.Float64Value(-(1 << 53))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps.clock.Add(time.Second)
			resp, err := ps.ingest.Push(t.Context(), &larderv1.PushRequest{View: "user_lists", Rows: []*larderv1.PushRow{pushRow(intKey(9), ps.clock.Now(), tc.vals)}})
			if err != nil {
				t.Fatal(err)
			}
			checkOutcomes(t, resp, written)
			row, _ := ps.store.stored("user_lists", larder.Int64Key(9))
			if !equalValues(row.Values, tc.want) {
				t.Errorf("stored %v, want %v", row.Values, tc.want)
			}
			for i, v := range row.Values {
				if v.IsNull() {
					t.Errorf("value %d is null, want an empty %s", i, tc.want[i].Type())
				}
			}
		})
	}
	resp, err := ps.ingest.Push(t.Context(), &larderv1.PushRequest{View: "user_lists", Rows: []*larderv1.PushRow{
		pushRow(intKey(9), ps.t0, map[string]*larderv1.Value{"tags": {Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{Values: []string{"ok", "\xc3"}}}}}),
		pushRow(intKey(9), ps.t0, map[string]*larderv1.Value{"ids": {Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{}}}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, resp,
		invalid(`rows[0].values["tags"]: element 1, "\xc3", is not valid UTF-8`),
		invalid(`rows[1].values["ids"]: must be an int64_list value (the feature is int64_list); got a string_list value`))
}

// TestPushValueRules applies the views' value rules to pushed values as a
// run does: reject makes the row invalid, null (the default) stores null,
// keep keeps.
func TestPushValueRules(t *testing.T) {
	ps := servePush(t, nil, nil)
	ctx := t.Context()
	at := ps.t0.Add(-time.Second)
	push := func(view string, rows ...*larderv1.PushRow) *larderv1.PushResponse {
		t.Helper()
		resp, err := ps.ingest.Push(ctx, &larderv1.PushRequest{View: view, Rows: rows})
		if err != nil {
			t.Fatalf("Push %s: %v", view, err)
		}
		return resp
	}

	resp := push("user_strict",
		pushRow(intKey(1), at, map[string]*larderv1.Value{"score": f64Val(math.NaN())}),
		pushRow(intKey(2), at, map[string]*larderv1.Value{"score": f64Val(math.Inf(-1))}),
		pushRow(intKey(3), at, map[string]*larderv1.Value{"name": strVal("nine char")}),
		pushRow(intKey(4), at, map[string]*larderv1.Value{"tags": {Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{Values: []string{"abcd", "efgh"}}}}}),
		pushRow(intKey(5), at, map[string]*larderv1.Value{"score": f64Val(1.5), "name": strVal("8 chars!")}),
	)
	checkOutcomes(t, resp,
		invalid(`rows[0].values["score"]: NaN is refused by view "user_strict" (non_finite: reject)`),
		invalid(`rows[1].values["score"]: -Inf is refused`),
		invalid(`rows[2].values["name"]: the value takes 9 bytes, more than view "user_strict"'s max_value_bytes of 8 (oversize: reject)`),
		invalid(`rows[3].values["tags"]: the value takes 10 bytes`),
		written,
	)

	resp = push("user_profile", pushRow(intKey(7), at, map[string]*larderv1.Value{
		"score": f64Val(math.Inf(1)), "ratio": f32Val(float32(math.NaN())), "age": intVal(7),
		"country": strVal(strings.Repeat("x", larder.DefaultMaxValueBytes+1)),
	}))
	checkOutcomes(t, resp, written)
	row, _ := ps.store.stored("user_profile", larder.Int64Key(7))
	if want := []larder.Value{larder.Int64Value(7), larder.Null, larder.Null, larder.Null, larder.Null, larder.Null, larder.Null}; !equalValues(row.Values, want) {
		t.Errorf("with the default rules (null) stored %v, want %v", row.Values, want)
	}

	resp = push("user_keep", pushRow(intKey(8), at, map[string]*larderv1.Value{"score": f64Val(math.Inf(1)), "name": strVal("too long!")}))
	checkOutcomes(t, resp, written)
	row, _ = ps.store.stored("user_keep", larder.Int64Key(8))
	if len(row.Values) != 2 || !math.IsInf(float64(row.Values[0].Float32()), 1) || !row.Values[1].IsNull() {
		t.Errorf("with non_finite keep and oversize null stored %v, want +Inf and null", row.Values)
	}
}

// TestPushRefused checks the requests refused as a whole, and the codes of
// the store's errors.
func TestPushRefused(t *testing.T) {
	ps := servePush(t, func(p *larder.Project) { p.Server.MaxRequestCells = 100 }, nil)
	ctx := t.Context()
	row := pushRow(intKey(1), ps.t0, nil)
	rows := func(n int) []*larderv1.PushRow {
		out := make([]*larderv1.PushRow, n)
		for i := range out {
			out[i] = row
		}
		return out
	}
	for _, tc := range []struct {
		name string
		req  *larderv1.PushRequest
		code codes.Code
		msg  []string
	}{
		{"no view", &larderv1.PushRequest{Rows: rows(1)}, codes.InvalidArgument,
			[]string{"view: a view name is required (latest views: user_profile, user_stats, item_info, user_never, user_strict, user_keep)"}},
		{"unknown view", &larderv1.PushRequest{View: "nope", Rows: rows(1)}, codes.InvalidArgument, []string{`view: unknown view "nope" (latest views:`}},
		{"a long name", &larderv1.PushRequest{View: strings.Repeat("v", 1000), Rows: rows(1)}, codes.InvalidArgument, []string{"is longer than any the project has"}},
		{"a candidates view", &larderv1.PushRequest{View: "user_recs", Rows: rows(1)}, codes.InvalidArgument,
			[]string{`view: "user_recs" is not a latest view (its kind is candidates); Push writes into latest views only`}},
		{"no rows", &larderv1.PushRequest{View: "user_stats"}, codes.InvalidArgument, []string{"rows: at least one row is required"}},
		{"too many rows", &larderv1.PushRequest{View: "user_stats", Rows: rows(testMaxEntities + 1)}, codes.InvalidArgument,
			[]string{"rows: 65 rows is more than the limit of 64 per request (server.max_entities)"}},
		{"too many values", &larderv1.PushRequest{View: "user_profile", Rows: rows(15)}, codes.ResourceExhausted,
			[]string{`request too large for this server: 15 rows × 7 features of view "user_profile" is 105 values, more than the limit of 100 per request (server.max_request_cells); push at most 14 rows`}},
		{"a view never published", &larderv1.PushRequest{View: "user_never", Rows: rows(1)}, codes.FailedPrecondition, []string{"push user_never", "no published generation"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ps.ingest.Push(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg...)
		})
	}

	t.Run("every row invalid", func(t *testing.T) {
		ps.store.mu.Lock()
		calls := ps.store.calls
		ps.store.mu.Unlock()
		resp, err := ps.ingest.Push(ctx, &larderv1.PushRequest{View: "user_stats", Rows: []*larderv1.PushRow{pushRow(strKey("x"), ps.t0, nil)}})
		if err != nil {
			t.Fatal(err)
		}
		checkOutcomes(t, resp, invalid("rows[0].key"))
		ps.store.mu.Lock()
		defer ps.store.mu.Unlock()
		if ps.store.calls != calls {
			t.Errorf("the store was called for a request with no valid row")
		}
	})

	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("store: push user_stats: %w", larder.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("store: push user_stats: %w", larder.ErrSchemaChanged), codes.FailedPrecondition},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.New("store: something else"), codes.Internal},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			ps.store.mu.Lock()
			ps.store.err = tc.err
			ps.store.mu.Unlock()
			defer func() { ps.store.mu.Lock(); ps.store.err = nil; ps.store.mu.Unlock() }()
			_, err := ps.ingest.Push(ctx, &larderv1.PushRequest{View: "user_stats", Rows: rows(1)})
			wantCode(t, err, tc.code)
		})
	}
}

// TestPushWithoutPushStore serves a store that does not take pushes: Push
// is UNIMPLEMENTED, with a message that says why.
func TestPushWithoutPushStore(t *testing.T) {
	type readOnly struct{ larder.FeatureStore }
	p := pushProject(t, nil)
	srv := serve(t, server.Config{Project: p, Store: readOnly{}}, 5*time.Second)
	_, err := larderv1.NewIngestServiceClient(srv.conn).Push(t.Context(), &larderv1.PushRequest{View: "user_stats", Rows: []*larderv1.PushRow{pushRow(intKey(1), time.Now(), nil)}})
	wantCode(t, err, codes.Unimplemented, "does not take pushed rows")
}

// TestPushReload pushes into a view that a new configuration added, and no
// more into one it removed.
func TestPushReload(t *testing.T) {
	p := pushProject(t, nil)
	st := newFakePush(nil, "user_stats", "user_new")
	svc, err := server.New(server.Config{Project: p, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	next := pushProject(t, func(p *larder.Project) {
		p.Views = slices.DeleteFunc(p.Views, func(v *larder.View) bool { return v.Name == "user_stats" })
		p.Views = append(p.Views, &larder.View{Name: "user_new", Kind: larder.KindLatest, Entity: "user", Source: "events",
			Features: []larder.Feature{{Name: "n", Type: larder.TypeInt64}}})
	})
	if err := svc.ApplyProject(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	conn := serveGRPC(t, t.Context(), server.NewFeatureGRPC(svc, nil)).conn
	ingest := larderv1.NewIngestServiceClient(conn)
	resp, err := ingest.Push(t.Context(), &larderv1.PushRequest{View: "user_new", Rows: []*larderv1.PushRow{pushRow(intKey(1), time.Now(), map[string]*larderv1.Value{"n": intVal(5)})}})
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, resp, written)
	_, err = ingest.Push(t.Context(), &larderv1.PushRequest{View: "user_stats", Rows: []*larderv1.PushRow{pushRow(intKey(1), time.Now(), nil)}})
	wantCode(t, err, codes.InvalidArgument, `unknown view "user_stats"`)
}

// TestPushListeners checks where the IngestService is served: with the
// FeatureService (NewGRPC, NewFeatureGRPC), with its health status, and
// not on the operators' listener (NewAdminGRPC).
func TestPushListeners(t *testing.T) {
	p := pushProject(t, nil)
	svc, err := server.New(server.Config{Project: p, Store: newFakePush(nil, "user_stats")})
	if err != nil {
		t.Fatal(err)
	}
	req := &larderv1.PushRequest{View: "user_stats", Rows: []*larderv1.PushRow{pushRow(intKey(1), time.Now(), nil)}}
	for _, tc := range []struct {
		name  string
		build func(*server.Service, *slog.Logger, ...grpc.ServerOption) *server.GRPC
		want  codes.Code
	}{
		{"NewGRPC", server.NewGRPC, codes.OK},
		{"NewFeatureGRPC", server.NewFeatureGRPC, codes.OK},
		{"NewAdminGRPC", server.NewAdminGRPC, codes.Unimplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := serveGRPC(t, t.Context(), tc.build(svc, nil)).conn
			_, err := larderv1.NewIngestServiceClient(conn).Push(t.Context(), req)
			if status.Code(err) != tc.want {
				t.Errorf("Push = %v, want %s", err, tc.want)
			}
			health, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "larder.v1.IngestService"})
			if tc.want == codes.OK && (err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING) {
				t.Errorf("health of larder.v1.IngestService = %v, %v; want SERVING", health, err)
			}
			if tc.want != codes.OK && status.Code(err) != codes.NotFound {
				t.Errorf("health of larder.v1.IngestService on the operators' listener = %v, %v; want NOT_FOUND", health, err)
			}
		})
	}
}

// TestAuthPush checks the roles of Push: read is PERMISSION_DENIED, write
// and admin push, no credential is UNAUTHENTICATED; Push is not audited.
func TestAuthPush(t *testing.T) {
	s := serveSecured(t, secureConfig{auth: testAuth(t), push: true})
	ingest := larderv1.NewIngestServiceClient(s.dial(t, "", ""))
	ctx := t.Context()
	req := &larderv1.PushRequest{View: "user_stats", Rows: []*larderv1.PushRow{pushRow(intKey(1), time.Now(), map[string]*larderv1.Value{"clicks": intVal(3)})}}

	_, err := ingest.Push(ctx, req)
	wantCode(t, err, codes.Unauthenticated, "no credential")
	_, err = ingest.Push(withToken(ctx, readToken), req)
	wantCode(t, err, codes.PermissionDenied, "/larder.v1.IngestService/Push needs the write role; token recs has read")
	for _, token := range []string{writeToken, adminToken} {
		resp, err := ingest.Push(withToken(ctx, token), req)
		if err != nil {
			t.Fatalf("Push with a %s token: %v", strings.SplitN(token, "-", 2)[0], err)
		}
		if resp.GetWritten() != 1 {
			t.Errorf("Push with a %s token = %v, want 1 row written", strings.SplitN(token, "-", 2)[0], resp)
		}
	}
	for _, l := range audits(s.logs.String()) {
		if strings.Contains(l.method, "IngestService") {
			t.Errorf("an audit line for %s: only the operators' services are audited", l.method)
		}
	}
}

// TestPushMetrics checks that Push requests are counted by method and code,
// and their rows by view and result.
func TestPushMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ps := servePush(t, nil, func(cfg *server.Config) { cfg.Metrics = metrics })
	ctx := t.Context()
	// The second push is an hour older: both its valid rows are left out.
	for _, at := range []time.Time{ps.t0.Add(-time.Minute), ps.t0.Add(-time.Hour)} {
		if _, err := ps.ingest.Push(ctx, &larderv1.PushRequest{View: "user_stats", Rows: []*larderv1.PushRow{
			pushRow(intKey(1), at, nil), pushRow(intKey(2), at, nil), pushRow(strKey("x"), at, nil),
		}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = ps.ingest.Push(ctx, &larderv1.PushRequest{View: "nope", Rows: []*larderv1.PushRow{pushRow(intKey(1), ps.t0, nil)}})
	wantCode(t, err, codes.InvalidArgument)

	want := `
# HELP larder_push_rows_total Rows pushed through IngestService.Push, by view and result: written (now the entity's stored row), older (left out, the stored row being newer) or invalid (refused, with a reason in the response).
# TYPE larder_push_rows_total counter
larder_push_rows_total{result="invalid",view="user_stats"} 2
larder_push_rows_total{result="older",view="user_stats"} 2
larder_push_rows_total{result="written",view="user_stats"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "larder_push_rows_total"); err != nil {
		t.Error(err)
	}
	requests := `
# HELP larder_grpc_requests_total Unary gRPC requests handled, by method and status code.
# TYPE larder_grpc_requests_total counter
larder_grpc_requests_total{code="InvalidArgument",method="/larder.v1.IngestService/Push"} 1
larder_grpc_requests_total{code="OK",method="/larder.v1.IngestService/Push"} 2
`
	if err := compareSeries(reg, requests, "larder_grpc_requests_total", "/larder.v1.IngestService/"); err != nil {
		t.Error(err)
	}
}

// compareSeries compares the series of metric whose labels contain part
// with want, in the text format.
func compareSeries(reg *prometheus.Registry, want, metric, part string) error {
	families, err := reg.Gather()
	if err != nil {
		return err
	}
	var got []string
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			line := fmt.Sprintf("%s{%s} %g", metric, strings.Join(labels, ","), m.GetCounter().GetValue())
			if strings.Contains(line, part) {
				got = append(got, line)
			}
		}
	}
	var wantLines []string
	for _, l := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.HasPrefix(l, "#") {
			wantLines = append(wantLines, l)
		}
	}
	slices.Sort(got)
	slices.Sort(wantLines)
	if !slices.Equal(got, wantLines) {
		return fmt.Errorf("series of %s with %s:\n%s\nwant:\n%s", metric, part, strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
	return nil
}

// TestPushThroughStore pushes through the server into the Redis store of a
// real redis-server, and reads the rows back with GetFeatures: a row newer
// than the published one replaces it, an older one is left out, the values
// come back as pushed; a push made while a full run of the view is being
// written is still there once that run has published.
func TestPushThroughStore(t *testing.T) {
	f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": newFakeModel("v1", 1)}})
	ingest := larderv1.NewIngestServiceClient(f.conn)
	ctx := t.Context()
	read := func(t *testing.T, id int64, features ...string) []cellValue {
		t.Helper()
		resp, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: intKeys(id), Features: features})
		if err != nil {
			t.Fatalf("GetFeatures: %v", err)
		}
		return rowsOf(resp)[0]
	}
	fresh := f.t0.Add(-time.Minute)

	resp, err := ingest.Push(ctx, &larderv1.PushRequest{View: "user_stats", Rows: []*larderv1.PushRow{
		// User 1's stats were published 10 minutes ago: this is newer.
		pushRow(intKey(1), fresh, map[string]*larderv1.Value{"clicks": intVal(13), "spend": f64Val(100.25)}),
		// User 4's are 1000 hours old, this one older still.
		pushRow(intKey(4), f.t0.Add(-2000*time.Hour), map[string]*larderv1.Value{"clicks": intVal(1)}),
		// User 9 has none.
		pushRow(intKey(9), fresh, map[string]*larderv1.Value{"clicks": intVal(1)}),
		pushRow(intKey(9), fresh, map[string]*larderv1.Value{"clicks": strVal("x")}),
	}})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	checkOutcomes(t, resp, written, older, written, invalid(`rows[3].values["clicks"]: must be an int64 value`))

	row := read(t, 1, "user_stats:*")
	if v := row; v[0].value.GetInt64Value() != 13 || v[1].value.GetFloat64Value() != 100.25 || !v[0].eventTime.Equal(fresh) {
		t.Errorf("user 1 reads %v, want the pushed row", v)
	}
	if v := read(t, 4, "user_stats:clicks")[0]; v.value.GetInt64Value() != 90 {
		t.Errorf("user 4 reads %v, want the published 90: an older push is left out", v)
	}
	if v := read(t, 9, "user_stats:*"); v[0].value.GetInt64Value() != 1 || v[1].value.GetKind() != nil ||
		v[0].status != larderv1.FeatureStatus_FEATURE_STATUS_PRESENT {
		t.Errorf("user 9 reads %v, want clicks 1, spend null", v)
	}

	_, err = ingest.Push(ctx, &larderv1.PushRequest{View: "user_never", Rows: []*larderv1.PushRow{pushRow(intKey(1), fresh, nil)}})
	wantCode(t, err, codes.FailedPrecondition, "user_never")

	t.Run("during a full run", func(t *testing.T) {
		w, err := f.store.BeginSized(ctx, f.project.View("user_stats"), 1)
		if err != nil {
			t.Fatal(err)
		}
		// The run writes user 1 as of an hour ago; the push is newer.
		if err := w.Put(ctx, larder.Int64Key(1), larder.Row{EventTime: f.t0.Add(-time.Hour), Values: []larder.Value{larder.Int64Value(2), larder.Float64Value(2)}}); err != nil {
			t.Fatal(err)
		}
		resp, err := ingest.Push(ctx, &larderv1.PushRequest{View: "user_stats", Rows: []*larderv1.PushRow{
			pushRow(intKey(1), f.t0, map[string]*larderv1.Value{"clicks": intVal(14)}),
		}})
		if err != nil {
			t.Fatal(err)
		}
		checkOutcomes(t, resp, written)
		g, err := w.Publish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if g.ID <= f.gens["user_stats"].ID {
			t.Fatalf("the run published generation %d, not after %d", g.ID, f.gens["user_stats"].ID)
		}
		// The live generation may be cached by the store for a moment.
		waitUntil(t, 10*time.Second, "the new generation is read", func() bool {
			resp, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_stats:clicks"}})
			return err == nil && resp.GetGenerations()[0].GetGeneration() == g.ID
		})
		if v := read(t, 1, "user_stats:clicks")[0]; v.value.GetInt64Value() != 14 || !v.eventTime.Equal(f.t0) {
			t.Errorf("user 1 reads %v after the run published, want the push made during it (14)", v)
		}
	})
}
