package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// withCandidates adds to the test project two candidates views of users,
// user_recs (items, string keys) and user_similar (users, int64 keys), and
// makes user_recs the reco ranker's candidates_from.
func withCandidates(p *larder.Project) {
	p.Views = append(p.Views,
		&larder.View{
			Name: "user_recs", Kind: larder.KindCandidates, Entity: "user", Source: "events",
			Candidates: &larder.Candidates{Entity: "item", ScoreColumn: "score", TopK: 30},
		},
		&larder.View{
			Name: "user_similar", Kind: larder.KindCandidates, Entity: "user", Source: "events",
			Candidates: &larder.Candidates{Entity: "user", Column: "similar_user_id", ScoreColumn: "similarity", TopK: 3},
		},
	)
	p.Rankers[0].CandidatesFrom = "user_recs"
}

// countingStore counts the round trips (Read calls) a request makes and
// remembers the views each one read.
type countingStore struct {
	larder.FeatureStore
	mu    sync.Mutex
	reads [][]string
}

func (s *countingStore) Read(ctx context.Context, lookups []*larder.Lookup) error {
	views := make([]string, len(lookups))
	for i, l := range lookups {
		views[i] = l.View.Name
	}
	s.mu.Lock()
	s.reads = append(s.reads, views)
	s.mu.Unlock()
	return s.FeatureStore.Read(ctx, lookups)
}

// take returns the reads since the last call and forgets them.
func (s *countingStore) take() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reads
	s.reads = nil
	return r
}

// recs returns a stored candidate list row of item keys, best first, and
// made-up descending scores.
func recs(f *fixture, items ...string) larder.Row {
	scores := make([]float32, len(items))
	for i := range scores {
		scores[i] = float32(len(items) - i)
	}
	return larder.Row{EventTime: f.t0.Add(-5 * time.Minute), Values: []larder.Value{
		larder.StringListValue(items), larder.Float32VectorValue(scores),
	}}
}

func TestRankCandidatesFrom(t *testing.T) {
	cs := &countingStore{}
	f := newFixture(t, fixtureConfig{edit: withCandidates, wrap: func(fs larder.FeatureStore) larder.FeatureStore {
		cs.FeatureStore = fs
		return cs
	}})
	ctx := context.Background()
	// More stored candidates than server.max_candidates (16): only the
	// first 16 are ranked. Unknown items get the defaults.
	var long []string
	for i := range 20 {
		long = append(long, fmt.Sprintf("x%02d", i))
	}
	long[0], long[5], long[15], long[16] = "i1", "i6", "i2", "i3" // i3 is past the cut
	stored := map[larder.Key]larder.Row{
		larder.Int64Key(1): recs(f, "i2", "i5", "i1", "i6", "i3", "i4"),
		larder.Int64Key(2): recs(f),                                                             // an empty list
		larder.Int64Key(3): recs(f, long...),                                                    // longer than the limit
		larder.Int64Key(4): {EventTime: f.t0, Values: []larder.Value{larder.Null, larder.Null}}, // a null list
	}
	gen := publish(t, f.store, f.project, "user_recs", stored)
	request := map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}

	tests := []struct {
		name  string
		user  int64
		topK  int32
		items []string // the candidates ranked, in stored order; none: an empty response
	}{
		{name: "stored list", user: 1, topK: 4, items: []string{"i2", "i5", "i1", "i6", "i3", "i4"}},
		{name: "stored list, ranker's top_k", user: 1, items: []string{"i2", "i5", "i1", "i6", "i3", "i4"}},
		{name: "cut at server.max_candidates", user: 3, topK: 20, items: long[:testMaxCandidates]},
		{name: "empty stored list", user: 2},
		{name: "null stored list", user: 4},
		{name: "no stored list", user: 99},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs.take()
			got, err := f.client.Rank(ctx, &larderv1.RankRequest{
				Ranker: "reco", ContextKey: intKey(tt.user), RequestFeatures: request, TopK: tt.topK,
			})
			if err != nil {
				t.Fatal(err)
			}
			reads := cs.take()
			if len(tt.items) == 0 {
				if len(got.GetCandidates()) != 0 {
					t.Errorf("candidates = %v, want none", got.GetCandidates())
				}
				if got.GetModelVersion() != f.model.Version() {
					t.Errorf("model_version = %q, want %q", got.GetModelVersion(), f.model.Version())
				}
				// One round trip, for the context's features and its list.
				want := [][]string{{"user_profile", "user_stats", "user_recs"}}
				if !slices.EqualFunc(reads, want, slices.Equal) {
					t.Errorf("reads = %v, want %v", reads, want)
				}
				return
			}
			// The stored list ranks as the same candidates given in the
			// request do (TestRank checks those against the model).
			explicit, err := f.client.Rank(ctx, &larderv1.RankRequest{
				Ranker: "reco", ContextKey: intKey(tt.user), RequestFeatures: request, TopK: tt.topK,
				CandidateKeys: strKeys(tt.items...),
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.GetCandidates()) == 0 || !slices.EqualFunc(got.GetCandidates(), explicit.GetCandidates(), func(a, b *larderv1.ScoredCandidate) bool { return proto.Equal(a, b) }) {
				t.Errorf("stored list ranks as\n%v\nthe same candidates in the request rank as\n%v", got.GetCandidates(), explicit.GetCandidates())
			}
			wantGens := append(slices.Clone(explicit.GetGenerations()), &larderv1.ViewGeneration{View: "user_recs", Generation: gen.ID})
			if !slices.EqualFunc(got.GetGenerations(), wantGens, func(a, b *larderv1.ViewGeneration) bool { return proto.Equal(a, b) }) {
				t.Errorf("generations = %v, want %v", got.GetGenerations(), wantGens)
			}
			// Two round trips: the context's features with its list, then
			// the candidates' features. The explicit request takes one.
			want := [][]string{{"user_profile", "user_stats", "user_recs"}, {"item_info"}}
			if !slices.EqualFunc(reads, want, slices.Equal) {
				t.Errorf("reads = %v, want %v", reads, want)
			}
			want = [][]string{{"user_profile", "user_stats", "item_info"}}
			if reads := cs.take(); !slices.EqualFunc(reads, want, slices.Equal) {
				t.Errorf("reads with explicit candidates = %v, want %v", reads, want)
			}
		})
	}

	t.Run("explicit candidates win", func(t *testing.T) {
		resp, err := f.client.Rank(ctx, &larderv1.RankRequest{
			Ranker: "reco", ContextKey: intKey(1), RequestFeatures: request, CandidateKeys: strKeys("x01"), TopK: 5,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetCandidates()) != 1 || resp.GetCandidates()[0].GetKey().GetStringValue() != "x01" {
			t.Errorf("candidates = %v, want only the requested x01", resp.GetCandidates())
		}
	})
	t.Run("too many explicit candidates", func(t *testing.T) {
		_, err := f.client.Rank(ctx, &larderv1.RankRequest{
			Ranker: "reco", ContextKey: intKey(1), RequestFeatures: request, CandidateKeys: strKeys(long[:testMaxCandidates+1]...),
		})
		wantCode(t, err, codes.InvalidArgument, "candidate_keys", "server.max_candidates")
	})
}

// TestRankCandidatesFromErrors checks the refusals around candidates_from:
// without it, a request must carry candidates; with it, its view must have
// been published.
func TestRankCandidatesFromErrors(t *testing.T) {
	request := map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}
	t.Run("no candidates_from", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{})
		_, err := f.client.Rank(context.Background(), &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), RequestFeatures: request})
		wantCode(t, err, codes.InvalidArgument, "candidate_keys", "at least one candidate", "candidates_from")
	})
	t.Run("candidates view never published", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{edit: withCandidates})
		_, err := f.client.Rank(context.Background(), &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), RequestFeatures: request})
		wantCode(t, err, codes.FailedPrecondition, "user_recs", "larder materialize")
	})
	t.Run("bad request before any read", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{edit: withCandidates})
		_, err := f.client.Rank(context.Background(), &larderv1.RankRequest{Ranker: "reco", ContextKey: intKey(1), TopK: -1, RequestFeatures: request})
		wantCode(t, err, codes.InvalidArgument, "top_k")
		_, err = f.client.Rank(context.Background(), &larderv1.RankRequest{Ranker: "reco", ContextKey: strKey("u1"), RequestFeatures: request})
		wantCode(t, err, codes.InvalidArgument, "context_key")
	})
}

// TestListValues checks that list values and their types come out of
// GetFeatures and ListViews as the API documents them.
func TestListValues(t *testing.T) {
	f := newFixture(t, fixtureConfig{edit: withCandidates})
	ctx := context.Background()
	publish(t, f.store, f.project, "user_recs", map[larder.Key]larder.Row{
		larder.Int64Key(1): recs(f, "i2", "é", ""),
		larder.Int64Key(2): recs(f),
	})
	publish(t, f.store, f.project, "user_similar", map[larder.Key]larder.Row{
		larder.Int64Key(1): {EventTime: f.t0, Values: []larder.Value{
			larder.Int64ListValue([]int64{7, -3, 1 << 40}), larder.Float32VectorValue([]float32{0.9, 0.5, 0.5}),
		}},
	})
	resp, err := f.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{
		Keys: intKeys(1, 2, 3), Features: []string{"user_recs:candidates", "user_similar:*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	strList := func(s ...string) *larderv1.Value {
		return &larderv1.Value{Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{Values: s}}}
	}
	intList := func(n ...int64) *larderv1.Value {
		return &larderv1.Value{Kind: &larderv1.Value_Int64ListValue{Int64ListValue: &larderv1.Int64List{Values: n}}}
	}
	vec := func(v ...float32) *larderv1.Value {
		return &larderv1.Value{Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{Values: v}}}
	}
	null := &larderv1.Value{}
	want := [][]*larderv1.Value{
		{strList("i2", "é", ""), intList(7, -3, 1<<40), vec(0.9, 0.5, 0.5)},
		{strList(), null, null},
		{null, null, null},
	}
	if wantCols := []string{"user_recs:candidates", "user_similar:candidates", "user_similar:scores"}; !slices.Equal(columnNames(resp), wantCols) {
		t.Errorf("columns = %v, want %v", columnNames(resp), wantCols)
	}
	rows := rowsOf(resp)
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, row := range rows {
		for j, fv := range row {
			if !proto.Equal(fv.value, want[i][j]) {
				t.Errorf("user %d %s = %v, want %v", i+1, resp.GetColumns()[j].GetName(), fv.value, want[i][j])
			}
		}
	}
	// An empty list is a value, not null.
	if cols := columns(t, resp); cols.IsNull(0, 1) || len(cols.StringList(0, 1)) != 0 {
		t.Errorf("an empty list came back as %v, want an empty string_list_value", rows[1][0].value)
	}

	views, err := f.client.ListViews(ctx, &larderv1.ListViewsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string][]larderv1.ValueType{}
	for _, v := range views.GetViews() {
		for _, fs := range v.GetFeatures() {
			types[v.GetName()] = append(types[v.GetName()], fs.GetType())
		}
	}
	wantTypes := map[string][]larderv1.ValueType{
		"user_recs":    {larderv1.ValueType_VALUE_TYPE_STRING_LIST, larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR},
		"user_similar": {larderv1.ValueType_VALUE_TYPE_INT64_LIST, larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR},
	}
	for view, w := range wantTypes {
		if !slices.Equal(types[view], w) {
			t.Errorf("%s feature types = %v, want %v", view, types[view], w)
		}
	}
}
