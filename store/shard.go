package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

var _ larder.ShardedStore = (*Store)(nil)

// BeginSharded records a new generation of v to be written in count shards
// and returns its id. Each shard is written by a writer from BeginWith with
// opts.Shard; the last shard to publish publishes the generation, with the
// rows of every shard. The generation is held by opts.Run.Lease, which is
// required: the shards' runs renew it while they write, and when it lapses
// the generation is abandoned, and Cleanup deletes it.
//
// It returns an *larder.InvalidError when count is below 1 or the run
// holds no lease, an error wrapping larder.ErrLeaseLost when the lease is
// no longer held, and larder.ErrUnavailable or ctx.Err() when Redis cannot
// be reached.
func (s *Store) BeginSharded(ctx context.Context, v *larder.View, opts larder.BeginOptions, count int) (int64, error) {
	if count < 1 {
		return 0, larder.Invalidf("store: begin %s: %d shards: want 1 or more", v.Name, count)
	}
	if !opts.Run.Lease.Held() {
		return 0, larder.Invalidf("store: begin %s in %d shards: the run holds no run lease, which a sharded generation needs", v.Name, count)
	}
	buckets := s.bucketCount(ctx, v.Name, opts.ExpectedRows)
	id, err := s.client.Incr(ctx, s.k.seq(v.Name)).Result()
	if err != nil {
		return 0, redisErr(ctx, "begin "+v.Name, err)
	}
	w := s.newWriter(v, id, uint32(buckets), opts.Run)
	if err := s.record(ctx, v, w, opts.Run, count); err != nil {
		return 0, err
	}
	s.log.Debug("sharded generation started", "view", v.Name, "generation", id, "buckets", buckets, "shards", count)
	return id, nil
}

// beginShard returns a writer of shard opts.Shard of a sharded generation.
// It returns an error wrapping larder.ErrPublished when the generation was
// published already, and larder.ErrNotFound when it is gone.
func (s *Store) beginShard(ctx context.Context, v *larder.View, opts larder.BeginOptions) (*Writer, error) {
	sh := *opts.Shard
	g, m, err := s.writingMeta(ctx, v.Name, sh.Generation)
	if err != nil {
		return nil, err
	}
	switch {
	case m.shards != sh.Count:
		return nil, larder.Invalidf("store: begin shard %d of %d of %s generation %d: the generation has %d shards", sh.Index, sh.Count, v.Name, g, m.shards)
	case sh.Index < 0 || sh.Index >= sh.Count:
		return nil, larder.Invalidf("store: begin shard %d of %s generation %d: want 0 to %d", sh.Index, v.Name, g, sh.Count-1)
	case m.fingerprint != v.Fingerprint():
		return nil, fmt.Errorf("store: begin shard %d of %s generation %d: the generation has schema %s, the view's definition has %s: %w",
			sh.Index, v.Name, g, m.fingerprint, v.Fingerprint(), larder.ErrSchemaChanged)
	case !opts.Run.Lease.Held() || m.lease != s.k.lease(v.Name) || m.token != strconv.FormatInt(opts.Run.Lease.Token, 10):
		return nil, fmt.Errorf("store: begin shard %d of %s generation %d: the generation is held by lease %s token %s, not by the run's (token %d): %w",
			sh.Index, v.Name, g, m.lease, m.token, opts.Run.Lease.Token, larder.ErrLeaseLost)
	}
	if err := s.renew(ctx, m.lease, m.token, opts.Run.Lease.TTL, "run lease of "+v.Name); err != nil {
		return nil, err
	}
	w := &Writer{
		s:          s,
		view:       v,
		types:      featureTypes(v),
		id:         g,
		buckets:    uint32(m.buckets),
		dataPrefix: s.k.dataPrefix(v.Name, g),
		startedAt:  m.startedAt,
		asOf:       m.asOf,
		epoch:      m.epoch,
		run:        opts.Run,
		free:       make(chan *batch, s.opts.WriteConnections+1),
		cur:        &batch{},
		leaseKey:   m.lease,
		token:      m.token,
		leaseTTL:   opts.Run.Lease.TTL,
		shard:      &sh,
	}
	if w.leaseTTL <= 0 {
		w.leaseTTL = s.opts.WriteLease
	}
	w.run.Trigger, w.run.Tick, w.run.Job = m.trigger, m.tick, m.job
	w.start(ctx)
	s.log.Debug("shard started", "view", v.Name, "generation", g, "shard", sh.Index, "shards", sh.Count)
	return w, nil
}

// writingMeta reads the metadata of generation gen of view, which must be
// being written. It returns an error wrapping larder.ErrNotFound otherwise.
func (s *Store) writingMeta(ctx context.Context, view string, gen int64) (int64, meta, error) {
	h, err := s.client.HGetAll(ctx, s.k.meta(view, gen)).Result()
	if err != nil {
		return 0, meta{}, redisErr(ctx, "read generation metadata of "+view, err)
	}
	m, ok, err := parseMeta(h)
	switch {
	case err != nil:
		return 0, meta{}, fmt.Errorf("store: view %s generation %d: %w", view, gen, err)
	case !ok:
		return 0, meta{}, fmt.Errorf("store: view %s generation %d is gone (abandoned or aborted): %w", view, gen, larder.ErrNotFound)
	case m.state == stateLive || (m.state == stateRetired && m.publishedAt.After(m.startedAt)):
		return 0, meta{}, fmt.Errorf("store: view %s generation %d: %w", view, gen, larder.ErrPublished)
	case m.state != stateWriting:
		return 0, meta{}, fmt.Errorf("store: view %s generation %d is %s, not being written: %w", view, gen, m.state, larder.ErrNotFound)
	}
	return gen, m, nil
}

// shardDoneScript records shard ARGV[2] of a sharded generation as done
// (set KEYS[2]) when its metadata KEYS[1] still says writing and its lease
// KEYS[3] still holds token ARGV[1]. It returns {1, shards done} when it
// did, {-1, state} when the generation is not being written, and {-2,
// lease value} when the lease is lost.
var shardDoneScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'writing' then
  return {-1, state or ''}
end
local lv = redis.call('GET', KEYS[3])
local p = ARGV[1] .. ' '
if not lv or string.sub(lv, 1, #p) ~= p then
  return {-2, lv or ''}
end
redis.call('SADD', KEYS[2], ARGV[2])
return {1, redis.call('SCARD', KEYS[2])}
`)

// publishShard marks the writer's shard done, and publishes the generation
// when every shard is: its rows are then counted from its buckets, since
// a shard that was retried does not know what an earlier attempt wrote.
func (w *Writer) publishShard(ctx context.Context) (larder.Generation, error) {
	s, view, sh := w.s, w.view.Name, w.shard
	res, err := shardDoneScript.Run(ctx, s.client,
		[]string{s.k.meta(view, w.id), s.k.shards(view, w.id), w.leaseKey},
		w.token, sh.Index).Slice()
	if err != nil {
		return larder.Generation{}, redisErr(ctx, "publish "+view+" shard", err)
	}
	code, _ := res[0].(int64)
	switch code {
	case 1:
	case -1:
		if state, _ := res[1].(string); state == stateLive {
			// An earlier attempt of this shard was the last, and published.
			w.state = "published"
			w.stopHeartbeat()
			return s.generation(ctx, view, w.id)
		}
		return larder.Generation{}, fmt.Errorf("store: publish %s generation %d shard %d: the generation is no longer being written (state %q): it was aborted, or abandoned when its lease lapsed: %w",
			view, w.id, sh.Index, res[1], larder.ErrLeaseLost)
	default:
		return larder.Generation{}, fmt.Errorf("store: publish %s generation %d shard %d: lease %s no longer holds token %s: %w",
			view, w.id, sh.Index, w.leaseKey, w.token, larder.ErrLeaseLost)
	}
	done, _ := res[1].(int64)
	if int(done) < sh.Count {
		w.state = "done"
		w.stopHeartbeat()
		s.log.Info("shard done", "view", view, "generation", w.id, "shard", sh.Index, "shards_done", done, "shards", sh.Count)
		m := w.meta(0, w.startedAt)
		m.publishedAt, m.state = time.Time{}, stateWriting
		return m.generation(view, w.id), nil
	}
	rows, err := s.countRows(ctx, w.dataPrefix, int(w.buckets))
	if err != nil {
		return larder.Generation{}, redisErr(ctx, "publish "+view, err)
	}
	return w.flip(ctx, rows)
}

// ShardedRun finds the sharded generation of v that job is writing (see
// larder.ShardedStore). It returns larder.ErrUnavailable or ctx.Err() when
// Redis cannot be read.
func (s *Store) ShardedRun(ctx context.Context, v *larder.View, job string) (gen, token int64, asOf time.Time, ok bool, err error) {
	gens, _, metas, err := s.readGenerations(ctx, v.Name)
	if err != nil {
		return 0, 0, time.Time{}, false, err
	}
	for i, z := range gens {
		m, found, err := parseMeta(metas[i])
		if err != nil || !found || m.state != stateWriting || m.shards == 0 || m.job != job {
			continue
		}
		id, _ := strconv.ParseInt(z.Member.(string), 10, 64)
		tok, err := strconv.ParseInt(m.token, 10, 64)
		if err != nil {
			continue
		}
		return id, tok, m.asOf, true, nil
	}
	return 0, 0, time.Time{}, false, nil
}

// abortScript marks generation ARGV[1] (metadata KEYS[1]) aborted when it
// is being written and is not live (KEYS[2]), and schedules its deletion
// in the gens set (KEYS[3]) at ARGV[2], so that one of several callers
// records its run. It returns 1 when it marked it.
var abortScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then
  return 0
end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'writing' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'aborted')
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
`)

// stateAborted marks a sharded generation whose run failed or was
// cancelled: its rows are deleted at once, and its metadata is kept for a
// grace period, so that Cleanup deletes again the rows that a shard still
// running wrote meanwhile.
const stateAborted = "aborted"

// AbortGeneration deletes the rows of generation gen of v, of all its
// shards, unless it is live (then it does nothing). The shards of a run
// run on other workers, and one may still write for a moment: the
// generation's metadata is kept, marked aborted, for the grace period,
// after which Cleanup deletes the generation again, rows and metadata.
// Publishing it is refused from the first call on. deleted reports whether
// this call found it being written: of several concurrent calls, one. It
// returns larder.ErrUnavailable or ctx.Err() when Redis cannot be reached;
// a generation already gone is not an error.
func (s *Store) AbortGeneration(ctx context.Context, v *larder.View, gen int64) (bool, error) {
	won, err := abortScript.Run(ctx, s.client, []string{s.k.meta(v.Name, gen), s.k.live(v.Name), s.k.gens(v.Name)},
		gen, deleteScore(s.now().Add(s.opts.GracePeriod))).Int64()
	if err != nil {
		return false, redisErr(ctx, "abort "+v.Name, err)
	}
	h, err := s.client.HGetAll(ctx, s.k.meta(v.Name, gen)).Result()
	if err != nil {
		return false, redisErr(ctx, "abort "+v.Name, err)
	}
	m, ok, err := parseMeta(h)
	if err != nil || !ok || m.state != stateAborted {
		// Gone already, live, or retired: nothing of a run to delete.
		return false, nil
	}
	if err := s.deleteRows(ctx, v.Name, gen, m.buckets); err != nil {
		return false, err
	}
	s.log.Info("generation aborted", "view", v.Name, "generation", gen, "shards", m.shards)
	return won == 1, nil
}
