package server_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// Short names for the sources of the inputs in the tables below.
const (
	srcPresent = larderv1.InputSource_INPUT_SOURCE_PRESENT
	srcMissing = larderv1.InputSource_INPUT_SOURCE_MISSING
	srcNull    = larderv1.InputSource_INPUT_SOURCE_NULL
	srcStale   = larderv1.InputSource_INPUT_SOURCE_STALE
	srcRequest = larderv1.InputSource_INPUT_SOURCE_REQUEST
	srcReqDef  = larderv1.InputSource_INPUT_SOURCE_REQUEST_DEFAULT
)

// The sources of the reco ranker's view inputs at t0, as fixtureData
// writes them: the context inputs (age, score, clicks) by user, and the
// candidate inputs (price, popularity, in_stock) by item. They line up with
// rankContext and rankCandidate.
var (
	explainContext = map[int64][3]larderv1.InputSource{
		1:  {srcPresent, srcPresent, srcPresent},
		2:  {srcStale, srcStale, srcPresent},
		3:  {srcNull, srcPresent, srcPresent},
		4:  {srcMissing, srcMissing, srcPresent},
		99: {srcMissing, srcMissing, srcMissing},
	}
	explainCandidate = map[string][3]larderv1.InputSource{
		"i1": {srcPresent, srcPresent, srcPresent},
		"i2": {srcPresent, srcPresent, srcPresent},
		"i3": {srcPresent, srcNull, srcPresent},
		"i4": {srcStale, srcStale, srcStale},
		"i5": {srcMissing, srcMissing, srcMissing},
		"i6": {srcPresent, srcPresent, srcPresent},
	}
	recoInputNames = []string{
		"user_profile:age", "user_profile:score", "user_stats:clicks",
		"item_info:price", "item_info:popularity", "item_info:in_stock",
		"request:hour", "request:mobile",
	}
)

// wantExplanation returns the model input and sources that the reco ranker
// builds for user and item at t0, with the request features' numbers and
// sources.
func wantExplanation(user int64, item string, req [2]float32, reqSrc [2]larderv1.InputSource) ([]float32, []larderv1.InputSource) {
	c, ci := rankContext[user], rankCandidate[item]
	cs, is := explainContext[user], explainCandidate[item]
	return []float32{c[0], c[1], c[2], ci[0], ci[1], ci[2], req[0], req[1]},
		[]larderv1.InputSource{cs[0], cs[1], cs[2], is[0], is[1], is[2], reqSrc[0], reqSrc[1]}
}

// TestRankExplain checks that an explained Rank returns, per candidate, the
// model input it was scored with and where each value came from, and that
// the model gives the returned score for that input.
func TestRankExplain(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	items := []string{"i1", "i2", "i3", "i4", "i5", "i6"}
	request := map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}
	for _, user := range []int64{1, 2, 3, 4, 99} {
		req := &larderv1.RankRequest{
			Ranker: "reco", ContextKey: intKey(user), CandidateKeys: strKeys(items...), TopK: 10,
			RequestFeatures: request, Explain: true,
		}
		resp, err := f.client.Rank(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.GetInputNames(), recoInputNames) {
			t.Errorf("user %d: input_names = %q, want %q", user, resp.GetInputNames(), recoInputNames)
		}
		got := resp.GetCandidates()
		if len(got) != len(items) {
			t.Fatalf("user %d: %d candidates, want %d", user, len(got), len(items))
		}
		x := make([]float32, 0, len(got)*len(recoInputNames))
		for _, c := range got {
			item := c.GetKey().GetStringValue()
			ex := c.GetExplanation()
			wantX, wantSrc := wantExplanation(user, item, [2]float32{13, 1}, [2]larderv1.InputSource{srcRequest, srcRequest})
			if !slices.Equal(ex.GetInputs(), wantX) {
				t.Errorf("user %d, %s: inputs %v, want %v", user, item, ex.GetInputs(), wantX)
			}
			if !slices.Equal(ex.GetSources(), wantSrc) {
				t.Errorf("user %d, %s: sources %v, want %v", user, item, ex.GetSources(), wantSrc)
			}
			x = append(x, ex.GetInputs()...)
		}
		// The explained inputs are the ones scored: the model gives the
		// response's scores for them.
		scores := make([]float32, len(got))
		if err := f.model.Score(context.Background(), x, len(got), scores); err != nil {
			t.Fatal(err)
		}
		for i, c := range got {
			if d := math.Abs(float64(c.GetScore() - scores[i])); d > 1e-6 {
				t.Errorf("user %d, %s: score %v, the model gives %v for the explained input", user, c.GetKey().GetStringValue(), c.GetScore(), scores[i])
			}
		}

		// Without explain: the same ranking, and no explanation.
		req.Explain = false
		plain, err := f.client.Rank(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if plain.GetInputNames() != nil {
			t.Errorf("user %d: input_names %q without explain", user, plain.GetInputNames())
		}
		for i, c := range plain.GetCandidates() {
			if c.GetExplanation() != nil {
				t.Errorf("user %d: candidate %d has an explanation without explain", user, i)
			}
			if e := got[i]; c.GetKey().GetStringValue() != e.GetKey().GetStringValue() || c.GetScore() != e.GetScore() {
				t.Errorf("user %d: candidate %d is %s %v without explain, %s %v with it", user, i,
					c.GetKey().GetStringValue(), c.GetScore(), e.GetKey().GetStringValue(), e.GetScore())
			}
		}
	}
}

// TestRankExplainStaleByClock checks that a row that goes stale as the clock
// moves is explained as stale.
func TestRankExplainStaleByClock(t *testing.T) {
	f := newFixture(t, fixtureConfig{})
	// 55 minutes on, user 1's profile (10m old at t0) is stale, item i6
	// (3h) is not yet.
	f.clock.Set(f.t0.Add(55 * time.Minute))
	resp, err := f.client.Rank(context.Background(), &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i6"), Explain: true,
		RequestFeatures: map[string]*larderv1.Value{"hour": f64Val(20.5), "mobile": boolVal(false)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ex := resp.GetCandidates()[0].GetExplanation()
	wantX := []float32{-1, 0.5, 12, 1, 0.4, 1, 20.5, 0}
	wantSrc := []larderv1.InputSource{srcStale, srcStale, srcPresent, srcPresent, srcPresent, srcPresent, srcRequest, srcRequest}
	if !slices.Equal(ex.GetInputs(), wantX) || !slices.Equal(ex.GetSources(), wantSrc) {
		t.Errorf("explanation = %v %v, want %v %v", ex.GetInputs(), ex.GetSources(), wantX, wantSrc)
	}
}

// typedRequests makes the reco ranker's request:hour an int64 and gives
// request:mobile (bool) the default true.
func typedRequests(p *larder.Project) {
	in := p.Rankers[0].Inputs
	in[6].Type = larder.TypeInt64
	in[7].Default, in[7].HasDefault = 1, true
}

// TestRankRequestDefault checks that a request feature with a default may be
// left out, and that the model then sees the default.
func TestRankRequestDefault(t *testing.T) {
	f := newFixture(t, fixtureConfig{edit: typedRequests})
	items := []string{"i1", "i3", "i5"}
	resp, err := f.client.Rank(context.Background(), &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys(items...), TopK: 3, Explain: true,
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(9)},
	})
	if err != nil {
		t.Fatal(err)
	}
	given, err := f.client.Rank(context.Background(), &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys(items...), TopK: 3,
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(9), "mobile": boolVal(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range resp.GetCandidates() {
		item := c.GetKey().GetStringValue()
		wantX, wantSrc := wantExplanation(1, item, [2]float32{9, 1}, [2]larderv1.InputSource{srcRequest, srcReqDef})
		ex := c.GetExplanation()
		if !slices.Equal(ex.GetInputs(), wantX) || !slices.Equal(ex.GetSources(), wantSrc) {
			t.Errorf("%s: explanation = %v %v, want %v %v", item, ex.GetInputs(), ex.GetSources(), wantX, wantSrc)
		}
		if g := given.GetCandidates()[i]; g.GetKey().GetStringValue() != item || g.GetScore() != c.GetScore() {
			t.Errorf("candidate %d: %s %v with the default left out, %s %v with it given", i, item, c.GetScore(),
				g.GetKey().GetStringValue(), g.GetScore())
		}
	}
}

// TestRankRequestTypes checks the kinds of value each type of request
// feature takes, and the errors for the others.
func TestRankRequestTypes(t *testing.T) {
	plain := newFixture(t, fixtureConfig{})                    // hour float64, mobile bool: both required
	typed := newFixture(t, fixtureConfig{edit: typedRequests}) // hour int64, mobile bool with a default
	vals := func(kv ...any) map[string]*larderv1.Value {
		m := map[string]*larderv1.Value{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(*larderv1.Value)
		}
		return m
	}
	tests := []struct {
		name    string
		f       *fixture
		request map[string]*larderv1.Value
		want    []string // substrings of the INVALID_ARGUMENT message; none: accepted
	}{
		{"float64 takes a float64", plain, vals("hour", f64Val(7.5), "mobile", boolVal(true)), nil},
		{"float64 takes a float32", plain, vals("hour", f32Val(7.5), "mobile", boolVal(true)), nil},
		{"float64 takes an exact int64", plain, vals("hour", intVal(1<<53), "mobile", boolVal(true)), nil},
		{"float64 refuses an inexact int64", plain, vals("hour", intVal(1<<53+1), "mobile", boolVal(true)),
			[]string{`request_features["hour"]`, "float64", "9007199254740993", "does not hold exactly"}},
		{"float64 refuses a bool", plain, vals("hour", boolVal(true), "mobile", boolVal(true)),
			[]string{`request_features["hour"]`, "must be a float64 or float32 value", "request feature hour is float64", "got a bool value"}},
		{"float64 refuses a string", plain, vals("hour", strVal("7"), "mobile", boolVal(true)),
			[]string{`request_features["hour"]`, "float64", "got a string value"}},
		{"float64 refuses NaN", plain, vals("hour", f64Val(math.NaN()), "mobile", boolVal(true)),
			[]string{`request_features["hour"]`, "must be a finite number", "got NaN"}},
		{"float64 refuses +Inf", plain, vals("hour", f64Val(math.Inf(1)), "mobile", boolVal(true)),
			[]string{`request_features["hour"]`, "must be a finite number", "got +Inf"}},
		{"float64 refuses a float32 -Inf", plain, vals("hour", f32Val(float32(math.Inf(-1))), "mobile", boolVal(true)),
			[]string{`request_features["hour"]`, "must be a finite number", "got -Inf"}},
		{"float64 refuses a float64 past float32's range", plain, vals("hour", f64Val(1e300), "mobile", boolVal(true)),
			[]string{`request_features["hour"]`, "1e+300", "the model reads every value as a float32"}},
		{"float64 takes float32's largest", plain, vals("hour", f64Val(math.MaxFloat32), "mobile", boolVal(true)), nil},
		{"bool refuses an int64", plain, vals("hour", intVal(7), "mobile", intVal(1)),
			[]string{`request_features["mobile"]`, "must be a bool value", "got an int64 value"}},
		{"bool refuses null", plain, vals("hour", intVal(7), "mobile", &larderv1.Value{}),
			[]string{`request_features["mobile"]`, "must be a bool value", "got null"}},
		{"required feature left out", plain, vals("hour", intVal(7)),
			[]string{"request_features", `needs request feature "mobile"`, "hour float64 (required)", "mobile bool (required)"}},
		{"unknown feature", plain, vals("hour", intVal(7), "mobile", boolVal(true), "weather", intVal(1)),
			[]string{"request_features", `no request feature "weather"`, "hour, mobile"}},

		{"int64 takes an int64", typed, vals("hour", intVal(7), "mobile", boolVal(false)), nil},
		{"a feature with a default left out", typed, vals("hour", intVal(7)), nil},
		{"int64 refuses a float64", typed, vals("hour", f64Val(7)),
			[]string{`request_features["hour"]`, "must be an int64 value", "request feature hour is int64", "got a float64 value"}},
		{"int64 refuses a bool", typed, vals("hour", boolVal(true)),
			[]string{`request_features["hour"]`, "int64", "got a bool value"}},
		{"null for a feature with a default", typed, vals("hour", intVal(7), "mobile", &larderv1.Value{}),
			[]string{`request_features["mobile"]`, "got null", "leave the feature out to use its default, true"}},
		{"required int64 left out", typed, vals("mobile", boolVal(true)),
			[]string{`needs request feature "hour"`, "hour int64 (required)", "mobile bool (default true)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.f.client.Rank(context.Background(), &larderv1.RankRequest{
				Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys("i1"), RequestFeatures: tt.request,
			})
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Rank = %v, want it accepted", err)
				}
				return
			}
			wantCode(t, err, codes.InvalidArgument, tt.want...)
		})
	}
}

// TestRankExplainDegraded checks that a degraded response still carries the
// model input of each candidate.
func TestRankExplainDegraded(t *testing.T) {
	f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": failingModel{}}})
	req := rankRequest("i3", "i5", "i1")
	req.Explain, req.TopK = true, 3
	resp, err := f.client.Rank(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetDegraded() {
		t.Fatal("response not degraded")
	}
	if !slices.Equal(resp.GetInputNames(), recoInputNames) {
		t.Errorf("input_names = %q, want %q", resp.GetInputNames(), recoInputNames)
	}
	for _, c := range resp.GetCandidates() {
		item := c.GetKey().GetStringValue()
		wantX, wantSrc := wantExplanation(1, item, [2]float32{13, 1}, [2]larderv1.InputSource{srcRequest, srcRequest})
		ex := c.GetExplanation()
		if !slices.Equal(ex.GetInputs(), wantX) || !slices.Equal(ex.GetSources(), wantSrc) {
			t.Errorf("%s: explanation = %v %v, want %v %v", item, ex.GetInputs(), ex.GetSources(), wantX, wantSrc)
		}
	}
}

// TestRankExplainStoredList checks explain when the candidates come from the
// ranker's candidates_from view: both round trips read whole rows.
func TestRankExplainStoredList(t *testing.T) {
	f := newFixture(t, fixtureConfig{edit: withCandidates})
	publish(t, f.store, f.project, "user_recs", map[larder.Key]larder.Row{
		larder.Int64Key(3): recs(f, "i5", "i3", "i1", "i4"),
		larder.Int64Key(2): recs(f),
	})
	request := map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)}
	resp, err := f.client.Rank(context.Background(), &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(3), RequestFeatures: request, TopK: 4, Explain: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetCandidates()) != 4 {
		t.Fatalf("%d candidates, want 4", len(resp.GetCandidates()))
	}
	for _, c := range resp.GetCandidates() {
		item := c.GetKey().GetStringValue()
		wantX, wantSrc := wantExplanation(3, item, [2]float32{13, 1}, [2]larderv1.InputSource{srcRequest, srcRequest})
		ex := c.GetExplanation()
		if !slices.Equal(ex.GetInputs(), wantX) || !slices.Equal(ex.GetSources(), wantSrc) {
			t.Errorf("%s: explanation = %v %v, want %v %v", item, ex.GetInputs(), ex.GetSources(), wantX, wantSrc)
		}
	}
	// An empty stored list: no candidates, but the inputs are named.
	resp, err = f.client.Rank(context.Background(), &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(2), RequestFeatures: request, Explain: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetCandidates()) != 0 || !slices.Equal(resp.GetInputNames(), recoInputNames) {
		t.Errorf("empty list: candidates %v, input_names %q; want none and %q", resp.GetCandidates(), resp.GetInputNames(), recoInputNames)
	}
}

// TestRankExplainPushed pushes a newer row for one candidate: explain
// marks the values read from it as pushed, with its event time, and the
// others as written by the run.
func TestRankExplainPushed(t *testing.T) {
	cfg := opsConfig(t, nil)
	cfg.Models = map[string]server.Model{"reco": newFakeModel("v1", 1)}
	svc, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := cfg.Store.(*store.Store)
	items := cfg.Project.View("item_info")
	at := cfg.Now().Truncate(time.Microsecond)
	out, err := st.Push(t.Context(), items, []larder.PushRow{{Key: larder.StringKey("i2"), Row: larder.Row{EventTime: at, Values: []larder.Value{
		larder.Float64Value(12.5), larder.Float32Value(0.75), larder.BoolValue(true), larder.StringValue("pushed")}}}})
	if err != nil || out[0].Result != larder.PushWritten {
		t.Fatalf("push: %v, %v", out, err)
	}
	req := rankRequest("i1", "i2")
	req.Explain, req.TopK = true, 2
	resp, err := svc.Rank(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	names := resp.GetInputNames()
	for _, c := range resp.GetCandidates() {
		ex := c.GetExplanation()
		for j, name := range names {
			item := strings.HasPrefix(name, "item_info:")
			wantPushed := item && c.GetKey().GetStringValue() == "i2"
			if ex.GetPushed()[j] != wantPushed {
				t.Errorf("candidate %s, input %s: pushed %v, want %v", c.GetKey().GetStringValue(), name, ex.GetPushed()[j], wantPushed)
			}
			if wantPushed && ex.GetEventTimeMicros()[j] != at.UnixMicro() {
				t.Errorf("candidate i2, input %s: event time %d, want the push's %d", name, ex.GetEventTimeMicros()[j], at.UnixMicro())
			}
			if strings.HasPrefix(name, "request:") && ex.GetEventTimeMicros()[j] != 0 {
				t.Errorf("input %s: event time %d, want 0 for a request feature", name, ex.GetEventTimeMicros()[j])
			}
		}
		if c.GetKey().GetStringValue() == "i2" && ex.GetInputs()[3] != 12.5 {
			t.Errorf("candidate i2's price input %v, want the pushed 12.5", ex.GetInputs()[3])
		}
	}
}
