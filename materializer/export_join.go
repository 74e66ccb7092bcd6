package materializer

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/larder-dev/larder"
)

// join computes j for the rows of ch, and returns the source rows it read.
func (m *Materializer) join(ctx context.Context, j *exportJoin, ch *spineChunk) (int64, error) {
	j.found = grow(j.found[:0], ch.n, false)
	j.times = grow(j.times[:0], ch.n, 0)
	j.pos = grow(j.pos[:0], ch.n, -1)
	switch j.view.Kind {
	case larder.KindLatest:
		return m.joinLatest(ctx, j, ch)
	case larder.KindAggregate:
		return m.joinAggregate(ctx, j, ch)
	case larder.KindCandidates:
		return m.joinCandidates(ctx, j, ch)
	}
	return 0, m.joinPrediction(ctx, j, ch)
}

// sourceProgress returns the function that reports the progress of an
// export reading the source of v, ds, for chunk ch, after each row group.
func (m *Materializer) sourceProgress(v *larder.View, ds *dataset, ch *spineChunk) func(*rowGroup) {
	var read int64
	phase := ch.phase("reading " + v.Name)
	return func(rg *rowGroup) {
		read += rg.numRows
		m.progress(Progress{View: "export", Phase: phase, RowsRead: read, RowsTotal: ds.rows})
	}
}

// openSource opens and binds the source of v for specs.
func (m *Materializer) openSource(v *larder.View, specs []columnSpec) (*dataset, error) {
	src := v.SourceDef()
	ds, err := openDataset(m.project, src)
	if err != nil {
		return nil, err
	}
	if err := ds.bind(specs); err != nil {
		ds.Close()
		return nil, err
	}
	return ds, nil
}

// joinLatest finds, for every spine row, the newest source row at or
// before its time. Each source row is folded into the first spine row of
// its key at or after its event time; the best rows then carry forward
// along each key's rows in time order. Ties on event time go to the row
// read last, as in a run.
func (m *Materializer) joinLatest(ctx context.Context, j *exportJoin, ch *spineChunk) (int64, error) {
	v, ix := j.view, ch.index[j.keyCol]
	l := newLatest(v, v.EntityDef(), time.Unix(0, ch.maxT))
	ds, err := m.openSource(v, l.specs)
	if err != nil {
		return 0, err
	}
	defer ds.Close()
	l.groups = newGroupList(ds)
	if int64(len(l.groups.files)) > math.MaxUint32 {
		return 0, fmt.Errorf("the source has %d row groups, more than %d", len(l.groups.files), uint64(math.MaxUint32))
	}
	// One fold per core, each of the keys of its partition: a key's spine
	// rows, and so the best rows it writes, are its partition's alone, and
	// a best row does not depend on the order rows are folded in (ties go
	// to the greater reference, the row read last).
	parts := readWorkers()
	l.parts = partitioner{n: uint64(parts)}
	j.best = grow(j.best[:0], len(ix.order), bestRow{t: noBest})
	best := j.best
	str := l.keyType == larder.TypeString
	fold := func(_ int, buf *keyBuf) {
		for k := range buf.len() {
			run, ok := ix.runOfKey(str, buf.ikeys, &buf.skeys, k)
			if !ok {
				continue
			}
			t := buf.times[k]
			p := ix.firstAtOrAfter(run, t)
			if p == int(ix.start[run+1]) {
				continue
			}
			if b := &best[p]; t > b.t || (t == b.t && buf.refs[k] > b.ref) {
				b.t, b.ref = t, buf.refs[k]
			}
		}
		buf.reset()
	}
	fan := startFanOut(parts, func() *keyBuf { return &keyBuf{} }, fold)
	decode := func(ctx context.Context, rg *rowGroup, emit func(*keyBatch) error) error {
		sink := &keySink{l: l, group: l.groups.number(rg), fan: fan, emit: emit}
		sink.b = &keyBatch{parts: fan.parts()}
		return scanRows(ctx, rg, specKey, specTime, nil, l.filter(), batchRows, sink)
	}
	err = scanParallel(ctx, ds, readWorkers(), decode, func(b *keyBatch) error { return fan.send(ctx, b.parts) }, m.sourceProgress(v, ds, ch))
	fan.stop()
	if err != nil {
		return 0, err
	}
	// Carry the best rows forward, and number the distinct ones: a run's
	// best rows only get better along it, so equal ones are side by side.
	shard := &latestShard{keyType: larder.TypeInt64, intKeys: j.shardKeys[:0], best: j.shardBest[:0]}
	j.slot = grow(j.slot[:0], len(best), -1)
	slot := j.slot
	for run := range len(ix.start) - 1 {
		lo := int(ix.start[run])
		for p := lo; p < int(ix.start[run+1]); p++ {
			if p > lo {
				if prev := best[p-1]; prev.t > best[p].t || (prev.t == best[p].t && prev.ref > best[p].ref) {
					best[p] = prev
				}
			}
			slot[p] = -1
			switch {
			case best[p].t == noBest:
			case p > lo && best[p] == best[p-1]:
				slot[p] = slot[p-1]
			default:
				slot[p] = int32(len(shard.best))
				shard.intKeys = append(shard.intKeys, int64(len(shard.best)))
				shard.best = append(shard.best, best[p])
			}
		}
	}
	l.shards = []*latestShard{shard}
	j.shardKeys, j.shardBest = shard.intKeys, shard.best
	if err := l.fill(ctx, nil); err != nil {
		return 0, err
	}
	j.winner = grow(j.winner[:0], len(l.winners), 0)
	winner := j.winner
	for i, w := range l.winners {
		winner[w.key.Int64()] = int32(i)
	}
	for p, r := range ix.order {
		if slot[p] < 0 {
			continue
		}
		j.found[r], j.times[r], j.pos[r] = true, best[p].t, winner[slot[p]]
	}
	j.tab.fromLatest(l)
	return ds.rows, nil
}

// joinPrediction scores, for every spine row whose entity the view's
// entities view has as of its time, the view's model on its inputs as of
// that time, in batches of the view's batch size.
func (m *Materializer) joinPrediction(ctx context.Context, j *exportJoin, ch *spineChunk) error {
	v := j.view
	pr := v.Prediction
	model, err := m.models(m.predictionSpec(v))
	if err != nil {
		return err
	}
	if c, ok := model.(io.Closer); ok {
		defer c.Close()
	}
	nf := len(v.Features)
	types := make([]larder.Type, nf)
	for f := range types {
		types[f] = larder.TypeFloat32
	}
	j.tab.reset(types, ch.n)
	size := cmp.Or(pr.BatchSize, larder.DefaultPredictionBatch)
	x := make([]float32, 0, size*len(pr.Inputs))
	y := make([]float32, size*nf)
	rows := make([]int, 0, size)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		if err := model.Score(ctx, x, len(rows), y[:len(rows)*nf]); err != nil {
			return fmt.Errorf("model: %w", err)
		}
		for i, r := range rows {
			for f := range nf {
				j.tab.setNum(r, f, uint64(math.Float32bits(y[i*nf+f])))
			}
		}
		x, rows = x[:0], rows[:0]
		return nil
	}
	for r := range ch.n {
		if !j.entities.found[r] {
			continue
		}
		at := time.Unix(0, ch.times[r])
		for _, in := range pr.Inputs {
			ij := j.inputs[in.View]
			n, _ := ij.inputNumber(r, in.Feature, at, in.Default)
			x = append(x, n)
		}
		rows = append(rows, r)
		j.found[r], j.times[r], j.pos[r] = true, ch.times[r], int32(r)
		if len(rows) == size {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// value returns feature f of the view's row for spine row r, which must
// have one, as computed (before the value rules).
func (j *exportJoin) value(r, f int) larder.Value { return j.tab.value(int(j.pos[r]), f) }

// row returns the values of the view's row for spine row r, which must
// have one, after the view's value rules, valid until the next call.
func (j *exportJoin) row(k larder.Key, r int) ([]larder.Value, error) {
	if j.vals == nil {
		j.vals = make([]larder.Value, len(j.view.Features))
	}
	for f := range j.vals {
		j.vals[f] = j.value(r, f)
	}
	row, err := j.rules.apply(k, larder.Row{EventTime: time.Unix(0, j.times[r]).UTC(), Values: j.vals})
	return row.Values, err
}

// inputNumber returns the number a model sees for feature f of the view's
// row for spine row r at instant at, with default def (see
// larder.View.InputNumber).
func (j *exportJoin) inputNumber(r, f int, at time.Time, def float32) (float32, larder.InputStatus) {
	if !j.found[r] {
		return j.view.InputNumber(false, time.Time{}, at, larder.Null, def)
	}
	return j.view.InputNumber(true, time.Unix(0, j.times[r]), at, j.value(r, f), def)
}

// exportTable holds the values of the rows a join found. Numbers and bools
// are row-major, so that the values of a spine row are read together,
// wherever its row is: each row is stride words, nw words of null bits (bit
// f%64 of word f/64 is set when feature f is null), then one word per
// feature. Strings, bytes, vectors and lists are kept by feature. Its buffers are
// kept from chunk to chunk.
type exportTable struct {
	types   []larder.Type
	nf, nw  int
	stride  int
	words   []uint64
	str     [][]string       // by feature, for strings and bytes
	vec     [][][]float32    // by feature, for vectors
	lst     [][]larder.Value // by feature, for int64 and string lists
	allNull []uint64         // the null words of a row all null
	rows    int
}

// reset makes t a table of rows rows of features of types, all null.
func (t *exportTable) reset(types []larder.Type, rows int) {
	t.shape(types, rows)
	for r := range rows {
		copy(t.words[r*t.stride:], t.allNull)
	}
	for f, typ := range types {
		switch typ {
		case larder.TypeString, larder.TypeBytes:
			t.str[f] = grow(t.str[f][:0], rows, "")
		case larder.TypeFloat32Vector:
			t.vec[f] = make([][]float32, rows)
		case larder.TypeInt64List, larder.TypeStringList:
			t.lst[f] = make([]larder.Value, rows)
		}
	}
}

// shape sizes t for rows rows of features of types, its values unset.
func (t *exportTable) shape(types []larder.Type, rows int) {
	t.types, t.nf, t.nw, t.rows = types, len(types), (len(types)+63)/64, rows
	t.stride = t.nw + t.nf
	t.words = slices.Grow(t.words[:0], rows*t.stride)[:rows*t.stride]
	t.str = grow(t.str[:0], t.nf, nil)
	t.vec = grow(t.vec[:0], t.nf, nil)
	t.lst = grow(t.lst[:0], t.nf, nil)
	for f := range t.nf {
		t.str[f], t.vec[f], t.lst[f] = t.str[f][:0], nil, nil
	}
	t.allNull = grow(t.allNull[:0], t.nw, 0)
	for f := range t.nf {
		t.allNull[f/64] |= 1 << (f % 64)
	}
}

// fromLatest makes t the table of the winners of l, one row each, and
// empties l's values.
func (t *exportTable) fromLatest(l *latest) {
	t.shape(l.types, len(l.winners))
	for f := range l.feats {
		t.str[f], t.vec[f] = l.feats[f].str, l.feats[f].vec
	}
	// Row by row: each feature's values are read in order. The rows are
	// split among the cores, each a contiguous range.
	workers := max(1, min(readWorkers(), t.rows/4096))
	onWorkers(workers, func(k int) {
		lo, hi := k*t.rows/workers, (k+1)*t.rows/workers
		for w := lo; w < hi; w++ {
			row := t.words[w*t.stride : (w+1)*t.stride]
			clear(row[:t.nw])
			for f := range l.feats {
				fv := &l.feats[f]
				if fv.null[w] {
					row[f/64] |= 1 << (f % 64)
				}
				if fv.num != nil {
					row[t.nw+f] = fv.num[w]
				}
			}
		}
	})
	l.feats, l.winners = nil, nil
}

// isNull reports whether feature f of row is null.
func (t *exportTable) isNull(row, f int) bool {
	return t.words[row*t.stride+f/64]>>(f%64)&1 != 0
}

// setNum stores number or bool bits u as feature f of row.
func (t *exportTable) setNum(row, f int, u uint64) {
	t.words[row*t.stride+f/64] &^= 1 << (f % 64)
	t.words[row*t.stride+t.nw+f] = u
}

// set stores v as feature f of row.
func (t *exportTable) set(row, f int, v larder.Value) {
	if v.IsNull() {
		t.words[row*t.stride+f/64] |= 1 << (f % 64)
		return
	}
	switch t.types[f] {
	case larder.TypeInt64:
		t.setNum(row, f, uint64(v.Int64()))
	case larder.TypeFloat64:
		t.setNum(row, f, math.Float64bits(v.Float64()))
	case larder.TypeFloat32:
		t.setNum(row, f, uint64(math.Float32bits(v.Float32())))
	case larder.TypeBool:
		u := uint64(0)
		if v.Bool() {
			u = 1
		}
		t.setNum(row, f, u)
	case larder.TypeString, larder.TypeBytes:
		t.setNum(row, f, 0)
		t.str[f][row] = v.Str()
	case larder.TypeFloat32Vector:
		t.setNum(row, f, 0)
		t.vec[f][row] = v.Vector()
	case larder.TypeInt64List, larder.TypeStringList:
		t.setNum(row, f, 0)
		t.lst[f][row] = v
	}
}

// value returns feature f of row.
func (t *exportTable) value(row, f int) larder.Value {
	if t.isNull(row, f) {
		return larder.Null
	}
	u := t.words[row*t.stride+t.nw+f]
	switch t.types[f] {
	case larder.TypeString:
		return larder.StringValue(t.str[f][row])
	case larder.TypeBytes:
		return larder.BytesValueString(t.str[f][row])
	case larder.TypeFloat32Vector:
		return larder.Float32VectorValue(t.vec[f][row])
	case larder.TypeInt64List, larder.TypeStringList:
		return t.lst[f][row]
	}
	return columnValue(t.types[f], u)
}
