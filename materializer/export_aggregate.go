package materializer

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"

	"github.com/larder-dev/larder"
)

// aggEvents holds the source rows an aggregate export keeps, in read order:
// each row's run in the spine index, its event time and the values of its
// value columns. Its buffers are kept from chunk to chunk.
type aggEvents struct {
	run   []int32
	times []int64
	cols  []colBuf
	// by run, the index in order of its first row; order lists the rows
	// by run, in read order within a run
	start []int32
	order []int32
}

func (e *aggEvents) reset(specs []columnSpec) {
	e.run, e.times = e.run[:0], e.times[:0]
	if len(e.cols) != len(specs) {
		e.cols = newRowBuf(specs).cols
	}
	for i := range e.cols {
		c := &e.cols[i]
		c.valid, c.num = c.valid[:0], c.num[:0]
		c.str.reset()
	}
}

// add appends row k of buf, of spine index run.
func (e *aggEvents) add(run int32, buf *rowBuf, k int) {
	e.run = append(e.run, run)
	e.times = append(e.times, buf.times[k])
	for i := range e.cols {
		c, bc := &e.cols[i], &buf.cols[i]
		c.valid = append(c.valid, bc.valid[k])
		if c.bytes {
			c.str.add(bc.str.at(k))
		} else {
			c.num = append(c.num, bc.num[k])
		}
	}
}

// group sorts the rows by run, keeping read order within each.
func (e *aggEvents) group(runs int) {
	e.start = grow(e.start[:0], runs+1, 0)
	for _, r := range e.run {
		e.start[r+1]++
	}
	for i := 1; i <= runs; i++ {
		e.start[i] += e.start[i-1]
	}
	e.order = slices.Grow(e.order[:0], len(e.run))[:len(e.run)]
	next := slices.Clone(e.start[:runs])
	for i, r := range e.run {
		e.order[next[r]] = int32(i)
		next[r]++
	}
}

// joinAggregate computes the windows of every spine row. The source rows
// of the chunk's keys that fall in a window of some spine row of their key
// are kept, in read order; then, entity by entity, the spine rows are
// visited in time order while each window slides over the entity's rows,
// with the aggregation math of a run on times relative to the spine row's
// (see aggWindows). Memory holds the rows kept and the chunk's values, not
// a fold per spine row and row.
func (m *Materializer) joinAggregate(ctx context.Context, j *exportJoin, ch *spineChunk) (int64, error) {
	v, ix := j.view, ch.index[j.keyCol]
	a := newAggregate(v, v.EntityDef(), time.Unix(0, ch.maxT))
	// Windows end at 0: a row at t folds into a spine row at T as t − T.
	rel := newAggregate(v, v.EntityDef(), time.Unix(0, 0))
	ds, err := m.openSource(v, a.specs)
	if err != nil {
		return 0, err
	}
	defer ds.Close()
	a.parts = partitioner{n: 1}
	// span is the longest window: a row older than it before a spine row
	// is in none of its windows.
	span := int64(0)
	for _, ag := range rel.aggs {
		if ag.loMin == math.MinInt64 {
			span = math.MaxInt64
		} else {
			span = max(span, -ag.loMin)
		}
	}
	runs := len(ix.start) - 1
	// first is the oldest event time of each run's key: a spine row has a
	// row when it is at or after it.
	first := make([]int64, runs)
	for i := range first {
		first[i] = math.MaxInt64
	}
	if j.evs == nil {
		j.evs = &aggEvents{}
	}
	evs := j.evs
	evs.reset(a.specs[specFeatures:])
	str := a.keyType == larder.TypeString
	fold := func(_ int, buf *rowBuf) {
		for k := range buf.len() {
			run, ok := ix.runOfKey(str, buf.ikeys, &buf.skeys, k)
			if !ok {
				continue
			}
			t := buf.times[k]
			first[run] = min(first[run], t)
			if p := ix.firstAtOrAfter(run, t); p < int(ix.start[run+1]) && ix.times[p]-t < span {
				evs.add(run, buf, k)
			}
		}
		buf.reset()
	}
	fan := startFanOut(1, func() *rowBuf { return newRowBuf(a.specs[specFeatures:]) }, fold)
	decode := func(ctx context.Context, rg *rowGroup, emit func(*aggBatch) error) error {
		sink := &aggSink{a: a, fan: fan, emit: emit}
		sink.b = &aggBatch{parts: fan.parts()}
		return scanRows(ctx, rg, specKey, specTime, a.valueColumns(), rowFilter{runTime: a.runTime, since: math.MinInt64}, batchRows, sink)
	}
	err = scanParallel(ctx, ds, readWorkers(), decode, func(b *aggBatch) error { return fan.send(ctx, b.parts) }, m.sourceProgress(v, ds, ch))
	fan.stop()
	if err != nil {
		return 0, err
	}
	evs.group(runs)
	types := make([]larder.Type, len(v.Features))
	for f := range types {
		types[f] = v.Features[f].Type
	}
	j.tab.reset(types, len(ix.order))
	w := newAggWindows(rel, evs)
	for run := range runs {
		if run%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		w.entity(ix, int32(run), &j.tab)
	}
	for run := range runs {
		for p := int(ix.start[run]); p < int(ix.start[run+1]); p++ {
			if r := ix.order[p]; first[run] <= ix.times[p] {
				j.found[r], j.times[r], j.pos[r] = true, ix.times[p], int32(p)
			}
		}
	}
	return ds.rows, nil
}

// aggWindows computes an aggregate view's values for the spine rows of one
// entity at a time, in time order, from the entity's source rows kept in
// aggEvents. For each value column, the entity's rows with a value are
// sorted by event time (then read order); every window of every spine row
// is then a range of them, whose ends only move forward from one spine row
// to the next:
//
//   - count is the length of the range; last is the range's newest row;
//   - sum, mean, min and max fold the range's values with the fold of a
//     run (foldNumber), in read order for floats, so that sums add in the
//     order a run adds them, bit for bit (and a NaN, or a −0 against a 0,
//     wins as it does there). While a window's start stays and the rows it
//     gains come after those it holds in read order, the fold goes on from
//     where it was; otherwise it starts over on the window's rows;
//   - count_distinct keeps, per window, the count of each value in the
//     range, adding the rows the range gains and removing those it loses.
//
// The values then come from the accumulators as a run's do (aggShard.value).
type aggWindows struct {
	agg  *aggregate
	evs  *aggEvents
	cols []aggColumn // by value column
	aggs []aggWin    // by aggregation
	// acc is a one-entity shard whose words are set for each spine row.
	acc *aggShard
}

// aggColumn is the rows of an entity with a value in one value column.
type aggColumn struct {
	used bool
	rows []aggRow
	b    int // the rows at or before the current spine row
}

// aggRow is a source row: its event time and its index in aggEvents, which
// is its place in read order.
type aggRow struct {
	t int64
	e int32
}

// aggWin is the state of one aggregation's windows for the current entity.
type aggWin struct {
	// one is the aggregation with one window, by window, for foldNumber.
	one  []aggregation
	fold bool // sum, min or max are kept
	win  []winState
}

// winState is a window of the current spine row: rows [a, b) of its
// column, and what was folded of them.
type winState struct {
	a, b int
	// acc holds the window's words, folded from rows [fa, fb) when folded
	// is set; maxE is the last of them in read order.
	acc     []uint64
	folded  bool
	fa, fb  int
	maxE    int32
	numDist map[uint64]int32
	strDist map[string]int32
}

func newAggWindows(agg *aggregate, evs *aggEvents) *aggWindows {
	w := &aggWindows{agg: agg, evs: evs, cols: make([]aggColumn, len(evs.cols)), aggs: make([]aggWin, len(agg.aggs))}
	w.acc = &aggShard{agg: agg, stride: agg.stride, state: make([]aggState, len(agg.aggs)), acc: [][]uint64{make([]uint64, agg.stride)}}
	for i := range agg.aggs {
		ag := &agg.aggs[i]
		w.cols[ag.col].used = true
		aw := &w.aggs[i]
		aw.fold = ag.block > 1
		aw.win = make([]winState, len(ag.lo))
		for k, lo := range ag.lo {
			one := *ag
			one.lo, one.loMin = []int64{lo}, lo
			one.last, one.distinct = false, false
			aw.one = append(aw.one, one)
			ws := &aw.win[k]
			ws.acc = make([]uint64, ag.block)
			if ag.distinct {
				if ag.kind == aggString {
					ws.strDist = make(map[string]int32)
				} else {
					ws.numDist = make(map[uint64]int32)
				}
			}
		}
		if ag.last && ag.kind == aggString {
			w.acc.state[i].lastStr = []string{""}
		}
	}
	return w
}

// entity computes the values of the spine rows of run into tab, at their
// positions in ix.
func (w *aggWindows) entity(ix *spineIndex, run int32, tab *exportTable) {
	evs := w.evs
	rows := evs.order[evs.start[run]:evs.start[run+1]]
	for c := range w.cols {
		col := &w.cols[c]
		if !col.used {
			continue
		}
		col.rows, col.b = col.rows[:0], 0
		valid := evs.cols[c].valid
		sorted := true
		for _, e := range rows {
			if !valid[e] {
				continue
			}
			t := evs.times[e]
			if n := len(col.rows); n > 0 && col.rows[n-1].t > t {
				sorted = false
			}
			col.rows = append(col.rows, aggRow{t: t, e: e})
		}
		if !sorted {
			slices.SortFunc(col.rows, func(x, y aggRow) int { return cmp.Or(cmp.Compare(x.t, y.t), cmp.Compare(x.e, y.e)) })
		}
	}
	for i := range w.aggs {
		for k := range w.aggs[i].win {
			ws := &w.aggs[i].win[k]
			ws.a, ws.b, ws.folded = 0, 0, false
			clear(ws.numDist)
			clear(ws.strDist)
		}
	}
	feats := w.agg.features
	acc := w.acc.words(0)
	for p := int(ix.start[run]); p < int(ix.start[run+1]); p++ {
		T := ix.times[p]
		for c := range w.cols {
			col := &w.cols[c]
			for col.b < len(col.rows) && col.rows[col.b].t <= T {
				col.b++
			}
		}
		for i := range w.aggs {
			w.slide(i, T, acc)
		}
		for f := range feats {
			fe := &feats[f]
			var v larder.Value
			if fe.fn == larder.AggCountDistinct {
				ws := &w.aggs[fe.agg].win[fe.window]
				v = larder.Int64Value(int64(len(ws.numDist) + len(ws.strDist)))
			} else {
				v = w.acc.value(fe, 0)
			}
			tab.set(p, f, v)
		}
	}
}

// slide moves the windows of aggregation i to the spine row at T, and sets
// their words in acc.
func (w *aggWindows) slide(i int, T int64, acc []uint64) {
	ag, aw := &w.agg.aggs[i], &w.aggs[i]
	col := &w.cols[ag.col]
	rows, b := col.rows, col.b
	vals := &w.evs.cols[ag.col]
	words := acc[ag.off:]
	for k, lo := range ag.lo {
		ws := &aw.win[k]
		a := ws.a
		for a < b && rows[a].t-T <= lo {
			a++
		}
		if ag.distinct {
			w.distinct(ws, ag, vals, rows, a, b)
		}
		ws.a, ws.b = a, b
		blk := words[k*ag.block : (k+1)*ag.block]
		if !aw.fold {
			blk[0] = uint64(b - a)
			continue
		}
		w.foldWindow(ws, &aw.one[k], vals, rows, T)
		copy(blk, ws.acc)
	}
	if ag.last {
		words[ag.lastAt] = noLast
		if b > 0 && rows[b-1].t-T > ag.loMin {
			e := rows[b-1].e
			words[ag.lastAt] = uint64(rows[b-1].t - T)
			if ag.kind == aggString {
				if s := vals.str.at(int(e)); w.acc.state[i].lastStr[0] != string(s) {
					w.acc.state[i].lastStr[0] = string(s)
				}
			} else {
				words[ag.lastAt+1] = vals.num[e]
			}
		}
	}
}

// foldWindow brings the fold of window ws, rows [ws.a, ws.b), up to date,
// going on from the rows folded before when it can.
func (w *aggWindows) foldWindow(ws *winState, one *aggregation, vals *colBuf, rows []aggRow, T int64) {
	ordered := one.kind == aggFloat
	if ws.folded && ws.fa == ws.a && ws.fb <= ws.b {
		ok := true
		if ordered {
			last := ws.maxE
			for _, r := range rows[ws.fb:ws.b] {
				if r.e <= last {
					ok = false
					break
				}
				last = r.e
			}
		}
		if ok {
			for _, r := range rows[ws.fb:ws.b] {
				foldNumber(one, ws.acc, nil, 0, r.t-T, vals.num[r.e])
				ws.maxE = max(ws.maxE, r.e)
			}
			ws.fb = ws.b
			return
		}
	}
	clear(ws.acc)
	ws.folded, ws.fa, ws.fb, ws.maxE = true, ws.a, ws.b, -1
	in := rows[ws.a:ws.b]
	if ordered && !slices.IsSortedFunc(in, func(x, y aggRow) int { return cmp.Compare(x.e, y.e) }) {
		sorted := slices.Clone(in)
		slices.SortFunc(sorted, func(x, y aggRow) int { return cmp.Compare(x.e, y.e) })
		in = sorted
	}
	for _, r := range in {
		foldNumber(one, ws.acc, nil, 0, r.t-T, vals.num[r.e])
		ws.maxE = max(ws.maxE, r.e)
	}
}

// distinct moves the counts of window ws's values from rows [ws.a, ws.b)
// to rows [a, b).
func (w *aggWindows) distinct(ws *winState, ag *aggregation, vals *colBuf, rows []aggRow, a, b int) {
	if ag.kind == aggString {
		for _, r := range rows[ws.b:b] {
			ws.strDist[string(vals.str.at(int(r.e)))]++
		}
		for _, r := range rows[ws.a:a] {
			s := vals.str.at(int(r.e))
			if n := ws.strDist[string(s)]; n > 1 {
				ws.strDist[string(s)] = n - 1
			} else {
				delete(ws.strDist, string(s))
			}
		}
		return
	}
	for _, r := range rows[ws.b:b] {
		ws.numDist[distinctBits(ag.typ, vals.num[r.e])]++
	}
	for _, r := range rows[ws.a:a] {
		k := distinctBits(ag.typ, vals.num[r.e])
		if n := ws.numDist[k]; n > 1 {
			ws.numDist[k] = n - 1
		} else {
			delete(ws.numDist, k)
		}
	}
}
