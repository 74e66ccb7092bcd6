package materializer

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/larder-dev/larder"
)

// spineChunk is a chunk of the spine's rows: their times, keys and request
// features, and, by key column, the index that finds a key's rows.
type spineChunk struct {
	// base is the number of spine rows before the chunk's.
	base   int64
	groups []*rowGroup
	n      int
	times  []int64
	keys   [][]larder.Key
	hasKey [][]bool
	req    [][]float32 // by request feature
	hasReq [][]bool
	index  []*spineIndex
	maxT   int64
}

// readSpine reads the timestamps, keys and request features of the rows of
// rgs, and indexes each key column.
func readSpine(ctx context.Context, rgs []*rowGroup, plan *exportPlan) (*spineChunk, error) {
	nk := len(plan.keyCols)
	ch := &spineChunk{groups: rgs, keys: make([][]larder.Key, nk), hasKey: make([][]bool, nk), maxT: math.MinInt64,
		req: make([][]float32, plan.nreq), hasReq: make([][]bool, plan.nreq)}
	for _, rg := range rgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := recoverRead(func() error { return ch.readGroup(rg, plan) })
		if err != nil {
			return nil, fmt.Errorf("export: spine %s row group %d cannot be read: %w", rg.file.path, rg.index, err)
		}
	}
	ch.index = make([]*spineIndex, nk)
	for c := range nk {
		ch.index[c] = newSpineIndex(ch.keys[c], ch.hasKey[c], ch.times)
	}
	return ch, nil
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
	nk := len(plan.keyCols)
	for r := range int(rg.numRows) {
		tvi, err := curs[0].next()
		if err != nil {
			return err
		}
		if tvi < 0 {
			return larder.Invalidf("row %d has a null timestamp (column %q): every spine row needs its time", r, plan.specs[0].column)
		}
		t := curs[0].pv.eventTime(curs[0].bc, tvi)
		ch.times = append(ch.times, t)
		ch.maxT = max(ch.maxT, t)
		for c := range nk {
			cur := curs[1+c]
			vi, err := cur.next()
			if err != nil {
				return err
			}
			if vi < 0 {
				ch.keys[c] = append(ch.keys[c], larder.Key{})
				ch.hasKey[c] = append(ch.hasKey[c], false)
				continue
			}
			ch.keys[c] = append(ch.keys[c], keyAt(&cur.pv, cur.bc, vi))
			ch.hasKey[c] = append(ch.hasKey[c], true)
		}
		for q := range plan.nreq {
			cur := curs[1+nk+q]
			vi := -1
			if cur != nil {
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
	for _, c := range curs {
		if c != nil {
			if err := c.finish(); err != nil {
				return err
			}
		}
	}
	ch.n += int(rg.numRows)
	return nil
}

// spineIndex finds the spine rows of a key: the rows with a key, sorted by
// key then time then position, in runs of one key each.
type spineIndex struct {
	order []int32 // spine rows
	times []int64 // their times, in the same order
	start []int32 // by run, its first index in order; one more at the end
	ints  map[int64]int32
	strs  map[string]int32
}

func newSpineIndex(keys []larder.Key, has []bool, times []int64) *spineIndex {
	x := &spineIndex{}
	for i := range keys {
		if has[i] {
			x.order = append(x.order, int32(i))
		}
	}
	str := len(x.order) > 0 && keys[x.order[0]].Type() == larder.TypeString
	if str {
		slices.SortFunc(x.order, func(a, b int32) int {
			if c := strings.Compare(keys[a].Str(), keys[b].Str()); c != 0 {
				return c
			}
			return cmp.Or(cmp.Compare(times[a], times[b]), cmp.Compare(a, b))
		})
	} else {
		ints := make([]int64, len(keys))
		for i := range keys {
			ints[i] = keys[i].Int64()
		}
		slices.SortFunc(x.order, func(a, b int32) int {
			return cmp.Or(cmp.Compare(ints[a], ints[b]), cmp.Compare(times[a], times[b]), cmp.Compare(a, b))
		})
	}
	x.times = make([]int64, len(x.order))
	if str {
		x.strs = make(map[string]int32)
	} else {
		x.ints = make(map[int64]int32)
	}
	for i, r := range x.order {
		x.times[i] = times[r]
		if i > 0 && keys[x.order[i-1]] == keys[r] {
			continue
		}
		run := int32(len(x.start))
		x.start = append(x.start, int32(i))
		if str {
			x.strs[keys[r].Str()] = run
		} else {
			x.ints[keys[r].Int64()] = run
		}
	}
	x.start = append(x.start, int32(len(x.order)))
	return x
}

// runOfInt and runOfBytes return the run of a key, and false when the
// chunk has no row of it.
func (x *spineIndex) runOfInt(k int64) (int32, bool) {
	r, ok := x.ints[k]
	return r, ok
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
	return lo + sort.Search(hi-lo, func(i int) bool { return x.times[lo+i] >= t })
}
