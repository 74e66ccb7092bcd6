package materializer

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/larder-dev/larder"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// denseBudget bounds the entries of the dense tables of one run, over all
// its workers: 8M entries of 20 bytes, 160 MiB.
const denseBudget = 8 << 20

// denseFactor bounds the key range of a dense table against the rows read:
// a table never has more than denseFactor entries per row, so that a small
// source with far-apart keys does not allocate a large table.
const denseFactor = 4

// denseTable holds the best row of every int64 key of a range [lo,
// lo+len(coarse)), indexed by key - lo: folding a row costs one load of 4
// bytes, with no hashing and no probing. Keys outside the range go to over.
// Each worker of the first pass folds into a table of its own; the tables
// are merged once every row group is read (see pickDense).
type denseTable struct {
	lo int64
	// coarse holds the coarse time (see coarseClock) of each key's best
	// row, 0 when it has none: a row whose coarse time is older loses, and
	// one whose coarse time is newer wins, without reading more. best holds
	// the best row itself, read only when the coarse times are equal.
	coarse []uint32
	best   []denseBest
	clock  coarseClock
	over   bestIndex
	// The rows the worker skipped.
	skipped skipCounts
}

// denseBest is the best row of a key of a denseTable: its event time,
// noBest when it has none, and its rowRef plus one, 0 when it has none.
type denseBest struct {
	t   int64
	seq uint64
}

func newDenseTable(lo int64, size int, clock coarseClock) *denseTable {
	d := &denseTable{lo: lo, coarse: make([]uint32, size), best: make([]denseBest, size), clock: clock}
	for i := range d.best {
		d.best[i].t = noBest
	}
	return d
}

// coarseClock maps event times to 32 bits, keeping their order: a time t
// from from to from+span maps to (t-from)>>shift, an earlier one to 0 and
// a later one as from+span. Of two times, the one with the smaller coarse
// time is the older.
type coarseClock struct {
	from  int64
	span  uint64
	shift uint
}

// newCoarseClock returns the coarse clock of the event times from from to
// to, to >= from, that keeps as much of their precision as 32 bits hold.
func newCoarseClock(from, to int64) coarseClock {
	span := uint64(to) - uint64(from)
	return coarseClock{from: from, span: span, shift: uint(max(0, bits.Len64(span)-32))}
}

func (c coarseClock) of(t int64) uint32 {
	if t < c.from {
		return 0
	}
	return uint32(min(uint64(t)-uint64(c.from), c.span) >> c.shift)
}

// fold makes the row at seq-1, of key k and event time t, the best row of k
// when it beats the best row so far (see beats).
func (d *denseTable) fold(k, t int64, seq uint64) {
	if i := uint64(k) - uint64(d.lo); i < uint64(len(d.coarse)) {
		switch c := d.clock.of(t); {
		case c > d.coarse[i]:
			d.coarse[i], d.best[i] = c, denseBest{t: t, seq: seq}
		case c == d.coarse[i]:
			d.foldAt(int(i), c, t, seq)
		}
		return
	}
	d.foldOver(k, t, seq)
}

// foldRun folds the rows of keys kv and times tv, in the units of tbc,
// whose first row has seq seq, and counts those f does not keep in sk. It
// is fold, written out for the common layout.
func (d *denseTable) foldRun(kv, tv []int64, seq uint64, tbc *boundColumn, f rowFilter, sk *skipCounts) {
	coarse, best, lo, clock := d.coarse, d.best[:len(d.coarse)], uint64(d.lo), d.clock
	tv = tv[:len(kv)]
	for j, key := range kv {
		t := tbc.nanosOf(tv[j])
		if !f.keep(t, sk) {
			continue
		}
		if i := uint64(key) - lo; i < uint64(len(coarse)) {
			// A newer coarse time is a newer time: the row wins without
			// reading the best row, which costs a cache miss. An equal one
			// needs the exact times.
			switch c := clock.of(t); {
			case c > coarse[i]:
				coarse[i], best[i] = c, denseBest{t: t, seq: seq + uint64(j)}
			case c == coarse[i]:
				d.foldAt(int(i), c, t, seq+uint64(j))
			}
			continue
		}
		d.foldOver(key, t, seq+uint64(j))
	}
}

// foldAt folds a row that may beat the best row of entry i. It is kept
// out of fold, which is inlined into the loops that decode rows.
//
//go:noinline
func (d *denseTable) foldAt(i int, c uint32, t int64, seq uint64) {
	if b := &d.best[i]; t > b.t || (t == b.t && seq > b.seq) {
		d.coarse[i], b.t, b.seq = c, t, seq
	}
}

// foldOver folds a row whose key is outside the table's range.
func (d *denseTable) foldOver(k, t int64, seq uint64) {
	if d.over.table == nil {
		d.over.init()
	}
	d.over.fold(k, t, rowRef(seq-1))
}

// merge folds every best row of o, a table of the same range and clock,
// into d.
func (d *denseTable) merge(o *denseTable) {
	for i, b := range o.best {
		if b.seq != 0 {
			d.foldAt(i, o.coarse[i], b.t, b.seq)
		}
	}
	if o.over.table != nil {
		if d.over.table == nil {
			d.over.init()
		}
		d.over.merge(&o.over)
	}
	d.skipped.add(o.skipped)
}

// shard returns the keys and best rows of d as a latest shard, in key order
// then those outside the range, and releases d's tables.
func (d *denseTable) shard(t larder.Type) *latestShard {
	n := d.over.len()
	for _, b := range d.best {
		if b.seq != 0 {
			n++
		}
	}
	s := &latestShard{keyType: t, intKeys: make([]int64, 0, n), best: make([]bestRow, 0, n)}
	for i, b := range d.best {
		if b.seq != 0 {
			s.intKeys = append(s.intKeys, d.lo+int64(i))
			s.best = append(s.best, bestRow{t: b.t, ref: rowRef(b.seq - 1)})
		}
	}
	if d.over.table != nil {
		s.intKeys, s.best = d.over.drain(s.intKeys, s.best)
	}
	d.coarse, d.best = nil, nil
	return s
}

// denseRange returns the range [lo, lo+size) of the int64 keys of the row
// groups of ds that are read, from the statistics of the key column in the
// files' footers, and whether it is small enough for dense tables on
// workers workers: at most denseFactor entries per row read, and at most
// denseBudget entries in all. It returns false for string keys, unsigned
// keys and when a row group read records no key range.
func (l *latest) denseRange(ds *dataset, workers int) (lo int64, size int, ok bool) {
	if l.keyType == larder.TypeString {
		return 0, 0, false
	}
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	var rows int64
	for _, f := range ds.files {
		bc := f.cols[specKey]
		if bc.conv != convInt64 && bc.conv != convInt32 {
			return 0, 0, false
		}
		groups := f.pf.Metadata().RowGroups
		for i, g := range f.pf.RowGroups() {
			if f.skips(i) {
				continue
			}
			if i >= len(groups) {
				return 0, 0, false
			}
			gmin, gmax, ok := keyRange(groups[i].Columns, bc)
			if !ok {
				return 0, 0, false
			}
			lo, hi, rows = min(lo, gmin), max(hi, gmax), rows+g.NumRows()
		}
	}
	if rows == 0 || lo > hi {
		return 0, 0, false
	}
	span := uint64(hi) - uint64(lo) // fits: hi >= lo
	if span >= uint64(denseFactor)*uint64(rows) || span >= uint64(denseBudget/max(1, workers)) {
		return 0, 0, false
	}
	return lo, int(span) + 1, true
}

// keyRange returns the smallest and largest key of a row group, from the
// statistics of its key column bc among cols, and false when it records
// none that can be decoded.
func keyRange(cols []format.ColumnChunk, bc *boundColumn) (lo, hi int64, ok bool) {
	if bc.leaf >= len(cols) {
		return 0, 0, false
	}
	st := &cols[bc.leaf].MetaData.Statistics
	minB, maxB := st.MinValue, st.MaxValue
	if minB == nil || maxB == nil {
		// The deprecated fields hold the extremes by signed comparison,
		// which is the order of signed keys.
		minB, maxB = st.Min, st.Max
	}
	switch {
	case bc.kind == parquet.Int64 && len(minB) == 8 && len(maxB) == 8:
		return int64(binary.LittleEndian.Uint64(minB)), int64(binary.LittleEndian.Uint64(maxB)), true
	case bc.kind == parquet.Int32 && len(minB) == 4 && len(maxB) == 4:
		return int64(int32(binary.LittleEndian.Uint32(minB))), int64(int32(binary.LittleEndian.Uint32(maxB))), true
	}
	return 0, 0, false
}

// pickDense is the first pass when the keys fit a dense table (see
// denseRange): each worker decodes whole row groups and folds their rows
// into a table of its own, with no hand-off between goroutines; the tables
// are merged at the end into a single shard. Which row wins does not depend
// on which worker read it (see beats). done is called after each row group,
// in order, on the calling goroutine. It returns the error of the earliest
// row group, in read order, that cannot be read, or ctx.Err().
func (l *latest) pickDense(ctx context.Context, ds *dataset, groups *groupList, lo int64, size int, done func(*rowGroup)) error {
	rgs := ds.rowGroups()
	clock := newCoarseClock(l.oldestEventTime(ds), l.runTime)
	tabs := make([]*denseTable, readWorkers())
	finished := make([]bool, len(rgs))
	next := 0
	failedAt, err := parallelEach(ctx, len(tabs), len(rgs), func(w, i int) error {
		if tabs[w] == nil {
			tabs[w] = newDenseTable(lo, size, clock)
		}
		return recoverRead(func() error { return l.decodeDense(ctx, rgs[i], groups.number(rgs[i]), tabs[w]) })
	}, func(i int) error {
		finished[i] = true
		for ; next < len(rgs) && finished[next]; next++ {
			done(rgs[next])
		}
		return nil
	})
	var all *denseTable
	for _, t := range tabs {
		switch {
		case t == nil:
		case all == nil:
			all = t
		default:
			all.merge(t)
		}
	}
	if all == nil {
		all = &denseTable{lo: lo}
	}
	l.skipped.add(all.skipped)
	if err != nil {
		if failedAt >= 0 {
			rg := rgs[failedAt]
			return fmt.Errorf("%s row group %d cannot be read: %w; replace or remove the file", rg.file.path, rg.index, err)
		}
		return err
	}
	l.parts = partitioner{n: 1}
	l.shards = []*latestShard{all.shard(l.keyType)}
	return nil
}

// oldestEventTime returns the oldest event time a row of ds that is used
// can have: since, or the oldest in the statistics of the row groups read,
// when they all record it, whichever is later; or math.MinInt64. It
// returns at most l.runTime.
func (l *latest) oldestEventTime(ds *dataset) int64 {
	oldest := int64(math.MaxInt64)
	for _, f := range ds.files {
		groups := f.pf.Metadata().RowGroups
		for i := range f.pf.RowGroups() {
			if f.skips(i) {
				continue
			}
			t, ok := int64(0), i < len(groups)
			if ok {
				t, ok = minEventTime(&groups[i], f.cols[specTime])
			}
			if !ok {
				oldest = math.MinInt64
				break
			}
			oldest = min(oldest, t)
		}
	}
	return min(max(oldest, l.since), l.runTime)
}

// decodeDense reads the key and event-time columns of rg, the row group
// numbered group, and folds its usable rows into d. It returns an error
// when a column chunk cannot be read or disagrees with the row group, or
// ctx.Err() when ctx ends.
func (l *latest) decodeDense(ctx context.Context, rg *rowGroup, group int, d *denseTable) error {
	// seq0 is the seq of the row group's first row: its rowRef plus one.
	return scanRows(ctx, rg, specKey, specTime, nil, l.filter(), 0, &denseSink{d: d, seq0: uint64(makeRef(group, 0)) + 1})
}

// denseSink folds the usable rows of a row group into a dense table.
type denseSink struct {
	d    *denseTable
	seq0 uint64
}

func (k *denseSink) row(s *rowScan, r, kvi int, t int64) {
	k.d.fold(s.intKey(kvi), t, k.seq0+uint64(r))
}

func (k *denseSink) run(s *rowScan, r int, kv, tv []int64, f rowFilter, sk *skipCounts) {
	k.d.foldRun(kv, tv, k.seq0+uint64(r), s.tbc, f, sk)
}

func (k *denseSink) cut(sk skipCounts, _ bool) error {
	k.d.skipped.add(sk)
	return nil
}

// parallelEach calls fn(w, i) for every i in [0, count) on up to workers
// goroutines, w being the number of the goroutine, each taking the next i
// in increasing order; as each call returns nil, completed(i) runs on the
// calling goroutine, in the order the calls end.
//
// No goroutine takes an i after one whose fn failed, and every i before it
// is done, so the earliest failure does not depend on timing: parallelEach
// returns its i and its error. It returns -1 and the error of completed,
// which stops the goroutines, or -1 and ctx.Err() when ctx ends, and -1 and
// nil when every call succeeded. It returns after every goroutine has
// stopped.
func parallelEach(ctx context.Context, workers, count int, fn func(w, i int) error, completed func(i int) error) (int, error) {
	var taken, stop atomic.Int64
	stop.Store(int64(count))
	lower := func(i int64) {
		for {
			cur := stop.Load()
			if i >= cur || stop.CompareAndSwap(cur, i) {
				return
			}
		}
	}
	errs := make([]error, count)
	ended := make(chan int, max(1, workers))
	var wg sync.WaitGroup
	for w := range max(1, min(workers, count)) {
		wg.Go(func() {
			for {
				i := taken.Add(1) - 1
				if i >= stop.Load() || ctx.Err() != nil {
					return
				}
				if err := fn(w, int(i)); err != nil {
					errs[i] = err
					lower(i)
					return
				}
				ended <- int(i)
			}
		})
	}
	go func() {
		wg.Wait()
		close(ended)
	}()
	var cerr error
	for i := range ended {
		if cerr == nil {
			if cerr = completed(i); cerr != nil {
				lower(0)
			}
		}
	}
	switch {
	case cerr != nil:
		return -1, cerr
	case ctx.Err() != nil:
		return -1, ctx.Err()
	}
	for i, err := range errs {
		if err != nil {
			return i, err
		}
	}
	return -1, nil
}

// minEventTime returns the oldest event time of a row group, in Unix
// nanoseconds, from the statistics of its event-time column, and false when
// the row group records none (or none that can be decoded).
func minEventTime(g *format.RowGroup, bc *boundColumn) (int64, bool) {
	if bc.leaf >= len(g.Columns) {
		return 0, false
	}
	st := &g.Columns[bc.leaf].MetaData.Statistics
	b := st.MinValue
	if b == nil {
		// The deprecated field holds the minimum by signed comparison,
		// which is the order of timestamps and dates.
		b = st.Min
	}
	var v int64
	switch {
	case bc.kind == parquet.Int64 && len(b) == 8:
		v = int64(binary.LittleEndian.Uint64(b))
	case bc.kind == parquet.Int32 && len(b) == 4:
		v = int64(int32(binary.LittleEndian.Uint32(b)))
	default:
		return 0, false
	}
	return toNanos(v, bc.nanos), true
}
