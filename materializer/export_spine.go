package materializer

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"

	"github.com/larder-dev/larder"
)

// spineChunk is a chunk of the spine's rows: their times, keys and request
// features, and, by key column, the index that finds a key's rows. A chunk
// is reused for the next one, so that its buffers are allocated once.
type spineChunk struct {
	groups []*rowGroup
	n      int
	times  []int64
	keys   []spineKeys // by key column
	req    [][]float32 // by request feature
	hasReq [][]bool
	index  []*spineIndex
	maxT   int64

	// chunk is the chunk's number, from 0, of chunks.
	chunk, chunks int
}

// spineKeys are the keys of one key column of a chunk, by spine row: ints
// for int64 keys, strs for string keys; has is false where the key is null.
type spineKeys struct {
	str  bool
	ints []int64
	strs []string
	has  []bool
}

// key returns the key of spine row r, which must have one.
func (k *spineKeys) key(r int) larder.Key {
	if k.str {
		return larder.StringKey(k.strs[r])
	}
	return larder.Int64Key(k.ints[r])
}

// phase returns the phase of the export's progress what is in, for ch:
// what, after the chunk's number when the spine has several.
func (ch *spineChunk) phase(what string) string {
	if ch.chunks <= 1 {
		return what
	}
	return fmt.Sprintf("chunk %d/%d: %s", ch.chunk+1, ch.chunks, what)
}

// readSpine reads the timestamps, keys and request features of the rows of
// rgs into ch (emptied first, its buffers kept), and indexes each key
// column.
func readSpine(ctx context.Context, rgs []*rowGroup, plan *exportPlan, ch *spineChunk) error {
	nk := len(plan.keyCols)
	ch.groups, ch.n, ch.maxT = rgs, 0, math.MinInt64
	ch.times = ch.times[:0]
	if len(ch.keys) != nk {
		ch.keys = make([]spineKeys, nk)
		ch.index = make([]*spineIndex, nk)
		for c := range nk {
			ch.keys[c].str = plan.specs[1+c].typ == larder.TypeString
			ch.index[c] = &spineIndex{}
		}
		ch.req, ch.hasReq = make([][]float32, plan.nreq), make([][]bool, plan.nreq)
	}
	rows := 0
	for _, rg := range rgs {
		rows += int(rg.numRows)
	}
	// The rows a footer claims are made room for up to a chunk's default:
	// a corrupt footer's count then fails where the pages end, not here.
	rows = min(rows, DefaultExportChunkRows)
	ch.times = slices.Grow(ch.times, rows)
	for c := range ch.keys {
		k := &ch.keys[c]
		clear(k.strs) // let the strings of the last chunk go
		k.ints, k.strs, k.has = k.ints[:0], k.strs[:0], slices.Grow(k.has[:0], rows)
		if k.str {
			k.strs = slices.Grow(k.strs, rows)
		} else {
			k.ints = slices.Grow(k.ints, rows)
		}
	}
	for q := range ch.req {
		ch.req[q], ch.hasReq[q] = slices.Grow(ch.req[q][:0], rows), slices.Grow(ch.hasReq[q][:0], rows)
	}
	for _, rg := range rgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := recoverRead(func() error { return ch.readGroup(rg, plan) })
		if larder.IsInvalid(err) {
			return err // a row refused, named by its file and place
		}
		if err != nil {
			return fmt.Errorf("export: spine %s row group %d cannot be read: %w", rg.file.path, rg.index, err)
		}
	}
	for c := range nk {
		ch.index[c].build(&ch.keys[c], ch.times)
	}
	return nil
}

func (ch *spineChunk) readGroup(rg *rowGroup, plan *exportPlan) error {
	curs := make([]*cursor, len(plan.specs))
	for i := range plan.specs {
		if rg.file.cols[i] == nil {
			continue // an optional request feature the file lacks
		}
		bc, chunk := rg.chunk(i)
		curs[i] = newCursor(bc, chunk)
		defer curs[i].close()
	}
	numRows := int(rg.numRows)
	for r := 0; r < numRows; {
		// Runs of plain timestamps go at once.
		tc := curs[0]
		if err := tc.ready(); err != nil {
			return err
		}
		if tc.bc.conv == convTimestamp {
			n := min(tc.left(), numRows-r)
			if tv := tc.plainInt64(n); tv != nil {
				for _, v := range tv {
					t := tc.bc.nanosOf(v)
					ch.times = append(ch.times, t)
					ch.maxT = max(ch.maxT, t)
				}
				tc.skip(n)
				if err := ch.readKeys(curs, plan, n); err != nil {
					return err
				}
				r += n
				continue
			}
		}
		tvi, err := tc.next()
		if err != nil {
			return err
		}
		if tvi < 0 {
			return larder.Invalidf("export: spine file %s row %d has a null timestamp (column %q): every spine row needs its time",
				rg.file.path, firstRow(rg)+int64(r), plan.specs[0].column)
		}
		t := tc.pv.eventTime(tc.bc, tvi)
		ch.times = append(ch.times, t)
		ch.maxT = max(ch.maxT, t)
		if err := ch.readKeys(curs, plan, 1); err != nil {
			return err
		}
		r++
	}
	for _, c := range curs {
		if c != nil {
			if err := c.finish(); err != nil {
				return err
			}
		}
	}
	ch.n += numRows
	return nil
}

// firstRow returns the place of rg's first row in its file, counting from 0.
func firstRow(rg *rowGroup) int64 {
	var n int64
	for _, g := range rg.file.pf.RowGroups()[:rg.index] {
		n += g.NumRows()
	}
	return n
}

// place returns the file of row r of ch and its place in the file,
// counting from 0.
func (ch *spineChunk) place(r int) (string, int64) {
	for _, rg := range ch.groups {
		if int64(r) < rg.numRows {
			return rg.file.path, firstRow(rg) + int64(r)
		}
		r -= int(rg.numRows)
	}
	return "", -1
}

// readKeys reads the keys and request features of the next n rows.
func (ch *spineChunk) readKeys(curs []*cursor, plan *exportPlan, n int) error {
	nk := len(plan.keyCols)
	for c := range nk {
		cur, k := curs[1+c], &ch.keys[c]
		for left := n; left > 0; {
			if err := cur.ready(); err != nil {
				return err
			}
			if !k.str && cur.bc.conv == convInt64 {
				m := min(cur.left(), left)
				if kv := cur.plainInt64(m); kv != nil {
					k.ints = append(k.ints, kv...)
					for range m {
						k.has = append(k.has, true)
					}
					cur.skip(m)
					left -= m
					continue
				}
			}
			vi, err := cur.next()
			if err != nil {
				return err
			}
			left--
			switch {
			case vi < 0 && k.str:
				k.strs = append(k.strs, "")
			case vi < 0:
				k.ints = append(k.ints, 0)
			case k.str:
				k.strs = append(k.strs, string(cur.pv.bytes(vi)))
			default:
				k.ints = append(k.ints, int64(cur.pv.num(cur.bc.conv, vi)))
			}
			k.has = append(k.has, vi >= 0)
		}
	}
	for q := range plan.nreq {
		cur := curs[1+nk+q]
		for range n {
			vi := -1
			if cur != nil {
				var err error
				if vi, err = cur.next(); err != nil {
					return err
				}
			}
			if vi < 0 {
				ch.req[q] = append(ch.req[q], 0)
				ch.hasReq[q] = append(ch.hasReq[q], false)
				continue
			}
			ch.req[q] = append(ch.req[q], requestNumber(&cur.pv, cur.bc.conv, vi))
			ch.hasReq[q] = append(ch.hasReq[q], true)
		}
	}
	return nil
}

// spineIndex finds the spine rows of a key: the rows with a key, sorted by
// key then time then position, in runs of one key each. Its buffers are
// kept from chunk to chunk.
type spineIndex struct {
	order []int32 // spine rows
	times []int64 // their times, in the same order
	start []int32 // by run, its first index in order; one more at the end
	// The run of an int64 key k: dense[k-lo]-1 when the keys span a narrow
	// range (dense is not nil), else from table. The run of a string key:
	// strs.
	lo    int64
	dense []int32
	table []intEntry
	strs  map[string]int32
	// scratch space for sorting
	keys, tmpKeys []uint64
	tmpOrder      []int32
}

// build indexes the rows of keys, at times.
func (x *spineIndex) build(keys *spineKeys, times []int64) {
	x.order, x.start, x.dense, x.strs = x.order[:0], x.start[:0], nil, nil
	clear(x.table)
	for r, has := range keys.has {
		if has {
			x.order = append(x.order, int32(r))
		}
	}
	if keys.str {
		x.buildStrings(keys.strs, times)
	} else {
		x.buildInts(keys.ints, times)
	}
	x.times = slices.Grow(x.times[:0], len(x.order))[:len(x.order)]
	for i, r := range x.order {
		x.times[i] = times[r]
	}
}

// buildStrings sorts the rows of string keys and indexes their runs.
func (x *spineIndex) buildStrings(keys []string, times []int64) {
	slices.SortFunc(x.order, func(a, b int32) int {
		if c := strings.Compare(keys[a], keys[b]); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(times[a], times[b]), cmp.Compare(a, b))
	})
	x.strs = make(map[string]int32)
	for i, r := range x.order {
		if i > 0 && keys[x.order[i-1]] == keys[r] {
			continue
		}
		x.strs[keys[r]] = int32(len(x.start))
		x.start = append(x.start, int32(i))
	}
	x.start = append(x.start, int32(len(x.order)))
}

// denseSlack is how much wider than the number of rows the range of int64
// keys may be for the index to be a table by key.
const denseSlack = 2

// buildInts sorts the rows of int64 keys, by key with a counting sort when
// the keys span a narrow range and a radix sort otherwise, then each run by
// time, and indexes the runs.
func (x *spineIndex) buildInts(keys []int64, times []int64) {
	n := len(x.order)
	if n == 0 {
		x.start = append(x.start, 0)
		return
	}
	lo, hi := keys[x.order[0]], keys[x.order[0]]
	for _, r := range x.order {
		lo, hi = min(lo, keys[r]), max(hi, keys[r])
	}
	span := uint64(hi) - uint64(lo)
	if span < uint64(denseSlack*n+1024) {
		// A counting sort by key, stable: each run stays in row order.
		x.lo = lo
		x.dense = make([]int32, span+2)
		for _, r := range x.order {
			x.dense[uint64(keys[r])-uint64(lo)+1]++
		}
		for i := 1; i < len(x.dense); i++ {
			x.dense[i] += x.dense[i-1]
		}
		x.tmpOrder = slices.Grow(x.tmpOrder[:0], n)[:n]
		for _, r := range x.order {
			d := &x.dense[uint64(keys[r])-uint64(lo)]
			x.tmpOrder[*d] = r
			*d++
		}
		x.order, x.tmpOrder = x.tmpOrder, x.order
		// dense[k] is now the end of the run of key lo+k: number the runs.
		prev := int32(0)
		for k := range len(x.dense) - 1 {
			end := x.dense[k]
			x.dense[k] = 0
			if end > prev {
				x.start = append(x.start, prev)
				x.dense[k] = int32(len(x.start))
				prev = end
			}
		}
		x.dense = x.dense[:len(x.dense)-1]
	} else {
		x.radixSort(keys, lo, span)
		size := 1024
		for size < 2*n {
			size *= 2
		}
		if len(x.table) < size {
			x.table = make([]intEntry, size)
		}
		x.table = x.table[:size]
		for i, r := range x.order {
			if i > 0 && keys[x.order[i-1]] == keys[r] {
				continue
			}
			run := int32(len(x.start))
			x.start = append(x.start, int32(i))
			j := x.home(keys[r])
			for x.table[j].slot1 != 0 {
				j = (j + 1) & (len(x.table) - 1)
			}
			x.table[j] = intEntry{slot1: run + 1, key: keys[r]}
		}
	}
	x.start = append(x.start, int32(n))
	// Sort each run by time; rows of equal times stay in row order.
	for run := range len(x.start) - 1 {
		rs := x.order[x.start[run]:x.start[run+1]]
		if len(rs) <= 32 {
			for i := 1; i < len(rs); i++ {
				r, t := rs[i], times[rs[i]]
				j := i
				for ; j > 0 && times[rs[j-1]] > t; j-- {
					rs[j] = rs[j-1]
				}
				rs[j] = r
			}
			continue
		}
		slices.SortFunc(rs, func(a, b int32) int { return cmp.Or(cmp.Compare(times[a], times[b]), cmp.Compare(a, b)) })
	}
}

// radixSort sorts x.order by key, stably, with a least-significant-digit
// radix sort of the keys minus lo, whose largest is span.
func (x *spineIndex) radixSort(keys []int64, lo int64, span uint64) {
	n := len(x.order)
	x.keys = slices.Grow(x.keys[:0], n)[:n]
	x.tmpKeys = slices.Grow(x.tmpKeys[:0], n)[:n]
	x.tmpOrder = slices.Grow(x.tmpOrder[:0], n)[:n]
	for i, r := range x.order {
		x.keys[i] = uint64(keys[r]) - uint64(lo)
	}
	const digit = 11
	var count [1 << digit]int
	for shift := 0; shift < bits.Len64(span); shift += digit {
		clear(count[:])
		for _, k := range x.keys {
			count[(k>>shift)&(1<<digit-1)]++
		}
		sum := 0
		for i, c := range count {
			count[i] = sum
			sum += c
		}
		for i, k := range x.keys {
			d := &count[(k>>shift)&(1<<digit-1)]
			x.tmpKeys[*d], x.tmpOrder[*d] = k, x.order[i]
			*d++
		}
		x.keys, x.tmpKeys = x.tmpKeys, x.keys
		x.order, x.tmpOrder = x.tmpOrder, x.order
	}
}

// home returns the first entry of x.table to probe for key k.
func (x *spineIndex) home(k int64) int {
	h := uint64(k)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return int(h & uint64(len(x.table)-1))
}

// runOfInt and runOfBytes return the run of a key, and false when the
// chunk has no row of it.
func (x *spineIndex) runOfInt(k int64) (int32, bool) {
	if x.dense != nil {
		if d := uint64(k) - uint64(x.lo); d < uint64(len(x.dense)) {
			run := x.dense[d]
			return run - 1, run != 0
		}
		return 0, false
	}
	if len(x.table) == 0 {
		return 0, false
	}
	mask := len(x.table) - 1
	for j := x.home(k); ; j = (j + 1) & mask {
		e := &x.table[j]
		if e.slot1 == 0 {
			return 0, false
		}
		if e.key == k {
			return e.slot1 - 1, true
		}
	}
}

func (x *spineIndex) runOfBytes(b []byte) (int32, bool) {
	r, ok := x.strs[string(b)]
	return r, ok
}

// runOfKey returns the run of key k of a batch, held in skeys when str (a
// string-keyed entity) and in ikeys otherwise, and false when the chunk
// has no row of it.
func (x *spineIndex) runOfKey(str bool, ikeys []int64, skeys *byteArena, k int) (int32, bool) {
	if str {
		return x.runOfBytes(skeys.at(k))
	}
	return x.runOfInt(ikeys[k])
}

// firstAtOrAfter returns the first index of run whose time is at or after
// t, the run's end when none is.
func (x *spineIndex) firstAtOrAfter(run int32, t int64) int {
	lo, hi := int(x.start[run]), int(x.start[run+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if x.times[m] < t {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}
