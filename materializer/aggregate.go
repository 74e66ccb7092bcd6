package materializer

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/larder-dev/larder"
)

// runAggregate materializes an aggregate view: per entity, every function of
// every aggregation over every window, as of the run time T (the start of
// the run; for a streaming view, its cutoff, which the source decides: see
// Materializer.cutoff).
//
// A window of duration w holds the events with an event time in (T − w, T]:
// an event exactly w before T is out, one exactly at T is in. Rows with an
// event time after T are skipped (SkipAfterRunTime), as are rows with a null
// key or a null event time, as for latest views. Every function skips null
// values: count counts the non-null values of its column. Over a window
// without a non-null value, count and count_distinct are 0 and the others
// are null. sum of int64 or bool columns is an int64 (overflow wraps), of
// float columns a float64 added in read order; mean is the float64 sum over
// the count; min, max and last keep the column's type, false < true for
// bools; last is the value with the newest event time, the row read later
// winning a tie; a NaN replaces no minimum or maximum (but is one when it
// comes first); count_distinct counts distinct values, 0 and −0 counting as
// one value, and all NaNs as one.
//
// Every entity with at least one usable row gets a row, even when all its
// events are older than the longest window; the row's event time is T, the
// instant the values hold as of. Features are in the order of
// View.AggregateFeatures. Memory grows with the number of entities (and, for
// count_distinct, of distinct values in the longest window), not with the
// number of rows.
//
// It fails as Run does: with a *ColumnError naming the file when a column is
// missing or of a type that cannot be aggregated, before any row is read;
// with the error of a file, the store or ctx otherwise, leaving the live
// generation serving.
func (m *Materializer) runAggregate(ctx context.Context, v *larder.View, rep Report) (Report, error) {
	src, ent := v.SourceDef(), v.EntityDef()
	if src == nil || ent == nil {
		return rep, fmt.Errorf("materialize %s: the project was not validated: call Project.Validate first", v.Name)
	}
	// A streaming view's run time is its cutoff, which its source decides
	// (see Materializer.cutoff and runFromSource).
	return m.runFromSource(ctx, v, rep, newAggregate(v, ent, rep.RunTime))
}

// add adds the counts of o to s.
func (s *skipCounts) add(o skipCounts) {
	s.nullKey += o.nullKey
	s.nullTime += o.nullTime
	s.afterRun += o.afterRun
	s.beforeSince += o.beforeSince
}

// aggKind is how the values of an aggregated column are folded.
type aggKind uint8

const (
	aggInt    aggKind = iota // int64 and bool: int64 sums, compared as int64
	aggFloat                 // float64 and float32: float64 sums, compared as float64
	aggString                // string: count, last and count_distinct only
)

// aggregation is one Aggregation of the view, prepared for folding rows.
// Per entity it keeps, in one block of words per window, the count of
// non-null values and, when a function needs them, their sum, min and max;
// and, across windows, the newest value (last) and the newest event time of
// every distinct value (count_distinct). Both give every window's answer at
// emit time, because all windows end at the run time. The words of all
// aggregations of an entity are contiguous (aggShard.acc), so that folding
// a row touches few cache lines.
type aggregation struct {
	// col is the index of the aggregated column among the value columns.
	col  int
	typ  larder.Type
	kind aggKind
	// lo holds, per window, the run time minus its duration: an event at t
	// is in the window when t > lo. loMin is the lowest: an event at or
	// before it is in no window.
	lo    []int64
	loMin int64
	// off is the first of the aggregation's words in an entity's block.
	// From there, each window has block words: the count, then the sum,
	// min and max at offsets sum, min and max when kept (0 otherwise).
	off           int
	block         int
	sum, min, max int
	// lastAt, when last is kept, is the offset from off of the event time
	// of the newest value, math.MinInt64 while there is none, followed by
	// the value itself for numbers (lastStr holds strings).
	lastAt         int
	last, distinct bool
}

// noLast is the event time of the newest value while there is none: the
// bits of math.MinInt64, earlier than any event time folded (those are all
// after the start of the longest window).
const noLast = uint64(1) << 63

// words returns the number of words of the aggregation per entity.
func (a *aggregation) words() int {
	n := a.block * len(a.lo)
	if a.last {
		n += 2
	}
	return n
}

// aggState holds what one aggregation of every entity of a partition keeps
// outside aggShard.acc: strings and sets.
type aggState struct {
	lastStr []string
	// Distinct values in the longest window, with their newest event time.
	distNum []map[uint64]int64
	distStr []map[string]int64
}

// aggFeature says where a feature's value comes from.
type aggFeature struct {
	agg    int // index into aggregate.aggs
	fn     larder.AggFunc
	window int // index into the aggregation's windows
}

// aggregate computes an aggregate view (see runAggregate). Reading runs in
// two stages: workers decode row groups in parallel into batches of usable
// rows, split by a hash of their key into one part per partition; each
// partition's shard folds its parts, in read order, on a goroutine of its
// own. Each shard holds its entities' accumulators only, so memory grows
// with the number of entities, not rows, and each entity's rows are folded
// in read order, so results match a sequential read to the bit.
type aggregate struct {
	// specs are the key, the event time, then each aggregated (column,
	// type) once.
	specs    []columnSpec
	runTime  int64
	aggs     []aggregation
	features []aggFeature
	keyType  larder.Type
	// stride is the number of words per entity of all aggregations.
	stride int
	parts  partitioner

	// shards are the partitions, once read has run.
	shards  []*aggShard
	skipped skipCounts
	// tiles, for a streaming view, folds the batch tiles too.
	tiles *tileFold
}

// aggShard holds the entities of one partition of an aggregate.
type aggShard struct {
	agg  *aggregate
	keys keyIndex
	// acc holds stride words per entity, the words of each aggregation, in
	// chunks of accChunk entities: growing it never copies.
	acc    [][]uint64
	stride int
	state  []aggState
	// tiles are the batch tiles of each entity of a streaming view.
	tiles []*entityTiles
	// touched keeps the compiler from dropping the loads that bring the
	// states of a batch's entities into the cache.
	touched uint64
}

func newAggregate(v *larder.View, e *larder.Entity, runTime time.Time) *aggregate {
	a := &aggregate{}
	a.specs = append(a.specs,
		columnSpec{column: e.Key, role: roleKey, name: e.Name, typ: e.KeyType},
		columnSpec{column: v.SourceDef().EventTime, role: roleEventTime},
	)
	firstFeature := make(map[int]string)
	for _, f := range v.AggregateFeatures() {
		if _, ok := firstFeature[f.Aggregation]; !ok {
			firstFeature[f.Aggregation] = v.Aggregations[f.Aggregation].FeatureName(f.Func, f.Window)
		}
	}
	for i := range v.Aggregations {
		def := &v.Aggregations[i]
		spec := columnSpec{column: def.Column, role: roleFeature, name: firstFeature[i], typ: def.Type,
			field: fmt.Sprintf("aggregations[%d].column", i), typeField: fmt.Sprintf("aggregations[%d].type", i)}
		typ := def.Type
		if def.Column == "" {
			// A count of rows reads the event time, which every row
			// counted has.
			spec = columnSpec{column: v.SourceDef().EventTime, role: roleRowCount, name: firstFeature[i], typ: larder.TypeInt64}
			typ = larder.TypeInt64
		}
		col := slices.IndexFunc(a.specs[specFeatures:], func(s columnSpec) bool {
			return s.column == spec.column && s.typ == spec.typ && s.role == spec.role
		})
		if col < 0 {
			col = len(a.specs) - specFeatures
			a.specs = append(a.specs, spec)
		}
		ag := aggregation{col: col, typ: typ, block: 1, lo: make([]int64, len(def.Windows))}
		switch typ {
		case larder.TypeFloat64, larder.TypeFloat32:
			ag.kind = aggFloat
		case larder.TypeString:
			ag.kind = aggString
		}
		for _, fn := range def.Functions {
			switch fn {
			case larder.AggSum, larder.AggMean:
				if ag.sum == 0 {
					ag.sum, ag.block = ag.block, ag.block+1
				}
			case larder.AggMin:
				ag.min, ag.block = ag.block, ag.block+1
			case larder.AggMax:
				ag.max, ag.block = ag.block, ag.block+1
			case larder.AggLast:
				ag.last = true
			case larder.AggCountDistinct:
				ag.distinct = true
			}
		}
		ag.off = a.stride
		if ag.last {
			ag.lastAt = ag.block * len(ag.lo)
		}
		a.stride += ag.words()
		a.aggs = append(a.aggs, ag)
	}
	for _, f := range v.AggregateFeatures() {
		def := &v.Aggregations[f.Aggregation]
		w := slices.IndexFunc(def.Windows, func(w larder.Window) bool { return w == f.Window })
		a.features = append(a.features, aggFeature{agg: f.Aggregation, fn: f.Func, window: w})
	}
	a.keyType = e.KeyType
	a.at(v, runTime)
	return a
}

// at sets the run time of a, before any row is read: the windows end at
// it, and, for a streaming view, it is the batch tiles' cutoff.
func (a *aggregate) at(v *larder.View, runTime time.Time) {
	a.runTime = runTime.UnixNano()
	for i := range a.aggs {
		ag := &a.aggs[i]
		ag.loMin = math.MaxInt64
		for j, w := range v.Aggregations[i].Windows {
			lo := a.runTime - int64(w.Duration)
			if lo > a.runTime { // the subtraction overflowed
				lo = math.MinInt64
			}
			ag.lo[j] = lo
			ag.loMin = min(ag.loMin, lo)
		}
	}
	if v.Streaming() {
		a.tiles = newTileFold(v, runTime)
	}
}

func (a *aggregate) len() int {
	n := 0
	for _, s := range a.shards {
		n += s.keys.len()
	}
	return n
}

func (a *aggregate) skippedReport() map[string]int64 {
	m := a.skipped.report()
	if n, ok := m[SkipAfterRunTime]; ok && a.tiles != nil {
		// A streaming view's run time is its cutoff.
		delete(m, SkipAfterRunTime)
		m[SkipAfterCutoff] = n
	}
	return m
}

// aggBatch is a batch of usable rows of a row group, one part per
// partition, and the rows of that stretch skipped, by reason.
type aggBatch struct {
	parts   []*rowBuf
	skipped skipCounts
}

// batchRows is the number of rows read into one batch.
const batchRows = 8192

// read folds every row group of ds into a's shards: one decoding worker and
// one shard per core (see aggregate). done is called after each row group,
// in order, on the calling goroutine. read returns the error of the earliest
// row group that cannot be read, or ctx.Err().
func (a *aggregate) read(ctx context.Context, ds *dataset, done func(*rowGroup)) error {
	n := readWorkers()
	a.parts = partitioner{n: uint64(n)}
	a.shards = make([]*aggShard, n)
	for p := range a.shards {
		s := &aggShard{agg: a, stride: a.stride, state: make([]aggState, len(a.aggs))}
		s.keys.init(a.keyType)
		a.shards[p] = s
	}
	fan := startFanOut(n, func() *rowBuf { return newRowBuf(a.specs[specFeatures:]) }, func(p int, buf *rowBuf) { a.shards[p].fold(buf) })
	decode := func(ctx context.Context, rg *rowGroup, emit func(*aggBatch) error) error {
		sink := &aggSink{a: a, fan: fan, emit: emit}
		sink.b = &aggBatch{parts: fan.parts()}
		return scanRows(ctx, rg, specKey, specTime, a.valueColumns(), rowFilter{runTime: a.runTime, since: math.MinInt64}, batchRows, sink)
	}
	dispatch := func(b *aggBatch) error {
		a.skipped.add(b.skipped)
		return fan.send(ctx, b.parts)
	}
	err := scanParallel(ctx, ds, n, decode, dispatch, done)
	fan.stop()
	return err
}

// valueColumns returns the positions among a.specs of the value columns.
func (a *aggregate) valueColumns() []int {
	cols := make([]int, len(a.specs)-specFeatures)
	for i := range cols {
		cols[i] = specFeatures + i
	}
	return cols
}

// aggSink splits the usable rows of a row group into batches, one part
// per partition, and passes each batch to emit.
type aggSink struct {
	a    *aggregate
	fan  *fanOut[*rowBuf]
	b    *aggBatch
	emit func(*aggBatch) error
}

func (k *aggSink) row(s *rowScan, _, kvi int, t int64) {
	var buf *rowBuf
	if k.a.keyType == larder.TypeString {
		key := s.bytesKey(kvi)
		buf = k.b.parts[k.a.parts.ofBytes(key)]
		buf.skeys.add(key)
	} else {
		key := s.intKey(kvi)
		buf = k.b.parts[k.a.parts.ofInt(key)]
		buf.ikeys = append(buf.ikeys, key)
	}
	buf.add(s, t)
}

func (k *aggSink) cut(sk skipCounts, last bool) error {
	k.b.skipped = sk
	if err := k.emit(k.b); err != nil {
		return err
	}
	if !last {
		k.b = &aggBatch{parts: k.fan.parts()}
	}
	return nil
}

// add appends the event time t and the values of the current row of s to
// b; its key is added by the caller.
func (b *rowBuf) add(s *rowScan, t int64) {
	b.times = append(b.times, t)
	for i, c := range s.cols {
		cb := &b.cols[i]
		vi := s.vis[i]
		cb.valid = append(cb.valid, vi >= 0)
		switch {
		case cb.bytes && vi >= 0:
			cb.str.add(c.pv.bytes(vi))
		case cb.bytes:
			cb.str.add(nil)
		case vi >= 0:
			cb.num = append(cb.num, c.pv.num(c.bc.conv, vi))
		default:
			cb.num = append(cb.num, 0)
		}
	}
}

// foldBatch is the number of rows folded in one step. Folding is bound by
// the latency of fetching each entity's key and state from memory: looking
// up the keys of a step, then touching their states, before folding its
// rows lets the processor fetch many of them at once instead of one after
// the other.
const foldBatch = 512

// fold folds the rows of buf into s, and empties buf.
func (s *aggShard) fold(buf *rowBuf) {
	for lo := 0; lo < len(buf.times); lo += foldBatch {
		s.foldRange(buf, lo, min(lo+foldBatch, len(buf.times)))
	}
	buf.reset()
}

// foldRange folds rows [lo, hi) of buf into s.
func (s *aggShard) foldRange(buf *rowBuf, lo, hi int) {
	slots := buf.slots[:0]
	if s.keys.keyType != larder.TypeString {
		// Touch each key's entry first: the loads are independent, so the
		// processor overlaps their cache misses.
		var touched int32
		for _, k := range buf.ikeys[lo:hi] {
			touched += s.keys.prefetchInt(k)
		}
		s.touched += uint64(touched)
	}
	for k := lo; k < hi; k++ {
		var slot int32
		var isNew bool
		if s.keys.keyType == larder.TypeString {
			slot, isNew = s.keys.lookupBytes(buf.skeys.at(k))
		} else {
			slot, isNew = s.keys.lookupInt(buf.ikeys[k])
		}
		if isNew {
			s.grow(int(slot))
		}
		slots = append(slots, slot)
	}
	buf.slots = slots
	// Likewise, touch each entity's state.
	var touched uint64
	for _, slot := range slots {
		w := s.words(int(slot))
		for i := 0; i < len(w); i += 8 { // one word per cache line
			touched += w[i]
		}
	}
	s.touched += touched
	aggs := s.agg.aggs
	for j, slot := range slots {
		k := lo + j
		acc := s.words(int(slot))
		t := buf.times[k]
		for i := range aggs {
			ag := &aggs[i]
			cb := &buf.cols[ag.col]
			if !cb.valid[k] {
				continue
			}
			if cb.bytes {
				foldString(ag, acc[ag.off:], &s.state[i], int(slot), t, cb.str.at(k))
			} else {
				foldNumber(ag, acc[ag.off:], &s.state[i], int(slot), t, cb.num[k])
			}
			if s.agg.tiles != nil {
				s.foldTile(buf, k, i, slot)
			}
		}
	}
}

// rowBuf holds the usable rows of one partition of a batch, decoded: keys,
// event times and the values of each value column. Byte arrays are copied
// out of the pages they were read from.
type rowBuf struct {
	ikeys []int64
	skeys byteArena
	times []int64
	cols  []colBuf
	// slots is scratch space for foldRange.
	slots []int32
}

// colBuf holds the values of one column of a rowBuf.
type colBuf struct {
	bytes bool
	valid []bool
	num   []uint64
	str   byteArena
}

func newRowBuf(specs []columnSpec) *rowBuf {
	b := &rowBuf{cols: make([]colBuf, len(specs))}
	for i, s := range specs {
		b.cols[i].bytes = s.typ == larder.TypeString
	}
	return b
}

func (b *rowBuf) len() int { return len(b.times) }

func (b *rowBuf) reset() {
	b.ikeys, b.times = b.ikeys[:0], b.times[:0]
	b.skeys.reset()
	for i := range b.cols {
		c := &b.cols[i]
		c.valid, c.num = c.valid[:0], c.num[:0]
		c.str.reset()
	}
}

// byteArena holds byte arrays end to end: value k is
// data[ends[k-1]:ends[k]].
type byteArena struct {
	data []byte
	ends []int
}

func (a *byteArena) add(b []byte) {
	a.data = append(a.data, b...)
	a.ends = append(a.ends, len(a.data))
}

func (a *byteArena) at(k int) []byte {
	start := 0
	if k > 0 {
		start = a.ends[k-1]
	}
	return a.data[start:a.ends[k]]
}

func (a *byteArena) reset() { a.data, a.ends = a.data[:0], a.ends[:0] }

// keyIndex maps the keys of an aggregate's entities to slots, numbered from
// 0 in the order the keys were first seen. Int64 keys live in an
// open-addressing table whose entries hold the key and the slot side by
// side, so that a lookup usually costs one cache miss, and whose entry for
// a key can be fetched ahead of the lookup (see prefetchInt).
type keyIndex struct {
	keyType  larder.Type
	strIndex map[string]int32
	intKeys  []int64
	strKeys  []string
	// table has a power of two entries, at most half of them used.
	table []intEntry
}

// intEntry is an entry of keyIndex.table: slot+1, 0 when empty, and the key.
type intEntry struct {
	slot1 int32
	key   int64
}

func (x *keyIndex) init(t larder.Type) {
	x.keyType = t
	if t == larder.TypeString {
		x.strIndex = make(map[string]int32)
	} else {
		x.table = make([]intEntry, 1024)
	}
}

func (x *keyIndex) len() int { return len(x.intKeys) + len(x.strKeys) }

// home returns the first entry of the table to probe for key k.
func (x *keyIndex) home(k int64) int {
	// A 64-bit finalizer (from MurmurHash3): its low bits depend on every
	// bit of the key, unlike those of the partitioner's hash.
	h := uint64(k)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return int(h & uint64(len(x.table)-1))
}

// prefetchInt returns the slot+1 of the entry where the lookup of key k
// starts; reading it brings that entry into the cache.
func (x *keyIndex) prefetchInt(k int64) int32 { return x.table[x.home(k)].slot1 }

// lookupInt returns the slot of int64 key k, adding it when it is new.
func (x *keyIndex) lookupInt(k int64) (slot int32, isNew bool) {
	mask := len(x.table) - 1
	for i := x.home(k); ; i = (i + 1) & mask {
		e := &x.table[i]
		if e.slot1 == 0 {
			break
		}
		if e.key == k {
			return e.slot1 - 1, false
		}
	}
	slot = int32(len(x.intKeys))
	x.intKeys = append(x.intKeys, k)
	if 2*len(x.intKeys) > len(x.table) {
		x.rehash(2 * len(x.table))
	} else {
		x.insert(k, slot)
	}
	return slot, true
}

// insert puts key k, known to be absent, into the table.
func (x *keyIndex) insert(k int64, slot int32) {
	mask := len(x.table) - 1
	i := x.home(k)
	for x.table[i].slot1 != 0 {
		i = (i + 1) & mask
	}
	x.table[i] = intEntry{slot1: slot + 1, key: k}
}

// rehash replaces the table by one of n entries holding every key.
func (x *keyIndex) rehash(n int) {
	x.table = make([]intEntry, n)
	for slot, k := range x.intKeys {
		x.insert(k, int32(slot))
	}
}

// lookupBytes returns the slot of the string key held in b, adding a copy
// of it when it is new.
func (x *keyIndex) lookupBytes(b []byte) (slot int32, isNew bool) {
	if s, ok := x.strIndex[string(b)]; ok {
		return s, false
	}
	slot = int32(len(x.strKeys))
	k := string(b)
	x.strIndex[k] = slot
	x.strKeys = append(x.strKeys, k)
	return slot, true
}

func (x *keyIndex) key(slot int) larder.Key {
	if x.keyType == larder.TypeString {
		return larder.StringKey(x.strKeys[slot])
	}
	return larder.Int64Key(x.intKeys[slot])
}

// accChunk is the number of entities per chunk of aggShard.acc.
const accChunk = 1024

// words returns the words of the entity in slot.
func (s *aggShard) words(slot int) []uint64 {
	i := slot % accChunk * s.stride
	return s.acc[slot/accChunk][i : i+s.stride : i+s.stride]
}

// grow makes room for slot, a new entity, and sets its initial state.
func (s *aggShard) grow(slot int) {
	if slot/accChunk == len(s.acc) {
		s.acc = append(s.acc, make([]uint64, accChunk*s.stride))
	}
	acc := s.words(slot)
	for i := range s.agg.aggs {
		ag, st := &s.agg.aggs[i], &s.state[i]
		if ag.last {
			acc[ag.off+ag.lastAt] = noLast
			if ag.kind == aggString {
				st.lastStr = append(st.lastStr, "")
			}
		}
		if ag.distinct {
			if ag.kind == aggString {
				st.distStr = append(st.distStr, nil)
			} else {
				st.distNum = append(st.distNum, nil)
			}
		}
	}
}

// foldNumber folds value u, in the bits pageValues.num returns for the
// column's type, of an event at t into acc, the aggregation's words of the
// entity in slot, and st.
func foldNumber(ag *aggregation, acc []uint64, st *aggState, slot int, t int64, u uint64) {
	if t <= ag.loMin {
		return
	}
	if ag.kind == aggFloat {
		f := toFloat(ag.typ, u)
		for w, lo := range ag.lo {
			if t <= lo {
				continue
			}
			b := acc[w*ag.block : (w+1)*ag.block]
			n := b[0]
			b[0]++
			if ag.sum > 0 {
				b[ag.sum] = math.Float64bits(math.Float64frombits(b[ag.sum]) + f)
			}
			if ag.min > 0 && (n == 0 || f < math.Float64frombits(b[ag.min])) {
				b[ag.min] = math.Float64bits(f)
			}
			if ag.max > 0 && (n == 0 || f > math.Float64frombits(b[ag.max])) {
				b[ag.max] = math.Float64bits(f)
			}
		}
	} else {
		x := int64(u)
		for w, lo := range ag.lo {
			if t <= lo {
				continue
			}
			b := acc[w*ag.block : (w+1)*ag.block]
			n := b[0]
			b[0]++
			if ag.sum > 0 {
				b[ag.sum] += u
			}
			if ag.min > 0 && (n == 0 || x < int64(b[ag.min])) {
				b[ag.min] = u
			}
			if ag.max > 0 && (n == 0 || x > int64(b[ag.max])) {
				b[ag.max] = u
			}
		}
	}
	// Equal times replace: the row read later wins.
	if ag.last && t >= int64(acc[ag.lastAt]) {
		acc[ag.lastAt], acc[ag.lastAt+1] = uint64(t), u
	}
	if ag.distinct {
		k := distinctBits(ag.typ, u)
		m := st.distNum[slot]
		if m == nil {
			m = make(map[uint64]int64)
			st.distNum[slot] = m
		}
		if old, ok := m[k]; !ok || t > old {
			m[k] = t
		}
	}
}

// foldString folds string value b of an event at t into acc, the
// aggregation's words of the entity in slot, and st. b is copied only when
// kept.
func foldString(ag *aggregation, acc []uint64, st *aggState, slot int, t int64, b []byte) {
	if t <= ag.loMin {
		return
	}
	for w, lo := range ag.lo {
		if t > lo {
			acc[w*ag.block]++
		}
	}
	if ag.last && t >= int64(acc[ag.lastAt]) {
		acc[ag.lastAt] = uint64(t)
		if st.lastStr[slot] != string(b) {
			st.lastStr[slot] = string(b)
		}
	}
	if ag.distinct {
		m := st.distStr[slot]
		if m == nil {
			m = make(map[string]int64)
			st.distStr[slot] = m
		}
		if old, ok := m[string(b)]; !ok || t > old {
			m[string(b)] = t
		}
	}
}

// toFloat returns the float64 value of float bits u of a column of type t.
func toFloat(t larder.Type, u uint64) float64 {
	if t == larder.TypeFloat32 {
		return float64(math.Float32frombits(uint32(u)))
	}
	return math.Float64frombits(u)
}

// distinctBits returns the bits that identify value u among distinct
// values: those of u, except that −0 is 0 and every NaN one NaN.
func distinctBits(t larder.Type, u uint64) uint64 {
	if t != larder.TypeFloat64 && t != larder.TypeFloat32 {
		return u
	}
	f := toFloat(t, u)
	switch {
	case f == 0:
		return 0
	case f != f:
		return math.Float64bits(math.NaN())
	}
	return math.Float64bits(f)
}

// emit calls put with the row of every entity, partition by partition, and
// stops at the first error, which it returns. put must not keep the row's
// values, which are reused.
func (a *aggregate) emit(put func(larder.Key, larder.Row) error) error {
	row := larder.Row{EventTime: time.Unix(0, a.runTime).UTC(), Values: make([]larder.Value, len(a.features))}
	for _, s := range a.shards {
		for slot := range s.keys.len() {
			for i := range a.features {
				row.Values[i] = s.value(&a.features[i], slot)
			}
			if err := put(s.keys.key(slot), row); err != nil {
				return err
			}
		}
	}
	return nil
}

// value returns feature f of the entity in slot.
func (s *aggShard) value(f *aggFeature, slot int) larder.Value {
	ag, st := &s.agg.aggs[f.agg], &s.state[f.agg]
	acc := s.words(slot)[ag.off:]
	b := acc[f.window*ag.block:][:ag.block]
	n := b[0]
	switch f.fn {
	case larder.AggCount:
		return larder.Int64Value(int64(n))
	case larder.AggCountDistinct:
		lo := ag.lo[f.window]
		var d int64
		if ag.kind == aggString {
			for _, t := range st.distStr[slot] {
				if t > lo {
					d++
				}
			}
		} else {
			for _, t := range st.distNum[slot] {
				if t > lo {
					d++
				}
			}
		}
		return larder.Int64Value(d)
	case larder.AggLast:
		if int64(acc[ag.lastAt]) <= ag.lo[f.window] { // none, or out of the window
			return larder.Null
		}
		if ag.kind == aggString {
			return larder.StringValue(st.lastStr[slot])
		}
		return columnValue(ag.typ, acc[ag.lastAt+1])
	}
	if n == 0 {
		return larder.Null
	}
	switch f.fn {
	case larder.AggSum:
		if ag.kind == aggFloat {
			return larder.Float64Value(math.Float64frombits(b[ag.sum]))
		}
		return larder.Int64Value(int64(b[ag.sum]))
	case larder.AggMean:
		if ag.kind == aggFloat {
			return larder.Float64Value(math.Float64frombits(b[ag.sum]) / float64(n))
		}
		return larder.Float64Value(float64(int64(b[ag.sum])) / float64(n))
	case larder.AggMin:
		return foldedValue(ag.typ, b[ag.min])
	case larder.AggMax:
		return foldedValue(ag.typ, b[ag.max])
	}
	return larder.Null
}

// columnValue returns the value of bits u as pageValues.num returns them for
// a column of type t.
func columnValue(t larder.Type, u uint64) larder.Value {
	switch t {
	case larder.TypeInt64:
		return larder.Int64Value(int64(u))
	case larder.TypeFloat64:
		return larder.Float64Value(math.Float64frombits(u))
	case larder.TypeFloat32:
		return larder.Float32Value(math.Float32frombits(uint32(u)))
	case larder.TypeBool:
		return larder.BoolValue(u != 0)
	}
	return larder.Null
}

// foldedValue returns a min or max of a column of type t, held as an int64
// for ints and bools and as float64 bits for floats.
func foldedValue(t larder.Type, u uint64) larder.Value {
	switch t {
	case larder.TypeFloat64:
		return larder.Float64Value(math.Float64frombits(u))
	case larder.TypeFloat32:
		return larder.Float32Value(float32(math.Float64frombits(u)))
	}
	return columnValue(t, u)
}
