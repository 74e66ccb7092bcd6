package materializer

import (
	"context"
	"fmt"
	"math"
	"slices"
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
// run time. Its memory grows with the number of entities: per entity it
// keeps the key, the event time and the compact values of the best row so
// far. Row groups are read in two passes: the key and event-time columns in
// step, which picks the rows that become their entity's best, then each
// feature column, which copies the values of those rows only.
type latest struct {
	specs   []columnSpec
	runTime int64 // Unix nanoseconds
	// since is the oldest event time used, in Unix nanoseconds: an
	// incremental run reads only rows at or after the view's watermark, and
	// counts the older ones in beforeSince. A full run uses every row.
	since       int64
	beforeSince int64
	ents        entities
	feats       []featureValues
	skipped     skipCounts

	// wins lists the rows of the current row group that won their entity,
	// in row order; a later win of the same entity in the same row group
	// sets the earlier one's slot to -1.
	wins []win
	dead int
	// epoch numbers the row groups, so that ents.epoch tells whether an
	// entity's entry in wins belongs to the current one.
	epoch int32
	// capacity is the number of entities the features have room for.
	capacity int

	// part is the partition of the entities this latest keeps, out of parts
	// (see partitioner): rows of other entities are left to other latests.
	part  int
	parts partitioner
	// shards, once read has run, are the partitions read in parallel; l
	// itself then holds no rows.
	shards []*latest
}

// win is a row that became the best row of the entity in slot.
type win struct {
	row, slot int32
}

func newLatest(v *larder.View, e *larder.Entity, runTime time.Time) *latest {
	l := &latest{runTime: runTime.UnixNano(), since: math.MinInt64}
	l.specs = append(l.specs,
		columnSpec{column: e.Key, role: roleKey, name: e.Name, typ: e.KeyType},
		columnSpec{column: v.SourceDef().EventTime, role: roleEventTime},
	)
	for _, f := range v.Features {
		col := f.Column
		if col == "" {
			col = f.Name
		}
		l.specs = append(l.specs, columnSpec{column: col, role: roleFeature, name: f.Name, typ: f.Type})
		l.feats = append(l.feats, featureValues{typ: f.Type})
	}
	l.ents.init(e.KeyType)
	return l
}

func (l *latest) len() int {
	n := len(l.ents.times)
	for _, s := range l.shards {
		n += s.len()
	}
	return n
}

func (l *latest) skippedReport() map[string]int64 {
	sk := l.skipped
	before := l.beforeSince
	for _, s := range l.shards {
		sk.add(s.skipped)
		before += s.beforeSince
	}
	r := sk.report()
	if before > 0 {
		r[SkipBeforeWatermark] = before
	}
	return r
}

// read folds every row group of ds into l. The entities are divided by a
// hash of their key among one partition per core, read in parallel (see
// scanPartitioned), so the result is exactly that of a sequential read. done
// is called after each row group, in order, on the calling goroutine. read
// returns the error of the earliest row group that cannot be read, or
// ctx.Err().
func (l *latest) read(ctx context.Context, ds *dataset, done func(*rowGroup)) error {
	n := readWorkers()
	l.shards = make([]*latest, n)
	for i := range l.shards {
		s := &latest{specs: l.specs, runTime: l.runTime, since: l.since, part: i, parts: partitioner{n: uint64(n)}}
		s.feats = make([]featureValues, len(l.feats))
		for j := range l.feats {
			s.feats[j].typ = l.feats[j].typ
		}
		s.ents.init(l.ents.keyType)
		l.shards[i] = s
	}
	return scanPartitioned(ctx, ds, n, func(ctx context.Context, part int, rg *rowGroup) error {
		return l.shards[part].consume(ctx, rg)
	}, done)
}

// owns reports whether the key held by value vi of pv belongs to l's
// partition.
func (l *latest) owns(pv *pageValues, bc *boundColumn, vi int) bool {
	if l.parts.n <= 1 {
		return true
	}
	if l.ents.keyType == larder.TypeString {
		return l.parts.ofBytes(pv.bytes(vi)) == l.part
	}
	return l.parts.ofInt(int64(pv.num(bc.conv, vi))) == l.part
}

// consume folds one row group into the per-entity state. It returns an error
// when a column chunk cannot be read or disagrees with the row group, or
// ctx.Err() when ctx ends.
func (l *latest) consume(ctx context.Context, rg *rowGroup) error {
	if rg.numRows > math.MaxInt32 {
		return fmt.Errorf("row group of %d rows is too large (at most %d)", rg.numRows, math.MaxInt32)
	}
	l.epoch++
	l.wins, l.dead = l.wins[:0], 0
	if err := l.pickWinners(rg); err != nil {
		return err
	}
	if len(l.wins) == l.dead {
		return nil // no row of this group changes anything: skip its features
	}
	for i := range l.feats {
		if err := ctx.Err(); err != nil {
			return err
		}
		bc, chunk := rg.chunk(specFeatures + i)
		var err error
		if bc.conv == convVector {
			err = l.fillVector(&l.feats[i], bc, chunk, int(rg.numRows))
		} else {
			err = l.fillScalar(&l.feats[i], bc, chunk, int(rg.numRows))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// pickWinners reads the key and event-time columns of rg in step and records
// in l.wins the rows that become their entity's best row.
func (l *latest) pickWinners(rg *rowGroup) error {
	kbc, kchunk := rg.chunk(specKey)
	tbc, tchunk := rg.chunk(specTime)
	keys, times := newCursor(kbc, kchunk), newCursor(tbc, tchunk)
	defer keys.close()
	defer times.close()
	for r := range int32(rg.numRows) {
		kvi, err := keys.next()
		if err != nil {
			return err
		}
		tvi, err := times.next()
		if err != nil {
			return err
		}
		switch {
		case kvi < 0:
			if l.part == 0 { // a row without a key belongs to no partition
				l.skipped.nullKey++
			}
			continue
		case !l.owns(&keys.pv, kbc, kvi):
			continue
		case tvi < 0:
			l.skipped.nullTime++
			continue
		}
		t := times.pv.eventTime(tbc, tvi)
		if t > l.runTime {
			l.skipped.afterRun++
			continue
		}
		if t < l.since {
			l.beforeSince++
			continue
		}
		slot, isNew := l.ents.lookup(&keys.pv, kbc, kvi)
		if !isNew && t < l.ents.times[slot] {
			continue
		}
		// Equal times replace: the row read later wins.
		if isNew {
			l.reserve(int(slot) + 1)
		} else if l.ents.epoch[slot] == l.epoch {
			l.wins[l.ents.win[slot]].slot = -1
			l.dead++
		}
		l.ents.times[slot] = t
		l.ents.epoch[slot] = l.epoch
		l.ents.win[slot] = int32(len(l.wins))
		l.wins = append(l.wins, win{row: r, slot: slot})
		if l.dead > 4096 && l.dead > len(l.wins)/2 {
			l.compactWins()
		}
	}
	if err := keys.finish(); err != nil {
		return err
	}
	return times.finish()
}

// reserve makes room for n entities in every feature, growing them all at
// once rather than one value per new entity.
func (l *latest) reserve(n int) {
	if n <= l.capacity {
		return
	}
	l.capacity = max(1024, 2*l.capacity, n)
	for i := range l.feats {
		l.feats[i].resize(l.capacity)
	}
}

// compactWins drops the superseded wins, so that l.wins stays within twice
// the number of entities however many rows a row group has.
func (l *latest) compactWins() {
	live := l.wins[:0]
	for _, w := range l.wins {
		if w.slot >= 0 {
			l.ents.win[w.slot] = int32(len(live))
			live = append(live, w)
		}
	}
	l.wins, l.dead = live, 0
}

// fillScalar copies the values of the winning rows of a non-repeated feature
// column into f.
func (l *latest) fillScalar(f *featureValues, bc *boundColumn, chunk parquet.ColumnChunk, numRows int) error {
	wins := l.wins
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
		for ; len(wins) > 0 && int(wins[0].row) < end; wins = wins[1:] {
			w := wins[0]
			if w.slot < 0 {
				continue
			}
			r := int(w.row) - base
			if sp.defs == nil {
				f.set(w.slot, bc, &pv, r)
				continue
			}
			for ; k < r; k++ {
				if sp.defs[k] == sp.maxDef {
					vi++
				}
			}
			if sp.defs[r] != sp.maxDef {
				f.setNull(w.slot)
				continue
			}
			if vi >= pv.n {
				return fmt.Errorf("%w: a page has fewer values than rows", errCorrupt)
			}
			f.set(w.slot, bc, &pv, vi)
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

// fillVector copies the lists of the winning rows of a float32_vector column
// into f. A null list, or a list holding a null element, is stored as null;
// an empty list as an empty vector.
func (l *latest) fillVector(f *featureValues, bc *boundColumn, chunk parquet.ColumnChunk, numRows int) error {
	wins := l.wins
	row := -1
	slot := int32(-1) // the slot the current row wins, or -1
	var acc []float32
	null := false
	finish := func() {
		if slot < 0 {
			return
		}
		if null {
			f.setNull(slot)
		} else {
			f.setVector(slot, append(make([]float32, 0, len(acc)), acc...))
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
					wins = wins[1:]
				}
				slot, null, acc = -1, false, acc[:0]
				if len(wins) > 0 && int(wins[0].row) == row {
					slot = wins[0].slot
				}
			} else if row < 0 {
				return fmt.Errorf("%w: a list starts mid-row", errCorrupt)
			}
			switch {
			case d == bc.maxDef:
				if slot >= 0 {
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

// emit calls put with the row of every entity, partition by partition and
// in the order the entities were first seen within each, and stops at the
// first error, which it returns.
func (l *latest) emit(put func(larder.Key, larder.Row) error) error {
	for _, s := range l.shards {
		if err := s.emit(put); err != nil {
			return err
		}
	}
	const batch = 1024
	var arena []larder.Value
	nf := len(l.feats)
	for slot := range len(l.ents.times) {
		if len(arena) < nf {
			arena = make([]larder.Value, nf*batch)
		}
		vals := arena[:nf:nf]
		arena = arena[nf:]
		for i := range l.feats {
			vals[i] = l.feats[i].value(int32(slot))
		}
		row := larder.Row{EventTime: time.Unix(0, l.ents.times[slot]).UTC(), Values: vals}
		if err := put(l.ents.key(int32(slot)), row); err != nil {
			return err
		}
	}
	return nil
}

// entities maps keys to slots, and holds per slot what picking the best row
// needs.
type entities struct {
	keyType  larder.Type
	intIndex map[int64]int32
	strIndex map[string]int32
	intKeys  []int64
	strKeys  []string
	// times is the event time of the best row so far, in Unix nanoseconds.
	times []int64
	// epoch is the row group the best row was found in, and win its index
	// in latest.wins when that row group is the current one.
	epoch []int32
	win   []int32
}

func (e *entities) init(t larder.Type) {
	e.keyType = t
	if t == larder.TypeString {
		e.strIndex = make(map[string]int32)
	} else {
		e.intIndex = make(map[int64]int32)
	}
}

// lookup returns the slot of the key held by value vi of pv, adding the key
// when it is new.
func (e *entities) lookup(pv *pageValues, bc *boundColumn, vi int) (slot int32, isNew bool) {
	if e.keyType == larder.TypeString {
		b := pv.bytes(vi)
		if s, ok := e.strIndex[string(b)]; ok {
			return s, false
		}
		slot = e.add()
		k := string(b)
		e.strIndex[k] = slot
		e.strKeys = append(e.strKeys, k)
		return slot, true
	}
	k := int64(pv.num(bc.conv, vi))
	if s, ok := e.intIndex[k]; ok {
		return s, false
	}
	slot = e.add()
	e.intIndex[k] = slot
	e.intKeys = append(e.intKeys, k)
	return slot, true
}

func (e *entities) add() int32 {
	slot := int32(len(e.times))
	e.times = append(e.times, 0)
	e.epoch = append(e.epoch, 0)
	e.win = append(e.win, 0)
	return slot
}

func (e *entities) key(slot int32) larder.Key {
	if e.keyType == larder.TypeString {
		return larder.StringKey(e.strKeys[slot])
	}
	return larder.Int64Key(e.intKeys[slot])
}

// featureValues holds one feature of every entity, compactly: numbers and
// bools as 8 bytes, strings, bytes and vectors as their own values.
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
func (f *featureValues) set(slot int32, bc *boundColumn, pv *pageValues, vi int) {
	f.null[slot] = false
	if bc.conv == convByteArray {
		f.str[slot] = string(pv.bytes(vi))
		return
	}
	f.num[slot] = pv.num(bc.conv, vi)
}

func (f *featureValues) setVector(slot int32, v []float32) {
	f.null[slot] = false
	f.vec[slot] = v
}

func (f *featureValues) setNull(slot int32) {
	f.null[slot] = true
	switch f.typ {
	case larder.TypeString, larder.TypeBytes:
		f.str[slot] = ""
	case larder.TypeFloat32Vector:
		f.vec[slot] = nil
	}
}

func (f *featureValues) value(slot int32) larder.Value {
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
