package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

var _ larder.TileStore = (*Store)(nil)

// Tiles of streaming aggregate views (see larder.View.Streaming).
//
// Each entity of such a view has a hash of its own, {view:key}:t, hash
// tagged by view and entity so that one script writes it on a cluster. It
// holds:
//
//   - g<gen>: what batch generation gen keeps for the entity's windows to
//     slide (larder.EntityTiles, encoded by appendEntityTiles), written
//     whole by the run before it publishes;
//   - s: the entity's stream tiles after the live cutoff, each with the ids
//     of the events added to it (encoded by appendStreamTiles).
//
// The store folds the stream's events into s itself: it reads s, adds the
// events whose ids its tiles do not hold, and writes s back only if no
// other writer changed it meanwhile: in one transaction off a cluster
// (addWatched), else, or when the transaction is refused, with a script
// that checks s is still what it read (casTilesScript), reading again the
// entities another writer changed. An event's id stays as long as its
// tile, so until the event is covered by a later cutoff or older than the
// horizon, when it is refused anyway.
func (k keys) tiles(view string, key []byte) string {
	return k.prefix + "{" + view + ":" + string(key) + "}:t"
}

// streamField is the field of a tiles hash that holds the stream tiles.
const streamField = "s"

// batchField returns the field of a tiles hash that holds the batch tiles
// of generation gen.
func batchField(gen int64) string {
	return "g" + strconv.FormatInt(gen, 10)
}

// casTilesScript writes, for each tiles hash KEYS[i], the stream tiles
// ARGV[3i-1] into its field s when s still holds ARGV[3i-2] ("" for
// none), and then, when ARGV[3i] is not 0, makes the hash last that many
// ms. It returns per key 1 when written, 0 when s held something else.
// Each redis.call costs more in a script than the command itself, so the
// script makes as few as it can: the caller reads the hashes' TTLs beside
// their tiles and asks for an extension only when one is due.
var casTilesScript = redis.NewScript(`
local out = {}
for i, k in ipairs(KEYS) do
  local b = 3 * i - 2
  if (redis.call('HGET', k, 's') or '') ~= ARGV[b] then
    out[i] = 0
  else
    redis.call('HSET', k, 's', ARGV[b + 1])
    if ARGV[b + 2] ~= '0' then redis.call('PEXPIRE', k, ARGV[b + 2]) end
    out[i] = 1
  end
end
return out
`)

// casChunk is the most entities one casTilesScript call writes: it bounds
// how long a script holds Redis.
const casChunk = 100

// putTilesScript stores, in each tiles hash KEYS[i], the batch tiles
// ARGV[3+i] of generation ARGV[1], drops those of generations before
// ARGV[2] (older than the live one) and any field of an older format, and
// makes the hash last ARGV[3] ms at least.
var putTilesScript = redis.NewScript(`
local live = tonumber(ARGV[2])
local last = tonumber(ARGV[3])
local field = 'g' .. ARGV[1]
for i, k in ipairs(KEYS) do
  for _, f in ipairs(redis.call('HKEYS', k)) do
    if f ~= 's' then
      local g = string.match(f, '^g(%d+)$')
      if not g or (tonumber(g) < live and f ~= field) then redis.call('HDEL', k, f) end
    end
  end
  redis.call('HSET', k, field, ARGV[3 + i])
  local ttl = redis.call('PTTL', k)
  if ttl < 0 or ttl < last then redis.call('PEXPIRE', k, last) end
end
return 1
`)

// putChunk is the most entities one putTilesScript call writes, off a
// cluster: it bounds how long a script holds Redis.
const putChunk = 100

// tileSpec is what a streaming aggregate view keeps per aggregation.
type tileSpec struct {
	kind                      byte // 'f', 'i' or 's'
	typ                       larder.Type
	sum, min, max, last, rows bool
}

// tileSpecs returns the specs of v's aggregations.
func tileSpecs(v *larder.View) []tileSpec {
	out := make([]tileSpec, len(v.Aggregations))
	for i := range v.Aggregations {
		a := &v.Aggregations[i]
		typ := a.Type
		if a.Column == "" {
			typ = larder.TypeInt64
		}
		sp := tileSpec{kind: larder.AggKindOf(typ), typ: typ, rows: a.Column == ""}
		for _, fn := range a.Functions {
			switch fn {
			case larder.AggSum, larder.AggMean:
				sp.sum = sp.kind != 's'
			case larder.AggMin:
				sp.min = sp.kind != 's'
			case larder.AggMax:
				sp.max = sp.kind != 's'
			case larder.AggLast:
				sp.last = true
			}
		}
		out[i] = sp
	}
	return out
}

// lastTileTime is the last time a tile holds: its events are kept as
// nanoseconds since the Unix epoch, in an int64.
var lastTileTime = time.Unix(0, math.MaxInt64).UTC()

// tileCutoff returns the cutoff of generation g of v: its as-of rounded
// down to the view's tile.
func tileCutoff(v *larder.View, g larder.Generation) time.Time {
	return larder.TileFloor(g.AsOf, v.TileInterval())
}

// AddEvents adds events to the stream tiles of streaming aggregate view v
// (see larder.TileStore). It reads the stream tiles of the events'
// entities in one pipelined round trip, adds the events to them, and
// writes back those that changed in a second, only when no other writer
// changed them meanwhile: off a cluster in one transaction (addWatched);
// else, or when Redis refuses it, with casTilesScript, reading and adding
// to again the entities another writer changed. Events at or before the
// live generation's cutoff are left out (the batch covers them), as are
// those older than the view's horizon before now: they could only count
// in windows the view no longer answers fresh.
func (s *Store) AddEvents(ctx context.Context, v *larder.View, events []larder.TileEvent) ([]larder.PushOutcome, error) {
	if !v.Streaming() {
		return nil, larder.Invalidf("view %s is not a streaming aggregate view: no stream feeds it", v.Name)
	}
	out := make([]larder.PushOutcome, len(events))
	tau, horizon := v.TileInterval(), v.TileHorizon()
	now := s.now()
	floor := larder.TileFloor(now.Add(-horizon), tau)
	minTile := floor.UnixNano() / int64(tau)
	if g, err := s.liveFor(ctx, v.Name); err == nil {
		minTile = max(minTile, tileCutoff(v, g.gen).UnixNano()/int64(tau))
	} else if !errors.Is(err, larder.ErrNoGeneration) {
		return nil, err
	}
	specs := s.tileViewOf(v).specs
	e := v.EntityDef()

	var ents []*tileEntity
	byKey := map[string]*tileEntity{}
	vals := make([]tileValue, 0, len(events)*len(specs))
	for i, ev := range events {
		if err := ev.Key.Check(e); err != nil {
			out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: err.Error()}
			continue
		}
		if ev.ID == "" {
			out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: "the event has no id"}
			continue
		}
		if len(ev.Values) != len(specs) {
			out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: fmt.Sprintf("%d values for %d aggregations", len(ev.Values), len(specs))}
			continue
		}
		// Compared as times: the nanoseconds of a time before 1678 or
		// after 2262 wrap around, and could land in any window.
		switch {
		case ev.Time.After(lastTileTime):
			out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: fmt.Sprintf("event time %s is after %s, the last time a tile holds",
				ev.Time.UTC().Format(time.RFC3339Nano), lastTileTime.Format(time.RFC3339Nano))}
			continue
		case !ev.Time.After(floor):
			out[i] = larder.PushOutcome{Result: larder.PushOlder}
			continue
		}
		start := len(vals)
		var reason string
		if vals, reason = appendEventValues(vals, specs, v, ev.Values); reason != "" {
			vals = vals[:start]
			out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: reason}
			continue
		}
		key := ev.Key.AppendCanonical(nil)
		c := byKey[string(key)]
		if c == nil {
			c = &tileEntity{key: s.k.tiles(v.Name, key)}
			byKey[string(key)] = c
			ents = append(ents, c)
		}
		t := ev.Time.UnixNano()
		c.events = append(c.events, tileEventAt{i: i, vals: start, tile: larder.TileOf(ev.Time, tau), t: t, id: appendEventID(nil, ev.ID)})
		c.newest = max(c.newest, t)
	}
	if len(ents) == 0 {
		return out, nil
	}
	a := tileAdder{specs: specs, tau: int64(tau), tag: s.tileViewOf(v).tag, minTile: minTile, vals: vals}
	// prepare adds the events of ents to the stream tiles read by gets,
	// sets the outcomes of the entities it leaves unchanged, and returns
	// the others with, per entity, the tiles read, the tiles to write and
	// how long the hash must last from now (0: long enough).
	prepare := func(ents []*tileEntity, gets []*redis.StringCmd, ttls []*redis.DurationCmd) ([]*tileEntity, []any, error) {
		var writes []*tileEntity
		args := make([]any, 0, 3*len(ents))
		for i, c := range ents {
			old, err := gets[i].Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, nil, redisErr(ctx, "read the tiles of "+v.Name, err)
			}
			if c.new, err = a.add(c, old); err != nil {
				return nil, nil, fmt.Errorf("store: add events to %s: %w", v.Name, err)
			}
			if c.new == nil {
				c.done(out) // nothing new: every event left out
				continue
			}
			// The hash must last until the newest event is older than the
			// horizon. It is made to last a quarter more, and again only
			// once it has aged by a fifth of that, to spare a command.
			need := time.Unix(0, max(c.newest, now.UnixNano())).Add(horizon + tau).Sub(now).Milliseconds()
			last := need + need/4
			if ttl, err := ttls[i].Result(); err == nil && ttl > 0 && ttl.Milliseconds() >= last-last/5 {
				last = 0
			}
			writes = append(writes, c)
			args = append(args, old, c.new, last)
		}
		return writes, args, nil
	}
	_, cluster := s.client.(*redis.ClusterClient)
	if c, ok := s.client.(*redis.Client); ok {
		// Off a cluster, one transaction first: no script, and with one
		// writer (a consumer alone on its stream) the common case.
		writes, committed, err := addWatched(ctx, c, "add events to "+v.Name, ents, prepare)
		if err != nil {
			return nil, err
		}
		if committed {
			for _, c := range writes {
				c.done(out)
			}
			return out, nil
		}
	}
	for attempt := 0; len(ents) > 0; attempt++ {
		if attempt == maxTileAttempts {
			return nil, fmt.Errorf("store: add events to %s: %d entities changed by other writers %d times in a row", v.Name, len(ents), attempt)
		}
		pipe := s.client.Pipeline()
		gets := make([]*redis.StringCmd, len(ents))
		ttls := make([]*redis.DurationCmd, len(ents))
		for i, c := range ents {
			gets[i] = pipe.HGet(ctx, c.key, streamField)
			ttls[i] = pipe.PTTL(ctx, c.key)
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		writes, args, err := prepare(ents, gets, ttls)
		if err != nil {
			return nil, err
		}
		if len(writes) == 0 {
			break
		}
		// One script per chunk of entities; on a cluster, where the
		// entities' hashes are in slots of their own, one per entity.
		chunk := casChunk
		if cluster {
			chunk = 1
		}
		pipe = s.client.Pipeline()
		var cmds []*redis.Cmd
		keys := make([]string, len(writes))
		for i, c := range writes {
			keys[i] = c.key
		}
		for lo := 0; lo < len(writes); lo += chunk {
			hi := min(len(writes), lo+chunk)
			cmds = append(cmds, casTilesScript.EvalSha(ctx, pipe, keys[lo:hi], args[3*lo:3*hi]...))
		}
		_, _ = pipe.Exec(ctx)
		ents = ents[:0]
		noscript := false
		for i, cmd := range cmds {
			part := writes[i*chunk : min(len(writes), (i+1)*chunk)]
			res, err := cmd.Int64Slice()
			switch {
			case redis.HasErrorPrefix(err, "NOSCRIPT"):
				noscript = true
				ents = append(ents, part...)
			case err != nil:
				return nil, redisErr(ctx, "add events to "+v.Name, err)
			default:
				for j, c := range part {
					if res[j] == 1 {
						c.done(out)
					} else {
						ents = append(ents, c) // changed meanwhile: again
					}
				}
			}
		}
		if noscript {
			if err := casTilesScript.Load(ctx, s.client).Err(); err != nil {
				return nil, redisErr(ctx, "load the tile script", err)
			}
		}
	}
	return out, nil
}

// addWatched reads the stream tiles of ents and writes back what prepare
// makes of them in one transaction, which Redis refuses when another
// writer changed any of the hashes meanwhile (WATCH, the reads, then MULTI
// and EXEC, in two round trips on one connection). It returns what it
// wrote and whether it committed; when it did not, nothing was written,
// and the caller writes with casTilesScript instead. Redis errors are
// reported as doing what.
func addWatched(ctx context.Context, client *redis.Client, what string, ents []*tileEntity,
	prepare func([]*tileEntity, []*redis.StringCmd, []*redis.DurationCmd) ([]*tileEntity, []any, error)) ([]*tileEntity, bool, error) {
	var writes []*tileEntity
	committed := false
	err := client.Watch(ctx, func(tx *redis.Tx) error {
		watch := make([]any, 1, 1+len(ents))
		watch[0] = "watch"
		for _, c := range ents {
			watch = append(watch, c.key)
		}
		gets := make([]*redis.StringCmd, len(ents))
		ttls := make([]*redis.DurationCmd, len(ents))
		watched := redis.NewStatusCmd(ctx, watch...)
		_, _ = tx.Pipelined(ctx, func(p redis.Pipeliner) error {
			_ = p.Process(ctx, watched)
			for i, c := range ents {
				gets[i] = p.HGet(ctx, c.key, streamField)
				ttls[i] = p.PTTL(ctx, c.key)
			}
			return nil
		})
		execd := false
		defer func() {
			if !execd {
				// The connection goes back to the pool: leave no key
				// watched on it.
				_ = tx.Unwatch(ctx).Err()
			}
		}()
		if err := watched.Err(); err != nil {
			return redisErr(ctx, what, err)
		}
		var args []any
		var err error
		if writes, args, err = prepare(ents, gets, ttls); err != nil {
			return err
		}
		if len(writes) == 0 {
			committed = true
			return nil
		}
		execd = true
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range writes {
				p.HSet(ctx, c.key, streamField, c.new)
				if last := args[3*i+2].(int64); last != 0 {
					p.PExpire(ctx, c.key, time.Duration(last)*time.Millisecond)
				}
			}
			return nil
		})
		if errors.Is(err, redis.TxFailedErr) {
			return nil
		}
		if err != nil {
			return redisErr(ctx, what, err)
		}
		committed = true
		return nil
	})
	return writes, committed, err
}

// maxTileAttempts bounds how many times AddEvents reads an entity's tiles
// again because another writer changed them.
const maxTileAttempts = 100

// tileEntity is the events of one entity of a call of AddEvents.
type tileEntity struct {
	key    string
	events []tileEventAt
	newest int64
	// new is what to write of the stream tiles read, nil when nothing
	// changes.
	new []byte
}

// tileEventAt is one event of a tileEntity: its index in the call, where
// its values start in tileAdder.vals, its tile and time, and its id
// (appendEventID); added says whether it was added by the last try.
type tileEventAt struct {
	i, vals int
	tile, t int64
	id      []byte
	added   bool
}

// done sets the outcomes of c's events.
func (c *tileEntity) done(out []larder.PushOutcome) {
	for _, ev := range c.events {
		out[ev.i].Result = larder.PushOlder
		if ev.added {
			out[ev.i].Result = larder.PushWritten
		}
	}
}

// tileValue is the value of one aggregation of an event: null, or the
// bits of a larder.Partial with, for strings, the string.
type tileValue struct {
	null bool
	u    uint64
	s    string
}

// tileAdder adds the events of entities to their stream tiles.
type tileAdder struct {
	specs   []tileSpec
	tau     int64
	tag     uint32 // of the view's definition (tilesTag)
	minTile int64
	vals    []tileValue
	tiles   []streamTile
	buf     []byte
}

// add returns the encoding of the stream tiles old with the events of c
// added, each once by its id, and the tiles at or before minTile dropped;
// nil when that changes nothing. It marks the events it adds.
func (a *tileAdder) add(c *tileEntity, old string) ([]byte, error) {
	tiles, err := decodeStreamTiles(old, a.tag, a.tiles)
	if err != nil {
		return nil, err
	}
	changed := false
	for k := range c.events {
		ev := &c.events[k]
		ev.added = false
		if ev.tile <= a.minTile {
			continue
		}
		j, found := slices.BinarySearchFunc(tiles, ev.tile, func(t streamTile, end int64) int { return cmp.Compare(t.end, end) })
		if !found {
			tiles = slices.Insert(tiles, j, streamTile{end: ev.tile, decoded: true, newest: ev.t, parts: make([]larder.Partial, len(a.specs))})
		} else if err := tiles[j].decode(a.specs, a.tau, true); err != nil {
			return nil, err
		} else if tiles[j].hasID(ev.id) {
			continue
		}
		t := &tiles[j]
		ev.added, changed = true, true
		t.raw = nil
		t.newest = max(t.newest, ev.t)
		t.ids = append(t.ids, ev.id...)
		t.nids++
		for x, sp := range a.specs {
			if v := a.vals[ev.vals+x]; !v.null {
				t.parts[x].Add(sp.kind, ev.t, v.u, v.s)
			}
		}
	}
	n := 0
	for n < len(tiles) && tiles[n].end <= a.minTile {
		n++
	}
	a.tiles = tiles
	if !changed && n == 0 {
		return nil, nil
	}
	a.buf = appendStreamTiles(a.buf[:0], a.specs, a.tau, a.tag, tiles[n:])
	return slices.Clone(a.buf), nil
}

// appendEventValues appends the values of one event to dst, one per
// aggregation, or returns why the event cannot apply.
func appendEventValues(dst []tileValue, specs []tileSpec, v *larder.View, values []larder.Value) ([]tileValue, string) {
	for a, sp := range specs {
		x := values[a]
		if sp.rows {
			dst = append(dst, tileValue{u: 1})
			continue
		}
		if x.IsNull() {
			dst = append(dst, tileValue{null: true})
			continue
		}
		agg := &v.Aggregations[a]
		if x.Type() != agg.Type {
			return dst, fmt.Sprintf("column %s: want %s, got %s", agg.Column, agg.Type, x.Type())
		}
		switch x.Type() {
		case larder.TypeFloat64, larder.TypeFloat32:
			f := x.Float64()
			if x.Type() == larder.TypeFloat32 {
				f = float64(x.Float32())
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return dst, fmt.Sprintf("column %s: %v is not a finite number: a streaming aggregate view folds finite values only", agg.Column, f)
			}
		case larder.TypeInt64, larder.TypeString, larder.TypeBool:
		default:
			return dst, fmt.Sprintf("column %s: %s values cannot be aggregated", agg.Column, x.Type())
		}
		u, _ := larder.PartialBits(x)
		tv := tileValue{u: u}
		if x.Type() == larder.TypeString {
			tv.s = x.Str()
		}
		dst = append(dst, tv)
	}
	return dst, ""
}

// PutTiles stores the batch tiles of entities of generation gen of
// streaming aggregate view v, whose cutoff is cutoff (see
// larder.TileStore), in one pipeline: one script per putChunk entities (per
// entity on a cluster, where the entities' hashes are in slots of their
// own). The tiles of generations older than the live one are dropped on
// the way; each hash lasts at least until cutoff + horizon, when they are
// no longer read.
func (s *Store) PutTiles(ctx context.Context, v *larder.View, gen int64, cutoff time.Time, tiles []larder.EntityTiles) error {
	if len(tiles) == 0 {
		return nil
	}
	live := int64(0)
	if g, err := s.liveFor(ctx, v.Name); err == nil {
		live = g.gen.ID
	} else if !errors.Is(err, larder.ErrNoGeneration) {
		return err
	}
	tv := s.tileViewOf(v)
	specs := tv.specs
	tau := v.TileInterval()
	now := s.now()
	last := max(cutoff.Add(v.TileHorizon()+tau).Sub(now), tau).Milliseconds()
	keys := make([]string, len(tiles))
	args := make([]any, 0, 3+len(tiles))
	args = append(args, gen, live, last)
	var buf []byte
	for i := range tiles {
		et := &tiles[i]
		buf = appendEntityTiles(buf[:0], specs, cutoff.UnixNano()/int64(tau), int64(tau), tv.batchTag, et)
		keys[i] = s.k.tiles(v.Name, et.Key.AppendCanonical(nil))
		args = append(args, string(buf))
	}
	chunk := putChunk
	if _, cluster := s.client.(*redis.ClusterClient); cluster {
		chunk = 1
	}
	for attempt := 0; ; attempt++ {
		pipe := s.client.Pipeline()
		var cmds []*redis.Cmd
		for lo := 0; lo < len(keys); lo += chunk {
			hi := min(len(keys), lo+chunk)
			// The arguments shared by the chunk's keys, then theirs.
			chunkArgs := append(append(make([]any, 0, 3+hi-lo), args[:3]...), args[3+lo:3+hi]...)
			cmds = append(cmds, putTilesScript.EvalSha(ctx, pipe, keys[lo:hi], chunkArgs...))
		}
		_, _ = pipe.Exec(ctx)
		noscript := false
		for _, cmd := range cmds {
			err := cmd.Err()
			if redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
				noscript = true
				continue
			}
			if err != nil {
				return redisErr(ctx, "write the tiles of "+v.Name, err)
			}
		}
		if !noscript {
			return nil
		}
		if err := putTilesScript.Load(ctx, s.client).Err(); err != nil {
			return redisErr(ctx, "load the tile script", err)
		}
	}
}

// tileRead is what a Read of a streaming aggregate view needs per key
// beyond the row: the command reading the fields of the entity's tiles
// hash that the read uses, the generation's batch tiles and the stream
// tiles.
type tileRead struct {
	cmd *redis.SliceCmd
}

// buildTiles adds to c, for every key of every lookup of a streaming
// aggregate view that reads the live generation, the command that reads
// its tiles hash. reads gets one entry per key, nil for the others.
func (s *Store) buildTiles(c *readCall, lookups []*larder.Lookup, gens []*liveGen) []*tileRead {
	var reads []*tileRead
	i := 0
	for li, l := range lookups {
		tiled := l.View.Streaming() && l.Pin == 0
		var field string
		if tiled {
			field = batchField(gens[li].gen.ID)
		}
		for _, k := range l.Keys {
			if tiled {
				if reads == nil {
					reads = make([]*tileRead, i, i+len(l.Keys))
				}
				cmd := redis.NewSliceCmd(c.ctx, "hmget", s.k.tiles(l.View.Name, k.AppendCanonical(nil)), field, streamField)
				c.cmds = append(c.cmds, cmd)
				reads = append(reads, &tileRead{cmd: cmd})
			} else if reads != nil {
				reads = append(reads, nil)
			}
			i++
		}
	}
	return reads
}

// combineTiles sets the row of key j of lookup l, a streaming aggregate
// view read from generation g, to its values as of l.TileTime (now rounded
// down to the view's tile, taken once per lookup by finishTiles), from the
// batch row and the tiles in tr: found says
// whether the batch has a row. It leaves the row as the batch wrote it
// (as of the cutoff) when T is the cutoff or past its horizon, or when the
// generation kept no tiles for the entity.
func (s *Store) combineTiles(ctx context.Context, l *larder.Lookup, g *liveGen, j int, found bool, tr *tileRead) error {
	v := l.View
	tau, horizon := v.TileInterval(), v.TileHorizon()
	cut := tileCutoff(v, g.gen)
	if found {
		cut = larder.TileFloor(l.Rows[j].EventTime, tau)
	}
	T := l.TileTime
	// At the cutoff no stream tile is in a window (the stream's tiles
	// are after it), and the row holds the windows as the run computed
	// them: floats added in read order, a NaN or a −0 placed as read, the
	// view's value rules applied. Recombining its tiles, in time order,
	// would answer a float's last bits, a NaN's place or a nulled
	// non-finite value otherwise than the run stored and an export at C
	// computes.
	if !T.After(cut) || T.After(cut.Add(horizon)) {
		return nil
	}
	h, err := tr.cmd.Result()
	if err != nil || len(h) != 2 {
		return redisErr(ctx, "read the tiles of "+v.Name, err)
	}
	tv := s.tileViewOf(v)
	specs := tv.specs
	sc := tileScratchPool.Get().(*tileScratch)
	defer tileScratchPool.Put(sc)
	batch := &sc.batch
	batch.Aggs = batch.Aggs[:0]
	c, t := cut.UnixNano()/int64(tau), T.UnixNano()/int64(tau)
	if blob, ok := h[0].(string); ok {
		err := decodeEntityTiles(blob, specs, c, int64(tau), tv.batchTag, batch)
		if errors.Is(err, errOtherTiles) {
			// Written under another tile or horizon, or other
			// aggregations, of a schema that did not change: the row as
			// the run wrote it.
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: read %s key %s: %w", v.Name, l.Keys[j], err)
		}
	} else if found {
		// A generation written before the view had a stream, or by a
		// release that kept its tiles in another format.
		return nil
	}
	blob, _ := h[1].(string)
	st, err := decodeStreamTiles(blob, tv.tag, sc.stream)
	sc.stream = st
	if err != nil {
		return fmt.Errorf("store: read %s key %s: %w", v.Name, l.Keys[j], err)
	}
	lo, hi := 0, len(st)
	for lo < hi && st[lo].end <= c {
		lo++
	}
	for hi > lo && st[hi-1].end > t {
		hi--
	}
	st = st[lo:hi]
	newest := int64(0)
	for k := range st {
		if err := st[k].decode(specs, int64(tau), false); err != nil {
			return fmt.Errorf("store: read %s key %s: %w", v.Name, l.Keys[j], err)
		}
		newest = max(newest, st[k].newest)
	}
	if !found && newest == 0 {
		return nil // no row, no event
	}
	l.Found[j] = true
	row := &l.Rows[j]
	row.EventTime = T
	feats := tv.feats
	row.Values = resize(row.Values, len(feats))
	hz := int64(horizon / tau)
	// The view's non_finite rule, as a read applies it: a run would have
	// stored a non-finite value as null (null), or refused it (reject),
	// unless the view keeps it (keep).
	nulls := v.NonFinitePolicy() != larder.PolicyKeep
	for i, f := range feats {
		sp := specs[f.Aggregation]
		wn := int64(f.Window.Duration / tau)
		w := tv.windows[i]
		var p larder.Partial
		if len(batch.Aggs) > 0 {
			at := &batch.Aggs[f.Aggregation]
			for k := range at.Tiles {
				if e := at.Tiles[k].End; e > t-wn && e <= min(c, c-wn+hz) {
					p.Merge(sp.kind, &at.Tiles[k].Partial)
				}
			}
			if w < len(at.Rest) {
				p.Merge(sp.kind, &at.Rest[w])
			}
		}
		for k := range st {
			if st[k].end > t-wn {
				p.Merge(sp.kind, &st[k].parts[f.Aggregation])
			}
		}
		x := p.Value(f.Func, sp.typ)
		if !x.IsNull() && !x.Finite() && nulls {
			// A NaN of the files, or a sum past the float range: stored as
			// null by the run, so answered as null here too.
			x = larder.Null
		}
		row.Values[i] = x
	}
	if newest > 0 {
		l.Streamed = resize(l.Streamed, len(l.Keys))
		l.Streamed[j] = time.Unix(0, newest).UTC()
	}
	return nil
}

// tileScratch is what combineTiles decodes an entity's tiles into, kept
// from one read to the next.
type tileScratch struct {
	batch  larder.EntityTiles
	stream []streamTile
}

var tileScratchPool = sync.Pool{New: func() any { return new(tileScratch) }}

// holdNumbers takes the NumberReads off the lookups that read tiles, so
// that decode fills their rows, and returns them by lookup.
func holdNumbers(lookups []*larder.Lookup, tiles []*tileRead) []*larder.NumberRead {
	var out []*larder.NumberRead
	i := 0
	for li, l := range lookups {
		if len(l.Keys) > 0 && tiles[i] != nil && l.Numbers != nil {
			if out == nil {
				out = make([]*larder.NumberRead, len(lookups))
			}
			out[li], l.Numbers = l.Numbers, nil
		}
		i += len(l.Keys)
	}
	return out
}

// finishTiles combines the rows of the lookups that read tiles with them
// (combineTiles), sets their TileTime and Streamed, and fills the
// NumberReads that holdNumbers took off them.
func (s *Store) finishTiles(ctx context.Context, lookups []*larder.Lookup, gens []*liveGen, tiles []*tileRead, numbers []*larder.NumberRead) error {
	i := 0
	for li, l := range lookups {
		first := i
		i += len(l.Keys)
		if len(l.Keys) == 0 || tiles[first] == nil {
			continue
		}
		l.TileTime = larder.TileFloor(s.now(), l.View.TileInterval())
		l.Streamed = resize(l.Streamed, len(l.Keys))
		clear(l.Streamed)
		for j := range l.Keys {
			if err := s.combineTiles(ctx, l, gens[li], j, l.Found[j], tiles[first+j]); err != nil {
				return err
			}
		}
		if numbers == nil || numbers[li] == nil {
			continue
		}
		nr := numbers[li]
		l.Numbers = nr
		nr.Values = resize(nr.Values, len(l.Keys)*len(nr.Features))
		for j := range l.Keys {
			out := nr.Values[j*len(nr.Features) : (j+1)*len(nr.Features)]
			row := &l.Rows[j]
			for k, f := range nr.Features {
				out[k] = nr.Defaults[k]
				if l.Found[j] && f < len(row.Values) {
					if x, ok := row.Values[f].Number(); ok {
						out[k] = float32(x)
					}
				}
			}
			row.Values = row.Values[:0]
		}
	}
	return nil
}

// tileView is what reads of a streaming aggregate view need of its
// definition, made once per definition: the specs of its aggregations,
// its features, and the index of each feature's window among its
// aggregation's.
type tileView struct {
	specs   []tileSpec
	feats   []larder.AggregateFeature
	windows []int
	tag     uint32 // tilesTag of the definition, for the stream tiles
	// batchTag is tag and the horizon, for the batch tiles: which tiles
	// a run keeps, and which go to the windows' rests, depends on it.
	batchTag uint32
}

// tilesTag returns the tag of what stream tiles written under specs and
// tau mean: their aggregations' kinds, types and statistics, and the
// tile. Two definitions that differ in any of these have other tags.
func tilesTag(specs []tileSpec, tau time.Duration) uint32 {
	b := binary.AppendVarint(nil, int64(tau))
	for _, sp := range specs {
		flags := byte(0)
		for i, on := range []bool{sp.sum, sp.min, sp.max, sp.last, sp.rows} {
			if on {
				flags |= 1 << i
			}
		}
		b = append(b, sp.kind, byte(sp.typ), flags)
	}
	h := fnv.New32a()
	h.Write(b)
	return h.Sum32()
}

func (s *Store) tileViewOf(v *larder.View) *tileView {
	if tv, ok := s.tileViews.Load(v); ok {
		return tv.(*tileView)
	}
	tv := &tileView{specs: tileSpecs(v), feats: v.AggregateFeatures()}
	tv.tag = tilesTag(tv.specs, v.TileInterval())
	h := fnv.New32a()
	h.Write(binary.LittleEndian.AppendUint32(nil, tv.tag))
	h.Write(binary.AppendVarint(nil, int64(v.TileHorizon())))
	tv.batchTag = h.Sum32()
	for _, f := range tv.feats {
		tv.windows = append(tv.windows, slices.Index(v.Aggregations[f.Aggregation].Windows, f.Window))
	}
	s.tileViews.Store(v, tv)
	return tv
}
