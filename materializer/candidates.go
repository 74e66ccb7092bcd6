package materializer

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/larder-dev/larder"
)

// The reasons a candidates view skips a source row, besides SkipNullKey (a
// null context key), SkipNullEventTime and SkipAfterRunTime, as counted in
// Report.Skipped.
const (
	SkipNullCandidate = "null candidate"
	SkipNullScore     = "null score"
	SkipNaNScore      = "NaN score"
)

// The positions of the columns in candidates.specs.
const (
	candContext = iota
	candTime
	candKey
	candScore
)

// runCandidates materializes a candidates view.
//
// The view's source holds (context key, candidate key, score, event time)
// rows: the context key in the column named after the view entity's key, the
// candidate key in Candidates.Column (by default the candidate entity's key
// name), the score in Candidates.ScoreColumn (FLOAT or DOUBLE). Each context
// entity gets the Candidates.TopK candidates with the highest scores, best
// first; equal scores are ordered by candidate key, ascending (int64 keys as
// numbers, string keys bytewise). Scores are compared as read (a DOUBLE
// column at full precision) and stored as float32.
//
// When a candidate appears in several rows of one context, only its newest
// row counts (the newest event time at or before the run time; of rows with
// equal times, the row read last), even when an older row scored higher.
// The event time of a stored row is the newest event time among its kept
// candidates.
//
// A row is skipped, and counted under the first reason that applies, when
// its context key is null (SkipNullKey), its event time is null
// (SkipNullEventTime) or after the run time (SkipAfterRunTime), its candidate
// key is null (SkipNullCandidate), or its score is null (SkipNullScore) or
// NaN (SkipNaNScore). A context entity none of whose rows is usable gets no
// row.
//
// Memory grows with the number of distinct (context, candidate) pairs, not
// with the number of rows. It cannot be bounded by TopK per context: keeping
// only a candidate's newest row means remembering every pair's newest row
// until the end, since a newer row may demote a candidate out of the top K
// and so bring back one that had been passed over. Each context keeps its
// usable rows as 24-byte entries (candidate slot, event time, score) in read
// order; when its list is full, it is compacted to each candidate's newest
// entry, and grows only if that leaves it more than half full. A list so
// holds at most about twice its distinct pairs, about 24 to 48 bytes per
// pair, whatever the number of rows (BenchmarkCandidates1M measures about
// 40-50 bytes per pair in all). Context keys are held once, candidate keys
// once per read partition. Once every row is read, each list is compacted,
// sorted and cut to TopK as it is written.
//
// The context entities are divided among one partition per core, read in
// parallel, with the same result as a sequential read.
//
// Like a latest run, it checks every file's columns before reading any data
// and writes nothing before every row is read. It returns a *ColumnError when
// a column is missing or of a type that cannot feed the view (the candidate
// key column must be of the candidate entity's key type, the score column
// FLOAT or DOUBLE), the error of the file, the store or ctx otherwise; on any
// error the new generation is aborted and the live generation keeps serving.
//
// A candidates view with Candidates.FromView reads no source: see
// runCandidatesFromView.
func (m *Materializer) runCandidates(ctx context.Context, v *larder.View, rep Report) (Report, error) {
	if v.Candidates != nil && v.Candidates.FromView != "" {
		return m.runCandidatesFromView(ctx, v, rep)
	}
	src, ent := v.SourceDef(), v.EntityDef()
	if src == nil || ent == nil || v.Candidates == nil || v.Candidates.EntityDef() == nil {
		return rep, fmt.Errorf("materialize %s: the project was not validated: call Project.Validate first", v.Name)
	}
	return m.runFromSource(ctx, v, rep, newCandidates(v, ent, rep.RunTime))
}

// candidates computes a candidates view (see runCandidates).
type candidates struct {
	specs   []columnSpec
	runTime int64 // Unix nanoseconds
	topK    int

	// ctxs and cands intern the context and candidate keys to slots; only
	// their keys are used.
	ctxs, cands entities
	// lists holds, per context slot, its usable rows in read order, with
	// each candidate's older rows dropped from time to time (see add).
	lists [][]pairEntry
	// pairs counts the distinct (context, candidate) pairs, once emitted.
	pairs int64

	skipped                            skipCounts
	nullCandidate, nullScore, nanScore int64
	// The reasons only a view-fed run skips a candidate for.
	staleScore, noContext, nullContext, staleContext int64

	// unique is set when every candidate is added once, to one context (a
	// view-fed run): no older entry needs dropping, so a list is cut to its
	// topK best whenever it fills up past twice that.
	unique bool

	// part is the partition of the context entities this computation
	// keeps, out of parts (see partitioner): rows of other contexts are
	// left to the others.
	part  int
	parts partitioner
	// shards, once read has run, are the partitions read in parallel; c
	// itself then holds no rows.
	shards []*candidates
}

// pairEntry is a usable row of one context: its candidate slot, event time
// and score.
type pairEntry struct {
	time  int64
	score float64
	cand  int32
}

// compactFrom is the length from which a context's list is compacted
// instead of grown when it is full.
const compactFrom = 16

// newCandidates returns the computation of candidates view v of entity e.
// (Project.Validate makes sure that the candidate column is not the context
// key column.)
func newCandidates(v *larder.View, e *larder.Entity, runTime time.Time) *candidates {
	cd := v.Candidates
	ce := cd.EntityDef()
	column := cd.Column
	if column == "" {
		column = ce.Key
	}
	topK := cd.TopK
	if topK <= 0 {
		topK = larder.DefaultCandidateTopK
	}
	c := &candidates{runTime: runTime.UnixNano(), topK: topK}
	c.specs = []columnSpec{
		candContext: {column: e.Key, role: roleKey, name: e.Name, typ: e.KeyType},
		candTime:    {column: v.SourceDef().EventTime, role: roleEventTime},
		candKey:     {column: column, role: roleKey, name: ce.Name, typ: ce.KeyType},
		candScore:   {column: cd.ScoreColumn, role: roleFeature, name: larder.ScoresFeature, typ: larder.TypeFloat64, field: "candidates.score"},
	}
	if cd.Column != "" {
		c.specs[candKey].field = "candidates.column"
	}
	c.ctxs.init(e.KeyType)
	c.cands.init(ce.KeyType)
	return c
}

func (c *candidates) len() int {
	n := len(c.lists)
	for _, s := range c.shards {
		n += s.len()
	}
	return n
}

func (c *candidates) skippedReport() map[string]int64 {
	sk, nullCand, nullScore, nanScore := c.skipped, c.nullCandidate, c.nullScore, c.nanScore
	for _, s := range c.shards {
		sk.nullKey += s.skipped.nullKey
		sk.nullTime += s.skipped.nullTime
		sk.afterRun += s.skipped.afterRun
		nullCand, nullScore, nanScore = nullCand+s.nullCandidate, nullScore+s.nullScore, nanScore+s.nanScore
	}
	m := sk.report()
	for reason, n := range map[string]int64{SkipNullCandidate: nullCand, SkipNullScore: nullScore, SkipNaNScore: nanScore,
		SkipStaleScore: c.staleScore, SkipNoContext: c.noContext, SkipNullContext: c.nullContext, SkipStaleContext: c.staleContext} {
		if n > 0 {
			m[reason] = n
		}
	}
	return m
}

// read adds every row group of ds to c. The context entities are divided by
// a hash of their key among one partition per core, read in parallel (see
// scanPartitioned), so the result is exactly that of a sequential read. done
// is called after each row group, in order, on the calling goroutine. read
// returns the error of the earliest row group that cannot be read, or
// ctx.Err().
func (c *candidates) read(ctx context.Context, ds *dataset, done func(*rowGroup)) error {
	n := readWorkers()
	c.shards = make([]*candidates, n)
	for i := range c.shards {
		s := &candidates{specs: c.specs, runTime: c.runTime, topK: c.topK, part: i, parts: partitioner{n: uint64(n)}}
		s.ctxs.init(c.ctxs.keyType)
		s.cands.init(c.cands.keyType)
		c.shards[i] = s
	}
	return scanPartitioned(ctx, ds, n, func(ctx context.Context, part int, rg *rowGroup) error {
		return c.shards[part].consume(ctx, rg)
	}, done)
}

// owns reports whether the context key held by value vi of pv belongs to
// c's partition.
func (c *candidates) owns(s *rowScan, kvi int) bool {
	if c.parts.n <= 1 {
		return true
	}
	if c.ctxs.keyType == larder.TypeString {
		return c.parts.ofBytes(s.bytesKey(kvi)) == c.part
	}
	return c.parts.ofInt(s.intKey(kvi)) == c.part
}

// consume adds the usable rows of one row group to their contexts' lists,
// reading its four columns in step. It returns an error when a column chunk
// cannot be read or disagrees with the row group.
func (c *candidates) consume(ctx context.Context, rg *rowGroup) error {
	return scanRows(ctx, rg, candContext, candTime, []int{candKey, candScore}, rowFilter{runTime: c.runTime, since: math.MinInt64}, 0, c)
}

func (c *candidates) row(s *rowScan, _, kvi int, t int64) {
	cvi, svi := s.vis[0], s.vis[1]
	switch {
	case cvi < 0:
		c.nullCandidate++
		return
	case svi < 0:
		c.nullScore++
		return
	}
	scores := s.cols[1]
	sc := math.Float64frombits(scores.pv.num(scores.bc.conv, svi))
	if math.IsNaN(sc) {
		c.nanScore++
		return
	}
	slot, isNew := c.ctxs.lookup(&s.keys.pv, s.kbc, kvi)
	if isNew {
		c.lists = append(c.lists, nil)
	}
	cands := s.cols[0]
	cand, _ := c.cands.lookup(&cands.pv, cands.bc, cvi)
	c.add(slot, pairEntry{time: t, score: sc, cand: cand})
}

func (c *candidates) cut(sk skipCounts, _ bool) error {
	if c.part != 0 { // a row without a key belongs to no partition: part 0 counts it
		sk.nullKey = 0
	}
	c.skipped.add(sk)
	return nil
}

// add appends e to the list of context slot. A full list of compactFrom
// entries or more is first compacted (see compact); it grows only when at
// least half of it is distinct candidates, and then to twice that, so that
// a list holds at most twice as many entries as its context has distinct
// candidates, however many rows repeat them.
//
// When c.unique is set, a full list of at least twice topK entries is
// instead sorted best first and cut to topK: with every candidate added
// once, an entry that is not among the best topK so far never will be, so a
// list holds at most about twice topK entries.
func (c *candidates) add(slot int32, e pairEntry) {
	l := c.lists[slot]
	if len(l) == cap(l) && len(l) >= compactFrom {
		switch {
		case c.unique && len(l) >= 2*c.topK:
			slices.SortFunc(l, c.compare)
			l = l[:c.topK]
		case c.unique:
		default:
			l = compact(l)
			if len(l) > cap(l)/2 {
				l = slices.Grow(l, len(l)) // room for as many again
			}
		}
	}
	c.lists[slot] = append(l, e)
}

// compact keeps the newest entry of every candidate of l, which is in read
// order, and returns them sorted by candidate slot. Of entries with equal
// times, the one read later is kept.
func compact(l []pairEntry) []pairEntry {
	// A stable sort keeps each candidate's entries in read order.
	slices.SortStableFunc(l, func(a, b pairEntry) int { return cmp.Compare(a.cand, b.cand) })
	out := l[:0]
	for i := 0; i < len(l); {
		best := l[i]
		j := i + 1
		for ; j < len(l) && l[j].cand == best.cand; j++ {
			if l[j].time >= best.time {
				best = l[j]
			}
		}
		out = append(out, best)
		i = j
	}
	return out
}

// compare orders entries best first: by descending score, then by
// ascending candidate key.
func (c *candidates) compare(a, b pairEntry) int {
	if a.score != b.score {
		if a.score > b.score {
			return -1
		}
		return 1
	}
	if c.cands.keyType == larder.TypeString {
		return strings.Compare(c.cands.strKeys[a.cand], c.cands.strKeys[b.cand])
	}
	return cmp.Compare(c.cands.intKeys[a.cand], c.cands.intKeys[b.cand])
}

// emit calls put with the list of every context, partition by partition
// and in the order the contexts were first seen within each, and stops at
// the first error, which it returns. It frees each context's entries once
// its row is put.
func (c *candidates) emit(put func(larder.Key, larder.Row) error) error {
	for _, s := range c.shards {
		if err := s.emit(put); err != nil {
			return err
		}
	}
	vals := make([]larder.Value, 2)
	for slot, l := range c.lists {
		l = compact(l)
		c.pairs += int64(len(l))
		slices.SortFunc(l, c.compare)
		if len(l) > c.topK {
			l = l[:c.topK]
		}
		scores := make([]float32, len(l))
		newest := int64(math.MinInt64)
		for i, e := range l {
			scores[i] = float32(e.score)
			newest = max(newest, e.time)
		}
		if c.cands.keyType == larder.TypeString {
			keys := make([]string, len(l))
			for i, e := range l {
				keys[i] = c.cands.strKeys[e.cand]
			}
			vals[0] = larder.StringListValue(keys)
		} else {
			keys := make([]int64, len(l))
			for i, e := range l {
				keys[i] = c.cands.intKeys[e.cand]
			}
			vals[0] = larder.Int64ListValue(keys)
		}
		vals[1] = larder.Float32VectorValue(scores)
		c.lists[slot] = nil
		row := larder.Row{EventTime: time.Unix(0, newest).UTC(), Values: vals}
		if err := put(c.ctxs.key(int32(slot)), row); err != nil {
			return err
		}
	}
	return nil
}
