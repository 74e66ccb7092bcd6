package server

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// Rank scores the candidates for the context key with the ranker's model and
// returns the best ones, highest score first.
func (s *Service) Rank(ctx context.Context, req *larderv1.RankRequest) (*larderv1.RankResponse, error) {
	resp, err := s.rank(ctx, req)
	// A request that read the configuration just before ApplyProject
	// replaced its ranker, and reached the model just after, starts again
	// on the new configuration.
	for try := 1; errors.Is(err, errReconfigured) && try < 5; try++ {
		resp, err = s.rank(ctx, req)
	}
	return resp, toStatus(err)
}

// errReconfigured is the error of a Rank whose ranker's model was retired
// by ApplyProject while the request ran; Rank tries it again.
var errReconfigured = fmt.Errorf("%w: the ranker was reconfigured while the request ran; try again", larder.ErrUnavailable)

func (s *Service) rank(ctx context.Context, req *larderv1.RankRequest) (*larderv1.RankResponse, error) {
	plan, err := s.plan(req.GetRanker())
	if err != nil {
		return nil, err
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
	case n > s.limits.MaxCandidates:
		return nil, larder.Invalidf("candidate_keys: %d candidates is more than the limit of %d per request (server.max_candidates)", n, s.limits.MaxCandidates)
	case n*len(plan.inputs) > s.limits.MaxRequestCells:
		return nil, fmt.Errorf("request %w: %d candidates × %d inputs of ranker %q is %d values, more than the limit of %d per request (server.max_request_cells); send at most %d candidates per request",
			larder.ErrTooLarge, n, len(plan.inputs), r.Name, n*len(plan.inputs), s.limits.MaxRequestCells, plan.maxCandidates)
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
	// The request features' numbers, and whether each is its default, in
	// buffers on the stack for the usual few.
	var reqBuf [maxStackRequests]float32
	var defBuf [maxStackRequests]bool
	reqValues, defaulted := reqBuf[:], defBuf[:]
	if q := len(plan.requests); q > maxStackRequests {
		reqValues, defaulted = make([]float32, q), make([]bool, q)
	}
	reqValues, defaulted = reqValues[:len(plan.requests)], defaulted[:len(plan.requests)]
	if err := readRequest(plan, req.GetRequestFeatures(), reqValues, defaulted); err != nil {
		return nil, err
	}
	explain := req.GetExplain()

	// The lookups read the context views, then the candidate views, then
	// the candidates_from view when the stored list is ranked. The context's
	// stored list is read in the same round trip as its features; the
	// candidates' features need a second one, since their keys come from it.
	// Feature views are read straight into the numbers of the model input.
	buf := rankPool.Get().(*rankBuffers)
	ctxLookups, candLookups := buf.rankLookups(plan, ctxKey, cands)
	lookups := buf.ptrs[:len(ctxLookups)+len(candLookups)]
	if explain {
		// Explaining tells a null value from a missing row, which the
		// numbers do not: read whole rows instead.
		for _, l := range lookups {
			l.Numbers = nil
		}
	}
	var candKeys []*larderv1.EntityKey // the keys returned, by candidate
	var storedRow *larder.Lookup       // the stored list's lookup, when ranked
	if !fromStore {
		if err := s.store.Read(ctx, lookups); err != nil {
			return nil, err
		}
		candKeys = req.GetCandidateKeys()
	} else {
		stored := &larder.Lookup{View: plan.stored, Keys: buf.ctxKeys[:]}
		first := append(ctxLookups[:len(ctxLookups):len(ctxLookups)], stored)
		if err := s.store.Read(ctx, first); err != nil {
			return nil, err
		}
		lookups = append(lookups[:len(lookups):len(lookups)], stored)
		cands = storedCandidates(stored, plan.storedFeature, plan.maxCandidates)
		storedRow = stored
		n = len(cands)
		if n == 0 {
			// The context has no stored list: nothing to rank, and no
			// candidate views to read.
			rankPool.Put(buf)
			resp := &larderv1.RankResponse{ModelVersion: plan.slot.current().Version(), Generations: generationsOf(first)}
			if s.tracer != nil {
				traceRank(ctx, plan, 0, topK, true, resp.ModelVersion, "")
			}
			if explain {
				resp.InputNames = slices.Clone(plan.names)
			}
			return resp, nil
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

	model := plan.slot.acquire()
	if _, ok := model.Model.(retiredModel); ok {
		model.release()
		return nil, errReconfigured
	}
	defer model.release()
	now := s.now()
	f := len(plan.inputs)
	buf.x = resize(buf.x, n*f)
	x := buf.x
	for q := range plan.requests {
		col, v := plan.requests[q].col, reqValues[q]
		for i := 0; i < n; i++ {
			x[i*f+col] = v
		}
	}
	var sources *explained // by model input value, when explaining
	if explain {
		sources = newExplained(n * f)
		requestSources(sources.sources, f, n, plan, defaulted)
	}
	nc := len(ctxLookups)
	for i, l := range ctxLookups {
		if explain {
			fillExplained(x, sources, f, n, l, &buf.numbers[i], buf.cols[i], true, now)
		} else {
			fillInput(x, f, n, l, buf.cols[i], true, now)
		}
	}
	for i, l := range candLookups {
		if explain {
			fillExplained(x, sources, f, n, l, &buf.numbers[nc+i], buf.cols[nc+i], false, now)
		} else {
			fillInput(x, f, n, l, buf.cols[nc+i], false, now)
		}
	}
	buf.scores = resize(buf.scores, n)
	scores := buf.scores
	var degraded, degradedClass string
	if err := s.score(ctx, plan, model, x, n, scores); err != nil {
		if ctx.Err() != nil || refused(err) {
			// The caller has gone or its deadline passed: no answer helps.
			return nil, fmt.Errorf("ranker %q: scoring: %w", r.Name, err)
		}
		// Degraded mode: the product keeps serving in the precomputed order
		// (the stored list's scores, or the request's order) when the model
		// does not answer. The buffers are not reused: a failed model may
		// still hold them.
		degraded, degradedClass = s.degrade(ctx, r.Name, err)
		scores = make([]float32, n)
		precomputedScores(storedRow, plan.stored, scores)
		buf = nil
	}

	var order []int
	if buf != nil {
		buf.order = topOrder(buf.order, scores, topK)
		order = buf.order
	} else {
		order = topOrder(nil, scores, topK)
	}
	resp := &larderv1.RankResponse{
		Candidates:     make([]*larderv1.ScoredCandidate, len(order)),
		ModelVersion:   model.Version(),
		Generations:    generationsOf(lookups),
		Degraded:       degraded != "",
		DegradedReason: degraded,
	}
	if s.tracer != nil {
		traceRank(ctx, plan, n, topK, fromStore, resp.ModelVersion, degradedClass)
	}
	scored := make([]larderv1.ScoredCandidate, len(order))
	for i, c := range order {
		scored[i].Key, scored[i].Score = candKeys[c], scores[c]
		resp.Candidates[i] = &scored[i]
	}
	if explain {
		// x is read before buf goes back to the pool.
		explainResponse(resp, scored, order, plan, x, sources, f)
	}
	if buf != nil {
		rankPool.Put(buf)
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
		gens[i] = &larderv1.ViewGeneration{View: l.View.Name, Generation: l.Generation, Model: l.Model, TileTimeMicros: tileTime(l)}
	}
	return gens
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
