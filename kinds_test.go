package larder_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
)

func window(t *testing.T, s string) larder.Window {
	t.Helper()
	w, err := larder.ParseWindow(s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func kindsProject(t *testing.T) *larder.Project {
	t.Helper()
	p := validProject()
	p.Sources = append(p.Sources, &larder.Source{Name: "events", Path: "e", EventTime: "ts"})
	p.Views = append(p.Views,
		&larder.View{Name: "user_spend", Kind: larder.KindAggregate, Entity: "user", Source: "events",
			Aggregations: []larder.Aggregation{{Column: "price", Type: larder.TypeFloat64, Name: "spend",
				Functions: []larder.AggFunc{larder.AggCount, larder.AggSum, larder.AggMean},
				Windows:   []larder.Window{window(t, "1h"), window(t, "7d")}}}},
		&larder.View{Name: "user_pred", Kind: larder.KindPrediction, Entity: "user",
			Prediction: &larder.Prediction{Model: "m.onnx", Inputs: []larder.RankerInput{{Ref: "user_spend:spend_sum_7d"}, {Ref: "user_profile:age"}}},
			Features:   []larder.Feature{{Name: "p_buy", Type: larder.TypeFloat32}}},
		&larder.View{Name: "user_recs", Kind: larder.KindCandidates, Entity: "user", Source: "events",
			Candidates: &larder.Candidates{Entity: "item", ScoreColumn: "score"}},
	)
	p.Rankers[0].CandidatesFrom = "user_recs"
	p.SetDefaults()
	return p
}

func TestValidateKinds(t *testing.T) {
	p := kindsProject(t)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range p.View("user_spend").Features {
		names = append(names, f.Name+":"+f.Type.String())
	}
	want := "spend_count_1h:int64 spend_count_7d:int64 spend_sum_1h:float64 spend_sum_7d:float64 spend_mean_1h:float64 spend_mean_7d:float64"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("aggregate features = %s, want %s", got, want)
	}
	if w := window(t, "7d"); w.Duration != 7*24*time.Hour {
		t.Errorf("7d = %v", w.Duration)
	}
	pred := p.View("user_pred")
	if deps := pred.DependsOn(); len(deps) != 2 || deps[0].Name != "user_spend" || deps[1].Name != "user_profile" {
		t.Errorf("DependsOn = %v", deps)
	}
	if pred.Prediction.EntitiesView() != p.View("user_spend") || pred.Prediction.BatchSize != larder.DefaultPredictionBatch {
		t.Error("prediction defaults not applied")
	}
	recs := p.View("user_recs")
	if len(recs.Features) != 2 || recs.Features[0].Type != larder.TypeInt64List || recs.Candidates.TopK != larder.DefaultCandidateTopK {
		t.Errorf("candidates features = %+v", recs.Features)
	}
	if p.Ranker("feed").CandidatesView() != recs {
		t.Error("candidates_from not resolved")
	}
	order := larder.Order([]*larder.View{pred, p.View("user_spend")})
	if order[0].Name != "user_spend" || order[1].Name != "user_pred" {
		t.Errorf("Order = %s, %s", order[0].Name, order[1].Name)
	}
}

func TestValidateKindProblems(t *testing.T) {
	tests := []struct {
		name string
		edit func(p *larder.Project)
		path string
		msg  string
	}{
		{"unknown function", func(p *larder.Project) { p.View("user_spend").Aggregations[0].Functions[0] = "median" }, "views[2].aggregations[0].functions[0]", "unknown function"},
		{"no windows", func(p *larder.Project) { p.View("user_spend").Aggregations[0].Windows = nil }, "views[2].aggregations[0].windows", "at least one window"},
		{"prediction input of another entity", func(p *larder.Project) { p.View("user_pred").Prediction.Inputs[0].Ref = "item_profile:price" }, "views[3].inputs[0]", "inputs must share"},
		{"prediction output not float32", func(p *larder.Project) { p.View("user_pred").Features[0].Type = larder.TypeInt64 }, "views[3].features[0].type", "must be float32"},
		{"prediction with a source", func(p *larder.Project) { p.View("user_pred").Source = "events" }, "views[3].source", "not a source"},
		{"candidates of unknown entity", func(p *larder.Project) { p.View("user_recs").Candidates.Entity = "shop" }, "views[4].candidates.entity", "unknown entity"},
		{"candidates_from a latest view", func(p *larder.Project) { p.Rankers[0].CandidatesFrom = "user_profile" }, "rankers[0].candidates_from", "needs a candidates view"},
		{"cycle", func(p *larder.Project) {
			p.Views = append(p.Views, &larder.View{Name: "user_pred2", Kind: larder.KindPrediction, Entity: "user",
				Prediction: &larder.Prediction{Model: "m.onnx", Inputs: []larder.RankerInput{{Ref: "user_pred:p_buy"}}},
				Features:   []larder.Feature{{Name: "q", Type: larder.TypeFloat32}}})
			p.View("user_pred").Prediction.Inputs[1].Ref = "user_pred2:q"
		}, "views[3].inputs", "cycle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := kindsProject(t)
			tt.edit(p)
			err := p.Validate()
			var ve *larder.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want a *ValidationError", err)
			}
			for _, fe := range ve.Errs {
				if fe.Path == tt.path && strings.Contains(fe.Msg, tt.msg) {
					return
				}
			}
			t.Errorf("no problem at %s mentioning %q in:\n%v", tt.path, tt.msg, err)
		})
	}
}

func TestValidateTwice(t *testing.T) {
	p := kindsProject(t)
	for i := 0; i < 2; i++ {
		if err := p.Validate(); err != nil {
			t.Fatalf("Validate #%d: %v", i+1, err)
		}
	}
	if n := len(p.View("user_spend").Features); n != 6 {
		t.Errorf("aggregate view has %d features after two Validate calls, want 6", n)
	}
	if c := p.View("user_recs").Candidates; c.Column != "item_id" {
		t.Errorf("candidates column = %q, want the candidate entity's key item_id", c.Column)
	}
}

// TestParseWindowRefusals checks that a refused window says why, and for
// days written with another unit or a fraction, what to write instead.
func TestParseWindowRefusals(t *testing.T) {
	tests := []struct{ s, want string }{
		{"1d12h", `invalid window "1d12h": a window in days is a whole number and d alone, such as 7d; write 36h`},
		{"1.5d", `invalid window "1.5d": a window in days is a whole number and d alone, such as 7d; write 36h`},
		{"2d30m", `invalid window "2d30m": a window in days is a whole number and d alone, such as 7d; write 2910m`},
		{"1d1s", `invalid window "1d1s": a window in days is a whole number and d alone, such as 7d`},
		{"1dd", `invalid window "1dd": a window in days is a whole number and d alone, such as 7d`},
		{"7x", `invalid window "7x": write a positive number of minutes, hours or days, such as 30m, 1h or 7d`},
		{"0d", `invalid window "0d": write a positive number of minutes, hours or days, such as 30m, 1h or 7d`},
	}
	for _, tt := range tests {
		t.Run(tt.s, func(t *testing.T) {
			_, err := larder.ParseWindow(tt.s)
			if err == nil || err.Error() != tt.want {
				t.Errorf("ParseWindow(%q) = %v\nwant %s", tt.s, err, tt.want)
			}
		})
	}
}
