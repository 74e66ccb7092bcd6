package materializer

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"

	"github.com/larder-dev/larder"
)

// joinCandidates finds, for every spine row, the list a run of the
// candidates view as of the spine row's time would store for its context
// key: of each candidate, its newest usable row at or before that time (of
// rows with equal times, the one read last), the TopK best of them by
// score, then candidate key (see runCandidates).
//
// Each source row is folded into the first spine row of its context at or
// after its event time, keeping per (spine row, candidate) only the newest
// row; a context's spine rows are then swept in time order, each one's
// folded rows replacing the candidates' older ones, and a new list made
// where its top TopK changed. The folded rows are compacted whenever their
// buffer fills, so memory grows with the distinct (spine row, candidate)
// pairs, not with the source's rows, plus one list for each spine row
// whose list differs from the one before it.
func (m *Materializer) joinCandidates(ctx context.Context, j *exportJoin, ch *spineChunk) (int64, error) {
	v := j.view
	cd := newCandidates(v, v.EntityDef(), time.Unix(0, ch.maxT))
	ds, err := m.openSource(v, cd.specs)
	if err != nil {
		return 0, err
	}
	defer ds.Close()
	ix := ch.index[j.keyCol]
	n := readWorkers()
	shards := make([]*candidateFolds, n)
	for i := range shards {
		s := &candidateFolds{ix: ix, str: cd.ctxs.keyType == larder.TypeString, part: i, parts: partitioner{n: uint64(n)}}
		s.cands.init(cd.cands.keyType)
		shards[i] = s
	}
	err = scanPartitioned(ctx, ds, n, func(ctx context.Context, part int, rg *rowGroup) error {
		f := rowFilter{runTime: cd.runTime, since: math.MinInt64}
		return scanRows(ctx, rg, candContext, candTime, []int{candKey, candScore}, f, 0, shards[part])
	}, m.sourceProgress(v, ds, ch))
	if err != nil {
		return 0, err
	}

	// The lists, one per spine row whose list differs from the one before
	// it in its context's time order. A context's candidates are kept
	// sorted best first as its spine rows are swept, each folded row
	// moving its candidate's entry: the list changes only when an entry
	// leaves or enters the top TopK.
	var lists []candidateList
	var cur []pairEntry         // the context's candidates, best first
	at := map[int32]pairEntry{} // candidate slot -> its entry in cur
	for _, s := range shards {
		s.compact()
		folds := s.folds
		rank := &candidates{topK: cd.topK, cands: s.cands}
		for i := 0; i < len(folds); {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			run := folds[i].run
			end := int(ix.start[run+1])
			cur = cur[:0]
			clear(at)
			for p := int(folds[i].pos); p < end; p++ {
				changed := false
				for ; i < len(folds) && int(folds[i].pos) == p; i++ {
					// A row folded into a later spine row is newer than
					// any folded into an earlier one: it replaces them.
					f := &folds[i]
					e := pairEntry{time: f.time, score: f.score, cand: f.cand}
					if old, ok := at[f.cand]; ok {
						k, _ := slices.BinarySearchFunc(cur, old, rank.compare)
						changed = changed || k < rank.topK
						cur = slices.Delete(cur, k, k+1)
					}
					at[f.cand] = e
					k, _ := slices.BinarySearchFunc(cur, e, rank.compare)
					cur = slices.Insert(cur, k, e)
					changed = changed || k < rank.topK
				}
				if changed {
					lists = append(lists, rank.list(cur[:min(len(cur), rank.topK)]))
				}
				r := ix.order[p]
				l := &lists[len(lists)-1]
				j.found[r], j.times[r], j.pos[r] = true, l.newest, int32(len(lists)-1)
			}
		}
	}
	j.tab.reset([]larder.Type{v.Features[0].Type, v.Features[1].Type}, len(lists))
	for row, l := range lists {
		j.tab.set(row, 0, l.keys)
		j.tab.set(row, 1, l.scores)
	}
	return ds.rows, nil
}

// candidateList is a candidates view's stored row: its candidates' keys and
// scores, and its event time.
type candidateList struct {
	keys, scores larder.Value
	newest       int64
}

// list returns the stored list of the candidates best, the TopK best of a
// context already sorted best first (see compare): their keys and scores,
// and the newest event time among them.
func (c *candidates) list(best []pairEntry) (l candidateList) {
	scores := make([]float32, len(best))
	l.newest = math.MinInt64
	for i, e := range best {
		scores[i] = float32(e.score)
		l.newest = max(l.newest, e.time)
	}
	l.scores = larder.Float32VectorValue(scores)
	if c.cands.keyType == larder.TypeString {
		keys := make([]string, len(best))
		for i, e := range best {
			keys[i] = c.cands.strKeys[e.cand]
		}
		l.keys = larder.StringListValue(keys)
		return l
	}
	keys := make([]int64, len(best))
	for i, e := range best {
		keys[i] = c.cands.intKeys[e.cand]
	}
	l.keys = larder.Int64ListValue(keys)
	return l
}

// candidateFolds gathers, for one partition of the context keys, the
// usable rows of a candidates view's source folded into the spine rows of
// an export (see joinCandidates).
type candidateFolds struct {
	ix    *spineIndex
	str   bool
	cands entities
	folds []candidateFold
	seq   int64 // rows kept so far: the read order within the partition
	part  int
	parts partitioner
}

// candidateFold is a source row folded into a spine row: pos is the spine
// row's index in its index's order, run that of its key.
type candidateFold struct {
	pos, run int32
	cand     int32
	time     int64
	seq      int64
	score    float64
}

func (s *candidateFolds) owns(rs *rowScan, kvi int) bool {
	if s.parts.n <= 1 {
		return true
	}
	if s.str {
		return s.parts.ofBytes(rs.bytesKey(kvi)) == s.part
	}
	return s.parts.ofInt(rs.intKey(kvi)) == s.part
}

func (s *candidateFolds) row(rs *rowScan, _, kvi int, t int64) {
	cvi, svi := rs.vis[0], rs.vis[1]
	if cvi < 0 || svi < 0 {
		return // a null candidate or score, skipped as a run skips it
	}
	scores := rs.cols[1]
	sc := math.Float64frombits(scores.pv.num(scores.bc.conv, svi))
	if math.IsNaN(sc) {
		return
	}
	var run int32
	var ok bool
	if s.str {
		run, ok = s.ix.runOfBytes(rs.bytesKey(kvi))
	} else {
		run, ok = s.ix.runOfInt(rs.intKey(kvi))
	}
	if !ok {
		return
	}
	p := s.ix.firstAtOrAfter(run, t)
	if p == int(s.ix.start[run+1]) {
		return // after every spine row of its context
	}
	cands := rs.cols[0]
	cand, _ := s.cands.lookup(&cands.pv, cands.bc, cvi)
	if len(s.folds) == cap(s.folds) && len(s.folds) >= 1<<12 {
		s.compact()
		if len(s.folds) > cap(s.folds)/2 {
			s.folds = slices.Grow(s.folds, len(s.folds))
		}
	}
	s.seq++
	s.folds = append(s.folds, candidateFold{pos: int32(p), run: run, cand: cand, time: t, seq: s.seq, score: sc})
}

func (s *candidateFolds) cut(skipCounts, bool) error { return nil }

// compact sorts the folds by spine row and candidate, and keeps the newest
// of each pair (of equal times, the one read last).
func (s *candidateFolds) compact() {
	slices.SortFunc(s.folds, func(a, b candidateFold) int {
		return cmp.Or(cmp.Compare(a.pos, b.pos), cmp.Compare(a.cand, b.cand), cmp.Compare(a.time, b.time), cmp.Compare(a.seq, b.seq))
	})
	out := s.folds[:0]
	for i, f := range s.folds {
		if i+1 < len(s.folds) && s.folds[i+1].pos == f.pos && s.folds[i+1].cand == f.cand {
			continue
		}
		out = append(out, f)
	}
	s.folds = out
}
