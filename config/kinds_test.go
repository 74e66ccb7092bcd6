package config_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// kinds is a valid project with a view of every kind and a ranker that
// ranks a candidates view; the bad cases below edit one line of it, and the
// expected line numbers are its line numbers.
const kinds = `project: shop
entities:
  - {name: user, key: user_id, type: int64}
  - {name: item, key: item_id, type: string}
sources:
  - {name: users, path: data/users.parquet, event_time: updated_at}
  - {name: events, path: data/events/, event_time: ts}
  - {name: recs, path: data/recs.parquet, event_time: ts}
views:
  - name: user_profile
    kind: latest
    entity: user
    source: users
    features:
      - {name: age, type: int64}
  - name: user_activity
    kind: aggregate
    entity: user
    source: events
    max_age: 2d
    schedule: "@hourly"
    aggregations:
      - column: amount
        type: float64
        name: spend
        functions: [sum, mean, max]
        windows: [1h, 7d]
      - column: item_id
        type: string
        functions: [count, count_distinct, last]
        windows: [30d]
  - name: user_churn
    kind: prediction
    entity: user
    model: models/churn.onnx
    model_input: x
    model_output: y
    inputs:
      - user_profile:age
      - {ref: user_activity:spend_sum_7d, default: 0.5}
    entities_from: user_profile
    batch_size: 256
    features:
      - {name: churn, type: float32}
      - {name: upsell, type: float32}
  - name: user_recs
    kind: candidates
    entity: user
    source: recs
    candidates: {entity: item, column: item_id, score: score, top_k: 50}
rankers:
  - name: home_feed
    model: models/rerank.onnx
    context: user
    candidate: item
    candidates_from: user_recs
    inputs: [user_churn:churn, request:hour_of_day]
`

func TestParseKinds(t *testing.T) {
	p, err := config.Parse("larder.yaml", []byte(kinds))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	profile, activity, churn, recs := p.View("user_profile"), p.View("user_activity"), p.View("user_churn"), p.View("user_recs")
	if profile == nil || activity == nil || churn == nil || recs == nil {
		t.Fatalf("views = %v", p.Views)
	}

	t.Run("aggregate", func(t *testing.T) {
		if activity.Kind != larder.KindAggregate || activity.Source != "events" || activity.MaxAge != 48*time.Hour || activity.Schedule != "@hourly" {
			t.Errorf("view = %+v", *activity)
		}
		h, w, m := larder.Window{Label: "1h", Duration: time.Hour}, larder.Window{Label: "7d", Duration: 7 * 24 * time.Hour}, larder.Window{Label: "30d", Duration: 30 * 24 * time.Hour}
		wantAggs := []larder.Aggregation{
			{Column: "amount", Type: larder.TypeFloat64, Name: "spend", Functions: []larder.AggFunc{larder.AggSum, larder.AggMean, larder.AggMax}, Windows: []larder.Window{h, w}},
			{Column: "item_id", Type: larder.TypeString, Functions: []larder.AggFunc{larder.AggCount, larder.AggCountDistinct, larder.AggLast}, Windows: []larder.Window{m}},
		}
		if len(activity.Aggregations) != len(wantAggs) {
			t.Fatalf("%d aggregations, want %d", len(activity.Aggregations), len(wantAggs))
		}
		for i, a := range activity.Aggregations {
			wa := wantAggs[i]
			if a.Column != wa.Column || a.Type != wa.Type || a.Name != wa.Name || !slices.Equal(a.Functions, wa.Functions) || !slices.Equal(a.Windows, wa.Windows) {
				t.Errorf("Aggregations[%d] = %+v, want %+v", i, a, wa)
			}
		}
		wantFeatures := []larder.Feature{
			{Name: "spend_sum_1h", Type: larder.TypeFloat64, Column: "amount"},
			{Name: "spend_sum_7d", Type: larder.TypeFloat64, Column: "amount"},
			{Name: "spend_mean_1h", Type: larder.TypeFloat64, Column: "amount"},
			{Name: "spend_mean_7d", Type: larder.TypeFloat64, Column: "amount"},
			{Name: "spend_max_1h", Type: larder.TypeFloat64, Column: "amount"},
			{Name: "spend_max_7d", Type: larder.TypeFloat64, Column: "amount"},
			{Name: "item_id_count_30d", Type: larder.TypeInt64, Column: "item_id"},
			{Name: "item_id_count_distinct_30d", Type: larder.TypeInt64, Column: "item_id"},
			{Name: "item_id_last_30d", Type: larder.TypeString, Column: "item_id"},
		}
		if !slices.Equal(activity.Features, wantFeatures) {
			t.Errorf("Features = %+v\nwant %+v", activity.Features, wantFeatures)
		}
		if got := activity.FeatureIndex("spend_sum_7d"); got != 1 {
			t.Errorf("FeatureIndex(spend_sum_7d) = %d, want 1", got)
		}
	})

	t.Run("prediction", func(t *testing.T) {
		if churn.Kind != larder.KindPrediction || churn.Source != "" || churn.Prediction == nil {
			t.Fatalf("view = %+v", *churn)
		}
		pr := churn.Prediction
		if pr.Model != "models/churn.onnx" || pr.ModelInput != "x" || pr.ModelOutput != "y" || pr.EntitiesFrom != "user_profile" || pr.BatchSize != 256 {
			t.Errorf("Prediction = %+v", *pr)
		}
		wantInputs := []larder.RankerInput{
			{Ref: "user_profile:age", Side: larder.SideContext, View: profile, Feature: 0},
			{Ref: "user_activity:spend_sum_7d", Default: 0.5, HasDefault: true, Side: larder.SideContext, View: activity, Feature: 1},
		}
		if !slices.Equal(pr.Inputs, wantInputs) {
			t.Errorf("Inputs = %+v\nwant %+v", pr.Inputs, wantInputs)
		}
		if pr.EntitiesView() != profile {
			t.Errorf("EntitiesView = %v, want user_profile", pr.EntitiesView())
		}
		if deps := churn.DependsOn(); !slices.Equal(deps, []*larder.View{profile, activity}) {
			t.Errorf("DependsOn = %v", deps)
		}
		wantFeatures := []larder.Feature{
			{Name: "churn", Type: larder.TypeFloat32, Column: "churn"},
			{Name: "upsell", Type: larder.TypeFloat32, Column: "upsell"},
		}
		if !slices.Equal(churn.Features, wantFeatures) {
			t.Errorf("Features = %+v, want %+v", churn.Features, wantFeatures)
		}
	})

	t.Run("candidates", func(t *testing.T) {
		c := recs.Candidates
		if recs.Kind != larder.KindCandidates || c == nil {
			t.Fatalf("view = %+v", *recs)
		}
		if c.Entity != "item" || c.Column != "item_id" || c.ScoreColumn != "score" || c.TopK != 50 || c.EntityDef() != p.Entity("item") {
			t.Errorf("Candidates = %+v", *c)
		}
		wantFeatures := []larder.Feature{
			{Name: larder.CandidatesFeature, Type: larder.TypeStringList, Column: "item_id"},
			{Name: larder.ScoresFeature, Type: larder.TypeFloat32Vector, Column: "score"},
		}
		if !slices.Equal(recs.Features, wantFeatures) {
			t.Errorf("Features = %+v, want %+v", recs.Features, wantFeatures)
		}
	})

	t.Run("ranker", func(t *testing.T) {
		r := p.Ranker("home_feed")
		if r.CandidatesFrom != "user_recs" || r.CandidatesView() != recs {
			t.Errorf("CandidatesFrom = %q, CandidatesView = %v", r.CandidatesFrom, r.CandidatesView())
		}
		if len(r.Inputs) != 2 || r.Inputs[0].View != churn || r.Inputs[0].Side != larder.SideContext {
			t.Errorf("Inputs = %+v", r.Inputs)
		}
	})

	t.Run("order", func(t *testing.T) {
		got := larder.Order([]*larder.View{churn, activity, profile})
		if !slices.Equal(got, []*larder.View{profile, activity, churn}) && !slices.Equal(got, []*larder.View{activity, profile, churn}) {
			t.Errorf("Order put the prediction view before its inputs: %v", got)
		}
	})
}

// TestParseKindsDefaults checks the defaults of the new kinds, and that a
// view's kind merged in from an anchor decides which fields the view takes.
func TestParseKindsDefaults(t *testing.T) {
	src := `project: shop
x-user-view: &user_view
  kind: prediction
  entity: user
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: users, path: users.parquet, event_time: ts}
  - {name: follows, path: follows.parquet, event_time: ts}
views:
  - name: profile
    kind: latest
    entity: user
    source: users
    features: [{name: age, type: int64}]
  - <<: *user_view
    name: score
    model: m.onnx
    inputs: [profile:age]
    features: [{name: p, type: float32}]
  - name: who_to_follow
    kind: candidates
    entity: user
    source: follows
    candidates: {entity: user, column: followee_id, score: affinity}
`
	p, err := config.Parse("larder.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	pr := p.View("score").Prediction
	if pr.ModelInput != larder.DefaultModelInput || pr.ModelOutput != larder.DefaultModelOutput || pr.BatchSize != larder.DefaultPredictionBatch {
		t.Errorf("prediction defaults = %+v", *pr)
	}
	if pr.EntitiesView() != p.View("profile") {
		t.Errorf("EntitiesView = %v, want the view of the first input", pr.EntitiesView())
	}
	wtf := p.View("who_to_follow")
	if wtf.Candidates.TopK != larder.DefaultCandidateTopK {
		t.Errorf("TopK = %d, want %d", wtf.Candidates.TopK, larder.DefaultCandidateTopK)
	}
	if wtf.Features[0].Type != larder.TypeInt64List {
		t.Errorf("candidates of an int64 entity are %s, want int64_list", wtf.Features[0].Type)
	}
}

func TestParseKindsBad(t *testing.T) {
	tests := []struct {
		name     string
		line     int    // the line of kinds to replace
		old, new string // its text, and what replaces it

		wantLine  int
		wantField string
		wantMsg   string
	}{
		// aggregate views
		{"bad window", 27, "        windows: [1h, 7d]", "        windows: [1h, 7x]",
			27, "views[1].aggregations[0].windows[1]", `invalid window "7x": write a positive number of minutes, hours or days`},
		{"days and hours", 31, "        windows: [30d]", "        windows: [1d12h]",
			31, "views[1].aggregations[1].windows[0]", `invalid window "1d12h": a window in days is a whole number and d alone, such as 7d; write 36h`},
		{"zero window", 31, "        windows: [30d]", "        windows: [0d]",
			31, "views[1].aggregations[1].windows[0]", `invalid window "0d"`},
		{"window with a fraction", 31, "        windows: [30d]", "        windows: [1.5h]",
			31, "views[1].aggregations[1].windows[0]", `window "1.5h" cannot be part of a feature name: write whole numbers and units only, such as 90m or 36h`},
		{"window that is a list", 31, "        windows: [30d]", "        windows: [[30d]]",
			31, "views[1].aggregations[1].windows[0]", "want a window such as 1h, 1d or 7d; got a list"},
		{"windows not a list", 31, "        windows: [30d]", "        windows: 30d",
			31, "views[1].aggregations[1].windows", `want a list of windows, such as [1h, 1d, 7d]`},
		{"duplicate window", 27, "        windows: [1h, 7d]", "        windows: [1h, 60m]",
			27, "views[1].aggregations[0].windows[1]", "duplicate window 60m"},
		{"unknown function", 26, "        functions: [sum, mean, max]", "        functions: [sum, median, max]",
			26, "views[1].aggregations[0].functions[1]", `unknown function "median" (count, sum, mean, min, max, last, count_distinct)`},
		{"another name of a function", 26, "        functions: [sum, mean, max]", "        functions: [sum, avg, max]",
			26, "views[1].aggregations[0].functions[1]", `unknown function "avg"; did you mean "mean"? (count, sum, mean, min, max, last, count_distinct)`},
		{"misspelt function", 30, "        functions: [count, count_distinct, last]", "        functions: [coutn, count_distinct, last]",
			30, "views[1].aggregations[1].functions[0]", `unknown function "coutn"; did you mean "count"?`},
		{"function in capitals", 26, "        functions: [sum, mean, max]", "        functions: [SUM, mean, max]",
			26, "views[1].aggregations[0].functions[0]", `unknown function "SUM"; did you mean "sum"?`},
		{"distinct count", 30, "        functions: [count, count_distinct, last]", "        functions: [count, distinct_count, last]",
			30, "views[1].aggregations[1].functions[1]", `unknown function "distinct_count"; did you mean "count_distinct"?`},
		{"numeric function of a string column", 30, "        functions: [count, count_distinct, last]", "        functions: [count, sum]",
			30, "views[1].aggregations[1].functions[1]", "sum needs a numeric column"},
		{"missing functions", 26, "        functions: [sum, mean, max]", "        functions: []",
			26, "views[1].aggregations[0].functions", "at least one function is required"},
		{"missing aggregation column", 23, "      - column: amount", "      - column:",
			23, "views[1].aggregations[0].column", "is required: the source column to aggregate"},
		{"unknown aggregation type", 24, "        type: float64", "        type: decimal",
			24, "views[1].aggregations[0].type", `unknown type "decimal" (an aggregated column is int64, float64, float32, bool or string)`},
		{"unsupported aggregation type", 24, "        type: float64", "        type: bytes",
			24, "views[1].aggregations[0].type", "cannot aggregate bytes columns"},
		{"invalid aggregation name", 25, "        name: spend", "        name: 9spend",
			25, "views[1].aggregations[0].name", `"9spend" is not a valid name`},
		{"unknown aggregation field", 25, "        name: spend", "        prefix: spend",
			25, "views[1].aggregations[0].prefix", `unknown field "prefix" (fields here: column, type, name, functions, windows)`},
		{"features of an aggregate view", 22, "    aggregations:", "    features: [{name: x, type: int64}]\n    aggregations:",
			22, "views[1].features", "an aggregate view's features are generated from its aggregations: remove features (fields of an aggregate view: name, kind, entity, source, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, aggregations, tile)"},
		{"misspelt aggregations", 22, "    aggregations:", "    aggregation:",
			22, "views[1].aggregation", `unknown field "aggregation"; did you mean "aggregations"? (fields of an aggregate view:`},
		{"aggregations of a latest view", 14, "    features:", "    aggregations: []\n    features:",
			14, "views[0].aggregations", "aggregations is a field of aggregate views, and this is a latest view (fields of a latest view: name, kind, entity, source, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, features)"},
		{"a generated feature named twice", 27, "        windows: [1h, 7d]", "        windows: [1h, 7d]\n      - {column: price, name: spend, type: float64, functions: [max], windows: [7d]}",
			28, "views[1].aggregations[1]", `generates feature "spend_max_7d" twice: give one of the aggregations another name`},

		// prediction views
		{"model of a latest view", 14, "    features:", "    model: m.onnx\n    features:",
			14, "views[0].model", "model is a field of prediction views, and this is a latest view"},
		{"source of a prediction view", 34, "    entity: user", "    entity: user\n    source: events",
			35, "views[2].source", "a prediction view reads the features of other views (its inputs), not a source: remove source"},
		{"missing prediction model", 35, "    model: models/churn.onnx", "",
			32, "views[2].model", "is required: the path of the ONNX model"},
		{"prediction input of an unknown view", 39, "      - user_profile:age", "      - user_profil:age",
			39, "views[2].inputs[0]", `unknown view "user_profil"`},
		{"prediction input that is a request feature", 39, "      - user_profile:age", "      - request:hour",
			39, "views[2].inputs[0]", `"request:hour" is not a reference to a stored feature: write view:feature`},
		{"prediction input that is not numeric", 39, "      - user_profile:age", "      - user_recs:scores",
			39, "views[2].inputs[0]", `feature "user_recs:scores" is float32_vector`},
		{"prediction input reads its own view", 39, "      - user_profile:age", "      - user_churn:churn",
			39, "views[2].inputs[0]", "a view cannot read its own features"},
		{"prediction input default not a number", 40, "      - {ref: user_activity:spend_sum_7d, default: 0.5}", "      - {ref: user_activity:spend_sum_7d, default: half}",
			40, "views[2].inputs[1].default", `want a number; got "half"`},
		{"unknown entities_from", 41, "    entities_from: user_profile", "    entities_from: nobody",
			41, "views[2].entities_from", `unknown view "nobody"`},
		{"negative batch_size", 42, "    batch_size: 256", "    batch_size: -1",
			42, "views[2].batch_size", "must be positive, got -1"},
		{"batch_size not a number", 42, "    batch_size: 256", "    batch_size: lots",
			42, "views[2].batch_size", `want a whole number; got "lots"`},
		{"prediction output not float32", 44, "      - {name: churn, type: float32}", "      - {name: churn, type: float64}",
			44, "views[2].features[0].type", "must be float32, got float64"},
		{"misspelt prediction field", 42, "    batch_size: 256", "    batchsize: 256",
			42, "views[2].batchsize", `did you mean "batch_size"? (fields of a prediction view: name, kind, entity, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, model, model_input, model_output, inputs, entities_from, batch_size, features)`},

		// candidates views
		{"unknown candidate entity", 50, "    candidates: {entity: item, column: item_id, score: score, top_k: 50}", "    candidates: {entity: itme, column: item_id, score: score, top_k: 50}",
			50, "views[3].candidates.entity", `unknown entity "itme" (known: user, item)`},
		{"missing score", 50, "    candidates: {entity: item, column: item_id, score: score, top_k: 50}", "    candidates: {entity: item, column: item_id, top_k: 50}",
			50, "views[3].candidates.score", "is required: the source column holding each candidate's score"},
		{"negative candidates top_k", 50, "    candidates: {entity: item, column: item_id, score: score, top_k: 50}", "    candidates: {entity: item, column: item_id, score: score, top_k: -5}",
			50, "views[3].candidates.top_k", "must be positive, got -5"},
		{"misspelt score", 50, "    candidates: {entity: item, column: item_id, score: score, top_k: 50}", "    candidates: {entity: item, column: item_id, scores: score, top_k: 50}",
			50, "views[3].candidates.scores", `unknown field "scores"; did you mean "score"? (fields here: entity, column, score, top_k, from_view, context)`},
		{"candidates not a mapping", 50, "    candidates: {entity: item, column: item_id, score: score, top_k: 50}", "    candidates: item",
			50, "views[3].candidates", `want a mapping of entity, column, score, top_k, from_view, context; got "item"`},
		{"missing candidates", 50, "    candidates: {entity: item, column: item_id, score: score, top_k: 50}", "",
			46, "views[3].candidates", "is required: the candidate entity, the score column and top_k"},
		{"features of a candidates view", 50, "    candidates: {entity: item, column: item_id, score: score, top_k: 50}", "    candidates: {entity: item, column: item_id, score: score, top_k: 50}\n    features: []",
			51, "views[3].features", "a candidates view's features (candidates and scores) are generated: remove features"},

		// rankers
		{"candidates_from an unknown view", 56, "    candidates_from: user_recs", "    candidates_from: user_rec",
			56, "rankers[0].candidates_from", `unknown view "user_rec"`},
		{"candidates_from a latest view", 56, "    candidates_from: user_recs", "    candidates_from: user_profile",
			56, "rankers[0].candidates_from", `view "user_profile" is a latest view; candidates_from needs a candidates view`},
		{"candidates_from a view of other entities", 55, "    candidate: item", "    candidate: user",
			56, "rankers[0].candidates_from", `view "user_recs" lists item candidates per user, but the ranker ranks user candidates for a user`},

		// entities
		{"unknown entity key type", 3, "  - {name: user, key: user_id, type: int64}", "  - {name: user, key: user_id, type: int32}",
			3, "entities[0].type", `unknown type "int32" (entity keys are int64 or string)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := edit(t, kinds, tt.line, tt.old, tt.new)
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
			want := "larder.yaml:" + strconv.Itoa(tt.wantLine) + ":"
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tt.wantField+": ") {
				t.Errorf("message does not name line %d and field %s:\n%v", tt.wantLine, tt.wantField, err)
			}
		})
	}
}

// TestParseKindsOneProblemEach checks that a mistake is reported once, at
// the field written in the file, even when it spoils every feature an
// aggregation generates, and that the entity key type error does not list
// every type.
func TestParseKindsOneProblemEach(t *testing.T) {
	tests := []struct {
		name     string
		line     int
		old, new string
		want     string // the whole error
	}{
		{"aggregated column is the entity key", 23, "      - column: amount", "      - column: user_id",
			`larder.yaml:23:17: views[1].aggregations[0].column: "user_id" is the entity key column; it cannot also be a feature`},
		{"aggregated column makes invalid names", 28, "      - column: item_id", "      - column: item id",
			`larder.yaml:28:17: views[1].aggregations[1].column: "item id_count_30d" is not a valid feature name (letters, digits, '_' and '-', starting with a letter)`},
		{"aggregation type missing", 24, "        type: float64", "        type:",
			"larder.yaml:24:14: views[1].aggregations[0].type: is required: the column's type (int64, float64, float32, bool or string)"},
		{"bad window", 27, "        windows: [1h, 7d]", "        windows: [1h, 1 week]",
			`larder.yaml:27:23: views[1].aggregations[0].windows[1]: invalid window "1 week": write a positive number of minutes, hours or days, such as 30m, 1h or 7d`},
		{"candidates column is the entity key", 50, "    candidates: {entity: item, column: item_id, score: score, top_k: 50}", "    candidates: {entity: item, column: user_id, score: score, top_k: 50}",
			`larder.yaml:50:40: views[3].candidates.column: "user_id" is the entity key column; it cannot also be a feature`},
		{"repeated window", 27, "        windows: [1h, 7d]", "        windows: [7d, 7d]",
			"larder.yaml:27:23: views[1].aggregations[0].windows[1]: duplicate window 7d"},
		{"repeated function", 30, "        functions: [count, count_distinct, last]", "        functions: [count, last, count]",
			`larder.yaml:30:34: views[1].aggregations[1].functions[2]: duplicate function "count"`},
		{"entity key type", 3, "  - {name: user, key: user_id, type: int64}", "  - {name: user, key: user_id, type: int32}",
			`larder.yaml:3:38: entities[0].type: unknown type "int32" (entity keys are int64 or string)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("larder.yaml", []byte(edit(t, kinds, tt.line, tt.old, tt.new)))
			problems(t, err)
			if err.Error() != tt.want {
				t.Errorf("error =\n%v\nwant\n%v", err, tt.want)
			}
		})
	}
}

// TestParseViewFieldsByKind checks that an unknown field of a view lists the
// fields of the view's kind, and of every kind when the kind is unknown.
func TestParseViewFieldsByKind(t *testing.T) {
	tests := []struct {
		kind, want string
	}{
		{"latest", `unknown field "colour" (fields of a latest view: name, kind, entity, source, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, features)`},
		{"aggregate", `unknown field "colour" (fields of an aggregate view: name, kind, entity, source, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, aggregations, tile)`},
		{"prediction", `unknown field "colour" (fields of a prediction view: name, kind, entity, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, model, model_input, model_output, inputs, entities_from, batch_size, features)`},
		{"candidates", `unknown field "colour" (fields of a candidates view: name, kind, entity, source, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, candidates)`},
		{"newest", `unknown field "colour" (fields here: name, kind, entity, source, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, features, aggregations, tile, model, model_input, model_output, inputs, entities_from, batch_size, candidates)`},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			src := "project: shop\nviews:\n  - name: v\n    colour: blue\n    kind: " + tt.kind + "\n"
			_, err := config.Parse("larder.yaml", []byte(src))
			ps := problems(t, err)
			if !slices.ContainsFunc(ps, func(p config.Problem) bool {
				return p.Line == 4 && p.Column == 5 && p.Field == "views[0].colour" && p.Msg == tt.want
			}) {
				t.Errorf("no problem at 4:5 views[0].colour saying %q; got:\n%v", tt.want, err)
			}
		})
	}
}

// TestParseMergedKind checks that a kind merged in from an anchor decides
// which fields a view takes.
func TestParseMergedKind(t *testing.T) {
	src := `project: shop
x-agg: &agg
  kind: aggregate
  entity: user
views:
  - <<: *agg
    name: v
    source: events
    features: [{name: x, type: int64}]
`
	_, err := config.Parse("larder.yaml", []byte(src))
	ps := problems(t, err)
	want := "an aggregate view's features are generated from its aggregations: remove features"
	if !slices.ContainsFunc(ps, func(p config.Problem) bool {
		return p.Line == 9 && p.Field == "views[0].features" && strings.HasPrefix(p.Msg, want)
	}) {
		t.Errorf("no problem at line 9, views[0].features, saying %q; got:\n%v", want, err)
	}
}
