package materializer

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/larder-dev/larder"
)

// Batch tiles of streaming aggregate views (see larder.View.Streaming). A
// run of such a view aggregates the events up to its cutoff C, its run
// time rounded down to the view's tile τ, and keeps per entity what its
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
