package server

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/larder-dev/larder"
)

// rankBuffers are the per-request buffers of Rank, pooled: the lookups and
// the numbers they read, the model's input and its scores, and the order of
// the candidates. A request returns them to the pool only when nothing
// (a Redis round trip, a model batch) can still be using them.
type rankBuffers struct {
	lookups []larder.Lookup
	ptrs    []*larder.Lookup
	numbers []larder.NumberRead
	// cols[l][k] is the model input column of lookup l's k-th number.
	cols    [][]int
	ctxKeys [1]larder.Key
	x       []float32
	scores  []float32
	order   []int
}

var rankPool = sync.Pool{New: func() any { return new(rankBuffers) }}

// rankLookups returns the lookups of a Rank request for plan: one per
// context view (keys ctxKeys), then one per candidate view (keys cands),
// each asking for the numbers of the model inputs it feeds.
func (b *rankBuffers) rankLookups(plan *rankerPlan, ctxKey larder.Key, cands []larder.Key) (ctxLookups, candLookups []*larder.Lookup) {
	nc, nv := len(plan.context), len(plan.context)+len(plan.cands)
	b.lookups = resize(b.lookups, nv)
	b.ptrs = resize(b.ptrs, nv)
	b.numbers = resize(b.numbers, nv)
	b.cols = resize(b.cols, nv)
	b.ctxKeys[0] = ctxKey
	for i := range nv {
		nr := &b.numbers[i]
		nr.Features, nr.Defaults, b.cols[i] = nr.Features[:0], nr.Defaults[:0], b.cols[i][:0]
		l := &b.lookups[i]
		*l = larder.Lookup{Numbers: nr, Found: l.Found, Rows: l.Rows}
		if i < nc {
			l.View, l.Keys = plan.context[i], b.ctxKeys[:]
		} else {
			l.View, l.Keys = plan.cands[i-nc], cands
		}
		b.ptrs[i] = l
	}
	for j, in := range plan.inputs {
		i := in.lookup
		switch in.side {
		case larder.SideContext:
		case larder.SideCandidate:
			i += nc
		default:
			continue
		}
		nr := &b.numbers[i]
		nr.Features = append(nr.Features, in.feature)
		nr.Defaults = append(nr.Defaults, in.def)
		b.cols[i] = append(b.cols[i], j)
	}
	return b.ptrs[:nc], b.ptrs[nc:nv]
}

// fillInput writes the numbers l read into the model input x (f columns, a
// row per candidate) at the columns cols. A context lookup (context true)
// read one key, whose numbers go into every row. A missing or stale row
// takes the inputs' defaults; Read already put them for nulls and missing
// rows.
func fillInput(x []float32, f, n int, l *larder.Lookup, cols []int, context bool, now time.Time) {
	nr := l.Numbers
	k := len(cols)
	for i := range n {
		src := i
		if context {
			src = 0
		}
		vals := nr.Values[src*k : (src+1)*k]
		if l.Found[src] && l.View.Status(true, l.Rows[src].EventTime, now) != larder.StatusPresent {
			vals = nr.Defaults
		}
		row := x[i*f : (i+1)*f]
		for c, col := range cols {
			row[col] = vals[c]
		}
	}
}

// maxInsertTopK bounds the top K that topOrder selects by insertion; a
// larger K sorts all candidates.
const maxInsertTopK = 32

// topOrder returns the indexes of the best min(k, len(scores)) scores,
// highest first; equal scores keep their order, and NaN ranks last, as a
// stable sort by descending cmp.Compare would give. order is reused.
func topOrder(order []int, scores []float32, k int) []int {
	n := len(scores)
	if k >= n || k > maxInsertTopK {
		order = resize(order, n)
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
		return order[:min(k, n)]
	}
	order = order[:0]
	for i, s := range scores {
		// The first place whose score s beats; ties stay behind earlier ones.
		p := len(order)
		for p > 0 && cmp.Compare(s, scores[order[p-1]]) > 0 {
			p--
		}
		if p >= k {
			continue
		}
		if len(order) < k {
			order = append(order, 0)
		}
		copy(order[p+1:], order[p:len(order)-1])
		order[p] = i
	}
	return order
}

// resize returns s with length n, reusing its capacity.
func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return append(s[:cap(s)], make([]T, n-cap(s))...)
}
