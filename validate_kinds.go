package larder

import (
	"fmt"
	"slices"
	"strings"
)

type addFunc func(path, format string, args ...any)

// validateKind checks the kind-specific part of view v and generates the
// features of aggregate and candidates views.
func (p *Project) validateKind(v *View, path string, add addFunc) {
	if v.Kind != KindAggregate && len(v.Aggregations) > 0 {
		add(path+".aggregations", "only aggregate views have aggregations")
	}
	if v.Kind != KindPrediction && v.Prediction != nil {
		add(path+".model", "only prediction views have a model")
	}
	if v.Kind != KindCandidates && v.Candidates != nil {
		add(path+".candidates", "only candidates views have candidates")
	}
	if v.generated {
		// Validate ran before: drop the features it generated.
		v.Features, v.generated = nil, false
	}
	switch v.Kind {
	case KindAggregate:
		if len(v.Features) > 0 {
			add(path+".features", "an aggregate view's features are generated from its aggregations: remove them")
			return
		}
		if len(v.Aggregations) == 0 {
			add(path+".aggregations", "an aggregate view needs at least one aggregation")
		}
		for i := range v.Aggregations {
			p.validateAggregation(v, &v.Aggregations[i], fmt.Sprintf("%s.aggregations[%d]", path, i), add)
		}
		v.generated = true
	case KindPrediction:
		if v.Prediction == nil {
			add(path+".model", "is required: the path of the ONNX model that scores the view's entities")
			return
		}
		pr := v.Prediction
		if pr.Model == "" {
			add(path+".model", "is required: the path of the ONNX model that scores the view's entities")
		}
		if pr.BatchSize < 0 {
			add(path+".batch_size", "must be positive, got %d", pr.BatchSize)
		}
		for i, f := range v.Features {
			if f.Type != TypeFloat32 && f.Type != TypeInvalid {
				add(fmt.Sprintf("%s.features[%d].type", path, i), "a prediction view's features are model outputs and must be float32, got %s", f.Type)
			}
		}
	case KindCandidates:
		if len(v.Features) > 0 {
			add(path+".features", "a candidates view's features (%s, %s) are generated: remove them", CandidatesFeature, ScoresFeature)
			return
		}
		c := v.Candidates
		if c == nil {
			add(path+".candidates", "is required: the candidate entity, the score column and top_k")
			return
		}
		c.entity = p.entities[c.Entity]
		switch {
		case c.Entity == "":
			add(path+".candidates.entity", "is required: the entity of the candidates, such as item")
		case c.entity == nil:
			add(path+".candidates.entity", "unknown entity %q%s", c.Entity, known(names(p.Entities, func(e *Entity) string { return e.Name })))
		}
		if c.ScoreColumn == "" {
			add(path+".candidates.score", "is required: the source column holding each candidate's score")
		}
		if c.TopK < 0 {
			add(path+".candidates.top_k", "must be positive, got %d", c.TopK)
		}
		listType := TypeInt64List
		if c.entity != nil && c.entity.KeyType == TypeString {
			listType = TypeStringList
		}
		if c.Column == "" && c.entity != nil {
			c.Column = c.entity.Key
		}
		v.Features = []Feature{
			{Name: CandidatesFeature, Type: listType, Column: c.Column},
			{Name: ScoresFeature, Type: TypeFloat32Vector, Column: c.ScoreColumn},
		}
		v.generated = true
	}
}

func (p *Project) validateAggregation(v *View, a *Aggregation, path string, add addFunc) {
	if a.Column == "" {
		add(path+".column", "is required: the source column to aggregate")
	}
	if a.Name != "" && !validName(a.Name) {
		add(path+".name", "%q is not a valid name (letters, digits, '_' and '-', starting with a letter)", a.Name)
	}
	switch a.Type {
	case TypeInt64, TypeFloat64, TypeFloat32, TypeBool, TypeString:
	case TypeInvalid:
		add(path+".type", "is required: the column's type (int64, float64, float32, bool or string)")
	default:
		add(path+".type", "cannot aggregate %s columns (int64, float64, float32, bool or string)", a.Type)
	}
	if len(a.Functions) == 0 {
		add(path+".functions", "at least one function is required (%s)", aggFuncNames())
	}
	for i, fn := range a.Functions {
		fpath := fmt.Sprintf("%s.functions[%d]", path, i)
		switch {
		case !slices.Contains(AggFuncs(), fn):
			add(fpath, "unknown function %q (%s)", fn, aggFuncNames())
		case slices.Index(a.Functions, fn) < i:
			add(fpath, "duplicate function %q", fn)
		case a.Type == TypeString && fn != AggLast && fn != AggCountDistinct && fn != AggCount:
			add(fpath, "%s needs a numeric column; a string column takes count, last and count_distinct", fn)
		}
	}
	if len(a.Windows) == 0 {
		add(path+".windows", "at least one window is required, such as [1h, 1d, 7d]")
	}
	for i, w := range a.Windows {
		if slices.IndexFunc(a.Windows, func(o Window) bool { return o.Duration == w.Duration }) < i {
			add(fmt.Sprintf("%s.windows[%d]", path, i), "duplicate window %s", w.Label)
		}
	}
	for _, fn := range a.Functions {
		if !slices.Contains(AggFuncs(), fn) {
			continue
		}
		for _, w := range a.Windows {
			name := a.FeatureName(fn, w)
			if slices.ContainsFunc(v.Features, func(f Feature) bool { return f.Name == name }) {
				add(path, "generates feature %q twice: give one of the aggregations another name", name)
				continue
			}
			v.Features = append(v.Features, Feature{Name: name, Type: fn.ResultType(a.Type), Column: a.Column})
		}
	}
}

func aggFuncNames() string {
	var s []string
	for _, fn := range AggFuncs() {
		s = append(s, string(fn))
	}
	return strings.Join(s, ", ")
}

// resolvePrediction resolves the inputs of prediction view v.
func (p *Project) resolvePrediction(v *View, path string, add addFunc) {
	pr := v.Prediction
	if len(pr.Inputs) == 0 {
		add(path+".inputs", "a prediction view needs at least one input (view:feature)")
	}
	v.deps = nil
	for i := range pr.Inputs {
		in := &pr.Inputs[i]
		ipath := fmt.Sprintf("%s.inputs[%d]", path, i)
		viewName, feature, ok := SplitRef(in.Ref)
		if !ok || viewName == RequestPrefix {
			add(ipath, "%q is not a reference to a stored feature: write view:feature", in.Ref)
			continue
		}
		iv := p.views[viewName]
		if iv == nil {
			add(ipath, "unknown view %q%s", viewName, known(names(p.Views, func(v *View) string { return v.Name })))
			continue
		}
		if iv == v {
			add(ipath, "a view cannot read its own features")
			continue
		}
		idx := iv.FeatureIndex(feature)
		if iv.index == nil {
			idx = slices.IndexFunc(iv.Features, func(f Feature) bool { return f.Name == feature })
		}
		if idx < 0 {
			add(ipath, "view %q has no feature %q%s", viewName, feature, known(names(iv.Features, func(f Feature) string { return f.Name })))
			continue
		}
		if t := iv.Features[idx].Type; !t.Numeric() && t != TypeInvalid {
			add(ipath, "feature %q is %s; model inputs must be int64, float64, float32 or bool", in.Ref, t)
			continue
		}
		if iv.Entity != v.Entity {
			add(ipath, "view %q is keyed by entity %q, but this view by %q: inputs must share the view's entity", viewName, iv.Entity, v.Entity)
			continue
		}
		in.Side, in.View, in.Feature = SideContext, iv, idx
		if !slices.Contains(v.deps, iv) {
			v.deps = append(v.deps, iv)
		}
	}
	pr.entitiesFrom = nil
	switch {
	case pr.EntitiesFrom != "":
		ev := p.views[pr.EntitiesFrom]
		switch {
		case ev == nil:
			add(path+".entities_from", "unknown view %q", pr.EntitiesFrom)
		case ev.Entity != v.Entity:
			add(path+".entities_from", "view %q is keyed by entity %q, not %q", ev.Name, ev.Entity, v.Entity)
		case ev == v:
			add(path+".entities_from", "a view cannot take its entities from itself")
		default:
			pr.entitiesFrom = ev
			if !slices.Contains(v.deps, ev) {
				v.deps = append(v.deps, ev)
			}
		}
	case len(pr.Inputs) > 0 && pr.Inputs[0].View != nil:
		pr.entitiesFrom = pr.Inputs[0].View
	}
}

// checkCycles reports prediction views that depend on themselves through
// other views.
func (p *Project) checkCycles(add addFunc) {
	const (
		unvisited = iota
		active
		done
	)
	state := make(map[*View]int, len(p.Views))
	var visit func(v *View) bool
	visit = func(v *View) bool {
		switch state[v] {
		case active:
			return false
		case done:
			return true
		}
		state[v] = active
		for _, d := range v.deps {
			if !visit(d) {
				state[v] = done
				return false
			}
		}
		state[v] = done
		return true
	}
	for i, v := range p.Views {
		if state[v] == unvisited && !visit(v) {
			add(fmt.Sprintf("views[%d].inputs", i), "view %q depends on itself through its inputs (a cycle of prediction views)", v.Name)
		}
	}
}

// Order returns views sorted so that every view comes after the views it
// depends on that are also in the list; otherwise the order is kept. The
// project must be valid (free of cycles).
func Order(views []*View) []*View {
	in := make(map[*View]bool, len(views))
	for _, v := range views {
		in[v] = true
	}
	placed := make(map[*View]bool, len(views))
	out := make([]*View, 0, len(views))
	var place func(v *View)
	place = func(v *View) {
		if placed[v] {
			return
		}
		placed[v] = true
		for _, d := range v.deps {
			if in[d] {
				place(d)
			}
		}
		out = append(out, v)
	}
	for _, v := range views {
		place(v)
	}
	return out
}

func candidateEntity(v *View) string {
	if v.Candidates == nil {
		return "?"
	}
	return v.Candidates.Entity
}
