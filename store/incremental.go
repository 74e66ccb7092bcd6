package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

var _ larder.IncrementalStore = (*Store)(nil)

// writeIfNewerScript writes rows into one bucket hash, each only when the
// entity has no row yet or its stored row's event time is not newer than the
// new row's: on equal event times the new row wins, as the row read last
// wins in a full run. KEYS[1] is the bucket; ARGV[1] is the codec version,
// then come (entity key, encoded row) pairs. It returns the number of rows
// it left out because the stored row was newer.
//
// The event time is the zigzag varint that follows the version byte of
// every encoded row (see AppendRow). It is decoded into a Lua number when
// that is exact (below 2^53 once zigzagged: event times within about 142
// years of 1970), and otherwise compared byte by byte: the low bit of the
// first byte is the sign, then a longer canonical varint is the larger
// magnitude, then the 7-bit groups compare from the most significant down.
// A stored value of another codec version, or too short to hold an event
// time, is overwritten. The rows of a bucket are read with one HMGET and
// the winners written with one HSET (per 500 rows), which costs a third of
// a call per row.
//
// It touches one key, so it runs on Redis Cluster.
// compareRowsLua defines compare(a, b): the order of the event times of
// two encoded rows of one codec version (see writeIfNewerScript).
const compareRowsLua = `
local byte = string.byte
local function varintEnd(s)
  local i = 2
  while i < #s and byte(s, i) >= 128 do i = i + 1 end
  return i
end
local function compareBytes(a, b)
  local na, nb = byte(a, 2) % 2, byte(b, 2) % 2
  if na ~= nb then
    if na == 1 then return -1 end
    return 1
  end
  local ea, eb = varintEnd(a), varintEnd(b)
  local c = 0
  if ea ~= eb then
    if ea < eb then c = -1 else c = 1 end
  else
    for i = ea, 2, -1 do
      local x, y = byte(a, i) % 128, byte(b, i) % 128
      if x ~= y then
        if x < y then c = -1 else c = 1 end
        break
      end
    end
  end
  if na == 1 then c = -c end
  return c
end
local function zigzag(s)
  -- Unrolled: the event time is the varint at bytes 2 to 9.
  local c1, c2, c3, c4, c5, c6, c7, c8 = byte(s, 2, 9)
  if not c1 then return nil end
  if c1 < 128 then return c1 end
  if not c2 then return nil end
  local n = c1 - 128
  if c2 < 128 then return n + c2 * 128 end
  if not c3 then return nil end
  n = n + (c2 - 128) * 128
  if c3 < 128 then return n + c3 * 16384 end
  if not c4 then return nil end
  n = n + (c3 - 128) * 16384
  if c4 < 128 then return n + c4 * 2097152 end
  if not c5 then return nil end
  n = n + (c4 - 128) * 2097152
  if c5 < 128 then return n + c5 * 268435456 end
  if not c6 then return nil end
  n = n + (c5 - 128) * 268435456
  if c6 < 128 then return n + c6 * 34359738368 end
  if not c7 then return nil end
  n = n + (c6 - 128) * 34359738368
  if c7 < 128 then return n + c7 * 4398046511104 end
  if not c8 or c8 >= 128 then return nil end
  n = n + (c7 - 128) * 4398046511104 + c8 * 562949953421312
  if n >= 9007199254740992 then return nil end
  return n
end
local function compare(a, b)
  local za, zb = zigzag(a), zigzag(b)
  if not za or not zb then return compareBytes(a, b) end
  if za % 2 == 1 then za = -(za + 1) / 2 else za = za / 2 end
  if zb % 2 == 1 then zb = -(zb + 1) / 2 else zb = zb / 2 end
  if za < zb then return -1 end
  if za > zb then return 1 end
  return 0
end
`

var writeIfNewerScript = redis.NewScript(compareRowsLua + writeRowsLua + `
local version = tonumber(ARGV[1])
local fields, rows = {}, {}
for i = 2, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  rows[#rows + 1] = ARGV[i + 1]
end
local older = 0
for _, code in ipairs(writeRows(KEYS[1], version, fields, rows)) do
  if code == 0 then older = older + 1 end
end
return older
`)

// writeRowsLua defines writeRows(key, version, fields, rows), which writes
// rows[i] under fields[i] into hash key, each only when the entity has no
// row yet or its stored row (or one written before it in the same call)
// has no newer event time (see compare), reading and writing 500 fields
// per call. It returns a code per row: 0 when it was left out as older, 1
// when it replaced a row, 2 when the entity had none.
const writeRowsLua = `
local function writeRows(key, version, fields, rows)
  if #fields == 1 then
    -- One row (a push touches a bucket per row): HGET and HSET.
    local old = redis.call('HGET', key, fields[1])
    if old and #old >= 2 and string.byte(old, 1) == version and compare(rows[1], old) < 0 then
      return {0}
    end
    redis.call('HSET', key, fields[1], rows[1])
    if old then return {1} end
    return {2}
  end
  local chunk = 500
  local win, order, out = {}, {}, {}
  for s = 1, #fields, chunk do
    local part = fields
    if #fields > chunk then part = {unpack(fields, s, math.min(#fields, s + chunk - 1))} end
    local olds = redis.call('HMGET', key, unpack(part))
    for j, f in ipairs(part) do
      local i = s + j - 1
      local row, old = rows[i], win[f]
      if old == nil then old = olds[j] end
      if old and #old >= 2 and string.byte(old, 1) == version and compare(row, old) < 0 then
        out[i] = 0
      else
        if old then out[i] = 1 else out[i] = 2 end
        if win[f] == nil then order[#order + 1] = f end
        win[f] = row
      end
    end
  end
  local args = {}
  for _, f in ipairs(order) do
    args[#args + 1] = f
    args[#args + 1] = win[f]
    if #args >= 2 * chunk then
      redis.call('HSET', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
  return out
end
`

// publishIncrementalScript records an incremental run in a generation's
// metadata hash (KEYS[1]), unless the generation is no longer live: it sets
// the row count (ARGV[1]), the publish time (ARGV[2], unless empty) and
// moves the watermark forward to ARGV[3] (unless empty; "0" and a missing
// field mean none). It returns 1 when it recorded, 0 when the generation was
// replaced or deleted. It touches one key, so it runs on Redis Cluster.
var publishIncrementalScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'live' then
  return 0
end
redis.call('HSET', KEYS[1], 'rows', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'published_at', ARGV[2])
end
if ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'as_of', ARGV[4])
end
if ARGV[3] ~= '' and ARGV[3] ~= '0' then
  local cur = redis.call('HGET', KEYS[1], 'watermark')
  if not cur or cur == '0' or tonumber(ARGV[3]) > tonumber(cur) then
    redis.call('HSET', KEYS[1], 'watermark', ARGV[3])
  end
end
return 1
`)

// incremental is the state of a Writer into a live generation.
type incremental struct {
	liveKey string
	metaKey string
	// meta and model are the generation's metadata when the writer began,
	// the base of the Generation that Publish returns.
	meta  meta
	model string
	// older counts the rows left out because the stored row was newer.
	older atomic.Int64
}

// BeginIncremental returns a writer into the live generation of v (a
// *Writer, see IncrementalStore): Put buffers rows, which are flushed in
// pipelined batches of one write-if-newer script call per bucket, and are
// visible to readers as soon as they are flushed. Publish recounts the
// generation's rows, moves its watermark forward to the newest event time
// Put and announces the change on the publish channel. Abort discards what
// is still buffered and leaves the watermark; the rows already flushed stay.
//
// Write-if-newer compares the event times of the new and the stored row of
// each entity: the new row is written when it is not older, so on equal
// event times the newer write wins (as the row read last wins in a full
// run), and replaying a run writes the same rows again. Batches flush
// concurrently, so of two rows of one key with the same event time Put in
// one run, either may stay; Put one row per entity, as a full run does. The
// store does not look at v's kind: write-if-newer suits latest views, and
// the materializer decides which views run incrementally.
//
// A full run that publishes while an incremental run writes replaces the
// generation the incremental run writes into. The incremental run then
// fails, at its next flush or at Publish, with ErrSuperseded; the rows it
// flushed before are in the replaced generation only, and the new live
// generation has the full run's rows and watermark. The race this leaves,
// accepted: an incremental run that published into the old generation
// after the full run read its source has its rows only in the replaced
// generation; they come back with the next incremental run, which reads the
// data newer than the full run's watermark, unless their event times are at
// or before that watermark (then the next full run brings them). A flush
// that starts just before a full run publishes and ends after the replaced
// generation's grace period may leave bucket keys that Cleanup does not
// know of.
//
// BeginIncremental returns an error wrapping larder.ErrNoGeneration when v
// has no live generation, larder.ErrSchemaChanged when the live generation
// has another schema than v, larder.ErrUnavailable or ctx.Err() when Redis
// cannot be reached.
func (s *Store) BeginIncremental(ctx context.Context, v *larder.View) (larder.GenerationWriter, error) {
	return s.BeginIncrementalWriter(ctx, v)
}

// BeginIncrementalWriter is BeginIncremental returning the *Writer, whose
// OlderRows reports the rows write-if-newer left out.
func (s *Store) BeginIncrementalWriter(ctx context.Context, v *larder.View) (*Writer, error) {
	g, err := s.refresh(ctx, v.Name)
	if err != nil {
		return nil, fmt.Errorf("store: incremental write to %s: %w", v.Name, err)
	}
	if g.gen.ID == 0 {
		return nil, fmt.Errorf("store: incremental write to %s: the view has no live generation to write into: run a full `larder materialize %s` first: %w",
			v.Name, v.Name, larder.ErrNoGeneration)
	}
	if fp := v.Fingerprint(); fp != g.gen.Fingerprint {
		return nil, fmt.Errorf("store: incremental write to %s: live generation %d has schema %s, the view's definition has %s: run a full `larder materialize %s`: %w",
			v.Name, g.gen.ID, g.gen.Fingerprint, fp, v.Name, larder.ErrSchemaChanged)
	}
	// Loaded once here, so that the flushes' EVALSHA finds it (on every
	// node of a cluster); a flush that meets NOSCRIPT anyway loads it again.
	if err := writeIfNewerScript.Load(ctx, s.client).Err(); err != nil {
		return nil, redisErr(ctx, "incremental write to "+v.Name, err)
	}

	w := &Writer{
		s:          s,
		view:       v,
		types:      featureTypes(v),
		id:         g.gen.ID,
		buckets:    g.buckets,
		dataPrefix: g.dataPrefix,
		startedAt:  s.stamp(),
		free:       make(chan *batch, s.opts.WriteConnections+1),
		cur:        &batch{},
		inc: &incremental{
			liveKey: s.k.live(v.Name),
			metaKey: s.k.meta(v.Name, g.gen.ID),
			meta: meta{
				fingerprint: g.gen.Fingerprint,
				buckets:     int(g.buckets),
				rows:        g.gen.Rows,
				startedAt:   g.gen.StartedAt,
				publishedAt: g.gen.PublishedAt,
				state:       stateLive,
				model:       g.gen.Model,
				asOf:        g.gen.AsOf,
				inputs:      g.gen.Inputs,
				trigger:     g.gen.Trigger,
				job:         g.gen.Job,
				epoch:       g.epoch,
				watermark:   g.watermark,
			},
			model: g.gen.Model,
		},
	}
	w.start(ctx)
	s.log.Debug("incremental write started", "view", v.Name, "generation", g.gen.ID, "buckets", g.buckets)
	return w, nil
}

// Watermark returns the watermark of v's live generation, read from Redis
// (not from the Store's cache): the newest event time written by its full
// run and the incremental runs published since, the zero time when the
// generation records none. It returns an error wrapping
// larder.ErrNoGeneration when v has no live generation, and
// larder.ErrUnavailable or ctx.Err() when Redis cannot be read.
func (s *Store) Watermark(ctx context.Context, v *larder.View) (time.Time, error) {
	id, err := s.client.Get(ctx, s.k.live(v.Name)).Int64()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, fmt.Errorf("store: watermark of %s: %w", v.Name, larder.ErrNoGeneration)
	}
	if err != nil {
		return time.Time{}, redisErr(ctx, "watermark of "+v.Name, err)
	}
	wm, err := s.client.HGet(ctx, s.k.meta(v.Name, id), fieldWatermark).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, redisErr(ctx, "watermark of "+v.Name, err)
	}
	t, err := parseMicros(wm)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: watermark of %s generation %d: %w", v.Name, id, err)
	}
	return t, nil
}

// OlderRows returns the number of rows an incremental writer has left out so
// far because the entity's stored row had a newer event time; 0 for a
// writer of a new generation. It counts the flushed rows only: call it after
// Publish for the total.
func (w *Writer) OlderRows() int64 {
	if w.inc == nil {
		return 0
	}
	return w.inc.older.Load()
}

// bucketCall is one write-if-newer script call: its bucket key and ARGV.
type bucketCall struct {
	key  string
	args []any
}

// writeIfNewer sends the rows of job as a pipeline of one write-if-newer
// script call per bucket, after checking that the generation is still the
// live one. It returns args, scratch space for the calls' arguments, for
// the next call.
func (w *Writer) writeIfNewer(job flushJob, args []any) ([]any, error) {
	ctx, b := w.ctx, job.b
	var calls []bucketCall
	args = args[:0]
	var key []byte
	for i := job.lo; i < job.hi; {
		bucket := b.sorted[i].bucket
		key = strconv.AppendUint(append(key[:0], w.dataPrefix...), uint64(bucket), 10)
		start := len(args)
		args = append(args, codecVersion)
		for ; i < job.hi && b.sorted[i].bucket == bucket; i++ {
			args = append(args, &b.fields[2*i], &b.fields[2*i+1])
		}
		calls = append(calls, bucketCall{key: string(key), args: args[start:len(args):len(args)]})
	}
	defer clear(args)

	op := fmt.Sprintf("incremental write to %s generation %d", w.view.Name, w.id)
	for attempt := 0; len(calls) > 0; attempt++ {
		pipe := w.s.client.Pipeline()
		live := pipe.Get(ctx, w.inc.liveKey)
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = writeIfNewerScript.EvalSha(ctx, pipe, []string{c.key}, c.args...)
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		if err := w.stillLive(ctx, live); err != nil {
			return args, err
		}
		// Calls that met NOSCRIPT (the server lost its scripts: a restart, a
		// failover, SCRIPT FLUSH) did nothing: load the script and send them
		// again, once.
		var again []bucketCall
		for i, c := range cmds {
			n, err := c.Int64()
			if redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
				again = append(again, calls[i])
				continue
			}
			if err != nil {
				return args, redisErr(ctx, op, err)
			}
			w.inc.older.Add(n)
		}
		if len(again) > 0 {
			if err := writeIfNewerScript.Load(ctx, w.s.client).Err(); err != nil {
				return args, redisErr(ctx, op, err)
			}
		}
		calls = again
	}
	return args, nil
}

// stillLive checks the live pointer read with a flush: a writer whose
// generation was replaced by a full run stops, so that it does not go on
// writing into a generation that is about to be deleted.
func (w *Writer) stillLive(ctx context.Context, live *redis.StringCmd) error {
	id, err := live.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return redisErr(ctx, fmt.Sprintf("incremental write to %s generation %d", w.view.Name, w.id), err)
	}
	if id != w.id {
		return fmt.Errorf("store: incremental write to %s generation %d: generation %d is live now (a full run published it): run the incremental run again: %w",
			w.view.Name, w.id, id, ErrSuperseded)
	}
	return nil
}

// publishIncremental flushes what is buffered, recounts the generation's
// rows, records them with the new watermark and publish time in the
// generation's metadata, and announces the change.
func (w *Writer) publishIncremental(ctx context.Context) (larder.Generation, error) {
	s, view := w.s, w.view.Name
	if err := w.drain(ctx, true); err != nil {
		return larder.Generation{}, err
	}
	rows, err := s.countRows(ctx, w.dataPrefix, int(w.buckets))
	if err != nil {
		return larder.Generation{}, redisErr(ctx, "publish incremental write to "+view, err)
	}
	now := s.stamp()
	// The generation now holds the source's rows up to this run: its
	// as-of moves to the run's.
	ok, err := publishIncrementalScript.Run(ctx, s.client, []string{w.inc.metaKey},
		rows, formatMicros(now), w.watermark(), formatMicros(w.startedAt)).Int64()
	if err != nil {
		return larder.Generation{}, redisErr(ctx, "publish incremental write to "+view, err)
	}
	if ok != 1 {
		w.state = "superseded"
		return larder.Generation{}, fmt.Errorf("store: publish incremental write to %s generation %d: the generation is no longer live (a full run replaced it): run the incremental run again: %w",
			view, w.id, ErrSuperseded)
	}
	w.state = "published"
	if err := s.client.Publish(ctx, s.k.channel(), view+" "+strconv.FormatInt(w.id, 10)).Err(); err != nil {
		s.log.Warn("publish notification failed; readers will see the new row count at their next refresh",
			"view", view, "generation", w.id, "err", err)
	}
	m := w.inc.meta
	m.rows, m.publishedAt, m.asOf = rows, now, w.startedAt
	if wm := w.watermarkTime(); wm.After(m.watermark) {
		m.watermark = wm
	}
	lg := s.newLiveGen(view, w.id, m)
	lg.gen.Model = w.inc.model
	gen := s.cache(lg).gen
	s.log.Info("incremental write published", "view", view, "generation", w.id, "rows", rows,
		"older_rows", w.inc.older.Load(), "watermark", w.watermarkTime(),
		"took", now.Sub(w.startedAt).Round(time.Millisecond))
	return gen, nil
}

// abortIncremental stops the writer, dropping what is still buffered. The
// rows already handed to the flushers are written (within ctx, after which
// the writes still in flight are ended) and stay, since each of them is
// valid on its own, so it recounts the generation's rows (best effort)
// without touching the watermark or the publish time.
func (w *Writer) abortIncremental(ctx context.Context) error {
	s, view := w.s, w.view.Name
	_ = w.drain(ctx, false)
	rows, err := s.countRows(ctx, w.dataPrefix, int(w.buckets))
	if err == nil {
		err = publishIncrementalScript.Run(ctx, s.client, []string{w.inc.metaKey}, rows, "", "").Err()
	}
	if err != nil {
		s.log.Warn("recounting the rows after an aborted incremental write failed; the next publish recounts them",
			"view", view, "generation", w.id, "err", err)
	}
	s.log.Info("incremental write aborted", "view", view, "generation", w.id)
	return nil
}

// countRows returns the number of rows in a generation: the sum of its
// buckets' HLEN, in pipelines of unlinkChunk commands.
func (s *Store) countRows(ctx context.Context, dataPrefix string, buckets int) (int64, error) {
	var total int64
	var key []byte
	for from := 0; from < buckets; from += unlinkChunk {
		pipe := s.client.Pipeline()
		to := min(buckets, from+unlinkChunk)
		cmds := make([]*redis.IntCmd, 0, to-from)
		for b := from; b < to; b++ {
			key = strconv.AppendInt(append(key[:0], dataPrefix...), int64(b), 10)
			cmds = append(cmds, pipe.HLen(ctx, string(key)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, err
		}
		for _, c := range cmds {
			total += c.Val()
		}
	}
	return total, nil
}
