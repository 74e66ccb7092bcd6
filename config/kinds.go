package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/larder-dev/larder"
)

// Views take the fields that every kind shares and the fields of their kind.
// A view's kind is read first, so that a field of another kind is reported
// as such, with the fields that the view's kind takes.

// viewShared are the fields of every kind of view but prediction, which has
// no source.
var viewShared = []string{"name", "kind", "entity", "source", "description", "max_age", "schedule", "timezone", "shards",
	"max_value_bytes", "non_finite", "oversize"}

// viewFields returns the fields a view of kind takes, in the order the
// documentation gives them; for a kind that is missing or unknown, the
// fields of every kind.
func viewFields(kind larder.ViewKind) []string {
	switch kind {
	case larder.KindLatest:
		return append(slices.Clone(viewShared), "features")
	case larder.KindAggregate:
		return append(slices.Clone(viewShared), "aggregations", "tile")
	case larder.KindPrediction:
		return []string{"name", "kind", "entity", "description", "max_age", "schedule", "timezone", "shards",
			"max_value_bytes", "non_finite", "oversize", "model", "model_input", "model_output", "inputs", "entities_from", "batch_size", "features"}
	case larder.KindCandidates:
		return append(slices.Clone(viewShared), "candidates")
	}
	all := slices.Clone(viewShared)
	for _, k := range larder.ViewKinds() {
		for _, f := range viewFields(k) {
			if !slices.Contains(all, f) {
				all = append(all, f)
			}
		}
	}
	return all
}

// viewSchema returns the schema of a view of kind.
func viewSchema(kind larder.ViewKind) schema {
	sch := schema{known: viewFields(kind)}
	if !slices.Contains(larder.ViewKinds(), kind) {
		return sch
	}
	sch.of = kindArticle(kind) + " " + string(kind) + " view"
	sch.misplaced = func(key string) string { return misplacedViewField(kind, key) }
	return sch
}

// misplacedViewField says why a view of kind does not take the field key
// when another kind takes it, or returns "".
func misplacedViewField(kind larder.ViewKind, key string) string {
	switch {
	case kind == larder.KindAggregate && key == "features":
		return "an aggregate view's features are generated from its aggregations: remove features"
	case kind == larder.KindCandidates && key == "features":
		return fmt.Sprintf("a candidates view's features (%s and %s) are generated: remove features", larder.CandidatesFeature, larder.ScoresFeature)
	case kind == larder.KindPrediction && key == "source":
		return "a prediction view reads the features of other views (its inputs), not a source: remove source"
	}
	var takers []string
	for _, k := range larder.ViewKinds() {
		if slices.Contains(viewFields(k), key) {
			takers = append(takers, string(k))
		}
	}
	if len(takers) == 0 {
		return ""
	}
	return fmt.Sprintf("%s is a field of %s views, and this is %s %s view", key, strings.Join(takers, " and "), kindArticle(kind), kind)
}

func kindArticle(kind larder.ViewKind) string {
	if kind == larder.KindAggregate {
		return "an"
	}
	return "a"
}

// peekKind returns the kind of the view mapping val as written, explicitly
// or merged in, without reporting anything; "" when it is not written or
// cannot be read (decoding the kind reports why).
func (d *decoder) peekKind(val ast.Node) larder.ViewKind {
	v := d.peek(val, "kind", make(map[*ast.MappingNode]bool))
	s, _ := text(v)
	return larder.ViewKind(s)
}

// peek returns the value of the field key of the mapping val, looking at
// explicit fields first and then at the mappings merged in, the way fields
// does; nil when it is not there. visited holds the mappings already looked
// at, which cannot hold it.
func (d *decoder) peek(val ast.Node, key string, visited map[*ast.MappingNode]bool) ast.Node {
	val, _ = d.follow(val)
	m, ok := val.(*ast.MappingNode)
	if !ok || visited[m] {
		return nil
	}
	visited[m] = true
	for _, mv := range m.Values {
		if !mv.Key.IsMergeKey() {
			if k, ok := text(mv.Key); ok && k == key {
				v, _ := d.follow(mv.Value)
				return v
			}
		}
	}
	for _, mv := range m.Values {
		if !mv.Key.IsMergeKey() {
			continue
		}
		src, _ := d.follow(mv.Value)
		srcs := []ast.Node{src}
		if seq, ok := src.(*ast.SequenceNode); ok {
			srcs = seq.Values
		}
		for _, s := range srcs {
			if v := d.peek(s, key, visited); v != nil {
				return v
			}
		}
	}
	return nil
}

func (d *decoder) view(n node) *larder.View {
	v := &larder.View{}
	spoiled := false
	prediction := func() *larder.Prediction {
		if v.Prediction == nil {
			v.Prediction = &larder.Prediction{}
		}
		return v.Prediction
	}
	for _, f := range d.fieldsOf(n, viewSchema(d.peekKind(n.val))) {
		switch f.key {
		case "name":
			v.Name = d.str(f)
		case "kind":
			v.Kind = larder.ViewKind(d.str(f))
		case "entity":
			v.Entity = d.str(f)
		case "source":
			v.Source = d.str(f)
		case "description":
			v.Description = d.str(f)
		case "max_age":
			v.MaxAge = d.duration(f)
		case "schedule":
			v.Schedule = d.schedule(f)
		case "timezone":
			v.TimeZone = d.str(f)
		case "shards":
			v.Shards = d.integer(f)
		case "max_value_bytes":
			v.MaxValueBytes = d.size(f)
		case "non_finite":
			v.NonFinite = d.policy(f)
		case "oversize":
			v.Oversize = d.policy(f)
		case "features":
			for _, it := range d.list(f, "features") {
				v.Features = append(v.Features, d.feature(it))
			}
		case "tile":
			v.Tile = d.duration(f)
		case "aggregations":
			for _, it := range d.list(f, "aggregations") {
				a, ok := d.aggregation(it)
				v.Aggregations = append(v.Aggregations, a)
				spoiled = spoiled || !ok
			}
		case "model":
			prediction().Model = d.str(f)
		case "model_input":
			prediction().ModelInput = d.str(f)
		case "model_output":
			prediction().ModelOutput = d.str(f)
		case "inputs":
			pr := prediction()
			for _, it := range d.list(f, "inputs (view:feature)") {
				pr.Inputs = append(pr.Inputs, d.input(it))
			}
		case "entities_from":
			prediction().EntitiesFrom = d.str(f)
		case "batch_size":
			prediction().BatchSize = d.integer(f)
		case "candidates":
			v.Candidates = d.candidates(f)
		}
	}
	if v.Kind == larder.KindPrediction {
		prediction()
	}
	if spoiled && v.Name != "" {
		d.spoiled[v.Name] = true
	}
	return v
}

// aggregationTypes says which column types an aggregation takes.
const aggregationTypes = "an aggregated column is int64, float64, float32, bool or string"

// aggregation decodes one aggregation of an aggregate view. ok is false when
// one of its windows could not be decoded, so that a stand-in takes its
// place (see window).
func (d *decoder) aggregation(n node) (a larder.Aggregation, ok bool) {
	ok = true
	for _, f := range d.fields(n, "column", "type", "name", "functions", "windows") {
		switch f.key {
		case "column":
			a.Column = d.str(f)
		case "type":
			a.Type = d.typeOf(f, aggregationTypes)
		case "name":
			a.Name = d.str(f)
		case "functions":
			what := "functions (" + strings.Join(aggFuncNames(), ", ") + ")"
			for _, it := range d.list(f, what) {
				fn := d.str(it)
				if s := suggestAggFunc(fn); s != "" {
					d.problem(it, "unknown function %q; did you mean %q? (%s)", fn, s, strings.Join(aggFuncNames(), ", "))
				}
				a.Functions = append(a.Functions, larder.AggFunc(fn))
			}
		case "windows":
			for i, it := range d.list(f, "windows, such as [1h, 1d, 7d]") {
				w, wok := d.window(it, i)
				a.Windows = append(a.Windows, w)
				ok = ok && wok
			}
		}
	}
	return a, ok
}

// aggFuncSynonyms are names other tools give larder's aggregate functions,
// and ("") names of statistics larder does not compute that are spelt
// like one it does.
var aggFuncSynonyms = map[string]larder.AggFunc{
	"avg": larder.AggMean, "average": larder.AggMean, "total": larder.AggSum,
	"minimum": larder.AggMin, "maximum": larder.AggMax, "latest": larder.AggLast,
	"distinct": larder.AggCountDistinct, "distinct_count": larder.AggCountDistinct,
	"nunique": larder.AggCountDistinct, "count_unique": larder.AggCountDistinct,
	"median": "",
}

// suggestAggFunc returns the aggregate function that fn, which is not one,
// probably means: the one it is another name of, or the one it is a
// misspelling of; "" when fn is a function or like none.
func suggestAggFunc(fn string) string {
	names := aggFuncNames()
	if slices.Contains(names, fn) {
		return ""
	}
	if s, ok := aggFuncSynonyms[strings.ToLower(fn)]; ok {
		return string(s)
	}
	return larder.Suggest(fn, names)
}

func aggFuncNames() []string {
	var out []string
	for _, fn := range larder.AggFuncs() {
		out = append(out, string(fn))
	}
	return out
}

// window decodes the i-th window of an aggregation. For a bad window it
// reports the problem and returns a stand-in with a label of its own and
// false, so that the windows after it keep their positions and no feature
// name is generated twice.
func (d *decoder) window(n node, i int) (larder.Window, bool) {
	bad := larder.Window{Label: "window" + strconv.Itoa(i)}
	switch n.val.(type) {
	case *ast.MappingNode, *ast.SequenceNode:
		d.problem(n, "want a window such as 1h, 1d or 7d; got %s", describe(n.val))
		return bad, false
	}
	s := d.str(n)
	w, err := larder.ParseWindow(s)
	if err != nil {
		d.problem(n, "%v", err)
		return bad, false
	}
	// The window is written into feature names as it is written here.
	if strings.ContainsFunc(s, func(r rune) bool { return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') }) {
		d.problem(n, "window %q cannot be part of a feature name: write whole numbers and units only, such as 90m or 36h", s)
		return bad, false
	}
	return w, true
}

// candidates decodes the candidates mapping of a candidates view. score
// names a source column, or with from_view a feature of that view.
func (d *decoder) candidates(n node) *larder.Candidates {
	c := &larder.Candidates{}
	var score string
	for _, f := range d.fields(n, "entity", "column", "score", "top_k", "from_view", "context") {
		switch f.key {
		case "entity":
			c.Entity = d.str(f)
		case "column":
			c.Column = d.str(f)
		case "score":
			score = d.str(f)
		case "top_k":
			c.TopK = d.integer(f)
		case "from_view":
			c.FromView = d.str(f)
		case "context":
			c.Context = d.str(f)
		}
	}
	if c.FromView != "" {
		c.ScoreFeature = score
	} else {
		c.ScoreColumn = score
	}
	return c
}

// generatedFrom returns, for a path inside a feature that Project.Validate
// generated (such as "views[1].features[4].column" of an aggregate view),
// the path of the field written in the file that the feature comes from
// ("views[1].aggregations[0].column"), and true. It returns "" and true for
// a problem that is reported where the feature comes from already, and
// false for any other path.
func generatedFrom(p *larder.Project, path string) (string, bool) {
	i, rest, ok := indexed(path, "views")
	if !ok || i >= len(p.Views) {
		return "", false
	}
	j, tail, ok := indexed(rest, ".features")
	if !ok || j >= len(p.Views[i].Features) {
		return "", false
	}
	v := p.Views[i]
	view := "views[" + strconv.Itoa(i) + "]"
	switch v.Kind {
	case larder.KindAggregate:
		k, a := aggregationOf(v, v.Features[j].Name)
		if a == nil {
			return "", false
		}
		agg := fmt.Sprintf("%s.aggregations[%d]", view, k)
		switch tail {
		case ".type":
			// An aggregation of a known type generates features of known
			// types; the aggregation's type is reported.
			return "", true
		case ".name":
			if a.Name != "" {
				return agg + ".name", true
			}
			return agg + ".column", true
		case ".column":
			return agg + ".column", true
		}
		return agg, true
	case larder.KindCandidates:
		if v.Candidates != nil && v.Candidates.FromView != "" {
			// The features of a view-fed candidates view have fixed names
			// and types and no column: nothing about them can be wrong.
			return "", true
		}
		if j == 0 {
			return view + ".candidates.column", true
		}
		return view + ".candidates.score", true
	}
	return "", false
}

// repeatsItself reports whether path is an aggregation (exactly, not a field
// of it) that names a function or a window twice. Project.Validate reports
// the repeat, and then at the aggregation every feature that the repeat
// generates twice; those follow-ons are not reported.
func repeatsItself(p *larder.Project, path string) bool {
	i, rest, ok := indexed(path, "views")
	if !ok || i >= len(p.Views) {
		return false
	}
	j, rest, ok := indexed(rest, ".aggregations")
	if !ok || rest != "" || j >= len(p.Views[i].Aggregations) {
		return false
	}
	a := &p.Views[i].Aggregations[j]
	for k, fn := range a.Functions {
		if slices.Index(a.Functions, fn) < k {
			return true
		}
	}
	for k, w := range a.Windows {
		if slices.IndexFunc(a.Windows, func(o larder.Window) bool { return o.Label == w.Label }) < k {
			return true
		}
	}
	return false
}

// aggregationOf returns the aggregation of view v that generates the
// feature named name, and its index; nil when none does.
func aggregationOf(v *larder.View, name string) (int, *larder.Aggregation) {
	for k := range v.Aggregations {
		a := &v.Aggregations[k]
		for _, fn := range a.Functions {
			for _, w := range a.Windows {
				if a.FeatureName(fn, w) == name {
					return k, a
				}
			}
		}
	}
	return -1, nil
}

// followsSpoiled reports whether the problem at path is an input (of a
// prediction view or a ranker) that names a feature missing from a view
// whose features could not all be generated: a follow-on of a problem
// reported where the view is defined.
func (d *decoder) followsSpoiled(p *larder.Project, path string) bool {
	var ins []larder.RankerInput
	var k int
	if i, rest, ok := indexed(path, "views"); ok && i < len(p.Views) && p.Views[i].Prediction != nil {
		ins = p.Views[i].Prediction.Inputs
		k, rest, ok = indexed(rest, ".inputs")
		if !ok || rest != "" {
			return false
		}
	} else if i, rest, ok := indexed(path, "rankers"); ok && i < len(p.Rankers) {
		ins = p.Rankers[i].Inputs
		k, rest, ok = indexed(rest, ".inputs")
		if !ok || rest != "" {
			return false
		}
	} else {
		return false
	}
	if k >= len(ins) {
		return false
	}
	view, feature, ok := larder.SplitRef(ins[k].Ref)
	if !ok || !d.spoiled[view] {
		return false
	}
	v := p.View(view)
	return v != nil && v.FeatureIndex(feature) < 0
}

// indexed splits "name[i]rest" into i and rest.
func indexed(path, name string) (i int, rest string, ok bool) {
	rest, ok = strings.CutPrefix(path, name+"[")
	if !ok {
		return 0, "", false
	}
	num, rest, ok := strings.Cut(rest, "]")
	i, err := strconv.Atoi(num)
	if !ok || err != nil || i < 0 {
		return 0, "", false
	}
	return i, rest, true
}
