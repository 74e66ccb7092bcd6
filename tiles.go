package larder

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Streaming aggregate views. An aggregate view that a stream names keeps
// its windowed values current between batch runs, within one tile
// interval τ (View.Tile). Time is cut into tiles: the tile with end e holds
// the events with a time in (e − τ, e], and every tile end is a multiple of
// τ since the Unix epoch. A read at time now answers as of T, now rounded
// down to τ, so that every window (T − w, T] is a whole number of tiles.
//
// A batch run of the view aggregates the source's events up to its cutoff
// C, and keeps per entity what the windows need to slide forward until
// C + H (View.TileHorizon) without reading the source again: the partials of the tiles that leave a window during
// (C, C + H], one by one, and one partial per window for the rest. Stream
// events after C add to per-entity tiles of their own. A read combines the
// two; past C + H it answers the batch values as of C, which max_age then
// reports stale.
//
// The Parquet source is the record up to its newest event, and the stream
// fills in after it: C is the run's as-of rounded down to τ or, when the
// source's newest event time is earlier, that time rounded down to τ (a
// source with no event keeps the live generation's cutoff). A run over
// files that do not hold the latest events yet thus leaves the events
// streamed after their end counted. C is the generation's as-of.

// DefaultTile is the tile interval of a streaming aggregate view that sets
// none.
const DefaultTile = time.Minute

// DefaultTileHorizon is the horizon H of a streaming aggregate view with no
// max_age.
const DefaultTileHorizon = time.Hour

// MaxHorizonTiles bounds H / τ, and so the tiles kept per entity and
// window.
const MaxHorizonTiles = 10_000

// TileInterval returns the view's tile interval τ: Tile, or DefaultTile.
func (v *View) TileInterval() time.Duration {
	if v.Tile > 0 {
		return v.Tile
	}
	return DefaultTile
}

// TileHorizon returns H, how long after a batch run's cutoff the view's
// windows keep sliding on what the run stored: the view's max age, or
// DefaultTileHorizon when it has none, rounded up to a whole number of
// tiles.
func (v *View) TileHorizon() time.Duration {
	h, tau := v.MaxAge, v.TileInterval()
	if h <= 0 {
		h = DefaultTileHorizon
	}
	if r := h % tau; r != 0 {
		h += tau - r
	}
	return h
}

// Streaming reports whether v is an aggregate view that a stream of the
// validated project feeds.
func (v *View) Streaming() bool { return v.Kind == KindAggregate && v.stream != nil }

// StreamSource returns the stream that feeds v, or nil.
func (v *View) StreamSource() *Stream { return v.stream }

// TileFloor returns t rounded down to a multiple of tau since the epoch.
func TileFloor(t time.Time, tau time.Duration) time.Time {
	ns := t.UnixNano()
	r := ns % int64(tau)
	if r < 0 {
		r += int64(tau)
	}
	return time.Unix(0, ns-r).UTC()
}

// TileOf returns the index of the tile that holds an event at t: its end
// divided by tau.
func TileOf(t time.Time, tau time.Duration) int64 {
	ns := t.UnixNano()
	// Go's division truncates toward zero: the ceiling for negative times.
	q := ns / int64(tau)
	if ns%int64(tau) > 0 {
		q++
	}
	return q
}

// AggKindOf returns how values of a column of type t are folded: "i" for
// int64 and bool (int64 sums), "f" for floats (float64 sums), "s" for
// strings (count and last only).
func AggKindOf(t Type) byte {
	switch t {
	case TypeFloat64, TypeFloat32:
		return 'f'
	case TypeString:
		return 's'
	}
	return 'i'
}

// Partial is the aggregate of the non-null values of one column over a
// stretch of time (a tile, or several). Sum, Min and Max hold int64 bits for
// int64 and bool columns and float64 bits for float columns; Last is the
// value with the newest event time LastAt (in Unix ns), in the same bits,
// or LastStr for strings. A zero Partial is empty.
type Partial struct {
	Count         int64
	Sum, Min, Max uint64
	LastAt        int64
	Last          uint64
	LastStr       string
}

// Add folds value u (or s, for strings) of an event at t (Unix ns) into p,
// as a batch run folds rows: a value at the same time as the last one
// replaces it.
func (p *Partial) Add(kind byte, t int64, u uint64, s string) {
	first := p.Count == 0
	p.Count++
	switch kind {
	case 'f':
		f := math.Float64frombits(u)
		p.Sum = math.Float64bits(math.Float64frombits(p.Sum) + f)
		if first || f < math.Float64frombits(p.Min) {
			p.Min = u
		}
		if first || f > math.Float64frombits(p.Max) {
			p.Max = u
		}
	case 'i':
		x := int64(u)
		p.Sum += u
		if first || x < int64(p.Min) {
			p.Min = u
		}
		if first || x > int64(p.Max) {
			p.Max = u
		}
	}
	if first || t >= p.LastAt {
		p.LastAt, p.Last, p.LastStr = t, u, s
	}
}

// Merge folds o, a partial of a later stretch of time than p's, into p.
func (p *Partial) Merge(kind byte, o *Partial) {
	if o.Count == 0 {
		return
	}
	if p.Count == 0 {
		*p = *o
		return
	}
	p.Count += o.Count
	switch kind {
	case 'f':
		p.Sum = math.Float64bits(math.Float64frombits(p.Sum) + math.Float64frombits(o.Sum))
		if math.Float64frombits(o.Min) < math.Float64frombits(p.Min) {
			p.Min = o.Min
		}
		if math.Float64frombits(o.Max) > math.Float64frombits(p.Max) {
			p.Max = o.Max
		}
	case 'i':
		p.Sum += o.Sum
		if int64(o.Min) < int64(p.Min) {
			p.Min = o.Min
		}
		if int64(o.Max) > int64(p.Max) {
			p.Max = o.Max
		}
	}
	if o.LastAt >= p.LastAt {
		p.LastAt, p.Last, p.LastStr = o.LastAt, o.Last, o.LastStr
	}
}

// Value returns function fn of p for a column of type t, as a batch run
// computes it (see the aggregate view's rules): count is 0 and the others
// null over no value.
func (p *Partial) Value(fn AggFunc, t Type) Value {
	if fn == AggCount {
		return Int64Value(p.Count)
	}
	if p.Count == 0 {
		return Null
	}
	kind := AggKindOf(t)
	switch fn {
	case AggSum:
		if kind == 'f' {
			return Float64Value(math.Float64frombits(p.Sum))
		}
		return Int64Value(int64(p.Sum))
	case AggMean:
		if kind == 'f' {
			return Float64Value(math.Float64frombits(p.Sum) / float64(p.Count))
		}
		return Float64Value(float64(int64(p.Sum)) / float64(p.Count))
	case AggMin:
		return partialNumber(t, p.Min)
	case AggMax:
		return partialNumber(t, p.Max)
	case AggLast:
		if kind == 's' {
			return StringValue(p.LastStr)
		}
		return partialNumber(t, p.Last)
	}
	return Null
}

// partialNumber returns bits u of a partial as a value of type t.
func partialNumber(t Type, u uint64) Value {
	switch t {
	case TypeFloat64:
		return Float64Value(math.Float64frombits(u))
	case TypeFloat32:
		return Float32Value(float32(math.Float64frombits(u)))
	case TypeBool:
		return BoolValue(u != 0)
	}
	return Int64Value(int64(u))
}

// PartialBits returns the bits a Partial holds for value x of an
// aggregated column, and false for a null or a value that cannot be
// aggregated.
func PartialBits(x Value) (uint64, bool) {
	switch x.Type() {
	case TypeInt64:
		return uint64(x.Int64()), true
	case TypeBool:
		if x.Bool() {
			return 1, true
		}
		return 0, true
	case TypeFloat64:
		return math.Float64bits(x.Float64()), true
	case TypeFloat32:
		return math.Float64bits(float64(x.Float32())), true
	case TypeString:
		return 0, true
	}
	return 0, false
}

// Tile is the partial of one tile of one aggregation; End is the tile's
// index (its end over τ).
type Tile struct {
	End int64
	Partial
}

// AggTiles is what a batch run keeps of one aggregation of one entity for
// its windows to slide: Tiles, in increasing End, the non-empty tiles that
// leave some window during (C, C + H]; and Rest[w], the partial of window
// w's tiles that stay in it until C + H.
type AggTiles struct {
	Tiles []Tile
	Rest  []Partial
}

// EntityTiles is what a batch run of a streaming aggregate view keeps for
// one entity, one AggTiles per aggregation of the view.
type EntityTiles struct {
	Key  Key
	Aggs []AggTiles
}

// TileEvent is one event of a stream for a streaming aggregate view.
type TileEvent struct {
	Key Key
	// ID identifies the event in its stream (a Redis stream entry id, a
	// Kafka record's partition/offset in the stream's topic): an event
	// applied once is not applied again.
	ID   string
	Time time.Time
	// Values holds, per aggregation of the view, the value of its column
	// (Null when null); a count of rows reads none.
	Values []Value
}

// TileStore is implemented by an online store that keeps the tiles of
// streaming aggregate views.
type TileStore interface {
	// AddEvents adds each event to the tile of its entity that holds its
	// time, at most once per event ID: PushWritten when added, PushOlder
	// when left out as already added, covered by the live generation's
	// cutoff, or older than the view's horizon; PushInvalid with the
	// reason otherwise. It returns one outcome per event, in order.
	AddEvents(ctx context.Context, v *View, events []TileEvent) ([]PushOutcome, error)
	// PutTiles stores the batch tiles of entities of generation gen of v,
	// before it is published.
	PutTiles(ctx context.Context, v *View, gen int64, cutoff time.Time, tiles []EntityTiles) error
}

// validateTile checks the tile of view v at path.
func (p *Project) validateTile(v *View, path string, add addFunc) {
	if v.Tile != 0 && v.Kind != KindAggregate {
		add(path+".tile", "only aggregate views have a tile interval")
		return
	}
	if v.Tile < 0 || (v.Tile > 0 && v.Tile%time.Second != 0) {
		add(path+".tile", "must be a positive whole number of seconds, such as 1m or 30s, got %s", v.Tile)
		return
	}
	if v.Kind != KindAggregate || (v.Tile == 0 && v.stream == nil) {
		return
	}
	tau := v.TileInterval()
	for i := range v.Aggregations {
		a := &v.Aggregations[i]
		for j, w := range a.Windows {
			if w.Duration%tau != 0 {
				add(fmt.Sprintf("%s.aggregations[%d].windows[%d]", path, i, j), "window %s is not a multiple of the view's tile %s: make it one, or choose a tile that divides every window", w.Label, tau)
			}
		}
		if v.stream == nil {
			continue
		}
		for _, fn := range a.Functions {
			if fn == AggCountDistinct && len(a.Windows) > 0 {
				add(fmt.Sprintf("%s.aggregations[%d].functions", path, i), "%s: count_distinct cannot be kept current from stream %q (its sets of values are not bounded per tile): compute it in a batch-only aggregate view", a.FeatureName(fn, a.Windows[0]), v.stream.Name)
				break
			}
		}
	}
	if v.stream != nil && v.TileHorizon()/tau > MaxHorizonTiles {
		add(path+".tile", "tile %s with horizon %s (max_age) makes %d tiles per window: at most %d; choose a longer tile or a shorter max_age", tau, v.TileHorizon(), v.TileHorizon()/tau, MaxHorizonTiles)
	}
}
