package config_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// viewCands is a valid project with a candidates view computed from a
// prediction view (top_items_by_category) next to one read from a source
// (similar_items); the bad cases below edit its lines, and the expected line
// numbers are its line numbers.
const viewCands = `project: shop
entities:
  - {name: category, key: category_id, type: string}
  - {name: item, key: item_id, type: int64}
  - {name: user, key: user_id, type: int64}
sources:
  - {name: items, path: data/items.parquet, event_time: ts}
  - {name: users, path: data/users.parquet, event_time: ts}
views:
  - name: item_profile
    kind: latest
    entity: item
    source: items
    features:
      - {name: category, type: string}
      - {name: category_id, type: int64}
      - {name: title, type: string}
  - name: user_profile
    kind: latest
    entity: user
    source: users
    features: [{name: country, type: string}]
  - name: item_click_prior
    kind: prediction
    entity: item
    model: models/prior.onnx
    inputs: [item_profile:category_id]
    features: [{name: click_prob, type: float32}]
  - name: top_items_by_category
    kind: candidates
    entity: category
    candidates:
      entity: item
      from_view: item_click_prior
      score: click_prob
      context: item_profile:category
      top_k: 50
  - name: similar_items
    kind: candidates
    entity: item
    source: items
    candidates: {entity: item, column: other_id, score: sim, top_k: 5}
`

func TestParseCandidatesFromView(t *testing.T) {
	p, err := config.Parse("larder.yaml", []byte(viewCands))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	v, prior, profile := p.View("top_items_by_category"), p.View("item_click_prior"), p.View("item_profile")
	c := v.Candidates
	if c.FromView != "item_click_prior" || c.ScoreFeature != "click_prob" || c.ScoreColumn != "" || c.Context != "item_profile:category" || c.TopK != 50 || c.Column != "" {
		t.Errorf("Candidates = %+v", *c)
	}
	if fv, score := c.FromViewDef(); fv != prior || score != 0 {
		t.Errorf("FromViewDef() = %v, %d; want item_click_prior, 0", fv, score)
	}
	if cv, feature := c.ContextDef(); cv != profile || feature != 0 {
		t.Errorf("ContextDef() = %v, %d; want item_profile, 0", cv, feature)
	}
	if got := v.DependsOn(); !slices.Equal(got, []*larder.View{prior, profile}) {
		t.Errorf("DependsOn() = %v, want item_click_prior and item_profile", got)
	}
	wantFeatures := []larder.Feature{{Name: larder.CandidatesFeature, Type: larder.TypeInt64List}, {Name: larder.ScoresFeature, Type: larder.TypeFloat32Vector}}
	if !slices.Equal(v.Features, wantFeatures) {
		t.Errorf("Features = %+v, want %+v", v.Features, wantFeatures)
	}
	if v.SourceDef() != nil || v.Source != "" {
		t.Errorf("a view-fed candidates view has source %q", v.Source)
	}
	// Listed first, the candidates view runs after the views it reads.
	order := larder.Order([]*larder.View{v, p.View("similar_items"), prior, profile})
	if want := []*larder.View{profile, prior, v, p.View("similar_items")}; !slices.Equal(order, want) {
		t.Errorf("Order = %v, want %v", viewNames(order), viewNames(want))
	}
	// A source-fed candidates view keeps its source columns and reads no view.
	si := p.View("similar_items")
	if si.Candidates.ScoreColumn != "sim" || si.Candidates.ScoreFeature != "" || len(si.DependsOn()) != 0 {
		t.Errorf("similar_items: %+v, depends on %v", *si.Candidates, si.DependsOn())
	}
}

func viewNames(vs []*larder.View) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

// lineEdit replaces line n of a source, which must read old, with new (which
// may hold several lines, or none).
type lineEdit struct {
	n        int
	old, new string
}

func TestParseCandidatesFromViewBad(t *testing.T) {
	const (
		fromView = "      from_view: item_click_prior"
		score    = "      score: click_prob"
		context  = "      context: item_profile:category"
	)
	tests := []struct {
		name  string
		edits []lineEdit

		wantLine  int
		wantField string
		wantMsg   string
	}{
		{"unknown from_view", []lineEdit{{34, fromView, "      from_view: item_click_prio"}},
			34, "views[3].candidates.from_view", `unknown view "item_click_prio" (known: item_profile, user_profile, item_click_prior, top_items_by_category, similar_items)`},
		{"from_view is the view itself", []lineEdit{{34, fromView, "      from_view: top_items_by_category"}},
			34, "views[3].candidates.from_view", "a view cannot read its own features"},
		{"from_view is a candidates view", []lineEdit{{34, fromView, "      from_view: similar_items"}},
			34, "views[3].candidates.from_view", `view "similar_items" is a candidates view, which holds lists; from_view needs a view with one score per candidate`},
		{"from_view keyed by another entity", []lineEdit{{34, fromView, "      from_view: user_profile"}},
			34, "views[3].candidates.from_view", `view "user_profile" is keyed by entity "user", but the candidates are "item": from_view must be keyed by the candidate entity`},
		{"unknown score feature", []lineEdit{{35, score, "      score: click"}},
			35, "views[3].candidates.score", `view "item_click_prior" has no feature "click" (known: click_prob)`},
		{"score not numeric", []lineEdit{{34, fromView, "      from_view: item_profile"}, {35, score, "      score: title"}},
			35, "views[3].candidates.score", `feature "title" of view "item_profile" is string; a score must be int64, float64, float32 or bool`},
		{"missing score", []lineEdit{{35, score, ""}},
			33, "views[3].candidates.score", `is required: the feature of view "item_click_prior" holding each candidate's score`},
		{"missing context", []lineEdit{{36, context, ""}},
			33, "views[3].candidates.context", "is required with from_view: the view:feature, keyed by the candidate entity, whose value is each candidate's category key, such as item_profile:category"},
		{"context not a reference", []lineEdit{{36, context, "      context: category"}},
			36, "views[3].candidates.context", `"category" is not a reference to a stored feature: write view:feature`},
		{"context a request feature", []lineEdit{{36, context, "      context: request:category"}},
			36, "views[3].candidates.context", `"request:category" is not a reference to a stored feature`},
		{"context of an unknown view", []lineEdit{{36, context, "      context: item_profil:category"}},
			36, "views[3].candidates.context", `unknown view "item_profil"`},
		{"context of an unknown feature", []lineEdit{{36, context, "      context: item_profile:categ"}},
			36, "views[3].candidates.context", `view "item_profile" has no feature "categ" (known: category, category_id, title)`},
		{"context keyed by another entity", []lineEdit{{36, context, "      context: user_profile:country"}},
			36, "views[3].candidates.context", `view "user_profile" is keyed by entity "user", but the candidates are "item": the context feature must be keyed by the candidate entity`},
		{"context of another type than the context key", []lineEdit{{36, context, "      context: item_profile:category_id"}},
			36, "views[3].candidates.context", `feature "item_profile:category_id" is int64, but the keys of entity "category" (the view's entity) are string`},
		{"source and from_view", []lineEdit{{31, "    entity: category", "    entity: category\n    source: items"}},
			32, "views[3].source", "a candidates view with candidates.from_view reads that view, not a source: remove source or from_view"},
		{"column with from_view", []lineEdit{{37, "      top_k: 50", "      top_k: 50\n      column: item_id"}},
			38, "views[3].candidates.column", "a candidates view with from_view takes its candidates from that view's entities, not from a source column: remove column"},
		{"neither source nor from_view", []lineEdit{{34, fromView, ""}},
			29, "views[3].source", "is required: a source of (context, candidate, score) rows, or candidates.from_view to take the candidates from a view"},
		{"context without from_view", []lineEdit{{42, "    candidates: {entity: item, column: other_id, score: sim, top_k: 5}", "    candidates: {entity: item, column: other_id, score: sim, top_k: 5, context: item_profile:category_id}"}},
			42, "views[4].candidates.context", `only a candidates view with from_view has a context feature; a source gives each row's context key in the column "item_id"`},
		{"misspelt from_view", []lineEdit{{34, fromView, "      from: item_click_prior"}},
			34, "views[3].candidates.from", `unknown field "from" (fields here: entity, column, score, top_k, from_view, context)`},
		{"a cycle through entities_from", []lineEdit{{42, "    candidates: {entity: item, column: other_id, score: sim, top_k: 5}", "    candidates: {entity: item, column: other_id, score: sim, top_k: 5}\n" + cycle}},
			48, "views[5].candidates.from_view", `view "item_neighbours" depends on itself through the views it reads`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := viewCands
			for _, e := range tt.edits {
				src = edit(t, src, e.n, e.old, e.new)
			}
			_, err := config.Parse("larder.yaml", []byte(src))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			ps := problems(t, err)
			found := slices.ContainsFunc(ps, func(p config.Problem) bool {
				return p.File == "larder.yaml" && p.Line == tt.wantLine && p.Field == tt.wantField && strings.Contains(p.Msg, tt.wantMsg)
			})
			if !found {
				t.Errorf("no problem at line %d, field %q, saying %q; got:\n%v", tt.wantLine, tt.wantField, tt.wantMsg, err)
			}
			if want := "larder.yaml:" + strconv.Itoa(tt.wantLine) + ":"; !strings.Contains(err.Error(), want) {
				t.Errorf("message does not name line %d:\n%v", tt.wantLine, err)
			}
		})
	}
}

// cycle is a candidates view of items per item ranked by a prediction view
// that scores the entities of that very candidates view: each must run
// before the other.
const cycle = `  - name: item_neighbours
    kind: candidates
    entity: item
    candidates:
      entity: item
      from_view: item_rescore
      score: s
      context: item_profile:category_id
  - name: item_rescore
    kind: prediction
    entity: item
    model: models/rescore.onnx
    inputs: [item_profile:category_id]
    entities_from: item_neighbours
    features: [{name: s, type: float32}]`

// TestParseCandidatesFromViewExact checks whole messages: file, line,
// column, field and text.
func TestParseCandidatesFromViewExact(t *testing.T) {
	src := edit(t, viewCands, 36, "      context: item_profile:category", "      context: item_profile:category_id")
	_, err := config.Parse("larder.yaml", []byte(src))
	problems(t, err)
	want := `larder.yaml:36:16: views[3].candidates.context: feature "item_profile:category_id" is int64, but the keys of entity "category" (the view's entity) are string: the context feature holds each candidate's category key`
	if err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%v", err, want)
	}
}
