package server_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// protoValue is the API form of v, written here independently of the
// server's conversion.
func protoValue(v larder.Value) *larderv1.Value {
	switch v.Type() {
	case larder.TypeInt64:
		return intVal(v.Int64())
	case larder.TypeFloat64:
		return f64Val(v.Float64())
	case larder.TypeFloat32:
		return f32Val(v.Float32())
	case larder.TypeBool:
		return boolVal(v.Bool())
	case larder.TypeString:
		return strVal(v.Str())
	case larder.TypeBytes:
		return &larderv1.Value{Kind: &larderv1.Value_BytesValue{BytesValue: v.Bytes()}}
	case larder.TypeFloat32Vector:
		return &larderv1.Value{Kind: &larderv1.Value_Float32VectorValue{
			Float32VectorValue: &larderv1.FloatVector{Values: slices.Clone(v.Vector())}}}
	}
	return &larderv1.Value{}
}

// cell is what one value of a GetFeatures response should be.
type cell struct {
	view, feature string
	status        larderv1.FeatureStatus
}

const (
	present  = larderv1.FeatureStatus_FEATURE_STATUS_PRESENT
	stale    = larderv1.FeatureStatus_FEATURE_STATUS_STALE
	notFound = larderv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND
)

// wantValue returns the FeatureValue the fixture's data holds for key in
// view, with the given status.
func (f *fixture) wantValue(tb testing.TB, c cell, key larder.Key) cellValue {
	tb.Helper()
	row, ok := f.data[c.view][key]
	if !ok {
		return cellValue{value: &larderv1.Value{}, status: c.status}
	}
	i := f.project.View(c.view).FeatureIndex(c.feature)
	if i < 0 {
		tb.Fatalf("no feature %s:%s", c.view, c.feature)
	}
	return cellValue{value: protoValue(row.Values[i]), status: c.status, eventTime: row.EventTime}
}

func TestGetFeatures(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	profile := []string{"age", "score", "ratio", "active", "country", "avatar", "embedding"}

	type row struct {
		key    larder.Key
		status map[string]larderv1.FeatureStatus // by view
	}
	tests := []struct {
		name     string
		at       time.Duration // the server clock, after the fixture's t0
		keys     []*larderv1.EntityKey
		features []string
		want     []string // the resolved columns
		rows     []row
		gens     []string // the views of the generations, in order
	}{
		{
			// A column asked for again is one column, where it was first
			// asked for: user_profile:country comes with user_profile:*.
			name:     "users, every type, expansion and repeats",
			keys:     intKeys(3, 1, 99, 2, 4, 1),
			features: []string{"user_profile:*", "user_stats:clicks", "user_profile:country", "user_stats:spend", "user_profile:*", "user_stats:clicks"},
			want:     append(prefixed("user_profile", profile...), "user_stats:clicks", "user_stats:spend"),
			rows: []row{
				{larder.Int64Key(3), map[string]larderv1.FeatureStatus{"user_profile": present, "user_stats": present}},
				{larder.Int64Key(1), map[string]larderv1.FeatureStatus{"user_profile": present, "user_stats": present}},
				{larder.Int64Key(99), map[string]larderv1.FeatureStatus{"user_profile": notFound, "user_stats": notFound}},
				{larder.Int64Key(2), map[string]larderv1.FeatureStatus{"user_profile": stale, "user_stats": present}},
				{larder.Int64Key(4), map[string]larderv1.FeatureStatus{"user_profile": notFound, "user_stats": present}},
				{larder.Int64Key(1), map[string]larderv1.FeatureStatus{"user_profile": present, "user_stats": present}},
			},
			gens: []string{"user_profile", "user_stats"},
		},
		{
			// 55 minutes on, user 1's profile (10m old at t0) passes its
			// max age of 1h; user_stats has none.
			name:     "the clock makes rows stale",
			at:       55 * time.Minute,
			keys:     intKeys(1, 2, 4),
			features: []string{"user_stats:*", "user_profile:age"},
			want:     []string{"user_stats:clicks", "user_stats:spend", "user_profile:age"},
			rows: []row{
				{larder.Int64Key(1), map[string]larderv1.FeatureStatus{"user_profile": stale, "user_stats": present}},
				{larder.Int64Key(2), map[string]larderv1.FeatureStatus{"user_profile": stale, "user_stats": present}},
				{larder.Int64Key(4), map[string]larderv1.FeatureStatus{"user_profile": notFound, "user_stats": present}},
			},
			gens: []string{"user_stats", "user_profile"},
		},
		{
			name:     "string keys",
			keys:     strKeys("i4", "i1", "i5", "i3", "i6"),
			features: []string{"item_info:title", "item_info:*"},
			want:     []string{"item_info:title", "item_info:price", "item_info:popularity", "item_info:in_stock"},
			rows: []row{
				{larder.StringKey("i4"), map[string]larderv1.FeatureStatus{"item_info": stale}},
				{larder.StringKey("i1"), map[string]larderv1.FeatureStatus{"item_info": present}},
				{larder.StringKey("i5"), map[string]larderv1.FeatureStatus{"item_info": notFound}},
				{larder.StringKey("i3"), map[string]larderv1.FeatureStatus{"item_info": present}},
				{larder.StringKey("i6"), map[string]larderv1.FeatureStatus{"item_info": present}},
			},
			gens: []string{"item_info"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Set(f.t0.Add(tt.at))
			resp, err := f.client.GetFeatures(context.Background(), &larderv1.GetFeaturesRequest{Keys: tt.keys, Features: tt.features})
			if err != nil {
				t.Fatal(err)
			}
			if got := columnNames(resp); !slices.Equal(got, tt.want) {
				t.Errorf("columns = %q, want %q", got, tt.want)
			}
			cols := columns(t, resp)
			if cols.Rows() != len(tt.rows) {
				t.Fatalf("got %d rows, want %d", cols.Rows(), len(tt.rows))
			}
			for i := range cols.Rows() {
				for j, col := range tt.want {
					view, feature, _ := larder.SplitRef(col)
					want := f.wantValue(t, cell{view, feature, tt.rows[i].status[view]}, tt.rows[i].key)
					if got := cellAt(cols, j, i); !got.equal(want) {
						t.Errorf("rows[%d] (%v) %s = %v, want %v", i, tt.rows[i].key, col, got, want)
					}
				}
			}
			var gens []*larderv1.ViewGeneration
			for _, v := range tt.gens {
				gens = append(gens, &larderv1.ViewGeneration{View: v, Generation: f.gens[v].ID})
			}
			if !slices.EqualFunc(resp.GetGenerations(), gens, func(a, b *larderv1.ViewGeneration) bool { return proto.Equal(a, b) }) {
				t.Errorf("generations = %v, want %v", resp.GetGenerations(), gens)
			}
		})
	}

	// Spot checks that do not go through wantValue.
	f.clock.Set(f.t0)
	resp, err := f.client.GetFeatures(context.Background(), &larderv1.GetFeaturesRequest{
		Keys:     intKeys(1, 3, 2),
		Features: []string{"user_profile:age", "user_profile:avatar", "user_profile:embedding"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cols := columns(t, resp)
	if got := cols.Int64(0, 0); got != 34 {
		t.Errorf("user 1 age = %d, want 34", got)
	}
	if got := cols.Float32Vector(2, 0); !slices.Equal(got, []float32{0.5, -1.25, 3}) {
		t.Errorf("user 1 embedding = %v", got)
	}
	if got := cols.EventTime(0, 0); !got.Equal(f.t0.Add(-10 * time.Minute)) {
		t.Errorf("user 1 event time = %v, want %v", got, f.t0.Add(-10*time.Minute))
	}
	if !cols.IsNull(0, 1) || cols.Status(0, 1) != present {
		t.Errorf("user 3 age = %v, want a null value with status present", cellAt(cols, 0, 1))
	}
	// An empty bytes value and an empty vector are values, not nulls.
	if cols.IsNull(1, 2) || len(cols.Bytes(1, 2)) != 0 {
		t.Errorf("user 2 avatar = %v, want an empty bytes value", cellAt(cols, 1, 2))
	}
	if cols.IsNull(2, 2) || len(cols.Float32Vector(2, 2)) != 0 {
		t.Errorf("user 2 embedding = %v, want an empty vector", cellAt(cols, 2, 2))
	}
}

func prefixed(view string, features ...string) []string {
	out := make([]string, len(features))
	for i, f := range features {
		out[i] = view + ":" + f
	}
	return out
}

func TestInvalidRequests(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	get := func(keys []*larderv1.EntityKey, features ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: keys, Features: features})
			return err
		}
	}
	reqFeatures := map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}
	rank := func(edit func(*larderv1.RankRequest)) func(context.Context) error {
		return func(ctx context.Context) error {
			req := &larderv1.RankRequest{
				Ranker:          "reco",
				ContextKey:      intKey(1),
				CandidateKeys:   strKeys("i1", "i2"),
				RequestFeatures: map[string]*larderv1.Value{},
			}
			for k, v := range reqFeatures {
				req.RequestFeatures[k] = v
			}
			edit(req)
			_, err := f.client.Rank(ctx, req)
			return err
		}
	}
	tooManyKeys := make([]*larderv1.EntityKey, testMaxEntities+1)
	for i := range tooManyKeys {
		tooManyKeys[i] = intKey(int64(i))
	}
	tooManyCands := make([]*larderv1.EntityKey, testMaxCandidates+1)
	for i := range tooManyCands {
		tooManyCands[i] = strKey(fmt.Sprint("i", i))
	}

	tests := []struct {
		name string
		call func(context.Context) error
		want []string
	}{
		{"no keys", get(nil, "user_profile:age"), []string{"keys:", "at least one"}},
		{"no features", get(intKeys(1)), []string{"features:", "at least one"}},
		{"reference without colon", get(intKeys(1), "user_profile:age", "user_profile"),
			[]string{"features[1]", `"user_profile" is not a feature reference`, "view:feature"}},
		{"reference without feature", get(intKeys(1), "user_profile:"), []string{"features[0]", "not a feature reference"}},
		{"reference without view", get(intKeys(1), ":age"), []string{"features[0]", "not a feature reference"}},
		{"unknown view", get(intKeys(1), "nope:age"), []string{"features[0]", `unknown view "nope"`, "user_profile"}},
		{"unknown feature", get(intKeys(1), "user_profile:height"), []string{"features[0]", `view "user_profile" has no feature "height"`}},
		{"views of two entities", get(intKeys(1), "user_profile:age", "item_info:price"),
			[]string{"features[1]", `view "item_info" is keyed by entity item`, "user", "one entity per request"}},
		{"string key for an int64 entity", get([]*larderv1.EntityKey{intKey(1), strKey("1")}, "user_profile:age"),
			[]string{"keys[1]", "user", "int64", "user_id", "string key"}},
		{"int64 key for a string entity", get(intKeys(1), "item_info:price"),
			[]string{"keys[0]", "item", "string", "int64 key"}},
		{"key with no value", get([]*larderv1.EntityKey{intKey(1), {}}, "user_profile:age"),
			[]string{"keys[1]", "missing key", "user_id"}},
		{"more keys than max_entities", get(tooManyKeys, "user_profile:age"),
			[]string{"65 keys", "limit of 64", "server.max_entities"}},

		{"unknown ranker", rank(func(r *larderv1.RankRequest) { r.Ranker = "nope" }),
			[]string{"ranker", `unknown ranker "nope"`, "reco"}},
		{"no ranker", rank(func(r *larderv1.RankRequest) { r.Ranker = "" }), []string{"ranker: is required", "reco"}},
		{"string context key for an int64 entity", rank(func(r *larderv1.RankRequest) { r.ContextKey = strKey("1") }),
			[]string{"context_key", "int64", "string key"}},
		{"no context key", rank(func(r *larderv1.RankRequest) { r.ContextKey = nil }), []string{"context_key", "missing key"}},
		{"no candidates", rank(func(r *larderv1.RankRequest) { r.CandidateKeys = nil }),
			[]string{"candidate_keys", "at least one candidate"}},
		{"too many candidates", rank(func(r *larderv1.RankRequest) { r.CandidateKeys = tooManyCands }),
			[]string{"candidate_keys", "17 candidates", "limit of 16", "server.max_candidates"}},
		{"int64 candidate key for a string entity", rank(func(r *larderv1.RankRequest) {
			r.CandidateKeys = []*larderv1.EntityKey{strKey("i1"), intKey(2)}
		}), []string{"candidate_keys[1]", "string", "int64 key"}},
		{"negative top_k", rank(func(r *larderv1.RankRequest) { r.TopK = -1 }), []string{"top_k", "negative", "-1"}},
		{"missing request feature", rank(func(r *larderv1.RankRequest) { delete(r.RequestFeatures, "mobile") }),
			[]string{"request_features", `needs request feature "mobile"`}},
		{"no request features", rank(func(r *larderv1.RankRequest) { r.RequestFeatures = nil }),
			[]string{"request_features", "needs request feature"}},
		{"unknown request feature", rank(func(r *larderv1.RankRequest) { r.RequestFeatures["weather"] = intVal(1) }),
			[]string{"request_features", `no request feature "weather"`, "hour, mobile"}},
		{"string request feature", rank(func(r *larderv1.RankRequest) { r.RequestFeatures["hour"] = strVal("13") }),
			[]string{`request_features["hour"]`, "must be"}},
		{"null request feature", rank(func(r *larderv1.RankRequest) { r.RequestFeatures["mobile"] = &larderv1.Value{} }),
			[]string{`request_features["mobile"]`, "must be"}},
		{"vector request feature", rank(func(r *larderv1.RankRequest) {
			r.RequestFeatures["hour"] = &larderv1.Value{Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{Values: []float32{1}}}}
		}), []string{`request_features["hour"]`, "must be"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(context.Background()), codes.InvalidArgument, tt.want...)
		})
	}
}
