package materializer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/larder-dev/larder"
	"github.com/parquet-go/parquet-go"
)

// The positions of the key and event-time columns in latest.specs; the
// features follow.
const (
	specKey = iota
	specTime
	specFeatures
)

// latest computes a latest view: per entity, the newest row at or before the
// run time. Its memory grows with the number of entities, not rows: per
// entity it keeps the key, the event time and the position of the best row
// so far, then the compact values of that row.
//
// Reading takes two passes over the source, and decodes every page it needs
// once. The first pass reads only the key and event-time columns, keeping
// the position of each entity's best row. When the footers show int64 keys
// in a range narrow enough (see denseRange), each worker decodes whole row
// groups and folds their rows into a table of its own indexed by key, and
// the tables are merged at the end (latest_dense.go). Otherwise workers
// decode row groups in parallel into batches of (key, event time,
// position), split by a hash of the key into one part per partition, and
// each partition's shard folds its parts in read order on a goroutine of
// its own. The second pass reads the feature columns of only the row
// groups that hold a best row, in parallel, and copies the values of those
// rows only; a full run writes each row group's rows as soon as it is read
// (see stream). Memory thus does not depend on the order of the source:
// rows in time order, where every row beats the one before, cost no more
// than shuffled ones.
type latest struct {
	specs   []columnSpec
	keyType larder.Type
	runTime int64 // Unix nanoseconds
	// since is the oldest event time used, in Unix nanoseconds: an
	// incremental run reads only rows at or after the view's watermark, and
	// counts the older ones in skipped. A full run uses every row.
	since   int64
	skipped skipCounts
	// types are the feature types, in view order.
	types []larder.Type

	parts  partitioner
	shards []*latestShard
	// groups numbers the row groups of the source, once the first pass
	// has begun.
	groups *groupList
	// winners holds the best row of every entity once the second pass has
	// begun, sorted by position in the source, and feats, by feature, the
	// values of each, at the same index, once the second pass has filled
	// them. The shards are emptied then.
	winners []winner
	feats   []featureValues
	// starts holds, once the second pass has begun, the index in winners
	// of the first best row of each row group, and their number last.
	starts []int
}

// latestShard holds the entities of one partition of a latest.
type latestShard struct {
	keyType larder.Type
	// ints indexes int64 keys during the first pass; strs indexes string
	// keys, whose best rows are kept in best as they come.
	ints bestIndex
	strs keyIndex
	// intKeys and best hold, by slot, the key (of int64 keys) and the best
	// row of every entity once the first pass is done.
	intKeys []int64
	best    []bestRow
	// slots is scratch space for fold.
	slots []int32
	// touched keeps the compiler from dropping the loads that bring the
	// entries of a step's entities into the cache.
	touched int64
}

func newLatestShard(t larder.Type) *latestShard {
	s := &latestShard{keyType: t}
	if t == larder.TypeString {
		s.strs.init(t)
	} else {
		s.ints.init()
	}
	return s
}

// key returns the key of the entity in slot, once the first pass is done.
func (s *latestShard) key(slot int32) larder.Key {
	if s.keyType == larder.TypeString {
		return s.strs.key(int(slot))
	}
	return larder.Int64Key(s.intKeys[slot])
}

// bestRow is the best row of an entity so far: its event time and where it
// is in the source.
type bestRow struct {
	t   int64
	ref rowRef
}

// rowRef locates a source row: the number of its row group among all the
// dataset's row groups (see groupList), and the row within that group.
type rowRef uint64

func makeRef(group, row int) rowRef { return rowRef(uint64(group)<<32 | uint64(uint32(row))) }

func (r rowRef) group() int { return int(r >> 32) }
func (r rowRef) row() int32 { return int32(uint32(r)) }

func newLatest(v *larder.View, e *larder.Entity, runTime time.Time) *latest {
	l := &latest{runTime: runTime.UnixNano(), since: math.MinInt64, keyType: e.KeyType}
	l.specs = append(l.specs,
		columnSpec{column: e.Key, role: roleKey, name: e.Name, typ: e.KeyType},
		columnSpec{column: v.SourceDef().EventTime, role: roleEventTime},
	)
	for i, f := range v.Features {
		col := f.Column
		if col == "" {
			col = f.Name
		}
		l.specs = append(l.specs, columnSpec{column: col, role: roleFeature, name: f.Name, typ: f.Type, cast: f.Cast,
			field: fmt.Sprintf("features[%d].column", i), typeField: fmt.Sprintf("features[%d].type", i)})
		l.types = append(l.types, f.Type)
	}
	return l
}

func (l *latest) len() int {
	if l.winners != nil {
		return len(l.winners)
	}
	n := 0
	for _, s := range l.shards {
		n += len(s.best)
	}
	return n
}

func (l *latest) skippedReport() map[string]int64 { return l.skipped.report() }

// groupList numbers every row group of a dataset, skipped or not, in read
// order, so that a rowRef can name one in 32 bits.
type groupList struct {
	base  map[*sourceFile]int
	files []*sourceFile // by number
	index []int         // by number: the row group's index in its file
}

func newGroupList(ds *dataset) *groupList {
	g := &groupList{base: make(map[*sourceFile]int, len(ds.files))}
	for _, f := range ds.files {
		g.base[f] = len(g.files)
		for i := range f.pf.RowGroups() {
			g.files = append(g.files, f)
			g.index = append(g.index, i)
		}
	}
	return g
}

// number returns the number of rg.
func (g *groupList) number(rg *rowGroup) int { return g.base[rg.file] + rg.index }

// open returns the row group numbered n.
func (g *groupList) open(n int) *rowGroup {
	f, i := g.files[n], g.index[n]
	pg := f.pf.RowGroups()[i]
	return &rowGroup{file: f, index: i, numRows: pg.NumRows(), chunks: pg.ColumnChunks()}
}

// read computes the best row of every entity of ds and the values of its
// features, in the two passes described at latest. done is called after
// each row group of the first pass, in order, on the calling goroutine.
// read returns the error of the earliest row group that cannot be read
// (naming the file and the row group), or ctx.Err().
func (l *latest) read(ctx context.Context, ds *dataset, done func(*rowGroup)) error {
	if err := l.prepare(ctx, ds, done); err != nil {
		return err
	}
	return l.fill(ctx, nil)
}

// prepare is the first pass of read: once it returns nil, the entities and
// their best rows are known, and so is len. Every row group has been read
// then, its key and event-time pages decoded.
func (l *latest) prepare(ctx context.Context, ds *dataset, done func(*rowGroup)) error {
	groups := newGroupList(ds)
	if int64(len(groups.files)) > math.MaxUint32 {
		return fmt.Errorf("the source has %d row groups, more than %d", len(groups.files), uint64(math.MaxUint32))
	}
	l.groups = groups
	return l.pickBest(ctx, ds, groups, done)
}

// stream is the second pass of read, after prepare: it reads the feature
// values of the best rows and calls put with the row of every entity, on
// the calling goroutine, as soon as the row group holding it is read, so
// that writing overlaps reading. It stops at the first error of put, which
// it returns; else it returns the error of the earliest row group that
// cannot be read, or ctx.Err().
func (l *latest) stream(ctx context.Context, put func(larder.Key, larder.Row) error) error {
	return l.fill(ctx, put)
}

// keyBatch is a stretch of a row group's usable rows, one part per
// partition, and the rows of that stretch skipped, by reason.
type keyBatch struct {
	parts   []*keyBuf
	skipped skipCounts
}

// keyBuf holds the usable rows of one partition of a keyBatch: the key,
// the event time and the position of each.
type keyBuf struct {
	ikeys []int64
	skeys byteArena
	times []int64
	refs  []rowRef
}

func (b *keyBuf) len() int { return len(b.times) }

func (b *keyBuf) reset() {
	b.ikeys, b.times, b.refs = b.ikeys[:0], b.times[:0], b.refs[:0]
	b.skeys.reset()
}

// filter returns the rule the rows of l's source pass.
func (l *latest) filter() rowFilter { return rowFilter{runTime: l.runTime, since: l.since} }

// pickBest is the first pass: it folds the key and event time of every row
// of ds into the shards, one decoding worker and one shard per core.
func (l *latest) pickBest(ctx context.Context, ds *dataset, groups *groupList, done func(*rowGroup)) error {
	n := readWorkers()
	if lo, size, ok := l.denseRange(ds, n); ok {
		return l.pickDense(ctx, ds, groups, lo, size, done)
	}
	l.parts = partitioner{n: uint64(n)}
	l.shards = make([]*latestShard, n)
	for p := range l.shards {
		l.shards[p] = newLatestShard(l.keyType)
	}
	fan := startFanOut(n, func() *keyBuf { return &keyBuf{} }, func(p int, buf *keyBuf) { l.shards[p].fold(buf) })
	decode := func(ctx context.Context, rg *rowGroup, emit func(*keyBatch) error) error {
		sink := &keySink{l: l, group: groups.number(rg), fan: fan, emit: emit}
		sink.b = &keyBatch{parts: fan.parts()}
		return scanRows(ctx, rg, specKey, specTime, nil, l.filter(), batchRows, sink)
	}
	dispatch := func(b *keyBatch) error {
		l.skipped.add(b.skipped)
		return fan.send(ctx, b.parts)
	}
	err := scanParallel(ctx, ds, n, decode, dispatch, done)
	fan.stop()
	for _, s := range l.shards {
		if s.keyType != larder.TypeString {
			s.intKeys, s.best = s.ints.drain(make([]int64, 0, s.ints.len()), make([]bestRow, 0, s.ints.len()))
		}
	}
	return err
}

// keySink splits the usable rows of a row group, the number group, into
// batches of (key, event time, position), one part per partition, and
// passes each batch to emit.
type keySink struct {
	l     *latest
	group int
	fan   *fanOut[*keyBuf]
	b     *keyBatch
	emit  func(*keyBatch) error
}

func (k *keySink) row(s *rowScan, r, kvi int, t int64) {
	var buf *keyBuf
	if k.l.keyType == larder.TypeString {
		key := s.bytesKey(kvi)
		buf = k.b.parts[k.l.parts.ofBytes(key)]
		buf.skeys.add(key)
	} else {
		key := s.intKey(kvi)
		buf = k.b.parts[k.l.parts.ofInt(key)]
		buf.ikeys = append(buf.ikeys, key)
	}
	buf.times = append(buf.times, t)
	buf.refs = append(buf.refs, makeRef(k.group, r))
}

func (k *keySink) run(s *rowScan, r int, kv, tv []int64, f rowFilter, sk *skipCounts) {
	parts, tbc := k.b.parts, s.tbc
	for j, key := range kv {
		t := tbc.nanosOf(tv[j])
		if !f.keep(t, sk) {
			continue
		}
		buf := parts[k.l.parts.ofInt(key)]
		buf.ikeys = append(buf.ikeys, key)
		buf.times = append(buf.times, t)
		buf.refs = append(buf.refs, makeRef(k.group, r+j))
	}
}

func (k *keySink) cut(sk skipCounts, last bool) error {
	k.b.skipped = sk
	if err := k.emit(k.b); err != nil {
		return err
	}
	if !last {
		k.b = &keyBatch{parts: k.fan.parts()}
	}
	return nil
}

// fold folds the rows of buf into s, and empties buf. A row replaces its
// entity's best row when it is not older: of rows with equal event times,
// the one read later wins.
func (s *latestShard) fold(buf *keyBuf) {
	for lo := 0; lo < buf.len(); lo += foldBatch {
		s.foldRange(buf, lo, min(lo+foldBatch, buf.len()))
	}
	buf.reset()
}

// foldRange folds rows [lo, hi) of buf into s. Folding is bound by the
// latency of fetching each entity's entry from memory: touching the entries
// of a step's keys first, then folding its rows, lets the processor fetch
// many of them at once instead of one after the other.
func (s *latestShard) foldRange(buf *keyBuf, lo, hi int) {
	times, refs := buf.times[lo:hi], buf.refs[lo:hi]
	if s.keyType != larder.TypeString {
		keys := buf.ikeys[lo:hi]
		var touched int64
		for _, k := range keys {
			touched += s.ints.prefetch(k)
		}
		s.touched += touched
		for j, k := range keys {
			s.ints.fold(k, times[j], refs[j])
		}
		return
	}
	slots := s.slots[:0]
	for k := lo; k < hi; k++ {
		slot, isNew := s.strs.lookupBytes(buf.skeys.at(k))
		if isNew {
			s.best = append(s.best, bestRow{t: noBest})
		}
		slots = append(slots, slot)
	}
	s.slots = slots
	for j, slot := range slots {
		b := &s.best[slot]
		if t := times[j]; t >= b.t {
			b.t, b.ref = t, refs[j]
		}
	}
}

// winner is the best row of an entity: its key, its event time and its
// position in its row group.
type winner struct {
	key larder.Key
	t   int64
	row int32
}

// fill is the second pass: it reads the feature columns of every row group
// that holds a best row, on one goroutine per core, and copies the values
// of the best rows into l.feats. When put is not nil, it
// calls put with the row of every entity of each row group as soon as the
// row group is read, on the calling goroutine, and stops at its first
// error, which it returns. Otherwise fill returns the error of the
// earliest row group, in read order, that cannot be read, or ctx.Err().
func (l *latest) fill(ctx context.Context, put func(larder.Key, larder.Row) error) error {
	groups := l.groups
	// Sort the best rows by position: a counting sort by row group here,
	// then each group's rows by row, by the worker that reads the group.
	starts := make([]int, len(groups.files)+1)
	for _, s := range l.shards {
		for _, b := range s.best {
			starts[b.ref.group()+1]++
		}
	}
	for g := range len(groups.files) {
		starts[g+1] += starts[g]
	}
	winners := make([]winner, starts[len(groups.files)])
	next := slices.Clone(starts[:len(groups.files)])
	for _, s := range l.shards {
		for slot, b := range s.best {
			g := b.ref.group()
			winners[next[g]] = winner{key: s.key(int32(slot)), t: b.t, row: b.ref.row()}
			next[g]++
		}
	}
	// The values are filled and read in the order of winners, which is
	// the order of the source: sequentially.
	l.winners, l.shards, l.starts = winners, nil, starts
	l.feats = make([]featureValues, len(l.types))
	for i, t := range l.types {
		l.feats[i] = featureValues{typ: t}
		l.feats[i].resize(len(winners))
	}
	var todo []int // the row groups holding best rows
	for g := range len(groups.files) {
		if starts[g] < starts[g+1] {
			todo = append(todo, g)
		}
	}
	if len(l.types) == 0 {
		if err := ctx.Err(); err != nil || put == nil {
			return err
		}
		return l.emit(put)
	}

	var rows rowMaker
	sorters := make([]winnerSorter, readWorkers())
	failedAt, err := parallelEach(ctx, len(sorters), len(todo), func(w, i int) error {
		g := todo[i]
		sorters[w].sort(winners[starts[g]:starts[g+1]])
		return l.fillGroup(groups.open(g), starts[g], starts[g+1])
	}, func(i int) error {
		if put == nil {
			return nil
		}
		g := todo[i]
		for wi := starts[g]; wi < starts[g+1]; wi++ {
			if err := put(winners[wi].key, rows.row(l, wi)); err != nil {
				return l.locate(err, wi)
			}
		}
		return nil
	})
	if failedAt >= 0 {
		rg := groups.open(todo[failedAt])
		return fmt.Errorf("%s row group %d cannot be read: %w; replace or remove the file", rg.file.path, rg.index, err)
	}
	return err
}

// winnerSorter sorts winners by row, with scratch space kept between
// calls.
type winnerSorter struct {
	keys []uint64
	tmp  []winner
}

// sort sorts ws by row. It sorts their rows and indexes packed in
// integers, then moves each winner once, which costs less than sorting the
// winners themselves.
func (s *winnerSorter) sort(ws []winner) {
	s.keys = s.keys[:0]
	for i, w := range ws {
		s.keys = append(s.keys, uint64(uint32(w.row))<<32|uint64(i))
	}
	slices.Sort(s.keys)
	s.tmp = append(s.tmp[:0], ws...)
	for i, k := range s.keys {
		ws[i] = s.tmp[uint32(k)]
	}
}

// fillGroup copies the feature values of the winners of rg, l.winners[lo:hi],
// sorted by row, and turns a panic of the Parquet library on a malformed
// page into an error.
func (l *latest) fillGroup(rg *rowGroup, lo, hi int) error {
	return recoverRead(func() error { return l.fillColumns(rg, lo, hi) })
}

// fillColumns is fillGroup without the recovery.
func (l *latest) fillColumns(rg *rowGroup, lo, hi int) (err error) {
	for i := range l.types {
		bc, chunk := rg.chunk(specFeatures + i)
		if bc.conv == convVector {
			err = l.fillVector(i, bc, chunk, int(rg.numRows), lo, hi)
		} else {
			err = l.fillScalar(i, bc, chunk, int(rg.numRows), lo, hi)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fillScalar copies the values of the winners l.winners[lo:hi], sorted by
// row, of a non-repeated column of feature fi.
func (l *latest) fillScalar(fi int, bc *boundColumn, chunk parquet.ColumnChunk, numRows, lo, hi int) error {
	f := &l.feats[fi]
	wins := l.winners[lo:hi]
	base := 0
	err := eachPage(chunk, func(p parquet.Page) error {
		sp := newScalarPage(p, bc)
		if sp.rows < 0 || base+sp.rows > numRows {
			return fmt.Errorf("%w: more rows than its row group", errCorrupt)
		}
		end := base + sp.rows
		if len(wins) == 0 || int(wins[0].row) >= end {
			base = end
			return nil
		}
		pv, err := loadValues(p, bc)
		if err != nil {
			return err
		}
		if sp.defs == nil && sp.rows > pv.n {
			return fmt.Errorf("%w: a page has fewer values than rows", errCorrupt)
		}
		k, vi := 0, 0 // rows of the page before k hold vi values
		for ; len(wins) > 0 && int(wins[0].row) < end; wins, lo = wins[1:], lo+1 {
			r := int(wins[0].row) - base
			if sp.defs == nil {
				f.set(lo, bc, &pv, r)
				continue
			}
			for ; k < r; k++ {
				if sp.defs[k] == sp.maxDef {
					vi++
				}
			}
			if sp.defs[r] != sp.maxDef {
				f.setNull(lo)
				continue
			}
			if vi >= pv.n {
				return fmt.Errorf("%w: a page has fewer values than rows", errCorrupt)
			}
			f.set(lo, bc, &pv, vi)
		}
		base = end
		return nil
	})
	if err == nil && base != numRows {
		err = fmt.Errorf("%w: %d rows, not the %d of its row group", errCorrupt, base, numRows)
	}
	if err != nil {
		return fmt.Errorf("column %q: %w", bc.spec.column, err)
	}
	return nil
}

// fillVector copies the lists of the winners l.winners[lo:hi], sorted by
// row, of a float32_vector column of feature fi. A null list, or a list
// holding a null element, is stored as null; an empty list as an empty
// vector.
func (l *latest) fillVector(fi int, bc *boundColumn, chunk parquet.ColumnChunk, numRows, lo, hi int) error {
	f := &l.feats[fi]
	wins := l.winners[lo:hi]
	row := -1
	cur := -1 // the index in l.winners of the winner of the current row, or -1
	var acc []float32
	null := false
	finish := func() {
		if cur < 0 {
			return
		}
		if null {
			f.setNull(cur)
		} else {
			f.setVector(cur, append(make([]float32, 0, len(acc)), acc...))
		}
	}
	err := eachPage(chunk, func(p parquet.Page) error {
		reps, defs := p.RepetitionLevels(), p.DefinitionLevels()
		if len(reps) != len(defs) {
			return fmt.Errorf("%w: levels disagree", errCorrupt)
		}
		var pv pageValues
		loaded := false
		vi := 0
		for k, d := range defs {
			if reps[k] == 0 {
				finish()
				row++
				if row >= numRows {
					return fmt.Errorf("%w: more rows than its row group", errCorrupt)
				}
				for len(wins) > 0 && int(wins[0].row) < row {
					wins, lo = wins[1:], lo+1
				}
				cur, null, acc = -1, false, acc[:0]
				if len(wins) > 0 && int(wins[0].row) == row {
					cur = lo
				}
			} else if row < 0 {
				return fmt.Errorf("%w: a list starts mid-row", errCorrupt)
			}
			switch {
			case d == bc.maxDef:
				if cur >= 0 {
					if !loaded {
						var err error
						if pv, err = loadValues(p, bc); err != nil {
							return err
						}
						loaded = true
					}
					if vi >= pv.n {
						return fmt.Errorf("%w: a page has fewer values than levels", errCorrupt)
					}
					acc = append(acc, pv.float(vi))
				}
				vi++
			case d < bc.repDef-1, d >= bc.repDef:
				null = true // a null list, or a null element
			}
		}
		return nil
	})
	if err == nil {
		finish()
		if row+1 != numRows {
			err = fmt.Errorf("%w: %d rows, not the %d of its row group", errCorrupt, row+1, numRows)
		}
	}
	if err != nil {
		return fmt.Errorf("column %q: %w", bc.spec.column, err)
	}
	return nil
}

// emit calls put with the row of every entity, once the second pass is
// done, in the order of the source, and stops at the first error, which it
// returns.
func (l *latest) emit(put func(larder.Key, larder.Row) error) error {
	var rows rowMaker
	for i := range l.winners {
		if err := put(l.winners[i].key, rows.row(l, i)); err != nil {
			return l.locate(err, i)
		}
	}
	return nil
}

// locate adds to a *ValueError that err wraps, refusing a value of
// l.winners[wi], the source file and the row the value was read from.
func (l *latest) locate(err error, wi int) error {
	var ve *ValueError
	if !errors.As(err, &ve) || ve.File != "" || l.groups == nil {
		return err
	}
	// The row group whose best rows hold wi: the last that starts at or
	// before it.
	g := sort.SearchInts(l.starts, wi+1) - 1
	if g < 0 || g >= len(l.groups.files) {
		return err
	}
	f, index := l.groups.files[g], l.groups.index[g]
	row := int64(l.winners[wi].row)
	for _, rg := range f.pf.RowGroups()[:index] {
		row += rg.NumRows()
	}
	ve.File, ve.Row = f.path, row
	return err
}

// rowMaker makes the rows of entities to Put, one at a time: Put is done
// with a row when it returns, so one slice of values serves every row.
type rowMaker struct {
	vals []larder.Value
}

// row returns the row of l.winners[i], once its features are filled; it
// is valid until the next call.
func (m *rowMaker) row(l *latest, i int) larder.Row {
	if m.vals == nil {
		m.vals = make([]larder.Value, len(l.feats))
	}
	for fi := range l.feats {
		m.vals[fi] = l.feats[fi].value(i)
	}
	return larder.Row{EventTime: time.Unix(0, l.winners[i].t).UTC(), Values: m.vals}
}

// featureValues holds one feature of every entity of a shard, compactly:
// numbers and bools as 8 bytes, strings, bytes and vectors as their own
// values.
type featureValues struct {
	typ  larder.Type
	null []bool
	num  []uint64
	str  []string
	vec  [][]float32
}

// resize makes room for n entities; the new ones are null.
func (f *featureValues) resize(n int) {
	f.null = grow(f.null, n, true)
	switch f.typ {
	case larder.TypeString, larder.TypeBytes:
		f.str = grow(f.str, n, "")
	case larder.TypeFloat32Vector:
		f.vec = grow(f.vec, n, nil)
	default:
		f.num = grow(f.num, n, 0)
	}
}

// grow returns s extended to length n with v.
func grow[T any](s []T, n int, v T) []T {
	s = slices.Grow(s, n-len(s))
	for len(s) < n {
		s = append(s, v)
	}
	return s
}

// set stores value vi of pv as the value of slot, copying what it must out
// of the page's buffers.
func (f *featureValues) set(slot int, bc *boundColumn, pv *pageValues, vi int) {
	f.null[slot] = false
	if bc.conv == convByteArray {
		f.str[slot] = string(pv.bytes(vi))
		return
	}
	f.num[slot] = pv.num(bc.conv, vi)
}

func (f *featureValues) setVector(slot int, v []float32) {
	f.null[slot] = false
	f.vec[slot] = v
}

func (f *featureValues) setNull(slot int) {
	f.null[slot] = true
	switch f.typ {
	case larder.TypeString, larder.TypeBytes:
		f.str[slot] = ""
	case larder.TypeFloat32Vector:
		f.vec[slot] = nil
	}
}

func (f *featureValues) value(slot int) larder.Value {
	if f.null[slot] {
		return larder.Null
	}
	switch f.typ {
	case larder.TypeInt64:
		return larder.Int64Value(int64(f.num[slot]))
	case larder.TypeFloat64:
		return larder.Float64Value(math.Float64frombits(f.num[slot]))
	case larder.TypeFloat32:
		return larder.Float32Value(math.Float32frombits(uint32(f.num[slot])))
	case larder.TypeBool:
		return larder.BoolValue(f.num[slot] != 0)
	case larder.TypeString:
		return larder.StringValue(f.str[slot])
	case larder.TypeBytes:
		return larder.BytesValueString(f.str[slot])
	case larder.TypeFloat32Vector:
		return larder.Float32VectorValue(f.vec[slot])
	}
	return larder.Null
}
