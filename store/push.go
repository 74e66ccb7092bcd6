package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

var _ larder.PushStore = (*Store)(nil)

// Pushed rows. A push writes each row into the live generation of a latest
// view, write-if-newer, and also appends the rows to the view's push log,
// a Redis stream that shares the view's hash tag ({view}:pushes). A full
// run of the view replays the log into its new generation, write-if-newer,
// just before it publishes, and its publish script checks, in the same
// step as the flip, that no entry came after the ones it replayed (else it
// replays those and tries again). The log entry and the read of the live
// pointer are one script, so that a push either comes before a flip, and
// is replayed by the run that flips, or sees the new live generation and
// writes into it. So no push is lost to a run written at the same time.
//
// The log keeps the entries of the last Options.PushRetention, and those
// that came after the start of a run still being written (its floor, in
// {view}:pushfloors), so that a run replays every push made since it
// started, and every push made within the retention before it: a push
// stays in the view until the offline data have caught up with it, as long
// as that takes less than the retention. Replaying is idempotent:
// write-if-newer keeps, for each entity, the row with the newest event
// time, whatever the number of times a row is written.

// DefaultPushRetention is how long the push log keeps a pushed row for the
// full runs that publish after it, by default.
const DefaultPushRetention = time.Hour

// pushChunk is the most rows one push log entry, and one bucket write,
// carries.
const pushChunk = 500

func (k keys) pushes(view string) string     { return k.control(view) + "pushes" }
func (k keys) pushFloors(view string) string { return k.control(view) + "pushfloors" }
func (k keys) pushHold(view string) string   { return k.control(view) + "pushhold" }

// pushHoldTTL bounds how long a publish may hold pushes back (see flip).
const pushHoldTTL = 5 * time.Second

// pushRowsScript writes rows into one bucket hash, each only when the
// entity has no row yet or its stored row's event time is not newer (see
// writeIfNewerScript for the comparison). KEYS[1] is the bucket; ARGV[1]
// is the codec version, then come (entity key, encoded row) pairs. It
// returns one code per row: 0 when the stored row was newer and the row
// was left out, 1 when it replaced a stored row, 2 when the entity had no
// row.
var pushRowsScript = redis.NewScript(compareRowsLua + writeRowsLua + `
local fields, rows = {}, {}
for i = 2, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  rows[#rows + 1] = ARGV[i + 1]
end
return writeRows(KEYS[1], tonumber(ARGV[1]), fields, rows)
`)

// pushLogScript appends a batch of pushed rows (ARGV[3], see
// appendPushEntry) to the push log KEYS[2], trims the log to the entries
// of the last ARGV[1] ms and those after the oldest floor (KEYS[3]) set
// within the last ARGV[2] ms, and returns the live generation (KEYS[1])
// and the entry's id; or {"", ""} and does nothing while a publish holds
// pushes back (KEYS[4]). The keys share the view's hash tag.
var pushLogScript = redis.NewScript(appendLogLua + `
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {'', ''}
end
local id = appendLog(KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
return {redis.call('GET', KEYS[1]) or '', id}
`)

// appendLogLua defines appendLog(log, floors, retention, lapse, entry),
// which appends a batch of pushed rows (see appendPushEntry) to the push
// log, trims the log to the entries of the last retention ms and those
// after the oldest floor set within the last lapse ms, and returns the
// entry's id.
const appendLogLua = `
local function appendLog(log, floors, retention, lapse, entry)
  local id = redis.call('XADD', log, '*', 'r', entry)
  local ms = tonumber(string.match(id, '^(%d+)'))
  local trim = ms - retention
  local fl = redis.call('ZRANGEBYSCORE', floors, ms - lapse, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if fl[2] and tonumber(fl[2]) < trim then trim = tonumber(fl[2]) end
  if trim > 0 then redis.call('XTRIM', log, 'MINID', trim) end
  return id
end
`

// pushAllScript is the push of one batch on a server that is not a
// cluster, in one step: unless the live generation (KEYS[1]) is ARGV[4],
// it returns {0, live id} and does nothing; otherwise it appends the batch
// to the push log and trims it as pushLogScript does (KEYS[2], KEYS[3],
// ARGV[1..3]; no entry when ARGV[3] is empty), then writes each row into
// its bucket, write-if-newer, as pushRowsScript does. KEYS[5..] are the
// buckets. ARGV[5] is the codec version; then, for each bucket in the
// order of KEYS, come its row count n, the n entity keys, then their n
// encoded rows. A batch holds an entity key once. It returns {1, codes},
// a code per row in the order of ARGV as pushRowsScript's, or {2, ""} and
// does nothing while a publish holds pushes back (KEYS[4]).
//
// The script is the whole cost of a push on the server, so it does as
// little per row as it can: the client groups the rows by bucket, so that
// the script builds no table per row, and a bucket with one row (the
// common case: a batch touches most buckets once) is one HGET and one
// HSET, with no table at all.
var pushAllScript = redis.NewScript(compareRowsLua + appendLogLua + `
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {2, ''}
end
local live = redis.call('GET', KEYS[1]) or ''
if live ~= ARGV[4] then
  return {0, live}
end
if ARGV[3] ~= '' then
  appendLog(KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
end
local call, version = redis.call, tonumber(ARGV[5])
local out, o, a = {}, 0, 6
for k = 5, #KEYS do
  local key, n = KEYS[k], tonumber(ARGV[a])
  a = a + 1
  if n == 1 then
    local f, row = ARGV[a], ARGV[a + 1]
    a = a + 2
    local old = call('HGET', key, f)
    o = o + 1
    if old and #old >= 2 and byte(old, 1) == version and compare(row, old) < 0 then
      out[o] = 0
    else
      call('HSET', key, f, row)
      if old then out[o] = 1 else out[o] = 2 end
    end
  else
    local olds = call('HMGET', key, unpack(ARGV, a, a + n - 1))
    local args, m = {}, 0
    for j = 1, n do
      local row, old = ARGV[a + n + j - 1], olds[j]
      o = o + 1
      if old and #old >= 2 and byte(old, 1) == version and compare(row, old) < 0 then
        out[o] = 0
      else
        args[m + 1], args[m + 2] = ARGV[a + j - 1], row
        m = m + 2
        if old then out[o] = 1 else out[o] = 2 end
      end
    end
    if m > 0 then call('HSET', key, unpack(args, 1, m)) end
    a = a + 2 * n
  end
end
return {1, out}
`)

// appendPushEntry appends one (key, row) pair to a push log entry: the
// lengths of the canonical key and of the encoded row as uvarints, then
// both.
func appendPushEntry(dst, key, row []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = binary.AppendUvarint(dst, uint64(len(row)))
	dst = append(dst, key...)
	return append(dst, row...)
}

// parsePushEntry calls fn with each (key, row) pair of a push log entry.
func parsePushEntry(entry string, fn func(key, row string)) error {
	b := []byte(entry)
	for len(b) > 0 {
		kl, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("bad key length")
		}
		b = b[n:]
		rl, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < kl+rl {
			return errors.New("bad row length")
		}
		b = b[n:]
		fn(string(b[:kl]), string(b[kl:kl+rl]))
		b = b[kl+rl:]
	}
	return nil
}

// Push writes rows into the live generation of latest view v (see
// larder.PushStore). Each row is written by one script on its bucket,
// so atomically, with the same comparison as an incremental run.
func (s *Store) Push(ctx context.Context, v *larder.View, rows []larder.PushRow) ([]larder.PushOutcome, error) {
	if v.Kind != larder.KindLatest {
		return nil, larder.Invalidf("view %s is of kind %s: rows can be pushed into latest views only", v.Name, v.Kind)
	}
	out := make([]larder.PushOutcome, len(rows))
	types := featureTypes(v)
	e := v.EntityDef()
	type encoded struct{ i, key, row, end int }
	var buf []byte
	encs := make([]encoded, 0, len(rows))
	for i, r := range rows {
		if e != nil {
			if err := r.Key.Check(e); err != nil {
				out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: err.Error()}
				continue
			}
		}
		start := len(buf)
		buf = r.Key.AppendCanonical(buf)
		mid := len(buf)
		var err error
		if buf, err = AppendRow(buf, types, r.Row); err != nil {
			buf = buf[:start]
			out[i] = larder.PushOutcome{Result: larder.PushInvalid, Reason: err.Error()}
			continue
		}
		encs = append(encs, encoded{i, start, mid, len(buf)})
	}
	if len(encs) == 0 {
		return out, nil
	}
	g, err := s.pushTarget(ctx, v, 0)
	if err != nil {
		return nil, err
	}
	_, cluster := s.client.(*redis.ClusterClient)
	var entry []byte
	for lo := 0; lo < len(encs); lo += pushChunk {
		chunk := encs[lo:min(len(encs), lo+pushChunk)]
		entry = entry[:0]
		for _, en := range chunk {
			entry = appendPushEntry(entry, buf[en.key:en.row], buf[en.row:en.end])
		}
		pairs := make([]pushPair, len(chunk))
		for j, en := range chunk {
			pairs[j] = pushPair{key: buf[en.key:en.row], row: buf[en.row:en.end]}
		}
		var codes []int64
		var err error
		if cluster {
			codes, err = s.logThenWrite(ctx, v, &g, entry, pairs)
		} else {
			// One script logs and writes the batch.
			codes, err = s.pushAll(ctx, v, &g, entry, pairs)
		}
		if err != nil {
			return nil, err
		}
		for j, en := range chunk {
			if codes[j] == 0 {
				out[en.i] = larder.PushOutcome{Result: larder.PushOlder}
			} else {
				out[en.i] = larder.PushOutcome{Result: larder.PushWritten}
			}
		}
	}
	return out, nil
}

// logThenWrite logs one batch with pushLogScript, then writes it into *g,
// the live generation (moved to the generation live now when a run
// published since it was read), with a pushRowsScript call per bucket: on
// Redis Cluster, where the log and the buckets are in other slots. It
// returns the code of each pair.
func (s *Store) logThenWrite(ctx context.Context, v *larder.View, g **liveGen, entry []byte, pairs []pushPair) ([]int64, error) {
	op := "push to " + v.Name
	var res []any
	var held time.Duration
	for {
		var err error
		res, err = pushLogScript.Run(ctx, s.client, []string{s.k.live(v.Name), s.k.pushes(v.Name), s.k.pushFloors(v.Name), s.k.pushHold(v.Name)},
			s.opts.PushRetention.Milliseconds(), s.opts.AbandonAfter.Milliseconds(), entry).Slice()
		if err != nil {
			return nil, redisErr(ctx, op, err)
		}
		if id, _ := res[1].(string); id != "" {
			break
		}
		if err := waitHold(ctx, &held); err != nil {
			return nil, fmt.Errorf("store: push to %s: %w", v.Name, err)
		}
	}
	if live, _ := res[0].(string); live != strconv.FormatInt((*g).gen.ID, 10) {
		// A run published since the cache was filled: write into the
		// generation that is live now.
		id, _ := strconv.ParseInt(live, 10, 64)
		next, err := s.pushTarget(ctx, v, id)
		if err != nil {
			return nil, err
		}
		*g = next
	}
	codes, err := s.writePushed(ctx, (*g).dataPrefix, (*g).buckets, pairs)
	if err != nil {
		return nil, redisErr(ctx, op, err)
	}
	return codes, nil
}

// pushAll logs and writes one batch with pushAllScript into *g, the live
// generation, moving *g to the generation live now when a run published
// since it was read. It returns the code of each pair.
//
// A key that comes more than once in the batch is written in a later
// script call than its previous row, so that each call holds a key once
// and the rows of a key are applied in their order; only the first call
// logs the batch. A run that publishes between two calls replays the whole
// batch, and the later call writes into its generation.
func (s *Store) pushAll(ctx context.Context, v *larder.View, g **liveGen, entry []byte, pairs []pushPair) ([]int64, error) {
	codes := make([]int64, len(pairs))
	rounds := pushRounds(pairs)
	for r, idx := range rounds {
		e := entry
		if r > 0 {
			e = nil
		}
		if err := s.pushRound(ctx, v, g, e, pairs, idx, codes); err != nil {
			return nil, err
		}
	}
	return codes, nil
}

// pushRounds splits the indexes of pairs into rounds in which each key
// comes once: a pair goes into the round after the one of the previous
// pair with its key. Most batches are one round.
func pushRounds(pairs []pushPair) [][]int {
	seen := make(map[string]int, len(pairs))
	var rounds [][]int
	for i, p := range pairs {
		r := 0
		if prev, ok := seen[string(p.key)]; ok {
			r = prev + 1
		}
		seen[string(p.key)] = r
		if r == len(rounds) {
			rounds = append(rounds, make([]int, 0, len(pairs)))
		}
		rounds[r] = append(rounds[r], i)
	}
	return rounds
}

// pushRound writes the pairs at idx (distinct keys) with one pushAllScript
// call, logging entry first unless it is empty, and sets their codes.
func (s *Store) pushRound(ctx context.Context, v *larder.View, g **liveGen, entry []byte, pairs []pushPair, idx []int, codes []int64) error {
	op := "push to " + v.Name
	var held time.Duration
	type placed struct {
		bucket uint32
		i      int
	}
	rows := make([]placed, len(idx))
	for attempt := 0; ; attempt++ {
		cur := *g
		for j, i := range idx {
			rows[j] = placed{bucketOf(pairs[i].key, cur.buckets), i}
		}
		slices.SortStableFunc(rows, func(a, b placed) int { return cmp.Compare(a.bucket, b.bucket) })
		keys := []string{s.k.live(v.Name), s.k.pushes(v.Name), s.k.pushFloors(v.Name), s.k.pushHold(v.Name)}
		args := make([]any, 0, 5+3*len(rows))
		args = append(args, s.opts.PushRetention.Milliseconds(), s.opts.AbandonAfter.Milliseconds(), entry,
			strconv.FormatInt(cur.gen.ID, 10), codecVersion)
		for lo := 0; lo < len(rows); {
			hi := lo + 1
			for hi < len(rows) && rows[hi].bucket == rows[lo].bucket {
				hi++
			}
			keys = append(keys, cur.dataPrefix+strconv.FormatUint(uint64(rows[lo].bucket), 10))
			args = append(args, hi-lo)
			for _, r := range rows[lo:hi] {
				args = append(args, pairs[r.i].key)
			}
			for _, r := range rows[lo:hi] {
				args = append(args, pairs[r.i].row)
			}
			lo = hi
		}
		res, err := pushAllScript.Run(ctx, s.client, keys, args...).Slice()
		if err != nil {
			return redisErr(ctx, op, err)
		}
		code, _ := res[0].(int64)
		if code == 1 {
			raw, _ := res[1].([]any)
			if len(raw) != len(rows) {
				return fmt.Errorf("store: push to %s: the script answered %d codes for %d rows", v.Name, len(raw), len(rows))
			}
			for j, r := range rows {
				codes[r.i], _ = raw[j].(int64)
			}
			return nil
		}
		if code == 2 {
			// A publish holds pushes back for a moment.
			if err := waitHold(ctx, &held); err != nil {
				return fmt.Errorf("store: push to %s: %w", v.Name, err)
			}
			attempt--
			continue
		}
		live, _ := res[1].(string)
		id, _ := strconv.ParseInt(live, 10, 64)
		if attempt >= 3 {
			return fmt.Errorf("store: push to %s: the live generation kept changing (now %s): %w", v.Name, live, larder.ErrUnavailable)
		}
		next, err := s.pushTarget(ctx, v, max(id, 1))
		if err != nil {
			return err
		}
		*g = next
	}
}

// waitHold waits a little while a publish holds pushes back, adding the
// wait to *held; past pushHoldTTL in all, it gives up.
func waitHold(ctx context.Context, held *time.Duration) error {
	const step = 2 * time.Millisecond
	if *held >= pushHoldTTL {
		return fmt.Errorf("a publish of the view held pushes back for more than %s: %w", pushHoldTTL, larder.ErrUnavailable)
	}
	*held += step
	t := time.NewTimer(step)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pushTarget returns the live generation of v to push into: from the
// cache, or read again when want (not 0) is another generation. It
// returns an error wrapping larder.ErrNoGeneration or
// larder.ErrSchemaChanged when rows cannot be pushed into it.
func (s *Store) pushTarget(ctx context.Context, v *larder.View, want int64) (*liveGen, error) {
	var g *liveGen
	var err error
	if want == 0 {
		g, err = s.liveFor(ctx, v.Name)
	} else {
		g, err = s.refresh(ctx, v.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("store: push to %s: %w", v.Name, err)
	}
	if g.gen.ID == 0 {
		return nil, fmt.Errorf("store: push to %s: the view has no live generation to push into: run `larder materialize %s` first: %w",
			v.Name, v.Name, larder.ErrNoGeneration)
	}
	if fp := v.Fingerprint(); fp != g.gen.Fingerprint {
		return nil, fmt.Errorf("store: push to %s: live generation %d has schema %s, the view's definition has %s: push with the larder.yaml that wrote it, or materialize the view with this one: %w",
			v.Name, g.gen.ID, g.gen.Fingerprint, fp, larder.ErrSchemaChanged)
	}
	return g, nil
}

// pushPair is one row to write: its canonical key and its encoded row.
type pushPair struct{ key, row []byte }

// writePushed writes pairs into the generation whose bucket keys start
// with dataPrefix, write-if-newer, with one pushRowsScript call per bucket
// (and per pushChunk rows), all in one pipeline, and returns the code of
// each pair (see pushRowsScript).
func (s *Store) writePushed(ctx context.Context, dataPrefix string, buckets uint32, pairs []pushPair) ([]int64, error) {
	byBucket := map[uint32][]int{}
	var order []uint32
	for i, p := range pairs {
		b := bucketOf(p.key, buckets)
		if byBucket[b] == nil {
			order = append(order, b)
		}
		byBucket[b] = append(byBucket[b], i)
	}
	type call struct {
		key  string
		idx  []int
		args []any
	}
	var calls []call
	for _, b := range order {
		idx := byBucket[b]
		for lo := 0; lo < len(idx); lo += pushChunk {
			part := idx[lo:min(len(idx), lo+pushChunk)]
			args := make([]any, 0, 1+2*len(part))
			args = append(args, codecVersion)
			for _, i := range part {
				args = append(args, pairs[i].key, pairs[i].row)
			}
			calls = append(calls, call{key: dataPrefix + strconv.FormatUint(uint64(b), 10), idx: part, args: args})
		}
	}
	codes := make([]int64, len(pairs))
	for attempt := 0; len(calls) > 0; attempt++ {
		pipe := s.client.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = pushRowsScript.EvalSha(ctx, pipe, []string{c.key}, c.args...)
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		var again []call
		for i, c := range cmds {
			res, err := c.Int64Slice()
			if redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
				again = append(again, calls[i])
				continue
			}
			if err != nil {
				return nil, err
			}
			for j, k := range calls[i].idx {
				codes[k] = res[j]
			}
		}
		if len(again) > 0 {
			if err := pushRowsScript.Load(ctx, s.client).Err(); err != nil {
				return nil, err
			}
		}
		calls = again
	}
	return codes, nil
}

// setPushFloor records that generation id of view is being written, so
// that the push log keeps every entry from now on until it publishes or
// is aborted (or for Options.AbandonAfter, should its process die). Only
// latest views take pushes.
func (s *Store) setPushFloor(ctx context.Context, v *larder.View, id int64) error {
	if v.Kind != larder.KindLatest {
		return nil
	}
	now, err := s.client.Time(ctx).Result()
	if err != nil {
		return redisErr(ctx, "begin "+v.Name, err)
	}
	if err := s.client.ZAdd(ctx, s.k.pushFloors(v.Name), redis.Z{Score: float64(now.UnixMilli()), Member: id}).Err(); err != nil {
		return redisErr(ctx, "begin "+v.Name, err)
	}
	return nil
}

// replayPushes writes the push log entries after id after (all of them
// when after is empty) into the writer's generation, write-if-newer, and
// returns the number of entities they added and the id of the last entry
// read (after when none).
func (w *Writer) replayPushes(ctx context.Context, after string) (added int64, last string, err error) {
	s, key := w.s, w.s.k.pushes(w.view.Name)
	last = after
	for {
		start := "-"
		if last != "" {
			start = "(" + last // the entries after last
		}
		msgs, err := s.client.XRangeN(ctx, key, start, "+", 200).Result()
		if err != nil {
			return added, last, redisErr(ctx, "replay the pushes into "+w.view.Name, err)
		}
		if len(msgs) == 0 {
			return added, last, nil
		}
		var pairs []pushPair
		for _, m := range msgs {
			r, _ := m.Values["r"].(string)
			err := parsePushEntry(r, func(k, row string) {
				pairs = append(pairs, pushPair{key: []byte(k), row: []byte(row)})
			})
			if err != nil {
				s.log.Warn("a push log entry cannot be read; it is skipped", "view", w.view.Name, "entry", m.ID, "err", err)
			}
		}
		codes, err := s.writePushed(ctx, w.dataPrefix, w.buckets, pairs)
		if err != nil {
			return added, last, redisErr(ctx, "replay the pushes into "+w.view.Name, err)
		}
		for _, c := range codes {
			if c == 2 {
				added++
			}
		}
		last = msgs[len(msgs)-1].ID
	}
}
