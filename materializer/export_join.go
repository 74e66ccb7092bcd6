package materializer

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
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
	}
	return 0, m.joinPrediction(ctx, j, ch)
}

// sourceProgress returns the function that reports the progress of an
// export reading the source of v, ds, after each row group.
func (m *Materializer) sourceProgress(v *larder.View, ds *dataset) func(*rowGroup) {
	var read int64
	return func(rg *rowGroup) {
		read += rg.numRows
		m.progress(Progress{View: "export", Phase: "reading " + v.Name, RowsRead: read, RowsTotal: ds.rows})
	}
}

// openSource opens and binds the source of v for specs.
func (m *Materializer) openSource(v *larder.View, specs []columnSpec) (*dataset, error) {
	src := v.SourceDef()
	ds, err := openDataset(m.project.Path(src.Path), src.Name)
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
	l.parts = partitioner{n: 1}
	best := make([]bestRow, len(ix.order))
	for i := range best {
		best[i].t = noBest
	}
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
	fan := startFanOut(1, func() *keyBuf { return &keyBuf{} }, fold)
	decode := func(ctx context.Context, rg *rowGroup, emit func(*keyBatch) error) error {
		sink := &keySink{l: l, group: l.groups.number(rg), fan: fan, emit: emit}
		sink.b = &keyBatch{parts: fan.parts()}
		return scanRows(ctx, rg, specKey, specTime, nil, l.filter(), batchRows, sink)
	}
	err = scanParallel(ctx, ds, readWorkers(), decode, func(b *keyBatch) error { return fan.send(ctx, b.parts) }, m.sourceProgress(v, ds))
	fan.stop()
	if err != nil {
		return 0, err
	}
	// Carry the best rows forward, and number the distinct ones.
	distinct := make(map[rowRef]int32)
	shard := &latestShard{keyType: larder.TypeInt64}
	slot := make([]int32, len(best))
	for run := range len(ix.start) - 1 {
		for p := int(ix.start[run]); p < int(ix.start[run+1]); p++ {
			if p > int(ix.start[run]) {
				if prev := best[p-1]; prev.t > best[p].t || (prev.t == best[p].t && prev.ref > best[p].ref) {
					best[p] = prev
				}
			}
			slot[p] = -1
			if best[p].t == noBest {
				continue
			}
			d, ok := distinct[best[p].ref]
			if !ok {
				d = int32(len(shard.best))
				distinct[best[p].ref] = d
				shard.intKeys = append(shard.intKeys, int64(d))
				shard.best = append(shard.best, best[p])
			}
			slot[p] = d
		}
	}
	l.shards = []*latestShard{shard}
	if err := l.fill(ctx, nil); err != nil {
		return 0, err
	}
	winner := make([]int32, len(l.winners))
	for i, w := range l.winners {
		winner[w.key.Int64()] = int32(i)
	}
	for p, r := range ix.order {
		if slot[p] < 0 {
			continue
		}
		j.found[r], j.times[r], j.pos[r] = true, best[p].t, winner[slot[p]]
	}
	j.lat = l
	return ds.rows, nil
}

// joinAggregate computes the windows of every spine row: each source row
// is folded, in read order, into the spine rows of its key whose windows
// hold it, with the aggregation math of a run, on times relative to the
// spine row's.
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
	s := &aggShard{agg: rel, stride: rel.stride, state: make([]aggState, len(rel.aggs))}
	for p := range ix.order {
		s.grow(p)
	}
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
	// first is the oldest event time of each run's key: a spine row has a
	// row when it is at or after it.
	first := make([]int64, len(ix.start)-1)
	for i := range first {
		first[i] = math.MaxInt64
	}
	str := a.keyType == larder.TypeString
	fold := func(_ int, buf *rowBuf) {
		for k := range buf.len() {
			run, ok := ix.runOfKey(str, buf.ikeys, &buf.skeys, k)
			if !ok {
				continue
			}
			t := buf.times[k]
			first[run] = min(first[run], t)
			end := int(ix.start[run+1])
			for p := ix.firstAtOrAfter(run, t); p < end; p++ {
				d := ix.times[p] - t
				if d >= span {
					break
				}
				acc := s.words(p)
				for i := range rel.aggs {
					ag := &rel.aggs[i]
					cb := &buf.cols[ag.col]
					if !cb.valid[k] {
						continue
					}
					if cb.bytes {
						foldString(ag, acc[ag.off:], &s.state[i], p, -d, cb.str.at(k))
					} else {
						foldNumber(ag, acc[ag.off:], &s.state[i], p, -d, cb.num[k])
					}
				}
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
	err = scanParallel(ctx, ds, readWorkers(), decode, func(b *aggBatch) error { return fan.send(ctx, b.parts) }, m.sourceProgress(v, ds))
	fan.stop()
	if err != nil {
		return 0, err
	}
	for run := range len(ix.start) - 1 {
		for p := int(ix.start[run]); p < int(ix.start[run+1]); p++ {
			if r := ix.order[p]; first[run] <= ix.times[p] {
				j.found[r], j.times[r], j.pos[r] = true, ix.times[p], int32(p)
			}
		}
	}
	j.agg, j.aggf = s, rel.features
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
	j.pred = make([]featureValues, nf)
	for f := range j.pred {
		j.pred[f] = featureValues{typ: larder.TypeFloat32}
		j.pred[f].resize(ch.n)
	}
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
				j.pred[f].num[r] = uint64(math.Float32bits(y[i*nf+f]))
				j.pred[f].null[r] = false
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
func (j *exportJoin) value(r, f int) larder.Value {
	p := int(j.pos[r])
	switch {
	case j.lat != nil:
		return j.lat.feats[f].value(p)
	case j.agg != nil:
		return j.agg.value(&j.aggf[f], p)
	}
	return j.pred[f].value(p)
}

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
