package materializer

import "math"

// bestIndex maps the int64 keys of a latest shard's entities to their best
// row so far, in one open-addressing table whose entries hold the key and
// the event time of the best row side by side, 16 bytes that never straddle
// two cache lines: folding a row costs one cache miss, and the entry can be
// fetched ahead of the fold (see prefetch). The position of the best row,
// needed only when a row wins, lives in refs, at the same index.
type bestIndex struct {
	// table has a power of two entries, at most half of them used; an
	// entry whose key is emptyKey is empty.
	table []bestEntry
	refs  []rowRef
	n     int
	// The entity whose key is emptyKey, when hasEmptyKey, lives here.
	hasEmptyKey bool
	emptyKeyT   int64
	emptyKeyRef rowRef
}

type bestEntry struct {
	key int64
	t   int64
}

// emptyKey marks the empty entries of bestIndex.table.
const emptyKey = math.MinInt64

func (x *bestIndex) init() { x.resize(1024) }

func (x *bestIndex) resize(n int) {
	x.table = make([]bestEntry, n)
	for i := range x.table {
		x.table[i].key = emptyKey
	}
	x.refs = make([]rowRef, n)
}

// len returns the number of keys.
func (x *bestIndex) len() int {
	if x.hasEmptyKey {
		return x.n + 1
	}
	return x.n
}

// home returns the first entry of the table to probe for key k: see
// keyIndex.home.
func (x *bestIndex) home(k int64) int {
	h := uint64(k)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return int(h & uint64(len(x.table)-1))
}

// prefetch returns the time of the entry where the lookup of key k starts;
// reading it brings that entry into the cache.
func (x *bestIndex) prefetch(k int64) int64 { return x.table[x.home(k)].t }

// fold makes the row at ref, of key k and event time t, the best row of k
// when k has none yet or the row beats its best row (see beats): of rows
// with equal event times, the one read later wins, whatever the order they
// are folded in.
func (x *bestIndex) fold(k, t int64, ref rowRef) {
	if k == emptyKey {
		if !x.hasEmptyKey || beats(t, ref, x.emptyKeyT, x.emptyKeyRef) {
			x.hasEmptyKey, x.emptyKeyT, x.emptyKeyRef = true, t, ref
		}
		return
	}
	mask := len(x.table) - 1
	i := x.home(k)
	for ; ; i = (i + 1) & mask {
		e := &x.table[i]
		if e.key == k {
			if beats(t, ref, e.t, x.refs[i]) {
				e.t = t
				x.refs[i] = ref
			}
			return
		}
		if e.key == emptyKey {
			break
		}
	}
	x.n++
	if 2*x.n > len(x.table) {
		x.rehash(2 * len(x.table))
		i = x.free(k)
	}
	x.table[i] = bestEntry{key: k, t: t}
	x.refs[i] = ref
}

// free returns the empty entry where key k, which is absent, goes.
func (x *bestIndex) free(k int64) int {
	mask := len(x.table) - 1
	i := x.home(k)
	for x.table[i].key != emptyKey {
		i = (i + 1) & mask
	}
	return i
}

// rehash replaces the table by one of n entries holding the same entries.
func (x *bestIndex) rehash(n int) {
	table, refs := x.table, x.refs
	x.resize(n)
	for j, e := range table {
		if e.key != emptyKey {
			i := x.free(e.key)
			x.table[i], x.refs[i] = e, refs[j]
		}
	}
}

// drain appends every key and best row to keys and best, in table order,
// and releases the table.
func (x *bestIndex) drain(keys []int64, best []bestRow) ([]int64, []bestRow) {
	for i, e := range x.table {
		if e.key != emptyKey {
			keys = append(keys, e.key)
			best = append(best, bestRow{t: e.t, ref: x.refs[i]})
		}
	}
	if x.hasEmptyKey {
		keys = append(keys, emptyKey)
		best = append(best, bestRow{t: x.emptyKeyT, ref: x.emptyKeyRef})
	}
	*x = bestIndex{}
	return keys, best
}

// merge folds every entry of y into x.
func (x *bestIndex) merge(y *bestIndex) {
	for i, e := range y.table {
		if e.key != emptyKey {
			x.fold(e.key, e.t, y.refs[i])
		}
	}
	if y.hasEmptyKey {
		x.fold(emptyKey, y.emptyKeyT, y.emptyKeyRef)
	}
}

// beats reports whether the row at ref with event time t beats the row at
// best with event time bt: it is newer, or as new and read later. Rows are
// read in the order of their rowRefs, so the outcome does not depend on the
// order rows are folded in.
func beats(t int64, ref rowRef, bt int64, best rowRef) bool {
	return t > bt || (t == bt && ref >= best)
}

// noBest is the event time a new entity's best row starts from: every row
// beats it, even one at math.MinInt64.
const noBest = math.MinInt64
