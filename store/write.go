package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// ErrSuperseded means that a generation could not be published because a
// newer generation of the same view was published first; the older one is
// discarded.
var ErrSuperseded = errors.New("a newer generation of the view was published first")

// ErrIncomplete means that a generation could not be published because
// Redis holds fewer of its rows than were written: some were evicted or
// deleted during the run. The live generation keeps serving.
//
//lint:ignore ST1005 Redis is a name.
var ErrIncomplete = errors.New("Redis holds fewer of the generation's rows than were written: keys were evicted or deleted during the run (check Redis's maxmemory-policy, which should be noeviction)")

// abortTimeout bounds the deletion that Abort does even when its context has
// already been cancelled (the usual case when a run is interrupted), and
// its context has no earlier deadline.
const abortTimeout = 30 * time.Second

// publishScript makes generation ARGV[1] of a view live, in one step that
// also checks that it may: its metadata (KEYS[2]) must still say writing
// (Cleanup or Abort did not delete it), the lease that holds it (KEYS[4])
// must still hold its token ARGV[2] (its run was not fenced off by a newer
// one, nor found abandoned), and no newer generation may be live (KEYS[1]).
// It then flips the pointer, records the publish in the metadata (ARGV[5..]
// as field/value pairs), retires the generation it replaces (metadata key
// prefix ARGV[3], in the gens set KEYS[5] with delete score ARGV[4]) and
// deletes the generation's own write lease KEYS[3], if any. Every key
// shares the view's hash tag, so it runs on Redis Cluster.
//
// For a view that takes pushes, the view's push log (KEYS[6]) must end
// with entry ARGV[5], the last one the writer replayed into the generation
// ("" when it read none; "*" skips the check), and the generation's push
// floor is removed from KEYS[7] and the hold on pushes, KEYS[8], lifted.
//
// It returns {1, old id or ""} when it flipped, {0, live id} when a newer
// generation is live, {-1, state} when the generation is not being written,
// {-2, lease value} when the lease no longer holds the token, and {-3, last
// entry id} when rows were pushed after the ones replayed.
var publishScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[2], 'state')
if state ~= 'writing' then
  return {-1, state or ''}
end
local lv = redis.call('GET', KEYS[4])
local p = ARGV[2] .. ' '
if not lv or string.sub(lv, 1, #p) ~= p then
  return {-2, lv or ''}
end
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) > tonumber(ARGV[1]) then
  return {0, cur}
end
if ARGV[5] ~= '*' then
  local e = redis.call('XREVRANGE', KEYS[6], '+', '-', 'COUNT', 1)
  if e[1] and e[1][1] ~= ARGV[5] then
    return {-3, e[1][1]}
  end
  redis.call('ZREM', KEYS[7], ARGV[1])
  redis.call('DEL', KEYS[8])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
if cur and cur ~= ARGV[1] then
  redis.call('HSET', ARGV[3] .. cur, 'state', 'retired')
  redis.call('ZADD', KEYS[5], ARGV[4], cur)
end
redis.call('DEL', KEYS[3])
return {1, cur or ''}
`)

// beginScript records a new generation: its metadata (KEYS[1], ARGV[6..] as
// field/value pairs) and its entry in the gens set (KEYS[2], id ARGV[1]),
// after taking its own write lease KEYS[3] ("<ARGV[3]> <ARGV[4]>" for
// ARGV[5] ms) when ARGV[2] is 1, or checking that the run lease KEYS[3]
// holds token ARGV[3] otherwise. It returns 1, or 0 when the run lease is
// lost (and then records nothing).
var beginScript = redis.NewScript(`
if ARGV[2] == '1' then
  redis.call('SET', KEYS[3], ARGV[3] .. ' ' .. ARGV[4], 'PX', ARGV[5])
else
  local cur = redis.call('GET', KEYS[3])
  local p = ARGV[3] .. ' '
  if not cur or string.sub(cur, 1, #p) ~= p then
    return 0
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], '+inf', ARGV[1])
return 1
`)

// Begin starts a new generation of v (see BeginWith).
func (s *Store) Begin(ctx context.Context, v *larder.View, opts larder.BeginOptions) (larder.GenerationWriter, error) {
	return s.BeginWith(ctx, v, opts)
}

// BeginSized starts a new generation of v that will hold about expectedRows
// rows, for a run that holds no run lease (see BeginWith).
func (s *Store) BeginSized(ctx context.Context, v *larder.View, expectedRows int64) (*Writer, error) {
	return s.BeginWith(ctx, v, larder.BeginOptions{ExpectedRows: expectedRows})
}

// BeginWith starts a new generation of v that will hold about
// opts.ExpectedRows rows, which sets its bucket count (unless
// Options.Buckets fixes it): a negative count means unknown, and the live
// generation's row count is used, or DefaultFirstBuckets for a view's
// first generation. With opts.Shard set, it returns a writer of that shard
// of an existing sharded generation instead (see BeginSharded).
//
// It allocates the generation id and records the generation as writing,
// with opts.Run (as-of, trigger, job, owner). The generation is held by
// opts.Run.Lease when the run holds one, and otherwise by a write lease of
// its own that the writer renews until Publish or Abort; when the lease
// lapses (the process was killed) Cleanup deletes the generation. Nothing
// written is visible to readers until Publish.
//
// It returns an error wrapping larder.ErrLeaseLost when opts.Run.Lease is
// no longer held, and larder.ErrUnavailable or ctx.Err() when Redis cannot
// record the generation.
func (s *Store) BeginWith(ctx context.Context, v *larder.View, opts larder.BeginOptions) (*Writer, error) {
	if opts.Shard != nil {
		return s.beginShard(ctx, v, opts)
	}
	buckets := s.bucketCount(ctx, v.Name, opts.ExpectedRows)
	id, err := s.client.Incr(ctx, s.k.seq(v.Name)).Result()
	if err != nil {
		return nil, redisErr(ctx, "begin "+v.Name, err)
	}
	w := s.newWriter(v, id, uint32(buckets), opts.Run)
	if err := s.record(ctx, v, w, opts.Run, 0); err != nil {
		return nil, err
	}
	w.start(ctx)
	s.log.Debug("generation started", "view", v.Name, "generation", id, "buckets", buckets)
	return w, nil
}

// newWriter returns a writer of generation id of v, not yet started, held
// by run's lease or by a write lease of its own.
func (s *Store) newWriter(v *larder.View, id int64, buckets uint32, run larder.RunInfo) *Writer {
	started := s.stamp()
	w := &Writer{
		s:          s,
		view:       v,
		types:      featureTypes(v),
		id:         id,
		buckets:    buckets,
		dataPrefix: s.k.dataPrefix(v.Name, id),
		startedAt:  started,
		asOf:       run.AsOf.UTC().Truncate(time.Microsecond),
		run:        run,
		free:       make(chan *batch, s.opts.WriteConnections+1),
		cur:        &batch{},
	}
	if w.asOf.IsZero() {
		w.asOf = started
	}
	if run.Lease.Held() {
		w.leaseKey, w.token, w.leaseTTL = s.k.lease(v.Name), strconv.FormatInt(run.Lease.Token, 10), run.Lease.TTL
	} else {
		w.leaseKey, w.token, w.leaseTTL = s.k.writeLease(v.Name, id), strconv.FormatInt(id, 10), s.opts.WriteLease
		w.ownLease = true
	}
	if w.leaseTTL <= 0 {
		w.leaseTTL = s.opts.WriteLease
	}
	return w
}

// record writes the metadata of w's new generation and its gens entry,
// taking its write lease or checking its run lease (beginScript). shards
// is the shard count of a sharded generation, 0 otherwise.
func (s *Store) record(ctx context.Context, v *larder.View, w *Writer, run larder.RunInfo, shards int) error {
	owner := run.Owner
	if owner == "" {
		owner = s.opts.Owner
	}
	own := "0"
	if w.ownLease {
		own = "1"
	}
	args := []any{w.id, own, w.token, owner, w.leaseTTL.Milliseconds(),
		fieldFingerprint, v.Fingerprint(),
		fieldBuckets, w.buckets,
		fieldRows, 0,
		fieldStartedAt, formatMicros(w.startedAt),
		fieldPublishedAt, 0,
		fieldState, stateWriting,
		fieldKind, string(v.Kind),
		fieldAsOf, formatMicros(w.asOf),
		fieldTrigger, string(run.Trigger),
		fieldTick, formatMicros(run.Tick),
		fieldJob, run.Job,
		fieldOwner, owner,
		fieldLease, w.leaseKey,
		fieldToken, w.token,
	}
	if shards > 0 {
		args = append(args, fieldShards, shards)
	}
	epoch, err := s.epoch(ctx)
	if err != nil {
		return err
	}
	w.epoch = epoch
	args = append(args, fieldEpoch, epoch)
	// From now on, the push log keeps the rows pushed, for this run to
	// replay before it publishes.
	if err := s.setPushFloor(ctx, v, w.id); err != nil {
		return err
	}
	ok, err := beginScript.Run(ctx, s.client, []string{s.k.meta(v.Name, w.id), s.k.gens(v.Name), w.leaseKey}, args...).Int64()
	if err != nil {
		return redisErr(ctx, "begin "+v.Name, err)
	}
	if ok != 1 {
		return fmt.Errorf("store: begin %s: run lease %s: %w", v.Name, w.token, larder.ErrLeaseLost)
	}
	if err := s.client.SAdd(ctx, s.k.views(), v.Name).Err(); err != nil {
		return redisErr(ctx, "begin "+v.Name, err)
	}
	return nil
}

// bucketCount chooses the bucket count of a new generation of view.
func (s *Store) bucketCount(ctx context.Context, view string, expectedRows int64) int {
	if s.opts.Buckets > 0 {
		return s.opts.Buckets
	}
	if expectedRows < 0 {
		g, err := s.refresh(ctx, view)
		if err != nil || g.gen.ID == 0 {
			return DefaultFirstBuckets
		}
		expectedRows = g.gen.Rows
	}
	return int(max(1, (expectedRows+DefaultRowsPerBucket-1)/DefaultRowsPerBucket))
}

// Writer writes one generation of one view: a new one (Begin), or the live
// one with write-if-newer semantics (BeginIncremental). Put must be called
// from one goroutine; the writer flushes full windows concurrently on up to
// Options.WriteConnections pipelines. A key Put twice in one new generation
// keeps one of its rows, not necessarily the last. Every Writer must end
// with Publish or Abort, which stop its flushing goroutines.
//
// The flushes run on a context of the writer's own, made when it begins:
// it keeps the values of the context given to Begin, but not its
// cancellation nor its deadline. A Put's context bounds only that Put
// (its wait for a free flusher), not the rows it hands over. Publish
// releases the writer's context once every flush is over; Abort of a new
// generation ends it at once, so that the writes in flight stop (an
// incremental writer's Abort lets them finish, see BeginIncremental).
//
// Rows are gathered in windows of several pipelines' worth and sorted by
// bucket before they are sent, so that each command writes many rows into
// one bucket hash: Redis then spends its time storing rows rather than
// parsing commands (see windowRows).
type Writer struct {
	s          *Store
	view       *larder.View
	types      []larder.Type
	id         int64
	buckets    uint32
	dataPrefix string
	startedAt  time.Time
	// window is the number of rows gathered before they are sent.
	window int

	cur    *batch
	jobs   chan flushJob
	free   chan *batch
	wg     sync.WaitGroup
	closed bool // jobs is closed
	// ctx is the context of the flushes, and cancel ends it (see Writer).
	// It is kept in the writer, against the custom, because the flushes
	// belong to the writer rather than to any one call. flushed is closed
	// once every flusher has returned.
	ctx     context.Context
	cancel  context.CancelFunc
	flushed chan struct{}

	state    string
	flipSent bool // Publish sent the flip, which may have happened

	// maxEvent is the newest event time Put, in unix microseconds, when
	// hasEvent: the watermark Publish records.
	maxEvent int64
	hasEvent bool
	// inc marks a writer into the live generation (see BeginIncremental).
	inc *incremental
	// model is the version of the model that computed the generation (see
	// SetModel), and inputs the generations it was computed from (see
	// SetInputs), recorded in its metadata by Publish.
	model  string
	inputs []larder.InputGeneration
	// asOf is the instant the generation is computed as of, and run the
	// run that writes it; epoch is the store's epoch it is written in.
	asOf  time.Time
	run   larder.RunInfo
	epoch string

	// The lease that holds the generation while it is written: its key, the
	// token it must hold and its TTL. ownLease marks a write lease of the
	// generation's own, which the writer deletes at the end; otherwise it
	// is the run's lease, which the run releases. The heartbeat renews it
	// until beatStop is closed, then closes beatDone.
	leaseKey, token string
	leaseTTL        time.Duration
	ownLease        bool
	beatStop        chan struct{}
	beatDone        chan struct{}
	// shard is the shard this writer writes, for a shard writer.
	shard *larder.ShardRef

	// sending counts the windows handed to the flushers and not yet
	// written: while it is 0, Redis waits for this writer.
	sending atomic.Int32

	rows  atomic.Int64 // distinct entities written, as counted by HSET
	errMu sync.Mutex
	err   error
}

// A writer gathers rows in windows of about windowRowsPerBucket rows per
// bucket of the generation, so that a bucket's rows go out in few commands,
// but at least pipelineRows and at most Options.BatchSize rows or
// maxWindowBytes bytes of keys and rows, which bounds its memory. It sends
// a window in pipelines of about pipelineRows rows, cut between buckets.
const (
	windowRowsPerBucket = 32
	pipelineRows        = 1000
	maxWindowBytes      = 4 << 20
)

// A window is sent before it is full when nothing else is being sent and it
// holds at least 1/earlyWindow of a full window, and at least pipelineRows
// rows: Redis then has work while the caller is slow to Put (say, because
// it computes the rows as it goes), and a run ends with less left to send.
// When the caller is faster than Redis, windows fill up as before.
const earlyWindow = 4

// windowRows returns the rows per window of a writer of buckets buckets
// that gathers at most most rows.
func windowRows(buckets uint32, most int) int {
	return min(most, max(pipelineRows, int(buckets)*windowRowsPerBucket))
}

// start sizes the writer's windows, makes its context from ctx, the
// context of the call that began it, and starts its flushers.
func (w *Writer) start(ctx context.Context) {
	w.window = windowRows(w.buckets, w.s.opts.BatchSize)
	w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	// The queue holds the pipelines of two windows, so that Put fills the
	// next window while the flushers send the last one, and runs at most
	// that far ahead of them.
	w.jobs = make(chan flushJob, 2*(w.window/pipelineRows+1))
	w.flushed = make(chan struct{})
	w.wg.Add(w.s.opts.WriteConnections)
	for range w.s.opts.WriteConnections {
		go w.flusher()
	}
	go func() {
		w.wg.Wait()
		close(w.flushed)
	}()
	if w.leaseKey != "" && w.inc == nil {
		w.beatStop, w.beatDone = make(chan struct{}), make(chan struct{})
		go w.heartbeat(w.beatStop)
	}
}

// stopHeartbeat stops renewing the generation's lease, and waits until the
// heartbeat is over.
func (w *Writer) stopHeartbeat() { _ = w.endHeartbeat(context.Background()) }

// endHeartbeat is stopHeartbeat that waits only until ctx ends: a renewal
// in flight on a stalled Redis may outlast it. It then returns ctx.Err().
func (w *Writer) endHeartbeat(ctx context.Context) error {
	if w.beatStop == nil {
		return nil
	}
	select {
	case <-w.beatStop:
	default:
		close(w.beatStop)
	}
	select {
	case <-w.beatDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// batch is a window of encoded rows: keys and values live in buf, and
// entries point into it.
type batch struct {
	buf  []byte
	ents []entry
	// sorted holds ents sorted by bucket once the window is flushed, and
	// fields the key and the row of each sorted entry as strings sharing
	// buf's memory (see flush).
	sorted []entry
	fields []string
	// pending counts the jobs of the window not yet done; the flusher that
	// finishes the last one returns the window to the writer's pool.
	pending atomic.Int32
}

type entry struct {
	bucket          uint32
	key, value, end int // key is buf[key:value], the row buf[value:end]
}

// flushJob is one pipeline's worth of a window: the run of whole buckets
// b.sorted[lo:hi].
type flushJob struct {
	b      *batch
	lo, hi int
}

// ID returns the id of the generation being written.
func (w *Writer) ID() int64 { return w.id }

// Put buffers the row of one entity and, when the batch is full, hands it to
// a flusher, waiting while all of them are busy. ctx bounds that wait
// only: the rows handed over are written on the writer's context, even
// when ctx ends once Put has returned. It returns an
// *larder.InvalidError when key or row does not fit the view, the error of
// an earlier failed flush, or ctx.Err(); after an error the generation
// cannot be published, and the caller should Abort it.
func (w *Writer) Put(ctx context.Context, key larder.Key, row larder.Row) error {
	if w.state != "" {
		return fmt.Errorf("store: put %s generation %d: the writer is %s", w.view.Name, w.id, w.state)
	}
	if err := w.failed(); err != nil {
		return err
	}
	if e := w.view.EntityDef(); e != nil {
		if err := key.Check(e); err != nil {
			return w.fail(fmt.Errorf("store: put %s: %w", w.view.Name, err))
		}
	}
	b := w.cur
	start := len(b.buf)
	b.buf = key.AppendCanonical(b.buf)
	valueAt := len(b.buf)
	var err error
	if b.buf, err = AppendRow(b.buf, w.types, row); err != nil {
		b.buf = b.buf[:start]
		return w.fail(fmt.Errorf("store: put %s key %s: %w", w.view.Name, key, &larder.InvalidError{Msg: err.Error()}))
	}
	b.ents = append(b.ents, entry{
		bucket: bucketOf(b.buf[start:valueAt], w.buckets),
		key:    start, value: valueAt, end: len(b.buf),
	})
	if us := eventMicros(row.EventTime); !w.hasEvent || us > w.maxEvent {
		w.maxEvent, w.hasEvent = us, true
	}
	if w.ready(b) {
		return w.flush(ctx)
	}
	return nil
}

// ready reports whether window b is to be sent now: when it is full, or
// early when Redis has nothing else of the writer to do (see earlyWindow).
func (w *Writer) ready(b *batch) bool {
	n := len(b.ents)
	if n >= w.window || len(b.buf) >= maxWindowBytes {
		return true
	}
	return n >= max(pipelineRows, w.window/earlyWindow) && w.sending.Load() == 0
}

// flush sorts the current window by bucket, hands it to the flushers in
// pipelines of about pipelineRows rows cut between buckets, and takes an
// empty window. ctx bounds the wait for room in the flushers' queue.
func (w *Writer) flush(ctx context.Context) error {
	b := w.cur
	// Once its jobs are sent, b belongs to the flushers.
	bufCap, entsCap := cap(b.buf), cap(b.ents)
	b.sortByBucket(w.buckets)
	// The commands take the keys and rows as *string, which go-redis writes
	// as they are: unlike []byte, a pointer fits in an interface without
	// an allocation. The strings share buf's memory, which stays unchanged
	// until every job of the window is done (see done).
	b.fields = slices.Grow(b.fields[:0], 2*len(b.sorted))
	for _, e := range b.sorted {
		b.fields = append(b.fields, bytesString(b.buf[e.key:e.value]), bytesString(b.buf[e.value:e.end]))
	}
	var jobs []flushJob
	for lo := 0; lo < len(b.sorted); {
		hi := min(lo+pipelineRows, len(b.sorted))
		for hi < len(b.sorted) && b.sorted[hi].bucket == b.sorted[hi-1].bucket {
			hi++
		}
		jobs = append(jobs, flushJob{b: b, lo: lo, hi: hi})
		lo = hi
	}
	b.pending.Store(int32(len(jobs)))
	w.sending.Add(1)
	for i, job := range jobs {
		select {
		case w.jobs <- job:
		case <-ctx.Done():
			w.cur = &batch{}
			w.done(b, len(jobs)-i)
			return w.fail(fmt.Errorf("store: write %s: %w", w.view.Name, ctx.Err()))
		}
	}
	select {
	case w.cur = <-w.free:
	default:
		// Sized like the window just sent, so that filling it does not
		// copy the rows again and again as it grows.
		w.cur = &batch{buf: make([]byte, 0, bufCap), ents: make([]entry, 0, entsCap)}
	}
	return nil
}

// sortByBucket sets b.sorted to b.ents sorted by bucket, of buckets. Within
// a bucket the rows stay in Put order, so that of two rows of one key the
// later one is written last.
func (b *batch) sortByBucket(buckets uint32) {
	b.sorted = slices.Grow(b.sorted[:0], len(b.ents))[:len(b.ents)]
	if int(buckets) > 4*len(b.ents) {
		copy(b.sorted, b.ents)
		slices.SortFunc(b.sorted, func(x, y entry) int {
			if x.bucket != y.bucket {
				return cmp.Compare(x.bucket, y.bucket)
			}
			return x.key - y.key
		})
		return
	}
	// A counting sort: linear, and stable.
	at := make([]int, buckets+1)
	for _, e := range b.ents {
		at[e.bucket+1]++
	}
	for i := 1; i < len(at); i++ {
		at[i] += at[i-1]
	}
	for _, e := range b.ents {
		b.sorted[at[e.bucket]] = e
		at[e.bucket]++
	}
}

// bytesString returns the bytes of b as a string sharing b's memory: b must
// not change while the string is in use.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// done records that n jobs of window b are over, and returns b to the pool
// when they were its last.
func (w *Writer) done(b *batch, n int) {
	if b.pending.Add(int32(-n)) != 0 {
		return
	}
	w.sending.Add(-1)
	b.buf, b.ents, b.sorted = b.buf[:0], b.ents[:0], b.sorted[:0]
	clear(b.fields)
	b.fields = b.fields[:0]
	select {
	case w.free <- b:
	default:
	}
}

func (w *Writer) flusher() {
	defer w.wg.Done()
	var args []any
	for job := range w.jobs {
		// After a failure, or once Abort ended the writer's context, the
		// queued jobs are dropped.
		if w.failed() == nil && w.ctx.Err() == nil {
			var err error
			if args, err = w.write(job, args); err != nil {
				w.fail(err)
			}
		}
		w.done(job.b, 1)
	}
}

// write sends the rows of job as a pipeline of HSETs, one per bucket. It
// returns args, scratch space for the commands' arguments, for the next
// call.
func (w *Writer) write(job flushJob, args []any) ([]any, error) {
	if w.inc != nil {
		return w.writeIfNewer(job, args)
	}
	ctx, b := w.ctx, job.b
	pipe := w.s.client.Pipeline()
	var key []byte
	args = args[:0]
	for i := job.lo; i < job.hi; {
		bucket := b.sorted[i].bucket
		key = strconv.AppendUint(append(key[:0], w.dataPrefix...), uint64(bucket), 10)
		start := len(args)
		args = append(args, "hset", string(key))
		for ; i < job.hi && b.sorted[i].bucket == bucket; i++ {
			args = append(args, &b.fields[2*i], &b.fields[2*i+1])
		}
		pipe.Do(ctx, args[start:len(args):len(args)]...)
	}
	cmds, err := pipe.Exec(ctx)
	clear(args)
	if err != nil {
		return args, redisErr(ctx, fmt.Sprintf("write %s generation %d", w.view.Name, w.id), err)
	}
	var added int64
	for _, c := range cmds {
		n, _ := c.(*redis.Cmd).Int64()
		added += n
	}
	w.rows.Add(added)
	return args, nil
}

func (w *Writer) fail(err error) error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *Writer) failed() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// drain hands the current window to the flushers when keep is set (and
// nothing failed), and waits for every flush (see waitFlushes). It returns
// the writer's first error; when ctx ends first, the writer fails with
// ctx's error.
func (w *Writer) drain(ctx context.Context, keep bool) error {
	err := w.closeQueue(ctx, keep)
	if werr := w.waitFlushes(ctx); werr != nil {
		return w.fail(fmt.Errorf("store: write %s generation %d: %w", w.view.Name, w.id, werr))
	}
	if err != nil {
		return err
	}
	return w.failed()
}

// closeQueue hands the current window to the flushers when keep is set
// (and nothing failed), then closes their queue, once. It returns the
// error of handing the window over.
func (w *Writer) closeQueue(ctx context.Context, keep bool) error {
	if w.closed {
		return nil
	}
	var err error
	if keep && len(w.cur.ents) > 0 && w.failed() == nil {
		err = w.flush(ctx)
	}
	close(w.jobs)
	w.closed = true
	return err
}

// waitFlushes waits until every flusher has returned, then releases the
// writer's context. When ctx ends first, it ends the writer's context, so
// that the flushes stop, and returns ctx.Err(): a write already sent may
// still be waiting for its answer then.
func (w *Writer) waitFlushes(ctx context.Context) error {
	defer w.cancel()
	select {
	case <-w.flushed:
		return nil
	default:
	}
	select {
	case <-w.flushed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Publish writes what is buffered, waits for every flush (ctx bounds the
// wait), records the newest event time Put as the generation's watermark,
// then makes the generation live with one atomic command, retires the
// generation it replaces (deleted after the grace period), announces the
// change on the publish channel and deletes the generations whose time has
// come. For an incremental writer, see BeginIncremental instead.
//
// The flip checks that the generation may still be published: that it is
// still being written, and that the lease that holds it (the run's, or its
// own write lease) still holds the run's token. A shard writer marks its
// shard done instead, and the last shard publishes.
//
// It returns the error of a failed write, ErrSuperseded when a newer
// generation of the view was published meanwhile, an error wrapping
// larder.ErrLeaseLost when the run's lease was lost (a newer run took
// over, or the lease lapsed and Cleanup took the generation as abandoned),
// larder.ErrUnavailable when Redis cannot be reached, or ctx.Err(). Unless
// the error is ErrSuperseded, the generation is then still writing: Abort
// it, or leave it for Cleanup.
func (w *Writer) Publish(ctx context.Context) (larder.Generation, error) {
	view := w.view.Name
	if w.state != "" {
		return larder.Generation{}, fmt.Errorf("store: publish %s generation %d: the writer is %s", view, w.id, w.state)
	}
	if w.inc != nil {
		return w.publishIncremental(ctx)
	}
	if err := w.drain(ctx, true); err != nil {
		return larder.Generation{}, err
	}
	if w.shard != nil {
		return w.publishShard(ctx)
	}
	rows := w.rows.Load()
	if err := w.verifyRows(ctx, rows); err != nil {
		return larder.Generation{}, err
	}
	return w.flip(ctx, rows)
}

// verifyRows counts the rows Redis holds in the writer's generation and
// returns an error wrapping ErrIncomplete unless they are the written
// ones, so that a generation that lost rows is never made live.
func (w *Writer) verifyRows(ctx context.Context, written int64) error {
	held, err := w.s.countRows(ctx, w.dataPrefix, int(w.buckets))
	if err != nil {
		return redisErr(ctx, "publish "+w.view.Name+": count the written rows", err)
	}
	if held != written {
		return fmt.Errorf("store: publish %s generation %d: %d rows written, %d in Redis: %w",
			w.view.Name, w.id, written, held, ErrIncomplete)
	}
	return nil
}

// maxPushReplays bounds the rounds of replaying pushed rows that a
// publish goes through when rows keep being pushed.
const maxPushReplays = 20

// flip makes the writer's generation live with publishScript, recording
// rows, and retires the generation it replaces.
func (w *Writer) flip(ctx context.Context, rows int64) (larder.Generation, error) {
	s, view := w.s, w.view.Name
	// Rows pushed into the view since the run started, or within the push
	// retention, go into the new generation too.
	pushed, replayed := "*", ""
	if w.view.Kind == larder.KindLatest {
		added, last, err := w.replayPushes(ctx, "")
		if err != nil {
			return larder.Generation{}, err
		}
		rows += added
		pushed, replayed = last, last
	}
	var now time.Time
	var code int64
	var other string
	for attempt := 0; ; attempt++ {
		now = s.stamp()
		w.flipSent = true
		res, err := publishScript.Run(ctx, s.client,
			[]string{s.k.live(view), s.k.meta(view, w.id), s.k.writeLease(view, w.id), w.leaseKey, s.k.gens(view),
				s.k.pushes(view), s.k.pushFloors(view), s.k.pushHold(view)},
			w.id, w.token, s.k.control(view)+"g:", deleteScore(now.Add(s.opts.GracePeriod)), pushed,
			fieldRows, rows,
			fieldPublishedAt, formatMicros(now),
			fieldState, stateLive,
			fieldWatermark, w.watermark(),
			fieldModel, w.model,
			fieldInputs, formatInputs(w.inputs),
		).Slice()
		if err != nil {
			return larder.Generation{}, redisErr(ctx, "publish "+view, err)
		}
		code, _ = res[0].(int64)
		other, _ = res[1].(string)
		if code != -3 || attempt >= maxPushReplays {
			break
		}
		// Rows were pushed while the generation was being replayed into:
		// replay those, and try again. After a few tries, pushes are held
		// back (they wait, pushHoldTTL at most) until the flip, so that a
		// steady stream of pushes cannot keep the publish from ending.
		if attempt >= 1 {
			if err := s.client.Set(ctx, s.k.pushHold(view), w.id, pushHoldTTL).Err(); err != nil {
				return larder.Generation{}, redisErr(ctx, "publish "+view, err)
			}
		}
		added, last, err := w.replayPushes(ctx, replayed)
		if err != nil {
			return larder.Generation{}, err
		}
		rows += added
		pushed, replayed = last, last
	}
	if code != 1 && w.view.Kind == larder.KindLatest {
		// Lift a hold on pushes this publish may have set.
		_ = s.client.Del(context.WithoutCancel(ctx), s.k.pushHold(view)).Err()
	}
	switch code {
	case -3:
		return larder.Generation{}, fmt.Errorf("store: publish %s generation %d: rows kept being pushed while they were replayed into the generation (%d tries): %w",
			view, w.id, maxPushReplays+1, larder.ErrUnavailable)
	case 1:
	case 0:
		// A newer run won: this generation is dead; let cleanup take it now.
		w.state = "superseded"
		w.stopHeartbeat()
		s.retire(ctx, view, w.id, now)
		if _, err := s.cleanupView(ctx, view, false); err != nil {
			s.log.Warn("cleanup after a superseded publish failed; the next cleanup retries", "view", view, "err", err)
		}
		return larder.Generation{}, fmt.Errorf("store: publish %s generation %d: generation %s is live: %w", view, w.id, other, ErrSuperseded)
	case -1:
		if other == stateLive && w.shard != nil {
			// Another attempt of the last shard published it already.
			w.state = "published"
			w.stopHeartbeat()
			g, err := s.generation(ctx, view, w.id)
			return g, err
		}
		return larder.Generation{}, fmt.Errorf("store: publish %s generation %d: the generation is no longer being written (state %q): its lease lapsed and cleanup deleted it as abandoned, or it was aborted: %w",
			view, w.id, other, larder.ErrLeaseLost)
	default:
		return larder.Generation{}, fmt.Errorf("store: publish %s generation %d: lease %s no longer holds token %s (now %q): a newer run took over, or the lease lapsed: %w",
			view, w.id, w.leaseKey, w.token, other, larder.ErrLeaseLost)
	}
	w.state = "published"
	w.stopHeartbeat()
	if w.shard != nil {
		if err := s.client.Del(ctx, s.k.shards(view, w.id)).Err(); err != nil {
			s.log.Warn("deleting the shard set of a published generation failed; cleanup deletes it", "view", view, "generation", w.id, "err", err)
		}
	}
	if err := s.client.Publish(ctx, s.k.channel(), view+" "+strconv.FormatInt(w.id, 10)).Err(); err != nil {
		s.log.Warn("publish notification failed; readers will see the generation at their next refresh",
			"view", view, "generation", w.id, "err", err)
	}
	m := w.meta(rows, now)
	gen := s.cache(s.newLiveGen(view, w.id, m)).gen
	s.log.Info("generation published", "view", view, "generation", w.id, "rows", rows,
		"took", now.Sub(w.startedAt).Round(time.Millisecond))
	s.warnOtherReaders(ctx, view, w.id, m.fingerprint)
	if _, err := s.cleanupView(ctx, view, false); err != nil {
		s.log.Warn("cleanup after publish failed; the next cleanup retries", "view", view, "err", err)
	}
	return gen, nil
}

// meta returns the metadata of the writer's generation once published with
// rows at publishedAt.
func (w *Writer) meta(rows int64, publishedAt time.Time) meta {
	return meta{
		fingerprint: w.view.Fingerprint(),
		buckets:     int(w.buckets),
		rows:        rows,
		startedAt:   w.startedAt,
		publishedAt: publishedAt,
		state:       stateLive,
		watermark:   w.watermarkTime(),
		model:       w.model,
		asOf:        w.asOf,
		inputs:      w.inputs,
		trigger:     w.run.Trigger,
		tick:        w.run.Tick.UTC().Truncate(time.Microsecond),
		job:         w.run.Job,
		epoch:       w.epoch,
	}
}

// retireScript marks generation ARGV[1] retired (metadata KEYS[1]) and
// scores it ARGV[2] in the gens set KEYS[2], unless its metadata is gone:
// then it only removes it from the set, so that no stub metadata is left.
var retireScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'retired')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
`)

// retire marks a generation retired, to be deleted after at. Failures are
// logged: cleanup notices a replaced generation still marked live and
// retires it then.
func (s *Store) retire(ctx context.Context, view string, gen int64, at time.Time) {
	err := retireScript.Run(ctx, s.client, []string{s.k.meta(view, gen), s.k.gens(view)}, gen, deleteScore(at)).Err()
	if err != nil {
		s.log.Warn("retiring a generation failed; cleanup retries", "view", view, "generation", gen, "err", err)
	}
}

// Abort stops the writer and deletes what it wrote; the live generation is
// untouched. A shard writer deletes nothing: the generation's other shards
// go on (see AbortGeneration). Abort ends the writes in flight, waits for
// them, then deletes. It deletes even when ctx is already cancelled, so
// that an interrupted run cleans up after itself, but it returns by ctx's
// deadline when ctx has one, and within abortTimeout (30 seconds) in any
// case. Abort after Publish or Abort does nothing. It returns
// larder.ErrUnavailable when the deletion fails, and an error wrapping
// context.DeadlineExceeded when the time is up first (Redis stalled);
// Cleanup then deletes the generation later, once its lease lapses. An
// incremental writer deletes nothing: see BeginIncremental.
func (w *Writer) Abort(ctx context.Context) error {
	if w.state != "" {
		return nil
	}
	w.state = "aborted"
	ctx, cancel := abortContext(ctx)
	defer cancel()
	if w.inc != nil {
		return w.abortIncremental(ctx)
	}
	// The writes in flight stop, and the queued ones are dropped: the
	// generation is deleted anyway.
	w.cancel()
	_ = w.closeQueue(ctx, false)
	err := w.endHeartbeat(ctx)
	if err == nil {
		err = w.waitFlushes(ctx)
	}
	if err != nil {
		// A write still in flight could land after a deletion: leave the
		// generation to Cleanup, which deletes it once its lease lapses.
		return fmt.Errorf("store: abort %s generation %d: its writes did not end in time, leaving it to cleanup: %w", w.view.Name, w.id, err)
	}
	if w.shard != nil {
		// The other shards go on; a failed shard is retried, and a run
		// that finally fails deletes the generation (AbortGeneration).
		w.s.log.Info("shard aborted", "view", w.view.Name, "generation", w.id, "shard", w.shard.Index, "shards", w.shard.Count)
		return nil
	}
	if w.flipSent {
		// Publish failed after sending the flip: the reply may have been
		// lost while the flip happened. Never delete a live generation.
		live, err := w.s.client.Get(ctx, w.s.k.live(w.view.Name)).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("store: abort %s generation %d: cannot tell whether it is live, leaving it to cleanup: %w",
				w.view.Name, w.id, redisErr(ctx, "abort", err))
		}
		if live == w.id {
			w.state = "published"
			w.s.log.Warn("abort of a generation that is live: kept", "view", w.view.Name, "generation", w.id)
			return nil
		}
	}
	if err := w.s.deleteGeneration(ctx, w.view.Name, w.id, int(w.buckets)); err != nil {
		return err
	}
	w.s.log.Info("generation aborted", "view", w.view.Name, "generation", w.id)
	return nil
}

// abortContext returns the context of Abort's clean-up: it outlives the
// cancellation of ctx, so that an interrupted run still cleans up after
// itself, but keeps ctx's deadline, so that a caller who bounds Abort is
// answered in time; and it ends abortTimeout from now at the latest.
func abortContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(abortTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// watermark returns the metadata value of the newest event time Put: unix
// microseconds, "0" when nothing was Put.
func (w *Writer) watermark() string {
	if !w.hasEvent {
		return "0"
	}
	return formatMicros(microsTime(w.maxEvent))
}

// watermarkTime returns the newest event time Put as it reads back from
// the metadata: the zero time when nothing was Put.
func (w *Writer) watermarkTime() time.Time {
	t, _ := parseMicros(w.watermark())
	return t
}

// stamp returns the time to record in metadata, as it reads back: in UTC, to
// the microsecond.
func (s *Store) stamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }
