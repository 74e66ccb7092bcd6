package larder

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// SetDefaults fills the fields larder.yaml may leave out with their
// defaults: every zero field that has one. A negative
// Scheduler.SweepInterval (NoSweep) is kept: it turns the sweep off.
func (p *Project) SetDefaults() {
	if p.Server.Listen == "" {
		p.Server.Listen = DefaultListen
	}
	if p.Server.MaxEntities == 0 {
		p.Server.MaxEntities = DefaultMaxEntities
	}
	if p.Server.MaxCandidates == 0 {
		p.Server.MaxCandidates = DefaultMaxCandidates
	}
	if p.Server.RefreshInterval == 0 {
		p.Server.RefreshInterval = DefaultRefreshInterval
	}
	p.Server.setLimitDefaults()
	for _, st := range p.Streams {
		p.setStreamDefaults(st)
	}
	if p.Redis.GracePeriod == 0 {
		p.Redis.GracePeriod = DefaultGracePeriod
	}
	s := &p.Scheduler
	if s.Lease == 0 {
		s.Lease = DefaultLease
	}
	if s.ShutdownGrace == 0 {
		s.ShutdownGrace = DefaultShutdownGrace
	}
	if s.SweepInterval == 0 {
		s.SweepInterval = DefaultSweepInterval
	}
	j := &p.Jobs
	if j.MaxAttempts == 0 {
		j.MaxAttempts = DefaultJobAttempts
	}
	if j.Backoff == 0 {
		j.Backoff = DefaultJobBackoff
	}
	if j.MaxBackoff == 0 {
		j.MaxBackoff = DefaultJobMaxBackoff
	}
	if j.Heartbeat == 0 {
		j.Heartbeat = DefaultJobHeartbeat
	}
	if j.Lapse == 0 {
		j.Lapse = DefaultJobLapse
	}
	if j.Retention == 0 {
		j.Retention = DefaultJobRetention
	}
	for _, v := range p.Views {
		for i := range v.Features {
			if v.Features[i].Column == "" {
				v.Features[i].Column = v.Features[i].Name
			}
		}
		v.MaxValueBytes = v.ValueLimit()
		v.NonFinite, v.Oversize = v.NonFinitePolicy(), v.OversizePolicy()
	}
	for _, v := range p.Views {
		if v.Prediction != nil {
			if v.Prediction.BatchSize == 0 {
				v.Prediction.BatchSize = DefaultPredictionBatch
			}
			if v.Prediction.ModelInput == "" {
				v.Prediction.ModelInput = DefaultModelInput
			}
			if v.Prediction.ModelOutput == "" {
				v.Prediction.ModelOutput = DefaultModelOutput
			}
		}
		if v.Candidates != nil && v.Candidates.TopK == 0 {
			v.Candidates.TopK = DefaultCandidateTopK
		}
	}
	for _, r := range p.Rankers {
		if r.TopK == 0 {
			r.TopK = DefaultTopK
		}
		if r.ModelInput == "" {
			r.ModelInput = DefaultModelInput
		}
		if r.ModelOutput == "" {
			r.ModelOutput = DefaultModelOutput
		}
		if b := r.Batching; b != nil {
			if b.MaxDelay == 0 {
				b.MaxDelay = DefaultBatchMaxDelay
			}
			if b.MaxRows == 0 {
				b.MaxRows = DefaultBatchMaxRows
			}
			if b.MaxQueue == 0 {
				b.MaxQueue = DefaultBatchMaxQueue
			}
		}
	}
}

// Validate checks every rule of the project's definitions, resolves the
// references between them and builds the indexes that the lookup methods
// use. It returns nil or a *ValidationError holding every problem found, each
// with the path of the field at fault.
func (p *Project) Validate() error {
	var errs []*FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}

	if p.Name == "" {
		add("project", "is required: name the project")
	} else if !validName(p.Name) {
		add("project", "%q is not a valid name (letters, digits, '_' and '-', starting with a letter)", p.Name)
	}
	if p.Server.MaxEntities < 0 {
		add("server.max_entities", "must be positive, got %d", p.Server.MaxEntities)
	}
	if p.Server.MaxCandidates < 0 {
		add("server.max_candidates", "must be positive, got %d", p.Server.MaxCandidates)
	}
	if p.Server.RefreshInterval < 0 {
		add("server.refresh_interval", "must not be negative")
	}
	p.Server.validateLimits(add)
	p.Server.validateSecurity(add)
	if p.Redis.DB < 0 {
		add("redis.db", "must be 0 or more, got %d", p.Redis.DB)
	}
	if p.Redis.GracePeriod < 0 {
		add("redis.grace_period", "must not be negative")
	}
	if p.Redis.PushRetention < 0 {
		add("redis.push_retention", "must not be negative")
	}
	if p.Redis.MasterName != "" && len(p.Redis.Addrs) == 0 {
		add("redis.master_name", "needs the Sentinel addresses in redis.addresses")
	}
	p.validateScheduling(add)

	p.entities = make(map[string]*Entity, len(p.Entities))
	for i, e := range p.Entities {
		path := fmt.Sprintf("entities[%d]", i)
		switch {
		case e.Name == "":
			add(path+".name", "is required")
		case !validName(e.Name):
			add(path+".name", "%q is not a valid name (letters, digits, '_' and '-', starting with a letter)", e.Name)
		case p.entities[e.Name] != nil:
			add(path+".name", "duplicate entity %q", e.Name)
		default:
			p.entities[e.Name] = e
		}
		if e.Key == "" {
			add(path+".key", "is required: the name of the key column, such as user_id")
		}
		if e.KeyType == TypeInvalid {
			add(path+".type", "is required: int64 or string")
		} else if e.KeyType != TypeInt64 && e.KeyType != TypeString {
			add(path+".type", "entity keys must be int64 or string, got %s", e.KeyType)
		}
	}

	p.sources = make(map[string]*Source, len(p.Sources))
	for i, s := range p.Sources {
		path := fmt.Sprintf("sources[%d]", i)
		switch {
		case s.Name == "":
			add(path+".name", "is required")
		case !validName(s.Name):
			add(path+".name", "%q is not a valid name (letters, digits, '_' and '-', starting with a letter)", s.Name)
		case p.sources[s.Name] != nil:
			add(path+".name", "duplicate source %q", s.Name)
		default:
			p.sources[s.Name] = s
		}
		if s.Path == "" {
			add(path+".path", "is required: a Parquet file, folder or glob")
		}
		if s.EventTime == "" {
			add(path+".event_time", "is required: the column holding each row's event time")
		}
	}

	p.views = make(map[string]*View, len(p.Views))
	for i, v := range p.Views {
		path := fmt.Sprintf("views[%d]", i)
		switch {
		case v.Name == "":
			add(path+".name", "is required")
		case !validName(v.Name) || v.Name == RequestPrefix || v.Name == "runs":
			add(path+".name", "%q is not a valid view name (letters, digits, '_' and '-', starting with a letter; not %q or \"runs\", which larder keeps for itself)", v.Name, RequestPrefix)
		case p.views[v.Name] != nil:
			add(path+".name", "duplicate view %q", v.Name)
		default:
			p.views[v.Name] = v
		}
		kinds := make([]string, 0, 4)
		for _, k := range ViewKinds() {
			kinds = append(kinds, string(k))
		}
		switch v.Kind {
		case KindLatest, KindAggregate, KindPrediction, KindCandidates:
		case "":
			add(path+".kind", "is required (one of %s)", strings.Join(kinds, ", "))
		default:
			add(path+".kind", "unknown kind %q (one of %s)", v.Kind, strings.Join(kinds, ", "))
		}
		v.entity = p.entities[v.Entity]
		if v.Entity == "" {
			add(path+".entity", "is required")
		} else if v.entity == nil {
			add(path+".entity", "unknown entity %q%s", v.Entity, known(names(p.Entities, func(e *Entity) string { return e.Name })))
		}
		v.source = p.sources[v.Source]
		fromView := v.Kind == KindCandidates && v.Candidates != nil && v.Candidates.FromView != ""
		switch {
		case v.Kind == KindPrediction && v.Source != "":
			add(path+".source", "a prediction view reads other views, not a source: remove it")
		case fromView && v.Source != "":
			add(path+".source", "a candidates view with candidates.from_view reads that view, not a source: remove source or from_view")
		case v.Kind == KindPrediction, fromView:
		case v.Source == "" && v.Kind == KindCandidates:
			add(path+".source", "is required: a source of (context, candidate, score) rows, or candidates.from_view to take the candidates from a view")
		case v.Source == "":
			add(path+".source", "is required")
		case v.source == nil:
			add(path+".source", "unknown source %q%s", v.Source, known(names(p.Sources, func(s *Source) string { return s.Name })))
		}
		if v.MaxAge < 0 {
			add(path+".max_age", "must not be negative")
		}
		validateValueRules(v, path, add)
		p.validateViewSchedule(v, path, add)
		p.validateKind(v, path, add)
		if len(v.Features) == 0 && (v.Kind == KindLatest || v.Kind == KindPrediction) {
			add(path+".features", "a view needs at least one feature")
		}
		v.index = make(map[string]int, len(v.Features))
		for j, f := range v.Features {
			fpath := fmt.Sprintf("%s.features[%d]", path, j)
			switch {
			case f.Name == "":
				add(fpath+".name", "is required")
			case !validName(f.Name) || f.Name == "*":
				add(fpath+".name", "%q is not a valid feature name (letters, digits, '_' and '-', starting with a letter)", f.Name)
			default:
				if _, dup := v.index[f.Name]; dup {
					add(fpath+".name", "duplicate feature %q in view %q", f.Name, v.Name)
				} else {
					v.index[f.Name] = j
				}
			}
			if f.Type == TypeInvalid {
				add(fpath+".type", "is required (one of %s)", strings.Join(TypeNames(), ", "))
			}
			if v.entity != nil && f.Column == v.entity.Key {
				add(fpath+".column", "%q is the entity key column; it cannot also be a feature", f.Column)
			}
			if f.Cast && v.Kind != KindLatest {
				add(fpath+".cast", "applies to features read from a source column, those of latest views; a %s view's values are not read from one: remove cast", v.Kind)
			} else if f.Cast && f.Type != TypeInvalid && f.Type != TypeFloat32 {
				add(fpath+".cast", "casts to float32 only (a DOUBLE or INT64 column rounded to 32 bits); a %s feature reads every column type it can hold without one: remove cast, or make the feature float32", f.Type)
			}
		}
	}

	for i, v := range p.Views {
		switch {
		case v.Kind == KindPrediction && v.Prediction != nil:
			p.resolvePrediction(v, fmt.Sprintf("views[%d]", i), add)
		case v.Kind == KindCandidates && v.Candidates != nil && v.Candidates.FromView != "":
			p.resolveCandidates(v, fmt.Sprintf("views[%d]", i), add)
		default:
			v.deps = nil
		}
	}
	p.checkCycles(add)

	p.rankers = make(map[string]*Ranker, len(p.Rankers))
	for i, r := range p.Rankers {
		path := fmt.Sprintf("rankers[%d]", i)
		switch {
		case r.Name == "":
			add(path+".name", "is required")
		case !validName(r.Name):
			add(path+".name", "%q is not a valid name (letters, digits, '_' and '-', starting with a letter)", r.Name)
		case p.rankers[r.Name] != nil:
			add(path+".name", "duplicate ranker %q", r.Name)
		default:
			p.rankers[r.Name] = r
		}
		if r.Model == "" {
			add(path+".model", "is required: the path of an ONNX model file")
		}
		if r.TopK < 0 {
			add(path+".top_k", "must be positive, got %d", r.TopK)
		}
		if b := r.Batching; b != nil {
			if b.MaxDelay < 0 {
				add(path+".batching.max_delay", "must be positive, got %s", b.MaxDelay)
			}
			if b.MaxRows < 0 {
				add(path+".batching.max_rows", "must be positive, got %d", b.MaxRows)
			}
			if b.MaxQueue < 0 {
				add(path+".batching.max_queue", "must be positive, got %d", b.MaxQueue)
			}
		}
		entityNames := known(names(p.Entities, func(e *Entity) string { return e.Name }))
		r.context = p.entities[r.Context]
		if r.Context == "" {
			add(path+".context", "is required: the entity a ranking is for, such as user")
		} else if r.context == nil {
			add(path+".context", "unknown entity %q%s", r.Context, entityNames)
		}
		r.candidate = p.entities[r.Candidate]
		if r.Candidate == "" {
			add(path+".candidate", "is required: the entity being ranked, such as item")
		} else if r.candidate == nil {
			add(path+".candidate", "unknown entity %q%s", r.Candidate, entityNames)
		}
		if len(r.Inputs) == 0 {
			add(path+".inputs", "a ranker needs at least one input")
		}
		if r.CandidatesFrom != "" {
			r.candidatesFrom = nil
			cv := p.views[r.CandidatesFrom]
			switch {
			case cv == nil:
				add(path+".candidates_from", "unknown view %q%s", r.CandidatesFrom, known(names(p.Views, func(v *View) string { return v.Name })))
			case cv.Kind != KindCandidates:
				add(path+".candidates_from", "view %q is a %s view; candidates_from needs a candidates view", cv.Name, cv.Kind)
			case cv.Candidates == nil || cv.Candidates.EntityDef() == nil:
				// already reported where the candidates view is defined
			case cv.Entity != r.Context || cv.Candidates.Entity != r.Candidate:
				add(path+".candidates_from", "view %q lists %s candidates per %s, but the ranker ranks %s candidates for a %s", cv.Name,
					candidateEntity(cv), cv.Entity, r.Candidate, r.Context)
			default:
				r.candidatesFrom = cv
			}
		}
		seen := make(map[string]bool, len(r.Inputs))
		for j := range r.Inputs {
			in := &r.Inputs[j]
			ipath := fmt.Sprintf("%s.inputs[%d]", path, j)
			if seen[in.Ref] {
				add(ipath, "duplicate input %q", in.Ref)
			}
			seen[in.Ref] = true
			if msg := p.resolveInput(r, in); msg != "" {
				add(ipath, "%s", msg)
			} else if field, msg := checkInputType(in); msg != "" {
				add(ipath+"."+field, "%s", msg)
			}
		}
	}

	p.validateStreams(add)
	for i, v := range p.Views {
		p.validateTile(v, fmt.Sprintf("views[%d]", i), add)
	}
	p.checkNameLengths(add)

	if len(errs) > 0 {
		return &ValidationError{Errs: errs}
	}
	return nil
}

// resolveInput resolves one ranker input and returns what is wrong with it, or "".
func (p *Project) resolveInput(r *Ranker, in *RankerInput) string {
	viewName, feature, ok := SplitRef(in.Ref)
	if !ok {
		return fmt.Sprintf("%q is not a reference: write view:feature or %s:name", in.Ref, RequestPrefix)
	}
	if viewName == RequestPrefix {
		if !validName(feature) {
			return fmt.Sprintf("%q is not a valid request feature name", feature)
		}
		in.Side, in.Request, in.View = SideRequest, feature, nil
		return ""
	}
	v := p.views[viewName]
	if v == nil {
		return fmt.Sprintf("unknown view %q%s", viewName, known(names(p.Views, func(v *View) string { return v.Name })))
	}
	idx := v.FeatureIndex(feature)
	if idx < 0 {
		return fmt.Sprintf("view %q has no feature %q%s", viewName, feature, known(names(v.Features, func(f Feature) string { return f.Name })))
	}
	if t := v.Features[idx].Type; !t.Numeric() && t != TypeInvalid {
		return fmt.Sprintf("feature %q is %s; model inputs must be int64, float64, float32 or bool", in.Ref, t)
	}
	in.View, in.Feature = v, idx
	if v.entity == nil || r.context == nil || r.candidate == nil {
		return "" // already reported where the entity is named
	}
	switch v.Entity {
	case r.Candidate:
		in.Side = SideCandidate
	case r.Context:
		in.Side = SideContext
	default:
		return fmt.Sprintf("view %q is keyed by entity %q, which is neither the context (%q) nor the candidate (%q) of the ranker", viewName, v.Entity, r.Context, r.Candidate)
	}
	return ""
}

// checkInputType checks the type and default of a resolved ranker input and
// returns the field that is wrong ("type" or "default") and why, or "", "".
func checkInputType(in *RankerInput) (field, msg string) {
	if in.Side != SideRequest {
		if in.Type != TypeInvalid {
			return "type", fmt.Sprintf("only a request input has a type: view input %q has its feature's type, %s", in.Ref, in.View.Features[in.Feature].Type)
		}
		return "", ""
	}
	t := in.RequestType()
	if !t.Numeric() {
		return "type", fmt.Sprintf("a request feature is int64, float32, float64 or bool, not %s", t)
	}
	if !in.HasDefault {
		return "", ""
	}
	d := in.Default
	switch {
	case t == TypeBool && d != 0 && d != 1:
		return "default", fmt.Sprintf("request feature %q is bool: its default is true or false, not %v", in.Request, d)
	case t == TypeInt64 && d != float32(math.Trunc(float64(d))):
		return "default", fmt.Sprintf("request feature %q is int64: its default must be a whole number, not %v", in.Request, d)
	}
	return "", ""
}

// validName reports whether s is a name larder accepts: a letter, then
// letters, digits, '_' and '-'.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !(c >= '0' && c <= '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func names[T any](xs []T, name func(T) string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, name(x))
	}
	return out
}

// known formats the valid names among names to append to an "unknown"
// message. A name that is not valid has a problem of its own, and is left
// out here: it may hold anything, a line break too.
func known(names []string) string {
	if len(names) == 0 {
		return " (none are defined)"
	}
	names = slices.DeleteFunc(names, func(n string) bool { return !validName(n) })
	if len(names) == 0 {
		return ""
	}
	return " (known: " + strings.Join(names, ", ") + ")"
}
