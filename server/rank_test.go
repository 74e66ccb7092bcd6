package server_test

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// The reco ranker's inputs, in order: user_profile:age (default -1),
// user_profile:score (0.5), user_stats:clicks (0), item_info:price (9.5),
// item_info:popularity (0.25), item_info:in_stock (0), request:hour,
// request:mobile. These are the fixture's values as the model must see them,
// written out by hand from fixtureData.
var (
	// context inputs (age, score, clicks) by user, at t0
	rankContext = map[int64][3]float32{
		1:  {34, 0.8, 12},
		2:  {-1, 0.5, 40}, // stale profile: defaults
		3:  {-1, 0.3, 7},  // null age: its default
		4:  {-1, 0.5, 90}, // no profile; stats never go stale
		99: {-1, 0.5, 0},  // nothing at all
	}
	// candidate inputs (price, popularity, in_stock) by item, at t0
	rankCandidate = map[string][3]float32{
		"i1": {3.5, 0.9, 1},
		"i2": {12, 0.1, 0},
		"i3": {7.25, 0.25, 1}, // null popularity: its default
		"i4": {9.5, 0.25, 0},  // stale: defaults
		"i5": {9.5, 0.25, 0},  // missing: defaults
		"i6": {1, 0.4, 1},
	}
)

func TestRank(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	allItems := []string{"i2", "i5", "i1", "i6", "i3", "i4"}

	tests := []struct {
		name    string
		at      time.Duration // the server clock, after t0
		user    int64
		context [3]float32 // overrides rankContext when set
		items   []string
		request map[string]*larderv1.Value
		reqIn   [2]float32 // hour, mobile as the model sees them
		topK    int32
		wantN   int
	}{
		{name: "fresh user, ranker's top_k", user: 1, items: allItems,
			request: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}, reqIn: [2]float32{13, 1}, wantN: 3},
		{name: "stale profile, top_k 2", user: 2, items: allItems, topK: 2,
			request: map[string]*larderv1.Value{"hour": f64Val(20.5), "mobile": boolVal(false)}, reqIn: [2]float32{20.5, 0}, wantN: 2},
		{name: "null age, top_k above the candidates", user: 3, items: allItems, topK: 50,
			request: map[string]*larderv1.Value{"hour": f32Val(7.25), "mobile": boolVal(true)}, reqIn: [2]float32{7.25, 1}, wantN: 6},
		{name: "no profile", user: 4, items: []string{"i6", "i1", "i3"}, topK: 3,
			request: map[string]*larderv1.Value{"hour": intVal(0), "mobile": boolVal(true)}, reqIn: [2]float32{0, 1}, wantN: 3},
		{name: "unknown user", user: 99, items: allItems, topK: 6,
			request: map[string]*larderv1.Value{"hour": intVal(23), "mobile": boolVal(false)}, reqIn: [2]float32{23, 0}, wantN: 6},
		{name: "one candidate", user: 1, items: []string{"i1"},
			request: map[string]*larderv1.Value{"hour": intVal(9), "mobile": boolVal(true)}, reqIn: [2]float32{9, 1}, wantN: 1},
		{name: "repeated candidates", user: 1, items: []string{"i1", "i2", "i1"}, topK: 3,
			request: map[string]*larderv1.Value{"hour": intVal(9), "mobile": boolVal(true)}, reqIn: [2]float32{9, 1}, wantN: 3},
		{
			// 55 minutes on, user 1's profile (10m old at t0) is stale and
			// item i6 (3h) is not yet.
			name: "the clock makes the profile stale", at: 55 * time.Minute, user: 1,
			context: [3]float32{-1, 0.5, 12}, items: allItems, topK: 6,
			request: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}, reqIn: [2]float32{13, 1}, wantN: 6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Set(f.t0.Add(tt.at))
			ctxIn := rankContext[tt.user]
			if tt.context != ([3]float32{}) {
				ctxIn = tt.context
			}
			// The model's input, built from the values written.
			const nf = 8
			n := len(tt.items)
			x := make([]float32, 0, n*nf)
			for _, item := range tt.items {
				c := rankCandidate[item]
				x = append(x, ctxIn[0], ctxIn[1], ctxIn[2], c[0], c[1], c[2], tt.reqIn[0], tt.reqIn[1])
			}
			want := make([]float32, n)
			f.net.Forward(x, n, want)

			resp, err := f.client.Rank(context.Background(), &larderv1.RankRequest{
				Ranker:          "reco",
				ContextKey:      intKey(tt.user),
				CandidateKeys:   strKeys(tt.items...),
				RequestFeatures: tt.request,
				TopK:            tt.topK,
			})
			if err != nil {
				t.Fatal(err)
			}
			got := resp.GetCandidates()
			if len(got) != tt.wantN {
				t.Fatalf("got %d candidates, want %d", len(got), tt.wantN)
			}
			// Each returned candidate is one of the request's, scored as
			// the model scores its row; repeats are returned once each.
			used := make([]bool, n)
			lastJ := -1
			for i, c := range got {
				j := -1
				for k, item := range tt.items {
					if !used[k] && item == c.GetKey().GetStringValue() {
						j = k
						break
					}
				}
				if j < 0 {
					t.Fatalf("candidates[%d] = %v is not a requested candidate (or is returned too often)", i, c.GetKey())
				}
				used[j], lastJ = true, j
				if d := math.Abs(float64(c.GetScore() - want[j])); d > 1e-5 {
					t.Errorf("candidates[%d] %s: score %v, the model's forward pass gives %v (diff %g)", i, tt.items[j], c.GetScore(), want[j], d)
				}
				if i > 0 && got[i-1].GetScore() < c.GetScore() {
					t.Errorf("candidates[%d] score %v > candidates[%d] score %v: not sorted by descending score", i, c.GetScore(), i-1, got[i-1].GetScore())
				}
			}
			// The ones left out score no higher than the last one returned.
			for j := range tt.items {
				if !used[j] && want[j] > want[lastJ]+1e-5 {
					t.Errorf("%s (score %v) was left out, but %v made the top %d", tt.items[j], want[j], want[lastJ], tt.wantN)
				}
			}
			if resp.GetModelVersion() != f.model.Version() || resp.GetModelVersion() == "" {
				t.Errorf("model_version = %q, want %q", resp.GetModelVersion(), f.model.Version())
			}
			wantGens := []*larderv1.ViewGeneration{
				{View: "user_profile", Generation: f.gens["user_profile"].ID},
				{View: "user_stats", Generation: f.gens["user_stats"].ID},
				{View: "item_info", Generation: f.gens["item_info"].ID},
			}
			if !slices.EqualFunc(resp.GetGenerations(), wantGens, func(a, b *larderv1.ViewGeneration) bool { return proto.Equal(a, b) }) {
				t.Errorf("generations = %v, want %v", resp.GetGenerations(), wantGens)
			}
		})
	}
}

// TestRankInputsMatter checks that the model separates the fixture's
// candidates, so that TestRank would notice an input taken from the wrong
// place: every distinct input row must get a distinct score.
func TestRankInputsMatter(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	items := []string{"i1", "i2", "i3", "i4", "i6"} // i5 has i4's inputs
	resp, err := f.client.Rank(context.Background(), &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys(items...), TopK: 10,
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	scores := map[float32]string{}
	for _, c := range resp.GetCandidates() {
		t.Logf("%s: %v", c.GetKey().GetStringValue(), c.GetScore())
		if other, dup := scores[c.GetScore()]; dup {
			t.Errorf("%s and %s both score %v", other, c.GetKey().GetStringValue(), c.GetScore())
		}
		scores[c.GetScore()] = c.GetKey().GetStringValue()
		if s := c.GetScore(); s < 0.02 || s > 0.98 {
			t.Errorf("%s scores %v: the model saturates, so its inputs barely matter", c.GetKey().GetStringValue(), s)
		}
	}
	// Changing one request feature or the context changes the scores.
	for _, req := range []*larderv1.RankRequest{
		{Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1"),
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(false)}},
		{Ranker: "reco", ContextKey: intKey(3), CandidateKeys: strKeys("i1"),
			RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}},
	} {
		r, err := f.client.Rank(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if s := r.GetCandidates()[0].GetScore(); scores[s] == "i1" {
			t.Errorf("%v scores i1 as before (%v): the input did not matter", req, s)
		}
	}
}

// TestRankTies checks that candidates with equal scores keep their request
// order, as the API promises.
func TestRankTies(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	// i4 (stale), i5 (missing) and i7 (missing) all get the defaults.
	items := []string{"i7", "i1", "i5", "i4"}
	resp, err := f.client.Rank(context.Background(), &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys(items...), TopK: 4,
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tied []string
	for _, c := range resp.GetCandidates() {
		if k := c.GetKey().GetStringValue(); k != "i1" {
			tied = append(tied, k)
		}
	}
	if want := []string{"i7", "i5", "i4"}; !slices.Equal(tied, want) {
		t.Errorf("tied candidates in order %q, want request order %q (scores %v)", tied, want, resp.GetCandidates())
	}
}
