package server

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// Model scores a batch of candidates for one ranker. x holds n rows of the
// ranker's inputs, row-major; Score writes n scores into out. The models
// package implements it over ONNX Runtime.
type Model interface {
	Score(ctx context.Context, x []float32, n int, out []float32) error
	Version() string
}

// Config holds what a Service needs. Project, Store and a Model for every
// ranker of the project are required.
type Config struct {
	Project *larder.Project
	Store   larder.FeatureStore
	// Models holds the model of each ranker, by ranker name.
	Models map[string]Model
	Logger *slog.Logger
	// Now is the clock used for staleness and ages; time.Now when nil.
	Now func() time.Time
}

// Service implements larderv1.FeatureServiceServer.
type Service struct {
	larderv1.UnimplementedFeatureServiceServer

	project *larder.Project
	store   larder.FeatureStore
	logger  *slog.Logger
	now     func() time.Time
	rankers map[string]*rankerPlan

	// degraded counts Rank responses served without the model.
	degraded atomic.Int64
}

// Degraded returns how many Rank responses were served in degraded mode:
// candidates in their precomputed order because the model failed.
func (s *Service) Degraded() int64 { return s.degraded.Load() }

// rankerPlan is a ranker resolved once at start-up, so that a Rank request
// builds no maps: the distinct views to read on each side and, per model
// input, where its value comes from.
type rankerPlan struct {
	ranker  *larder.Ranker
	model   Model
	context []*larder.View // views read for the context key
	cands   []*larder.View // views read for the candidate keys
	inputs  []inputPlan
	request map[string]bool
	// stored is the candidates view a request without candidates ranks the
	// stored list of (the ranker's candidates_from), or nil; storedFeature
	// is the index of its candidate keys.
	stored        *larder.View
	storedFeature int
}

type inputPlan struct {
	side    larder.InputSide
	lookup  int // index into context or cands
	feature int
	request string
	def     float32
}

// New returns a Service, or an error when a ranker has no model.
func New(cfg Config) (*Service, error) {
	if cfg.Project == nil || cfg.Store == nil {
		return nil, fmt.Errorf("server: a project and a store are required")
	}
	s := &Service{
		project: cfg.Project,
		store:   cfg.Store,
		logger:  cfg.Logger,
		now:     cfg.Now,
		rankers: make(map[string]*rankerPlan, len(cfg.Project.Rankers)),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, r := range cfg.Project.Rankers {
		m := cfg.Models[r.Name]
		if m == nil {
			return nil, fmt.Errorf("server: ranker %q has no model loaded", r.Name)
		}
		s.rankers[r.Name] = planRanker(r, m)
	}
	return s, nil
}

func planRanker(r *larder.Ranker, m Model) *rankerPlan {
	p := &rankerPlan{ranker: r, model: m, request: map[string]bool{}}
	index := func(views *[]*larder.View, v *larder.View) int {
		if i := slices.Index(*views, v); i >= 0 {
			return i
		}
		*views = append(*views, v)
		return len(*views) - 1
	}
	for _, in := range r.Inputs {
		ip := inputPlan{side: in.Side, feature: in.Feature, request: in.Request, def: in.Default}
		switch in.Side {
		case larder.SideContext:
			ip.lookup = index(&p.context, in.View)
		case larder.SideCandidate:
			ip.lookup = index(&p.cands, in.View)
		case larder.SideRequest:
			p.request[in.Request] = true
		}
		p.inputs = append(p.inputs, ip)
	}
	if v := r.CandidatesView(); v != nil {
		p.stored, p.storedFeature = v, v.FeatureIndex(larder.CandidatesFeature)
	}
	return p
}

// column is one resolved "view:feature" of a GetFeatures request.
type column struct {
	lookup  int
	feature int
}

// GetFeatures returns the requested features of every key, in request order.
func (s *Service) GetFeatures(ctx context.Context, req *larderv1.GetFeaturesRequest) (*larderv1.GetFeaturesResponse, error) {
	resp, err := s.getFeatures(ctx, req)
	return resp, toStatus(err)
}

func (s *Service) getFeatures(ctx context.Context, req *larderv1.GetFeaturesRequest) (*larderv1.GetFeaturesResponse, error) {
	switch n := len(req.GetKeys()); {
	case n == 0:
		return nil, larder.Invalidf("keys: at least one entity key is required")
	case n > s.project.Server.MaxEntities:
		return nil, larder.Invalidf("keys: %d keys is more than the limit of %d per request (server.max_entities)", n, s.project.Server.MaxEntities)
	}
	if len(req.GetFeatures()) == 0 {
		return nil, larder.Invalidf("features: at least one feature reference (view:feature or view:*) is required")
	}

	var (
		lookups []*larder.Lookup
		cols    []column
		names   []string
		entity  *larder.Entity
	)
	for i, ref := range req.GetFeatures() {
		viewName, feature, ok := larder.SplitRef(ref)
		if !ok {
			return nil, larder.Invalidf("features[%d]: %q is not a feature reference: write view:feature or view:*", i, ref)
		}
		v := s.project.View(viewName)
		if v == nil {
			return nil, larder.Invalidf("features[%d]: unknown view %q%s", i, viewName, knownViews(s.project))
		}
		if entity == nil {
			entity = v.EntityDef()
		} else if v.EntityDef() != entity {
			return nil, larder.Invalidf("features[%d]: view %q is keyed by entity %s, but earlier features are keyed by %s; ask for one entity per request", i, viewName, v.Entity, entity.Name)
		}
		li := slices.IndexFunc(lookups, func(l *larder.Lookup) bool { return l.View == v })
		if li < 0 {
			lookups = append(lookups, &larder.Lookup{View: v})
			li = len(lookups) - 1
		}
		if feature == "*" {
			for fi, f := range v.Features {
				cols = append(cols, column{lookup: li, feature: fi})
				names = append(names, v.Name+":"+f.Name)
			}
			continue
		}
		fi := v.FeatureIndex(feature)
		if fi < 0 {
			return nil, larder.Invalidf("features[%d]: view %q has no feature %q%s", i, viewName, feature, knownFeatures(v))
		}
		cols = append(cols, column{lookup: li, feature: fi})
		names = append(names, ref)
	}

	keys := make([]larder.Key, len(req.GetKeys()))
	for i, k := range req.GetKeys() {
		key, err := keyFromProto(k, entity, "keys", i)
		if err != nil {
			return nil, err
		}
		keys[i] = key
	}
	for _, l := range lookups {
		l.Keys = keys
	}
	if err := s.store.Read(ctx, lookups); err != nil {
		return nil, err
	}

	now := s.now()
	resp := &larderv1.GetFeaturesResponse{
		Features:    names,
		Rows:        make([]*larderv1.FeatureRow, len(keys)),
		Generations: make([]*larderv1.ViewGeneration, len(lookups)),
	}
	for i, l := range lookups {
		resp.Generations[i] = &larderv1.ViewGeneration{View: l.View.Name, Generation: l.Generation, Model: l.Model}
	}
	// One timestamp and status per (key, view): every value of a view's row
	// shares them, and sharing the message saves an allocation per value.
	times := make([]*timestamppb.Timestamp, len(lookups))
	statuses := make([]larder.Status, len(lookups))
	values := make([]larderv1.FeatureValue, len(keys)*len(cols))
	for ki, key := range req.GetKeys() {
		for li, l := range lookups {
			statuses[li] = l.View.Status(l.Found[ki], l.Rows[ki].EventTime, now)
			times[li] = nil
			if l.Found[ki] {
				times[li] = timestamppb.New(l.Rows[ki].EventTime)
			}
		}
		row := &larderv1.FeatureRow{Key: key, Values: make([]*larderv1.FeatureValue, len(cols))}
		for ci, c := range cols {
			fv := &values[ki*len(cols)+ci]
			l := lookups[c.lookup]
			fv.Status = statusToProto(statuses[c.lookup])
			fv.EventTime = times[c.lookup]
			if l.Found[ki] {
				fv.Value = valueToProto(l.Rows[ki].Values[c.feature])
			} else {
				fv.Value = &larderv1.Value{}
			}
			row.Values[ci] = fv
		}
		resp.Rows[ki] = row
	}
	return resp, nil
}

// Rank scores the candidates for the context key with the ranker's model and
// returns the best ones, highest score first.
func (s *Service) Rank(ctx context.Context, req *larderv1.RankRequest) (*larderv1.RankResponse, error) {
	resp, err := s.rank(ctx, req)
	return resp, toStatus(err)
}

func (s *Service) rank(ctx context.Context, req *larderv1.RankRequest) (*larderv1.RankResponse, error) {
	plan := s.rankers[req.GetRanker()]
	if plan == nil {
		if req.GetRanker() == "" {
			return nil, larder.Invalidf("ranker: is required%s", knownRankers(s.project))
		}
		return nil, larder.Invalidf("ranker: unknown ranker %q%s", req.GetRanker(), knownRankers(s.project))
	}
	r := plan.ranker
	ctxKey, err := keyFromProto(req.GetContextKey(), r.ContextDef(), "context_key", -1)
	if err != nil {
		return nil, err
	}
	n := len(req.GetCandidateKeys())
	fromStore := n == 0 && plan.stored != nil
	switch {
	case n == 0 && !fromStore:
		return nil, larder.Invalidf("candidate_keys: at least one candidate is required (ranker %q has no candidates_from view to take them from)", r.Name)
	case n > s.project.Server.MaxCandidates:
		return nil, larder.Invalidf("candidate_keys: %d candidates is more than the limit of %d per request (server.max_candidates)", n, s.project.Server.MaxCandidates)
	}
	topK := int(req.GetTopK())
	if topK < 0 {
		return nil, larder.Invalidf("top_k: must not be negative, got %d", topK)
	}
	if topK == 0 {
		topK = r.TopK
	}
	cands := make([]larder.Key, n)
	for i, k := range req.GetCandidateKeys() {
		if cands[i], err = keyFromProto(k, r.CandidateDef(), "candidate_keys", i); err != nil {
			return nil, err
		}
	}
	for name := range req.GetRequestFeatures() {
		if !plan.request[name] {
			return nil, larder.Invalidf("request_features: ranker %q has no request feature %q%s", r.Name, name, knownRequest(plan))
		}
	}
	reqValues := make([]float32, len(plan.inputs))
	for i, in := range plan.inputs {
		if in.side != larder.SideRequest {
			continue
		}
		v, ok := req.GetRequestFeatures()[in.request]
		if !ok {
			return nil, larder.Invalidf("request_features: ranker %q needs request feature %q", r.Name, in.request)
		}
		if reqValues[i], ok = numberFromProto(v); !ok {
			return nil, larder.Invalidf("request_features[%q]: must be an int64, float, double or bool value", in.request)
		}
	}

	// lookups holds the context views, then the candidate views, then the
	// candidates_from view when the stored list is ranked. The context's
	// stored list is read in the same round trip as its features; the
	// candidates' features need a second one, since their keys come from it.
	ctxKeys := []larder.Key{ctxKey}
	lookups := make([]*larder.Lookup, 0, len(plan.context)+len(plan.cands)+1)
	for _, v := range plan.context {
		lookups = append(lookups, &larder.Lookup{View: v, Keys: ctxKeys})
	}
	for _, v := range plan.cands {
		lookups = append(lookups, &larder.Lookup{View: v, Keys: cands})
	}
	ctxLookups, candLookups := lookups[:len(plan.context)], lookups[len(plan.context):]
	var candKeys []*larderv1.EntityKey // the keys returned, by candidate
	var storedRow *larder.Lookup       // the stored list's lookup, when ranked
	if !fromStore {
		if err := s.store.Read(ctx, lookups); err != nil {
			return nil, err
		}
		candKeys = req.GetCandidateKeys()
	} else {
		stored := &larder.Lookup{View: plan.stored, Keys: ctxKeys}
		first := append(ctxLookups[:len(ctxLookups):len(ctxLookups)], stored)
		if err := s.store.Read(ctx, first); err != nil {
			return nil, err
		}
		lookups = append(lookups, stored)
		cands = storedCandidates(stored, plan.storedFeature, s.project.Server.MaxCandidates)
		storedRow = stored
		n = len(cands)
		if n == 0 {
			// The context has no stored list: nothing to rank, and no
			// candidate views to read.
			return &larderv1.RankResponse{ModelVersion: plan.model.Version(), Generations: generationsOf(first)}, nil
		}
		for _, l := range candLookups {
			l.Keys = cands
		}
		if len(candLookups) > 0 {
			if err := s.store.Read(ctx, candLookups); err != nil {
				return nil, err
			}
		}
		candKeys = make([]*larderv1.EntityKey, n)
		for i, k := range cands {
			candKeys[i] = keyToProto(k)
		}
	}

	now := s.now()
	f := len(plan.inputs)
	x := make([]float32, n*f)
	for j, in := range plan.inputs {
		switch in.side {
		case larder.SideRequest:
			for i := 0; i < n; i++ {
				x[i*f+j] = reqValues[j]
			}
		case larder.SideContext:
			val := inputValue(ctxLookups[in.lookup], 0, in, now)
			for i := 0; i < n; i++ {
				x[i*f+j] = val
			}
		case larder.SideCandidate:
			l := candLookups[in.lookup]
			for i := 0; i < n; i++ {
				x[i*f+j] = inputValue(l, i, in, now)
			}
		}
	}
	scores := make([]float32, n)
	var degraded string
	if err := plan.model.Score(ctx, x, n, scores); err != nil {
		if ctx.Err() != nil {
			// The caller has gone or its deadline passed: no answer helps.
			return nil, fmt.Errorf("ranker %q: scoring: %w", r.Name, err)
		}
		// Degraded mode: the product keeps serving in the precomputed order
		// (the stored list's scores, or the request's order) when the model
		// does not answer.
		degraded = fmt.Sprintf("model failed: %v", err)
		s.degraded.Add(1)
		s.logger.Warn("rank served without the model", "ranker", r.Name, "err", err)
		precomputedScores(storedRow, plan.stored, scores)
	}

	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	if topK < n {
		order = order[:topK]
	}
	resp := &larderv1.RankResponse{
		Candidates:     make([]*larderv1.ScoredCandidate, len(order)),
		ModelVersion:   plan.model.Version(),
		Generations:    generationsOf(lookups),
		Degraded:       degraded != "",
		DegradedReason: degraded,
	}
	for i, c := range order {
		resp.Candidates[i] = &larderv1.ScoredCandidate{Key: candKeys[c], Score: scores[c]}
	}
	return resp, nil
}

// storedCandidates returns the candidate keys of the one row read by l, a
// candidates view's lookup: the list held by feature, at most limit long.
// A missing row, or a null list, holds none. A stale list is still used:
// staleness changes the inputs of a model, but a list has no default to fall
// back to.
func storedCandidates(l *larder.Lookup, feature, limit int) []larder.Key {
	if len(l.Found) == 0 || !l.Found[0] || feature < 0 || feature >= len(l.Rows[0].Values) {
		return nil
	}
	v := l.Rows[0].Values[feature]
	var keys []larder.Key
	switch v.Type() {
	case larder.TypeInt64List:
		list := v.Int64List()
		keys = make([]larder.Key, min(len(list), limit))
		for i := range keys {
			keys[i] = larder.Int64Key(list[i])
		}
	case larder.TypeStringList:
		list := v.StringList()
		keys = make([]larder.Key, min(len(list), limit))
		for i := range keys {
			keys[i] = larder.StringKey(list[i])
		}
	}
	return keys
}

// generationsOf lists the generation each lookup read.
func generationsOf(lookups []*larder.Lookup) []*larderv1.ViewGeneration {
	gens := make([]*larderv1.ViewGeneration, len(lookups))
	for i, l := range lookups {
		gens[i] = &larderv1.ViewGeneration{View: l.View.Name, Generation: l.Generation, Model: l.Model}
	}
	return gens
}

// inputValue is the model input for key i of lookup l: the stored number, or
// the input's default when the row is missing, stale or null.
func inputValue(l *larder.Lookup, i int, in inputPlan, now time.Time) float32 {
	if !l.Found[i] || l.View.Status(true, l.Rows[i].EventTime, now) != larder.StatusPresent {
		return in.def
	}
	v, ok := l.Rows[i].Values[in.feature].Number()
	if !ok {
		return in.def
	}
	return float32(v)
}

// ListViews describes every view and its live generation.
func (s *Service) ListViews(ctx context.Context, _ *larderv1.ListViewsRequest) (*larderv1.ListViewsResponse, error) {
	now := s.now()
	resp := &larderv1.ListViewsResponse{Views: make([]*larderv1.ViewInfo, 0, len(s.project.Views))}
	for _, v := range s.project.Views {
		info := &larderv1.ViewInfo{
			Name:     v.Name,
			Kind:     string(v.Kind),
			Entity:   v.Entity,
			Schedule: v.Schedule,
			Features: make([]*larderv1.FeatureSchema, len(v.Features)),
		}
		if v.MaxAge > 0 {
			info.MaxAge = durationpb.New(v.MaxAge)
		}
		for i, f := range v.Features {
			info.Features[i] = &larderv1.FeatureSchema{Name: f.Name, Type: typeToProto(f.Type)}
		}
		g, err := s.store.Live(ctx, v)
		switch {
		case err == nil:
			info.Generation = g.ID
			info.Rows = g.Rows
			info.Model = g.Model
			info.PublishedAt = timestamppb.New(g.PublishedAt)
			info.Age = durationpb.New(now.Sub(g.PublishedAt))
		case !errorsIsNoGeneration(err):
			return nil, toStatus(err)
		}
		resp.Views = append(resp.Views, info)
	}
	return resp, nil
}

func knownViews(p *larder.Project) string {
	names := make([]string, len(p.Views))
	for i, v := range p.Views {
		names[i] = v.Name
	}
	return " (views: " + strings.Join(names, ", ") + ")"
}

func knownRankers(p *larder.Project) string {
	names := make([]string, len(p.Rankers))
	for i, r := range p.Rankers {
		names[i] = r.Name
	}
	return " (rankers: " + strings.Join(names, ", ") + ")"
}

func knownRequest(p *rankerPlan) string {
	var names []string
	for _, in := range p.inputs {
		if in.side == larder.SideRequest {
			names = append(names, in.request)
		}
	}
	if len(names) == 0 {
		return " (it takes none)"
	}
	return " (it takes: " + strings.Join(names, ", ") + ")"
}

func knownFeatures(v *larder.View) string {
	names := make([]string, len(v.Features))
	for i, f := range v.Features {
		names[i] = f.Name
	}
	return " (features: " + strings.Join(names, ", ") + ")"
}

// precomputedScores fills scores for degraded mode: the stored list's own
// scores when the candidates came from a candidates view, otherwise zeros,
// which the stable sort leaves in request order.
func precomputedScores(stored *larder.Lookup, v *larder.View, scores []float32) {
	clear(scores)
	if stored == nil || v == nil || len(stored.Found) == 0 || !stored.Found[0] {
		return
	}
	if i := v.FeatureIndex(larder.ScoresFeature); i >= 0 && i < len(stored.Rows[0].Values) {
		copy(scores, stored.Rows[0].Values[i].Vector())
	}
}
