package materializer

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/larder-dev/larder"
)

// The reasons a view-fed candidates view skips a candidate, besides
// SkipNullScore (no row in the score view, or a null score) and
// SkipNaNScore, as counted in Report.Skipped.
const (
	SkipStaleScore   = "stale score"
	SkipNoContext    = "no context row"
	SkipNullContext  = "null context"
	SkipStaleContext = "stale context"
)

// candidatesReadBatch is the number of candidates whose score and context a
// view-fed candidates run reads per store round trip.
const candidatesReadBatch = 2048

// runCandidatesFromView materializes a candidates view whose candidates come
// from another view (Candidates.FromView) rather than from a source.
//
// Every entity of the live generation of FromView (keyed by the candidate
// entity) is a candidate. Its score is its value of Candidates.ScoreFeature
// in FromView (a number; bools count as 0 or 1), and its context is its
// value of the Context feature, read from that feature's view (also keyed by
// the candidate entity): the key of the context entity whose list it joins.
// Keys are listed page by page, and scores and contexts read in batches of
// candidatesReadBatch, one store round trip per batch. Each context entity
// gets the TopK candidates with the highest scores, best first, with the
// tie rule of a source-fed run: equal scores are ordered by candidate key,
// ascending. Scores are stored as float32. The event time of a stored row
// is the newest event time of the score rows of its kept candidates.
//
// A candidate is skipped, and counted under the first reason that applies,
// when it has no row in FromView or a null score (SkipNullScore), its score
// row is stale at the run time by FromView's max age (SkipStaleScore), its
// score is NaN (SkipNaNScore), it has no row in the context view
// (SkipNoContext), its context row is stale at the run time by that view's
// max age (SkipStaleContext), or its context is null (SkipNullContext). A
// stale value is treated as missing, as a prediction view treats a stale
// input: a list is not built from values the store itself serves as stale.
// Report.RowsRead counts the candidates listed.
//
// Memory holds each candidate's key once and, per context, at most about
// twice TopK scored entries: since every candidate is listed once, a list is
// cut to its best TopK whenever it fills up.
//
// Before anything is written it checks that every view it reads has a live
// generation written with its current schema; it returns an error wrapping
// larder.ErrNoGeneration or larder.ErrSchemaChanged naming the view, and
// writes nothing. It returns an error when Options.Reader is missing or
// cannot list keys (larder.KeyLister), and the store's or ctx's error during
// the run, after aborting the new generation.
func (m *Materializer) runCandidatesFromView(ctx context.Context, v *larder.View, rep Report) (Report, error) {
	start := rep.RunTime
	cd := v.Candidates
	fv, score := cd.FromViewDef()
	cv, ctxFeature := cd.ContextDef()
	ent, ce := v.EntityDef(), cd.EntityDef()
	if fv == nil || cv == nil || ent == nil || ce == nil {
		return rep, fmt.Errorf("materialize %s: the project was not validated: call Project.Validate first", v.Name)
	}
	if m.reader == nil {
		return rep, fmt.Errorf("materialize %s: a candidates view with from_view needs a store reader (materializer.Options.Reader)", v.Name)
	}
	lister, ok := m.reader.(larder.KeyLister)
	if !ok {
		return rep, fmt.Errorf("materialize %s: the store reader %T cannot list a view's entities (larder.KeyLister)", v.Name, m.reader)
	}

	// Every view the run reads must be live, with the schema of its
	// definition, before anything is written; the run reads those
	// generations to its end.
	pinned, err := m.pinInputs(ctx, v, &rep)
	if err != nil {
		return rep, err
	}
	listed := pinned[fv]
	r := &viewCandidatesRead{
		lookups:    []*larder.Lookup{{View: fv, Pin: listed.ID}},
		score:      score,
		ctxFeature: ctxFeature,
		runTime:    start,
		comp:       newViewCandidates(v, ent, ce),
	}
	if cv != fv {
		r.lookups = append(r.lookups, &larder.Lookup{View: cv, Pin: pinned[cv].ID})
		r.ctxLookup = 1
	}
	if err := m.reader.Read(ctx, r.lookups); err != nil {
		return rep, fmt.Errorf("materialize %s: views read: %w", v.Name, err)
	}
	m.log.Info("materializing", "view", v.Name, "kind", v.Kind, "from_view", fv.Name, "from_generation", listed.ID,
		"candidates", listed.Rows, "context", cd.Context, "top_k", r.comp.topK, "run_time", start)

	prog := Progress{View: v.Name, Phase: PhaseReading, RowsTotal: listed.Rows}
	m.progress(prog)
	err = r.run(ctx, m.reader, lister, func(read int64) {
		prog.RowsRead = read
		m.progress(prog)
	})
	rep.RowsRead = r.read
	rep.Skipped = r.comp.skippedReport()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}

	if r.comp.len() == 0 {
		m.log.Warn("no candidate is usable: publishing an empty generation", "view", v.Name, "candidates", rep.RowsRead, "skipped", rep.Skipped)
	}
	prog.Phase = PhaseWriting
	prog.EntitiesTotal = int64(r.comp.len())
	m.progress(prog)
	gen, written, err := m.write(ctx, v, r.comp, prog, &rep)
	rep.EntitiesWritten = written
	if err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	rep.published(gen, m.now())
	m.log.Info("materialized", "view", v.Name, "generation", gen.ID, "candidates", rep.RowsRead,
		"entities", written, "skipped", rep.Skipped, "duration", rep.Duration,
		"candidates_per_second", int64(rep.RowsPerSecond))
	return rep, nil
}

// newViewCandidates returns the computation of view-fed candidates view v of
// context entity e and candidate entity ce.
func newViewCandidates(v *larder.View, e, ce *larder.Entity) *candidates {
	topK := v.Candidates.TopK
	if topK <= 0 {
		topK = larder.DefaultCandidateTopK
	}
	c := &candidates{topK: topK, unique: true}
	c.ctxs.init(e.KeyType)
	c.cands.init(ce.KeyType)
	return c
}

// viewCandidatesRead is the reading part of a view-fed candidates run.
type viewCandidatesRead struct {
	// lookups read the score view and, when it is another view, the context
	// view (ctxLookup 1); score and ctxFeature index their features.
	lookups    []*larder.Lookup
	ctxLookup  int
	score      int
	ctxFeature int
	runTime    time.Time
	comp       *candidates
	// read counts the candidates listed.
	read int64
}

// run lists the candidates, reads their scores and contexts batch by batch
// and adds them to r.comp, calling done with the number read after each
// batch. It returns the first error of the store or of ctx.
func (r *viewCandidatesRead) run(ctx context.Context, reader larder.FeatureStore, lister larder.KeyLister, done func(read int64)) error {
	fv := r.lookups[0].View
	var readErr error // an error of the callback, returned by Keys as is
	err := lister.Keys(ctx, fv, r.lookups[0].Pin, func(keys []larder.Key) error {
		for len(keys) > 0 {
			batch := keys[:min(len(keys), candidatesReadBatch)]
			keys = keys[len(batch):]
			for _, l := range r.lookups {
				l.Keys = batch
			}
			if err := reader.Read(ctx, r.lookups); err != nil {
				readErr = fmt.Errorf("read scores and contexts: %w", err)
				return readErr
			}
			for i, k := range batch {
				r.add(k, i)
			}
			r.read += int64(len(batch))
			done(r.read)
		}
		return nil
	})
	for _, l := range r.lookups {
		l.Keys = nil // the lister's buffer
	}
	switch {
	case readErr != nil:
		return readErr
	case err != nil:
		return fmt.Errorf("list the entities of %s: %w", fv.Name, err)
	}
	return nil
}

// add adds candidate k, the i-th key of the current batch, to the list of
// its context, or counts why it is skipped.
func (r *viewCandidatesRead) add(k larder.Key, i int) {
	c := r.comp
	sl, cl := r.lookups[0], r.lookups[r.ctxLookup]
	if !sl.Found[i] {
		c.nullScore++
		return
	}
	srow := &sl.Rows[i]
	if sl.View.Status(true, srow.EventTime, r.runTime) == larder.StatusStale {
		c.staleScore++
		return
	}
	s, ok := srow.Values[r.score].Number()
	switch {
	case !ok:
		c.nullScore++
		return
	case math.IsNaN(s):
		c.nanScore++
		return
	}
	if !cl.Found[i] {
		c.noContext++
		return
	}
	crow := &cl.Rows[i]
	if cl.View.Status(true, crow.EventTime, r.runTime) == larder.StatusStale {
		c.staleContext++
		return
	}
	cv := crow.Values[r.ctxFeature]
	var ck larder.Key
	switch {
	case cv.IsNull():
		c.nullContext++
		return
	case c.ctxs.keyType == larder.TypeString:
		ck = larder.StringKey(cv.Str())
	default:
		ck = larder.Int64Key(cv.Int64())
	}
	slot, isNew := c.ctxs.lookupKey(ck)
	if isNew {
		c.lists = append(c.lists, nil)
	}
	cand, _ := c.cands.lookupKey(k)
	c.add(slot, pairEntry{time: srow.EventTime.UnixNano(), score: s, cand: cand})
}

// lookupKey returns the slot of key k, adding it when it is new.
func (e *entities) lookupKey(k larder.Key) (slot int32, isNew bool) {
	if e.keyType == larder.TypeString {
		if s, ok := e.strIndex[k.Str()]; ok {
			return s, false
		}
		slot = e.add()
		e.strIndex[k.Str()] = slot
		e.strKeys = append(e.strKeys, k.Str())
		return slot, true
	}
	if s, ok := e.intIndex[k.Int64()]; ok {
		return s, false
	}
	slot = e.add()
	e.intIndex[k.Int64()] = slot
	e.intKeys = append(e.intKeys, k.Int64())
	return slot, true
}
