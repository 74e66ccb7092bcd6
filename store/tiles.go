package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

var _ larder.TileStore = (*Store)(nil)

// Tiles of streaming aggregate views (see larder.View.Streaming).
//
// Each entity of such a view has a hash of its own, {view:key}:t, hash
// tagged by view and entity so that one script can write it and its event
// ids on a cluster. It holds:
//
//   - b<gen>: what batch generation gen keeps for the entity's windows to
//     slide (larder.EntityTiles, encoded by appendEntityTiles), and bg the
//     list of the generations with such a field;
//   - <tile>, a stream tile (see addEventsScript): its newest event time
//     and, per aggregation, its partial over that tile, as decimal text
//     (floats in %.17g, which reads back to the same bits); and
//     <tile>:<agg> the last value of a string aggregation;
//   - lo, the oldest stream tile held, so that a write knows when tiles
//     covered by a later batch cutoff are left to trim.
//
// Beside it, {view:key}:d is a sorted set of the ids of the stream events
// added to the entity, scored by event time in ms: an event whose id is
// there is not added again. Ids leave it once their events are older than
// the view's horizon, and so refused anyway.
func (k keys) tiles(view string, key []byte) string {
	return k.prefix + "{" + view + ":" + string(key) + "}:t"
}

func (k keys) tileIDs(view string, key []byte) string {
	return k.prefix + "{" + view + ":" + string(key) + "}:d"
}

// tileLua holds the helpers of the tile scripts: cmpint compares two
// integers written in decimal, of any size (Lua numbers are doubles), and
// less compares two values of an aggregation of kind 'f' or 'i'.
const tileLua = `
local function cmpint(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then
    if na then return -1 end
    return 1
  end
  local r
  if #a ~= #b then
    if #a < #b then r = -1 else r = 1 end
  elseif a == b then
    return 0
  elseif a < b then
    r = -1
  else
    r = 1
  end
  if na then r = -r end
  return r
end
local function less(kind, a, b)
  if kind == 'f' then return tonumber(a) < tonumber(b) end
  return cmpint(a, b) < 0
end
local function extend(key, ms, slack)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 or ttl < tonumber(ms) - slack then redis.call('PEXPIRE', key, ms) end
end
`

// addEventsScript adds the events of one entity to its stream tiles.
// KEYS[1] is the tiles hash, KEYS[2] the ids. ARGV[1] holds, per
// aggregation, its kind ('f', 'i' or 's') then the stats it keeps (s, n,
// x, l), comma-separated; ARGV[2] is the newest tile that takes no event
// (covered by the batch, or past the horizon); ARGV[3] the time in ms
// before which ids are dropped; ARGV[4] how long in ms the keys last, at
// least, less a fifth (a duration, so that the clocks of Redis and of the
// store may differ); ARGV[5] is unused. Then, per event: its id, tile, time in ns
// and in ms, and per aggregation an empty string for null, or '=' and the
// value. It returns per event 1 when added, 0 when left out.
//
// A tile is one field, named by its number: the newest event time, then
// per aggregation its count, sum, min, max, last value and last time,
// comma-separated, the parts separated by '|'. A string's last value is a
// field of its own, <tile>:<aggregation>, since it may hold any byte.
var addEventsScript = redis.NewScript(tileLua + `
local function split(s, sep)
  local out = {}
  for x in string.gmatch(s .. sep, '([^' .. sep .. ']*)' .. sep) do out[#out + 1] = x end
  return out
end
local specs = {}
for sp in string.gmatch(ARGV[1], '[^,]+') do specs[#specs + 1] = sp end
local nA, minTile, h = #specs, tonumber(ARGV[2]), KEYS[1]
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
local lo = tonumber(redis.call('HGET', h, 'lo') or '0')
local lo0 = lo
if lo ~= 0 and lo <= minTile then
  lo = 0
  for _, f in ipairs(redis.call('HKEYS', h)) do
    local e = tonumber(string.match(f, '^(%d+)'))
    if e then
      if e <= minTile then
        redis.call('HDEL', h, f)
      elseif lo == 0 or e < lo then
        lo = e
      end
    end
  end
end
local out, per, wrote = {}, 4 + nA, false
for b = 6, #ARGV, per do
  local id, tile, t = ARGV[b], tonumber(ARGV[b + 1]), ARGV[b + 2]
  if tile <= minTile or redis.call('ZADD', KEYS[2], 'NX', ARGV[b + 3], id) == 0 then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    wrote = true
    if lo == 0 or tile < lo then lo = tile end
    local f = ARGV[b + 1]
    local cur = redis.call('HGET', h, f)
    local parts = {}
    if cur then parts = split(cur, '|') end
    if not parts[1] or cmpint(t, parts[1]) > 0 then parts[1] = t end
    for a = 1, nA do
      local st = {'0', '', '', '', '', ''}
      if parts[a + 1] and parts[a + 1] ~= '' then st = split(parts[a + 1], ',') end
      local v = ARGV[b + 3 + a]
      if v ~= '' then
        v = string.sub(v, 2)
        local sp = specs[a]
        local kind = string.sub(sp, 1, 1)
        local c = tonumber(st[1]) + 1
        st[1] = string.format('%.0f', c)
        if string.find(sp, 's', 2, true) then
          local sum = (tonumber(st[2]) or 0) + tonumber(v)
          if kind == 'f' then st[2] = string.format('%.17g', sum) else st[2] = string.format('%.0f', sum) end
        end
        if string.find(sp, 'n', 2, true) and (c == 1 or less(kind, v, st[3])) then st[3] = v end
        if string.find(sp, 'x', 2, true) and (c == 1 or less(kind, st[4], v)) then st[4] = v end
        if string.find(sp, 'l', 2, true) and (c == 1 or cmpint(t, st[6]) >= 0) then
          if kind == 's' then
            redis.call('HSET', h, f .. ':' .. a, v)
          else
            st[5] = v
          end
          st[6] = t
        end
      end
      parts[a + 1] = table.concat(st, ',')
    end
    redis.call('HSET', h, f, table.concat(parts, '|'))
  end
end
if wrote then
  if lo ~= lo0 then redis.call('HSET', h, 'lo', tostring(lo)) end
  -- A key is made to last again only once it has aged by a fifth of the
  -- time it must last, to spare a command per event.
  local slack = math.floor(tonumber(ARGV[4]) / 5)
  extend(KEYS[1], ARGV[4], slack)
  extend(KEYS[2], ARGV[4], slack)
end
return out
`)

// putTilesScript stores the batch tiles of generation ARGV[1] (ARGV[2])
// in the tiles hash KEYS[1], drops those of generations before ARGV[3]
// (older than the live one), and makes the hash last ARGV[4] ms at least.
var putTilesScript = redis.NewScript(tileLua + `
local keep, gens = {ARGV[1]}, redis.call('HGET', KEYS[1], 'bg')
if gens then
  for g in string.gmatch(gens, '%d+') do
    if g ~= ARGV[1] then
      if tonumber(g) >= tonumber(ARGV[3]) then
        keep[#keep + 1] = g
      else
        redis.call('HDEL', KEYS[1], 'b' .. g)
      end
    end
  end
end
redis.call('HSET', KEYS[1], 'b' .. ARGV[1], ARGV[2], 'bg', table.concat(keep, ','))
extend(KEYS[1], ARGV[4], 0)
return 1
`)

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

// scriptSpec returns the first argument of addEventsScript for specs.
func scriptSpec(specs []tileSpec) string {
	var b strings.Builder
	for i, sp := range specs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte(sp.kind)
		for _, f := range []struct {
			on bool
			c  byte
		}{{sp.sum, 's'}, {sp.min, 'n'}, {sp.max, 'x'}, {sp.last, 'l'}} {
			if f.on {
				b.WriteByte(f.c)
			}
		}
	}
	return b.String()
}

// tileCutoff returns the cutoff of generation g of v: its as-of rounded
// down to the view's tile.
func tileCutoff(v *larder.View, g larder.Generation) time.Time {
	return larder.TileFloor(g.AsOf, v.TileInterval())
}

// AddEvents adds events to the stream tiles of streaming aggregate view v
// (see larder.TileStore): one script per entity, all in one pipelined
// round trip. Events at or before the live generation's cutoff are left
// out (the batch covers them), as are those older than the view's horizon
// before now: they could only count in windows the view no longer
// answers fresh.
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
	specs := tileSpecs(v)
	spec := scriptSpec(specs)
	e := v.EntityDef()

	type call struct {
		key    []byte
		idx    []int
		args   []any
		newest int64
	}
	var calls []*call
	byKey := map[string]*call{}
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
		vals, reason := eventArgs(specs, v, ev.Values)
		if reason != "" {
			out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: reason}
			continue
		}
		key := ev.Key.AppendCanonical(nil)
		c := byKey[string(key)]
		if c == nil {
			c = &call{key: key}
			byKey[string(key)] = c
			calls = append(calls, c)
		}
		t := ev.Time.UnixNano()
		c.idx = append(c.idx, i)
		c.args = append(c.args, ev.ID, larder.TileOf(ev.Time, tau), strconv.FormatInt(t, 10), ev.Time.UnixMilli())
		c.args = append(c.args, vals...)
		c.newest = max(c.newest, t)
	}
	if len(calls) == 0 {
		return out, nil
	}
	trim := floor.UnixMilli()
	for attempt := 0; len(calls) > 0; attempt++ {
		pipe := s.client.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			// The keys must last until the newest event is older than the
			// horizon; the script extends them only once they have aged
			// by a fifth of what it asks, so it asks a quarter more.
			need := time.Unix(0, max(c.newest, now.UnixNano())).Add(horizon + tau).Sub(now).Milliseconds()
			last := need + need/4
			args := append([]any{spec, minTile, trim, last, 0}, c.args...)
			cmds[i] = addEventsScript.EvalSha(ctx, pipe, []string{s.k.tiles(v.Name, c.key), s.k.tileIDs(v.Name, c.key)}, args...)
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		var again []*call
		for i, cmd := range cmds {
			res, err := cmd.Int64Slice()
			if redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
				again = append(again, calls[i])
				continue
			}
			if err != nil {
				return nil, redisErr(ctx, "add events to "+v.Name, err)
			}
			for j, k := range calls[i].idx {
				out[k].Result = larder.PushOlder
				if res[j] == 1 {
					out[k].Result = larder.PushWritten
				}
			}
		}
		if len(again) > 0 {
			if err := addEventsScript.Load(ctx, s.client).Err(); err != nil {
				return nil, redisErr(ctx, "load the tile script", err)
			}
		}
		calls = again
	}
	return out, nil
}

// maxStreamInt bounds the integers a stream may add to a tile: the tile
// script adds in doubles, exact up to 2^53, so that 8,192 events of a tile
// at the bound still sum exactly.
const maxStreamInt = 1 << 40

// eventArgs returns the script's arguments for the values of one event,
// one per aggregation, or why the event cannot apply.
func eventArgs(specs []tileSpec, v *larder.View, values []larder.Value) ([]any, string) {
	out := make([]any, len(specs))
	for a, sp := range specs {
		x := values[a]
		if sp.rows {
			out[a] = "=1"
			continue
		}
		if x.IsNull() {
			out[a] = ""
			continue
		}
		agg := &v.Aggregations[a]
		if x.Type() != agg.Type {
			return nil, fmt.Sprintf("column %s: want %s, got %s", agg.Column, agg.Type, x.Type())
		}
		switch x.Type() {
		case larder.TypeInt64:
			if n := x.Int64(); n > maxStreamInt || n < -maxStreamInt {
				return nil, fmt.Sprintf("column %s: %d is beyond ±2^40, the largest integer a streaming aggregate view folds (its tile sums are exact up to 2^53)", agg.Column, n)
			}
			out[a] = "=" + strconv.FormatInt(x.Int64(), 10)
		case larder.TypeBool:
			out[a] = "=0"
			if x.Bool() {
				out[a] = "=1"
			}
		case larder.TypeFloat64, larder.TypeFloat32:
			f := x.Float64()
			if x.Type() == larder.TypeFloat32 {
				f = float64(x.Float32())
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Sprintf("column %s: %v is not a finite number: a streaming aggregate view folds finite values only", agg.Column, f)
			}
			out[a] = "=" + strconv.FormatFloat(f, 'g', -1, 64)
		case larder.TypeString:
			out[a] = "=" + x.Str()
		default:
			return nil, fmt.Sprintf("column %s: %s values cannot be aggregated", agg.Column, x.Type())
		}
	}
	return out, ""
}

// PutTiles stores the batch tiles of entities of generation gen of
// streaming aggregate view v, whose cutoff is cutoff (see
// larder.TileStore), one script per entity in pipelines of tileChunk. The
// tiles of generations older than the live one are dropped on the way;
// each hash lasts at least until cutoff + horizon, when they are no longer
// read.
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
	specs := tileSpecs(v)
	tau := v.TileInterval()
	now := s.now()
	last := max(cutoff.Add(v.TileHorizon()+tau).Sub(now), tau).Milliseconds()
	var buf []byte
	for attempt := 0; ; attempt++ {
		pipe := s.client.Pipeline()
		cmds := make([]*redis.Cmd, len(tiles))
		for i := range tiles {
			et := &tiles[i]
			buf = appendEntityTiles(buf[:0], specs, cutoff.UnixNano()/int64(tau), et)
			key := et.Key.AppendCanonical(nil)
			cmds[i] = putTilesScript.EvalSha(ctx, pipe, []string{s.k.tiles(v.Name, key)}, gen, string(buf), live, last)
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

// appendEntityTiles appends the encoding of et to dst: per aggregation,
// the number of tiles, each tile's end relative to the cutoff tile c (a
// varint) and partial, then the partial of each window's rest.
func appendEntityTiles(dst []byte, specs []tileSpec, c int64, et *larder.EntityTiles) []byte {
	for a, sp := range specs {
		at := &et.Aggs[a]
		dst = binary.AppendUvarint(dst, uint64(len(at.Tiles)))
		for i := range at.Tiles {
			dst = binary.AppendVarint(dst, at.Tiles[i].End-c)
			dst = appendPartial(dst, sp, &at.Tiles[i].Partial)
		}
		dst = binary.AppendUvarint(dst, uint64(len(at.Rest)))
		for i := range at.Rest {
			dst = appendPartial(dst, sp, &at.Rest[i])
		}
	}
	return dst
}

func appendPartial(dst []byte, sp tileSpec, p *larder.Partial) []byte {
	dst = binary.AppendUvarint(dst, uint64(p.Count))
	if p.Count == 0 {
		return dst
	}
	if sp.sum {
		dst = binary.LittleEndian.AppendUint64(dst, p.Sum)
	}
	if sp.min {
		dst = binary.LittleEndian.AppendUint64(dst, p.Min)
	}
	if sp.max {
		dst = binary.LittleEndian.AppendUint64(dst, p.Max)
	}
	if sp.last {
		dst = binary.AppendVarint(dst, p.LastAt)
		if sp.kind == 's' {
			dst = binary.AppendUvarint(dst, uint64(len(p.LastStr)))
			dst = append(dst, p.LastStr...)
		} else {
			dst = binary.LittleEndian.AppendUint64(dst, p.Last)
		}
	}
	return dst
}

// errBadTiles is a batch tiles field that does not decode.
var errBadTiles = errors.New("store: batch tiles do not decode")

// tileReader reads an encoding of appendEntityTiles.
type tileReader struct {
	b   []byte
	err error
}

func (r *tileReader) uvarint() uint64 {
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err, r.b = errBadTiles, nil
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *tileReader) varint() int64 {
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.err, r.b = errBadTiles, nil
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *tileReader) word() uint64 {
	if len(r.b) < 8 {
		r.err, r.b = errBadTiles, nil
		return 0
	}
	x := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return x
}

func (r *tileReader) partial(sp tileSpec, p *larder.Partial) {
	*p = larder.Partial{Count: int64(r.uvarint())}
	if p.Count == 0 {
		return
	}
	if sp.sum {
		p.Sum = r.word()
	}
	if sp.min {
		p.Min = r.word()
	}
	if sp.max {
		p.Max = r.word()
	}
	if sp.last {
		p.LastAt = r.varint()
		if sp.kind == 's' {
			n := r.uvarint()
			if uint64(len(r.b)) < n {
				r.err, r.b = errBadTiles, nil
				return
			}
			p.LastStr, r.b = string(r.b[:n]), r.b[n:]
		} else {
			p.Last = r.word()
		}
	}
}

// decodeEntityTiles decodes an encoding of appendEntityTiles into et.
func decodeEntityTiles(src string, specs []tileSpec, c int64, et *larder.EntityTiles) error {
	r := tileReader{b: unsafe.Slice(unsafe.StringData(src), len(src))} // read only
	et.Aggs = resize(et.Aggs, len(specs))
	for a, sp := range specs {
		at := &et.Aggs[a]
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			return errBadTiles
		}
		at.Tiles = resize(at.Tiles, int(n))
		for i := range at.Tiles {
			at.Tiles[i].End = c + r.varint()
			r.partial(sp, &at.Tiles[i].Partial)
		}
		n = r.uvarint()
		if n > uint64(len(r.b))+1 {
			return errBadTiles
		}
		at.Rest = resize(at.Rest, int(n))
		for i := range at.Rest {
			r.partial(sp, &at.Rest[i])
		}
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

// streamTiles holds the stream tiles of one entity with an end in
// (lo, hi]: per aggregation, the tiles in increasing end; and the newest
// event time of them all (Unix ns, 0 when none).
type streamTiles struct {
	aggs   [][]larder.Tile
	newest int64
}

// parseStreamTiles reads the stream tiles with an end in (lo, hi] of a
// tiles hash (see addEventsScript).
func parseStreamTiles(h map[string]string, specs []tileSpec, lo, hi int64) (streamTiles, error) {
	st := streamTiles{aggs: make([][]larder.Tile, len(specs))}
	var lastStr map[[2]int64]string
	for f, val := range h {
		tileText, aText, isStr := strings.Cut(f, ":")
		tile, err := strconv.ParseInt(tileText, 10, 64)
		if err != nil || tile <= lo || tile > hi {
			continue // lo, bg, b<gen>, and tiles out of reach
		}
		if isStr {
			a, err := strconv.Atoi(aText)
			if err == nil {
				if lastStr == nil {
					lastStr = map[[2]int64]string{}
				}
				lastStr[[2]int64{int64(a - 1), tile}] = val
			}
			continue
		}
		part, rest, _ := strings.Cut(val, "|")
		at, err := strconv.ParseInt(part, 10, 64)
		if err != nil {
			return st, fmt.Errorf("store: stream tile %s: %w", f, err)
		}
		st.newest = max(st.newest, at)
		for a, sp := range specs {
			if rest == "" && a > 0 {
				return st, fmt.Errorf("store: stream tile %s holds %d aggregations, want %d", f, a, len(specs))
			}
			part, rest, _ = strings.Cut(rest, "|")
			var stats [6]string
			for i := range stats {
				stats[i], part, _ = strings.Cut(part, ",")
			}
			var p larder.Partial
			if p.Count, err = strconv.ParseInt(stats[0], 10, 64); err != nil || p.Count == 0 {
				continue
			}
			for i, dst := range [4]*uint64{&p.Sum, &p.Min, &p.Max, &p.Last} {
				if stats[i+1] == "" || (i == 3 && sp.kind == 's') {
					continue
				}
				if *dst, err = parseBits(sp.kind, stats[i+1]); err != nil {
					return st, fmt.Errorf("store: stream tile %s aggregation %d: %w", f, a+1, err)
				}
			}
			if stats[5] != "" {
				if p.LastAt, err = strconv.ParseInt(stats[5], 10, 64); err != nil {
					return st, fmt.Errorf("store: stream tile %s aggregation %d: %w", f, a+1, err)
				}
			}
			st.aggs[a] = append(st.aggs[a], larder.Tile{End: tile, Partial: p})
		}
	}
	for a := range st.aggs {
		if specs[a].kind == 's' && specs[a].last {
			for k := range st.aggs[a] {
				st.aggs[a][k].LastStr = lastStr[[2]int64{int64(a), st.aggs[a][k].End}]
			}
		}
		slices.SortFunc(st.aggs[a], func(x, y larder.Tile) int { return int(x.End - y.End) })
	}
	return st, nil
}

// parseBits returns the bits of a value written by the tile script.
func parseBits(kind byte, s string) (uint64, error) {
	if kind == 'f' {
		f, err := strconv.ParseFloat(s, 64)
		return math.Float64bits(f), err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return uint64(n), err
}

// tileRead is what a Read of a streaming aggregate view needs per key
// beyond the row: the command reading the entity's tiles hash.
type tileRead struct {
	cmd *redis.MapStringStringCmd
}

// buildTiles adds to c, for every key of every lookup of a streaming
// aggregate view that reads the live generation, the command that reads
// its tiles hash. reads gets one entry per key, nil for the others.
func (s *Store) buildTiles(c *readCall, lookups []*larder.Lookup) []*tileRead {
	var reads []*tileRead
	i := 0
	for _, l := range lookups {
		tiled := l.View.Streaming() && l.Pin == 0
		for _, k := range l.Keys {
			if tiled {
				if reads == nil {
					reads = make([]*tileRead, i, i+len(l.Keys))
				}
				cmd := redis.NewMapStringStringCmd(c.ctx, "hgetall", s.k.tiles(l.View.Name, k.AppendCanonical(nil)))
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
// view read from generation g, to its values as of T, now rounded down to
// the view's tile, from the batch row and the tiles in tr: found says
// whether the batch has a row. It leaves the row as the batch wrote it
// (as of the cutoff) when T is past the cutoff's horizon, or when the
// generation kept no tiles for the entity.
func (s *Store) combineTiles(ctx context.Context, l *larder.Lookup, g *liveGen, j int, found bool, tr *tileRead) error {
	v := l.View
	tau, horizon := v.TileInterval(), v.TileHorizon()
	cut := tileCutoff(v, g.gen)
	if found {
		cut = larder.TileFloor(l.Rows[j].EventTime, tau)
	}
	T := larder.TileFloor(s.now(), tau)
	if T.Before(cut) || T.After(cut.Add(horizon)) {
		return nil
	}
	h, err := tr.cmd.Result()
	if err != nil {
		return redisErr(ctx, "read the tiles of "+v.Name, err)
	}
	tv := s.tileViewOf(v)
	specs := tv.specs
	var batch larder.EntityTiles
	c, t := cut.UnixNano()/int64(tau), T.UnixNano()/int64(tau)
	if blob, ok := h["b"+strconv.FormatInt(g.gen.ID, 10)]; ok {
		if err := decodeEntityTiles(blob, specs, c, &batch); err != nil {
			return fmt.Errorf("store: read %s key %s: %w", v.Name, l.Keys[j], err)
		}
	} else if found {
		return nil // a generation written before the view had a stream
	}
	st, err := parseStreamTiles(h, specs, c, t)
	if err != nil {
		return err
	}
	newest := st.newest
	if !found && newest == 0 {
		return nil // no row, no event
	}
	l.Found[j] = true
	row := &l.Rows[j]
	row.EventTime = T
	feats := tv.feats
	row.Values = resize(row.Values, len(feats))
	hz := int64(horizon / tau)
	for i, f := range feats {
		sp := specs[f.Aggregation]
		wn := int64(f.Window.Duration / tau)
		w := tv.windows[i]
		var p larder.Partial
		if batch.Aggs != nil {
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
		for k := range st.aggs[f.Aggregation] {
			if e := st.aggs[f.Aggregation][k].End; e > c && e <= t && e > t-wn {
				p.Merge(sp.kind, &st.aggs[f.Aggregation][k].Partial)
			}
		}
		row.Values[i] = p.Value(f.Func, sp.typ)
	}
	if newest > 0 {
		l.Streamed = resize(l.Streamed, len(l.Keys))
		l.Streamed[j] = time.Unix(0, newest).UTC()
	}
	return nil
}

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
}

func (s *Store) tileViewOf(v *larder.View) *tileView {
	if tv, ok := s.tileViews.Load(v); ok {
		return tv.(*tileView)
	}
	tv := &tileView{specs: tileSpecs(v), feats: v.AggregateFeatures()}
	for _, f := range tv.feats {
		tv.windows = append(tv.windows, slices.Index(v.Aggregations[f.Aggregation].Windows, f.Window))
	}
	s.tileViews.Store(v, tv)
	return tv
}
