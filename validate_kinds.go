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
		if c.TopK < 0 {
			add(path+".candidates.top_k", "must be positive, got %d", c.TopK)
		}
		listType := TypeInt64List
		if c.entity != nil && c.entity.KeyType == TypeString {
			listType = TypeStringList
		}
		if c.FromView != "" {
			// Read from other views (see resolveCandidates): no source
			// columns.
			if c.Column != "" {
				add(path+".candidates.column", "a candidates view with from_view takes its candidates from that view's entities, not from a source column: remove column")
			}
			if c.ScoreFeature == "" {
				add(path+".candidates.score", "is required: the feature of view %q holding each candidate's score", c.FromView)
			}
			if c.Context == "" {
				add(path+".candidates.context", "is required with from_view: the view:feature, keyed by the candidate entity, whose value is each candidate's %s key, such as item_profile:category", v.Entity)
			}
			v.Features = []Feature{
				{Name: CandidatesFeature, Type: listType},
				{Name: ScoresFeature, Type: TypeFloat32Vector},
			}
			v.generated = true
			return
		}
		if c.Context != "" {
			add(path+".candidates.context", "only a candidates view with from_view has a context feature; a source gives each row's context key in the column %q", keyName(v.entity))
		}
		if c.ScoreColumn == "" {
			add(path+".candidates.score", "is required: the source column holding each candidate's score")
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

// keyName returns the key name of e, or "?" when e is nil.
func keyName(e *Entity) string {
	if e == nil {
		return "?"
	}
	return e.Key
}

// resolveCandidates resolves the views that candidates view v reads when it
// has a from_view: the view of its candidates and scores, and the view of its
// context feature. Both become dependencies of v.
func (p *Project) resolveCandidates(v *View, path string, add addFunc) {
	c := v.Candidates
	cpath := path + ".candidates"
	v.deps = nil
	c.fromView, c.score, c.contextView, c.contextFeature = nil, -1, nil, -1
	viewNames := func() string { return known(names(p.Views, func(v *View) string { return v.Name })) }

	fv := p.views[c.FromView]
	switch {
	case fv == nil:
		add(cpath+".from_view", "unknown view %q%s", c.FromView, viewNames())
	case fv == v:
		add(cpath+".from_view", "a view cannot read its own features")
	case fv.Kind == KindCandidates:
		add(cpath+".from_view", "view %q is a candidates view, which holds lists; from_view needs a view with one score per candidate (a prediction, latest or aggregate view)", fv.Name)
	case c.entity != nil && fv.Entity != c.Entity:
		add(cpath+".from_view", "view %q is keyed by entity %q, but the candidates are %q: from_view must be keyed by the candidate entity", fv.Name, fv.Entity, c.Entity)
	case c.ScoreFeature == "":
		// reported by validateKind
	default:
		idx := featureIndex(fv, c.ScoreFeature)
		switch {
		case idx < 0:
			add(cpath+".score", "view %q has no feature %q%s", fv.Name, c.ScoreFeature, known(names(fv.Features, func(f Feature) string { return f.Name })))
		case !fv.Features[idx].Type.Numeric() && fv.Features[idx].Type != TypeInvalid:
			add(cpath+".score", "feature %q of view %q is %s; a score must be int64, float64, float32 or bool", c.ScoreFeature, fv.Name, fv.Features[idx].Type)
		default:
			c.fromView, c.score = fv, idx
			v.deps = append(v.deps, fv)
		}
	}

	if c.Context == "" {
		return // reported by validateKind
	}
	viewName, feature, ok := SplitRef(c.Context)
	if !ok || viewName == RequestPrefix {
		add(cpath+".context", "%q is not a reference to a stored feature: write view:feature, such as item_profile:category", c.Context)
		return
	}
	cv := p.views[viewName]
	switch {
	case cv == nil:
		add(cpath+".context", "unknown view %q%s", viewName, viewNames())
		return
	case cv == v:
		add(cpath+".context", "a view cannot read its own features")
		return
	}
	idx := featureIndex(cv, feature)
	if idx < 0 {
		add(cpath+".context", "view %q has no feature %q%s", viewName, feature, known(names(cv.Features, func(f Feature) string { return f.Name })))
		return
	}
	if c.entity != nil && cv.Entity != c.Entity {
		add(cpath+".context", "view %q is keyed by entity %q, but the candidates are %q: the context feature must be keyed by the candidate entity", viewName, cv.Entity, c.Entity)
		return
	}
	if t := cv.Features[idx].Type; v.entity != nil && t != v.entity.KeyType && t != TypeInvalid {
		add(cpath+".context", "feature %q is %s, but the keys of entity %q (the view's entity) are %s: the context feature holds each candidate's %s key", c.Context, t, v.Entity, v.entity.KeyType, v.Entity)
		return
	}
	c.contextView, c.contextFeature = cv, idx
	if !slices.Contains(v.deps, cv) {
		v.deps = append(v.deps, cv)
	}
}

// featureIndex returns the index of the named feature of v, or -1, whether
// or not v's index is built.
func featureIndex(v *View, name string) int {
	if v.index == nil {
		return slices.IndexFunc(v.Features, func(f Feature) bool { return f.Name == name })
	}
	return v.FeatureIndex(name)
}

func (p *Project) validateAggregation(v *View, a *Aggregation, path string, add addFunc) {
	if a.Name != "" && !validName(a.Name) {
		add(path+".name", "%q is not a valid name (letters, digits, '_' and '-', starting with a letter)", a.Name)
	}
	if a.Column == "" {
		// Without a column, an aggregation counts the rows (count(*)).
		switch {
		case a.Name == "" || len(a.Functions) != 1 || a.Functions[0] != AggCount:
			add(path+".column", "is required: the source column to aggregate (an aggregation without one counts rows: it has a name, such as events, and functions: [count])")
		case a.Type != TypeInvalid:
			add(path+".type", "an aggregation without a column counts rows, and has no type: remove type, or name the column")
		}
	} else {
		switch a.Type {
		case TypeInt64, TypeFloat64, TypeFloat32, TypeBool, TypeString:
		case TypeInvalid:
			add(path+".type", "is required: the column's type (int64, float64, float32, bool or string)")
		default:
			add(path+".type", "cannot aggregate %s columns (int64, float64, float32, bool or string)", a.Type)
		}
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

// checkCycles reports views (prediction views, and candidates views with a
// from_view) that depend on themselves through other views.
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
			field := "inputs"
			if v.Kind == KindCandidates {
				field = "candidates.from_view"
			}
			add(fmt.Sprintf("views[%d].%s", i, field), "view %q depends on itself through the views it reads (a cycle: each view must run after the views it reads)", v.Name)
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
