package materializer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/larder-dev/larder"
)

// Batch tiles of streaming aggregate views (see larder.View.Streaming). A
// run of such a view aggregates the events up to its cutoff C (see
// Materializer.cutoff), and keeps per entity what its
// windows need to slide forward until C + H without the source: the
// partial of every non-empty tile that leaves some window during
// (C, C + H], and per window the partial of the rest of it. For a window
// of w, the tiles that leave it are those with an end in (C − w,
// C − w + H]; the rest, (C − w + H, C], is empty when w ≤ H. So an entity
// keeps at most windows × H/τ tiles per aggregation, whatever the length
// of its windows.

// tileFold folds the rows of an aggregate into batch tiles. Tile numbers
// are tile ends over τ.
type tileFold struct {
	tau int64
	// cut is the cutoff's tile and hz the horizon in tiles.
	cut, hz int64
	// wins[a] are the windows of aggregation a in tiles, and lowest[a]
	// the lowest tile in one of them.
	wins   [][]int64
	lowest []int64
	kinds  []byte
}

func newTileFold(v *larder.View, cutoff time.Time) *tileFold {
	tau := v.TileInterval()
	f := &tileFold{
		tau: int64(tau),
		cut: cutoff.UnixNano() / int64(tau),
		hz:  int64(v.TileHorizon() / tau),
	}
	for i := range v.Aggregations {
		a := &v.Aggregations[i]
		typ := a.Type
		if a.Column == "" {
			typ = larder.TypeInt64
		}
		f.kinds = append(f.kinds, larder.AggKindOf(typ))
		var wins []int64
		low := f.cut
		for _, w := range a.Windows {
			n := int64(w.Duration / tau)
			wins = append(wins, n)
			low = min(low, f.cut-n+1)
		}
		f.wins = append(f.wins, wins)
		f.lowest = append(f.lowest, low)
	}
	return f
}

// entityTiles are the batch tiles of one entity while they are folded.
type entityTiles struct {
	aggs []aggTiles
}

type aggTiles struct {
	tiles map[int64]*larder.Partial
	rest  []larder.Partial
}

// add folds value u (or s) of an event at t of aggregation a into et.
func (f *tileFold) add(et *entityTiles, a int, t int64, u uint64, s string) {
	e := larder.TileOf(time.Unix(0, t), time.Duration(f.tau))
	if e < f.lowest[a] || e > f.cut {
		return
	}
	if et.aggs == nil {
		et.aggs = make([]aggTiles, len(f.wins))
	}
	at := &et.aggs[a]
	kind := f.kinds[a]
	sparse := false
	for w, n := range f.wins[a] {
		switch {
		case e <= f.cut-n: // not in the window
		case e <= f.cut-n+f.hz:
			sparse = true
		default:
			if at.rest == nil {
				at.rest = make([]larder.Partial, len(f.wins[a]))
			}
			at.rest[w].Add(kind, t, u, s)
		}
	}
	if sparse {
		if at.tiles == nil {
			at.tiles = map[int64]*larder.Partial{}
		}
		p := at.tiles[e]
		if p == nil {
			p = &larder.Partial{}
			at.tiles[e] = p
		}
		p.Add(kind, t, u, s)
	}
}

// entity returns what a store keeps of et, the tiles of the entity with
// key k.
func (f *tileFold) entity(k larder.Key, et *entityTiles) larder.EntityTiles {
	out := larder.EntityTiles{Key: k, Aggs: make([]larder.AggTiles, len(f.wins))}
	if et == nil || et.aggs == nil {
		return out
	}
	for a := range out.Aggs {
		at := &et.aggs[a]
		o := &out.Aggs[a]
		for e, p := range at.tiles {
			o.Tiles = append(o.Tiles, larder.Tile{End: e, Partial: *p})
		}
		slices.SortFunc(o.Tiles, func(x, y larder.Tile) int { return int(x.End - y.End) })
		o.Rest = at.rest
	}
	return out
}

// foldTile folds the value of row k of buf for aggregation i into the
// batch tiles of the entity in slot.
func (s *aggShard) foldTile(buf *rowBuf, k, i int, slot int32) {
	ag := &s.agg.aggs[i]
	cb := &buf.cols[ag.col]
	for int(slot) >= len(s.tiles) {
		s.tiles = append(s.tiles, nil)
	}
	et := s.tiles[slot]
	if et == nil {
		et = &entityTiles{}
		s.tiles[slot] = et
	}
	if cb.bytes {
		s.agg.tiles.add(et, i, buf.times[k], 0, string(cb.str.at(k)))
		return
	}
	u := cb.num[k]
	if ag.kind == aggFloat {
		u = math.Float64bits(toFloat(ag.typ, u))
	}
	s.agg.tiles.add(et, i, buf.times[k], u, "")
}

// tileChunk is the number of entities whose tiles are written at once.
const tileChunk = 1000

// putTiles writes the batch tiles of every entity of a, a run of
// streaming view v, into generation gen, before it is published.
func (m *Materializer) putTiles(ctx context.Context, v *larder.View, gen int64, a *aggregate) error {
	ts, ok := m.gs.(larder.TileStore)
	if !ok {
		return fmt.Errorf("the store %T keeps no tiles (larder.TileStore): view %s cannot be fed by a stream", m.gs, v.Name)
	}
	cutoff := time.Unix(0, a.runTime).UTC()
	batch := make([]larder.EntityTiles, 0, tileChunk)
	for _, s := range a.shards {
		for slot := range s.keys.len() {
			var et *entityTiles
			if slot < len(s.tiles) {
				et = s.tiles[slot]
			}
			batch = append(batch, a.tiles.entity(s.keys.key(slot), et))
			if len(batch) == tileChunk {
				if err := ts.PutTiles(ctx, v, gen, cutoff, batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
	}
	return ts.PutTiles(ctx, v, gen, cutoff, batch)
}

// cutoff returns the cutoff C of a run of streaming aggregate view v as
// of asOf over ds, whose columns are bound: the Parquet source is the
// record up to its newest event, and the stream fills in after it. So C is
// asOf rounded down to the view's tile τ or, when the source's newest
// event time is earlier, that time rounded down to τ: the batch then
// covers exactly the events up to C, and the stream's events after C,
// those the source does not hold yet included, stay counted (the store
// refuses stream events only at or before C). C never goes behind the
// live generation's cutoff (unless asOf does): the stream was refused the
// events up to that one, so they would be counted on neither side. A
// source that holds no event keeps the live generation's cutoff, when it
// is earlier than asOf's tile. Options.Cutoff, when set, is the cutoff.
func (m *Materializer) cutoff(ctx context.Context, v *larder.View, ds *dataset, asOf time.Time) (time.Time, error) {
	tau := v.TileInterval()
	if !m.cut.IsZero() {
		return larder.TileFloor(m.cut, tau), nil
	}
	c := larder.TileFloor(asOf, tau)
	newest, ok, err := ds.newestEventTime(ctx)
	if err != nil {
		return time.Time{}, err
	}
	live, hasLive, err := m.liveCutoff(ctx, v)
	if err != nil {
		return time.Time{}, err
	}
	switch {
	case ok && hasLive:
		// Never behind the live cutoff (unless the run is as of an earlier
		// time): the stream was refused every event up to it, so a cutoff
		// that went back to the source's newest event would count the
		// events between the two on neither side.
		return maxTime(minTime(c, larder.TileFloor(time.Unix(0, newest), tau)), minTime(c, live)), nil
	case ok:
		return minTime(c, larder.TileFloor(time.Unix(0, newest), tau)), nil
	case hasLive:
		return minTime(c, live), nil
	}
	return c, nil
}

// liveCutoff returns the cutoff of v's live generation (its as-of, on its
// tile), and false when v has none, or the store cannot say.
func (m *Materializer) liveCutoff(ctx context.Context, v *larder.View) (time.Time, bool, error) {
	fs, isReader := m.gs.(larder.FeatureStore)
	if !isReader {
		return time.Time{}, false, nil
	}
	g, err := liveNow(ctx, fs, v)
	switch {
	case errors.Is(err, larder.ErrNoGeneration):
		return time.Time{}, false, nil
	case err != nil:
		return time.Time{}, false, err
	case g.AsOf.IsZero():
		return time.Time{}, false, nil
	}
	return larder.TileFloor(g.AsOf, v.TileInterval()), true, nil
}

// maxTime returns the later of a and b.
func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// minTime returns the earlier of a and b.
func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// newestEventTime returns the newest event time of ds, in Unix
// nanoseconds, and false when no row has one: from the statistics of the
// event-time column in the files' footers, without reading data; a row
// group without usable statistics is read, its rows with a null key left
// out.
func (ds *dataset) newestEventTime(ctx context.Context) (int64, bool, error) {
	newest, found := int64(math.MinInt64), false
	for _, rg := range ds.rowGroups() {
		g := &rg.file.pf.Metadata().RowGroups[rg.index]
		if t, ok := maxEventTime(g, rg.file.cols[specTime]); ok && g.NumRows > 0 {
			newest, found = max(newest, t), true
			continue
		}
		sink := &newestSink{newest: math.MinInt64}
		err := recoverRead(func() error {
			return scanRows(ctx, rg, specKey, specTime, nil, rowFilter{runTime: math.MaxInt64, since: math.MinInt64}, 0, sink)
		})
		if err != nil {
			return 0, false, fmt.Errorf("%s: row group %d: %w", rg.file.path, rg.index, err)
		}
		if sink.found {
			newest, found = max(newest, sink.newest), true
		}
	}
	return newest, found, nil
}

// newestSink is a rowSink that keeps the newest event time of the rows.
type newestSink struct {
	newest int64
	found  bool
}

func (k *newestSink) row(_ *rowScan, _, _ int, t int64) {
	k.newest, k.found = max(k.newest, t), true
}

func (k *newestSink) cut(skipCounts, bool) error { return nil }

// sourceCutoff returns the cutoff of a run of streaming aggregate view v
// as of asOf (see cutoff), reading only the footers of its source, and the
// event times of the row groups whose footers have no statistics.
func (m *Materializer) sourceCutoff(ctx context.Context, v *larder.View, asOf time.Time) (time.Time, error) {
	ds, err := openDataset(m.project, v.SourceDef())
	if err != nil {
		return time.Time{}, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	defer ds.Close()
	a := newAggregate(v, v.EntityDef(), asOf)
	if err := ds.bind(a.specs[:specFeatures]); err != nil {
		return time.Time{}, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	c, err := m.cutoff(ctx, v, ds, asOf)
	if err != nil {
		return time.Time{}, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	return c, nil
}
