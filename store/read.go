package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// liveGen is the cached live generation of one view. It is immutable except
// for checked, which remembers a view definition whose fingerprint matched.
type liveGen struct {
	gen        larder.Generation // ID 0: the view has no live generation
	buckets    uint32
	dataPrefix string
	// metaKey is the key of its metadata, and epoch the store's epoch it
	// was written in: every Read checks that the metadata is still there,
	// of that epoch, so that no answer is built from a generation Redis
	// lost.
	metaKey string
	epoch   string
	// watermark is the newest event time the generation's runs read.
	watermark time.Time
	// bucketKeys are the bucket key names, built once per generation when
	// there are at most maxCachedBuckets, to save an allocation per key read.
	bucketKeys []string
	loadedAt   time.Time
	checked    atomic.Pointer[checkedView]
	// own is the generation read instead of this one by a view definition
	// of another schema (Options.ServeOwnSchema).
	own atomic.Pointer[ownSchema]
}

// maxCachedBuckets bounds the bucket key names a cached generation keeps.
const maxCachedBuckets = 4096

// checkedView is a view definition known to match a generation's schema,
// with its feature types, so that reads check the fingerprint once per
// generation rather than once per request.
type checkedView struct {
	view  *larder.View
	types []larder.Type
}

// schema returns the feature types of v after checking v's fingerprint
// against the generation's; it returns an error wrapping
// larder.ErrSchemaChanged when they differ.
func (g *liveGen) schema(v *larder.View) ([]larder.Type, error) {
	if c := g.checked.Load(); c != nil && c.view == v {
		return c.types, nil
	}
	if fp := v.Fingerprint(); fp != g.gen.Fingerprint {
		return nil, fmt.Errorf("store: view %s: generation %d has schema %s, the view's definition has %s: %w",
			v.Name, g.gen.ID, g.gen.Fingerprint, fp, larder.ErrSchemaChanged)
	}
	c := &checkedView{view: v, types: featureTypes(v)}
	g.checked.Store(c)
	return c.types, nil
}

func (g *liveGen) bucketKey(dst []byte, bucket uint32) []byte {
	dst = append(dst, g.dataPrefix...)
	return strconv.AppendUint(dst, uint64(bucket), 10)
}

// liveFor returns the cached live generation of view, loading it when it is
// missing or older than twice the refresh interval (see loadShared). It
// returns an error wrapping larder.ErrNoGeneration when the view was never
// published.
func (s *Store) liveFor(ctx context.Context, view string) (*liveGen, error) {
	s.mu.RLock()
	g := s.live[view]
	s.mu.RUnlock()
	if !s.fresh(g) {
		var err error
		if g, err = s.loadShared(ctx, view); err != nil {
			return nil, err
		}
	}
	if g.gen.ID == 0 {
		return nil, fmt.Errorf("store: view %s: %w", view, larder.ErrNoGeneration)
	}
	return g, nil
}

// fresh reports whether the cached entry g may answer without a Redis
// call: it is no older than twice the refresh interval, or, when it says
// the view has no live generation, than noGenerationTTL, so that a view
// published again after a data loss is seen soon even without Watch.
func (s *Store) fresh(g *liveGen) bool {
	if g == nil {
		return false
	}
	age := s.now().Sub(g.loadedAt)
	if g.gen.ID == 0 {
		return age <= min(noGenerationTTL, s.opts.RefreshInterval)
	}
	return age <= 2*s.opts.RefreshInterval
}

// noGenerationTTL bounds how long the cache says a view has no live
// generation.
const noGenerationTTL = time.Second

// liveLoad is a load of a view's live generation in flight, which the
// callers that need it meanwhile wait for instead of loading it again.
type liveLoad struct {
	done chan struct{} // closed once g, err and abandoned are set
	g    *liveGen
	err  error
	// abandoned marks a load that failed because the context of the caller
	// that made it ended: an answer for no one else.
	abandoned bool
}

// loadShared loads the live generation of view into the cache, as refresh
// does, unless the cache is fresh by now, and returns the cached entry.
// Callers that find a load of the view in flight wait for it rather than
// start their own, so that a cold or expired cache costs one Redis round
// trip (a GET, then an HGETALL) however many requests need it at once. A
// waiting caller stops waiting when its own ctx ends; when the load fails
// because the context of the caller that made it ended, the callers that
// waited load again. It returns refresh's errors.
func (s *Store) loadShared(ctx context.Context, view string) (*liveGen, error) {
	for {
		s.mu.Lock()
		if g := s.live[view]; s.fresh(g) {
			s.mu.Unlock()
			return g, nil
		}
		l, inFlight := s.loading[view]
		if !inFlight {
			l = &liveLoad{done: make(chan struct{})}
			s.loading[view] = l
		}
		s.mu.Unlock()

		if !inFlight {
			s.load(ctx, view, l)
			return l.g, l.err
		}
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("store: read live generation of %s: %w", view, ctx.Err())
		}
		if !l.abandoned {
			return l.g, l.err
		}
	}
}

// load makes the load l of view's live generation, then hands its result
// to the callers waiting for it.
func (s *Store) load(ctx context.Context, view string, l *liveLoad) {
	defer func() {
		s.mu.Lock()
		delete(s.loading, view)
		s.mu.Unlock()
		close(l.done)
	}()
	// A panic in the load leaves the waiting callers an error, not a hang.
	l.err = fmt.Errorf("store: read live generation of %s: the load did not finish", view)
	l.g, l.err = s.refresh(ctx, view)
	l.abandoned = l.err != nil && ctx.Err() != nil
}

// refresh re-reads the live generation of view from Redis into the cache and
// returns the cached entry. Unlike loadShared it always reads, starting
// after the call: a caller that knows of a publish (Watch) sees it.
func (s *Store) refresh(ctx context.Context, view string) (*liveGen, error) {
	g, err := s.loadLive(ctx, view)
	if err != nil {
		return nil, err
	}
	return s.cache(g), nil
}

// loadLive reads the live generation of view from Redis; its gen.ID is 0
// when the view was never published.
func (s *Store) loadLive(ctx context.Context, view string) (*liveGen, error) {
	id, err := s.client.Get(ctx, s.k.live(view)).Int64()
	if errors.Is(err, redis.Nil) {
		return &liveGen{gen: larder.Generation{View: view}, loadedAt: s.now()}, nil
	}
	if err != nil {
		return nil, redisErr(ctx, "read live generation of "+view, err)
	}
	// The metadata is read again even when the id did not change: after a
	// data loss ids start again at 1.
	h, err := s.client.HGetAll(ctx, s.k.meta(view, id)).Result()
	if err != nil {
		return nil, redisErr(ctx, "read generation metadata of "+view, err)
	}
	m, ok, err := parseMeta(h)
	if err != nil {
		return nil, fmt.Errorf("store: view %s generation %d: %w", view, id, err)
	}
	if !ok {
		return nil, fmt.Errorf("store: view %s: live generation %d has no metadata (deleted by hand?): run `larder materialize`: %w", view, id, larder.ErrNoGeneration)
	}
	return s.newLiveGen(view, id, m), nil
}

func (s *Store) newLiveGen(view string, id int64, m meta) *liveGen {
	g := &liveGen{
		gen:        m.generation(view, id),
		buckets:    uint32(m.buckets),
		dataPrefix: s.k.dataPrefix(view, id),
		metaKey:    s.k.meta(view, id),
		epoch:      m.epoch,
		watermark:  m.watermark,
		loadedAt:   s.now(),
	}
	if m.buckets <= maxCachedBuckets {
		g.bucketKeys = make([]string, m.buckets)
		for b := range g.bucketKeys {
			g.bucketKeys[b] = string(g.bucketKey(nil, uint32(b)))
		}
	}
	return g
}

// cache stores g unless the cache holds a newer generation of the view that
// is still fresh (a load racing with a publish must not move the view back),
// and returns the entry in the cache.
func (s *Store) cache(g *liveGen) *liveGen {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.live[g.gen.View]
	if old != nil && old.gen.ID > g.gen.ID && old.epoch == g.epoch && g.loadedAt.Sub(old.loadedAt) <= 2*s.opts.RefreshInterval {
		return old
	}
	if old != nil && sameGeneration(old.gen, g.gen) {
		// Keep the checked view definition of the same generation, and
		// the generation of another schema read instead of it, so that
		// the warning of ownSchemaFor is logged once, not at each refresh.
		g.checked.Store(old.checked.Load())
		g.own.Store(old.own.Load())
	}
	s.live[g.gen.View] = g
	return g
}

// sameGeneration reports whether a and b describe one generation in one
// state: the same id, schema and publish.
func sameGeneration(a, b larder.Generation) bool {
	return a.View == b.View && a.ID == b.ID && a.Fingerprint == b.Fingerprint &&
		a.PublishedAt.Equal(b.PublishedAt) && a.Rows == b.Rows
}

// pinnedFor returns generation gen of view, for a lookup pinned to it: from
// the cache of pinned generations while it is fresh (younger than the
// refresh interval), or read again from Redis, so that a generation deleted
// meanwhile is noticed within that interval. It returns an error wrapping
// larder.ErrNotFound when the generation is gone.
func (s *Store) pinnedFor(ctx context.Context, view string, gen int64) (*liveGen, error) {
	if g, err := s.liveFor(ctx, view); err == nil && g.gen.ID == gen {
		return g, nil
	}
	key := pinKey{view, gen}
	s.mu.RLock()
	g := s.pinned[key]
	s.mu.RUnlock()
	if g != nil && s.now().Sub(g.loadedAt) <= s.opts.RefreshInterval {
		return g, nil
	}
	h, err := s.client.HGetAll(ctx, s.k.meta(view, gen)).Result()
	if err != nil {
		return nil, redisErr(ctx, "read generation metadata of "+view, err)
	}
	m, ok, err := parseMeta(h)
	switch {
	case err != nil:
		return nil, fmt.Errorf("store: view %s generation %d: %w", view, gen, err)
	case !ok || (m.state != stateLive && m.state != stateRetired):
		s.mu.Lock()
		delete(s.pinned, key)
		s.mu.Unlock()
		return nil, fmt.Errorf("store: view %s generation %d is no longer held (it was replaced more than the grace period ago): %w",
			view, gen, larder.ErrNotFound)
	}
	g = s.newLiveGen(view, gen, m)
	s.mu.Lock()
	if len(s.pinned) > maxPinned {
		clear(s.pinned)
	}
	s.pinned[key] = g
	s.mu.Unlock()
	return g, nil
}

// pinKey names a pinned generation.
type pinKey struct {
	view string
	gen  int64
}

// maxPinned bounds the pinned generations the Store caches.
const maxPinned = 256

// Read fills every lookup from its view's live generation (or the one it
// pins, Lookup.Pin) with one pipelined round trip (one per node on a cluster), which concurrent Reads may share.
// For each lookup it sets Generation and resizes Found and Rows to
// len(Keys), reusing their capacity and that of each Rows[i].Values. A key
// with no row gets Found[i] false and an empty Rows[i]. A lookup with
// Numbers set gets its numbers there instead, and Rows[i] holds only the
// event time.
//
// Read returns an error wrapping larder.ErrNoGeneration when a view has
// never been published, larder.ErrSchemaChanged when a live generation was
// written with another schema than its view's definition, ErrCorruptRow
// when a stored value does not decode, larder.ErrUnavailable when Redis
// cannot be reached, and ctx.Err() when ctx ends first. On error the
// lookups' results are unspecified.
func (s *Store) Read(ctx context.Context, lookups []*larder.Lookup) error {
	if err := ctx.Err(); err != nil {
		// A cached generation and a shared round trip could otherwise
		// answer a caller that has already gone.
		return fmt.Errorf("store: read: %w", err)
	}
	var genBuf [8]*liveGen
	var typeBuf [8][]larder.Type
	gens, types := genBuf[:0], typeBuf[:0]
	n := 0
	for i, l := range lookups {
		if l.View == nil {
			return larder.Invalidf("lookup %d names no view", i)
		}
		var g *liveGen
		var err error
		if l.Pin != 0 {
			g, err = s.pinnedFor(ctx, l.View.Name, l.Pin)
		} else {
			g, err = s.liveFor(ctx, l.View.Name)
		}
		if err != nil {
			return err
		}
		var t []larder.Type
		if o := g.own.Load(); o != nil && l.Pin == 0 && o.view == l.View && s.now().Sub(o.loadedAt) <= s.opts.RefreshInterval {
			// A definition of another schema than the live generation's,
			// known: read its own schema's generation.
			g, t, err = o.gen, o.types, o.err
		} else if t, err = g.schema(l.View); err != nil && l.Pin == 0 {
			g, t, err = s.ownSchemaFor(ctx, g, l.View, err)
		}
		if err != nil {
			return err
		}
		if nr := l.Numbers; nr != nil && len(nr.Defaults) != len(nr.Features) {
			return larder.Invalidf("lookup %d: %d defaults for %d features", i, len(nr.Defaults), len(nr.Features))
		}
		gens, types = append(gens, g), append(types, t)
		n += len(l.Keys)
	}
	if n == 0 {
		for i, l := range lookups {
			l.Generation, l.Model, l.Watermark = gens[i].gen.ID, gens[i].gen.Model, gens[i].watermark
			l.Found, l.Rows = l.Found[:0], l.Rows[:0]
			if l.Numbers != nil {
				l.Numbers.Values = l.Numbers.Values[:0]
			}
		}
		return nil
	}

	c := getReadCall(ctx)
	c.build(lookups, gens, n)
	tiles := s.buildTiles(c, lookups, gens)
	if err := s.roundTrip(ctx, c); err != nil {
		// The round trip may still use c's commands: c is not reused.
		return fmt.Errorf("store: read: %w", err)
	}
	var numbers []*larder.NumberRead
	if tiles != nil {
		// The numbers of a streaming view come from its combined rows.
		numbers = holdNumbers(lookups, tiles)
	}
	err := c.decode(ctx, lookups, gens, types)
	c.put()
	if err == nil && tiles != nil {
		err = s.finishTiles(ctx, lookups, gens, tiles, numbers)
	}
	var lost *lostError
	if errors.As(err, &lost) {
		// The next Read loads what Redis holds now.
		s.forget(lost.view, lost.gen)
		s.log.Warn("a read found its generation gone from Redis", "view", lost.view, "generation", lost.gen, "why", lost.why)
	}
	return err
}

// lostError is a read of a generation that is gone from Redis.
type lostError struct {
	view string
	gen  int64
	why  string
}

func (e *lostError) Error() string {
	return fmt.Sprintf("store: view %s generation %d %s: %v", e.view, e.gen, e.why, larder.ErrDataLost)
}

// LostView returns the name of the view whose generation is gone, for
// metrics that count the losses by view.
func (e *lostError) LostView() string { return e.view }

// Unwrap returns larder.ErrDataLost and larder.ErrUnavailable: the store
// cannot answer from that generation.
func (e *lostError) Unwrap() []error { return []error{larder.ErrDataLost, larder.ErrUnavailable} }

// forget drops the cached live or pinned generation gen of view.
func (s *Store) forget(view string, gen int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.live[view]; g != nil && g.gen.ID == gen {
		delete(s.live, view)
	} else if g != nil {
		if o := g.own.Load(); o != nil && o.gen != nil && o.gen.gen.ID == gen {
			g.own.Store(nil)
		}
	}
	delete(s.pinned, pinKey{view, gen})
}

// The fields of a generation's metadata a Read checks, as values whose
// addresses commands can take.
var checkFingerprint, checkEpoch = fieldFingerprint, fieldEpoch

// build makes the commands that read every key of every lookup, n keys in
// all: per lookup, one HMGET for the keys that share a bucket hash, and one
// HGET for a key alone in its bucket. The arguments point into c's buffers
// and the generations' cached key names, so that building a command
// allocates only the command.
func (c *readCall) build(lookups []*larder.Lookup, gens []*liveGen, n int) {
	// Every field is a slice of one string, built once.
	c.buf, c.ends, c.buckets = c.buf[:0], c.ends[:0], c.buckets[:0]
	for li, l := range lookups {
		for _, k := range l.Keys {
			start := len(c.buf)
			c.buf = k.AppendCanonical(c.buf)
			c.ends = append(c.ends, len(c.buf))
			c.buckets = append(c.buckets, bucketOf(c.buf[start:], gens[li].buckets))
		}
	}
	all := string(c.buf)
	c.fields = resize(c.fields, n)
	for i, start := 0, 0; i < n; i++ {
		c.fields[i] = all[start:c.ends[i]]
		start = c.ends[i]
	}
	c.slot, c.pos = resize(c.slot, n), resize(c.pos, n)
	// At most 3 arguments per key (an HGET's), so the arguments never move
	// once commands point into them.
	if need := 3*n + 4*len(lookups); cap(c.args) < need {
		c.args = make([]any, 0, need)
	}
	c.args, c.cmds = c.args[:0], c.cmds[:0]
	first := 0 // the index of the lookup's first key
	for li, l := range lookups {
		g := gens[li]
		// The lookup's keys in bucket order, so that keys sharing a bucket
		// are next to each other.
		c.order = c.order[:0]
		for j := range l.Keys {
			c.order = append(c.order, int32(first+j))
		}
		if len(c.order) > 1 {
			slices.SortStableFunc(c.order, func(a, b int32) int { return cmp.Compare(c.buckets[a], c.buckets[b]) })
		}
		for run := 0; run < len(c.order); {
			b := c.buckets[c.order[run]]
			end := run + 1
			for end < len(c.order) && c.buckets[c.order[end]] == b {
				end++
			}
			var key any
			if g.bucketKeys != nil {
				key = &g.bucketKeys[b]
			} else {
				key = string(g.bucketKey(nil, b))
			}
			at := len(c.args)
			if end-run == 1 {
				i := c.order[run]
				c.args = append(c.args, "hget", key, &c.fields[i])
				c.slot[i], c.pos[i] = int32(len(c.cmds)), -1
				c.cmds = append(c.cmds, redis.NewStringCmd(c.ctx, c.args[at:len(c.args):len(c.args)]...))
			} else {
				c.args = append(c.args, "hmget", key)
				for p, i := range c.order[run:end] {
					c.args = append(c.args, &c.fields[i])
					c.slot[i], c.pos[i] = int32(len(c.cmds)), int32(p)
				}
				c.cmds = append(c.cmds, redis.NewStringSliceCmd(c.ctx, c.args[at:len(c.args):len(c.args)]...))
			}
			run = end
		}
		first += len(l.Keys)
	}
	// Per lookup, the generation's metadata: still there, of its epoch.
	c.checks = c.checks[:0]
	for li := range lookups {
		at := len(c.args)
		c.args = append(c.args, "hmget", &gens[li].metaKey, &checkFingerprint, &checkEpoch)
		c.checks = append(c.checks, int32(len(c.cmds)))
		c.cmds = append(c.cmds, redis.NewSliceCmd(c.ctx, c.args[at:len(c.args):len(c.args)]...))
	}
}

// decode fills the lookups from the replies of c's commands.
func (c *readCall) decode(ctx context.Context, lookups []*larder.Lookup, gens []*liveGen, types [][]larder.Type) error {
	for li, l := range lookups {
		vals, err := c.cmds[c.checks[li]].(*redis.SliceCmd).Result()
		if err != nil {
			return redisErr(ctx, "read "+l.View.Name, err)
		}
		g := gens[li]
		switch fp, _ := vals[0].(string); {
		case fp == "":
			return &lostError{view: g.gen.View, gen: g.gen.ID, why: "has no metadata any more"}
		default:
			if epoch, _ := vals[1].(string); epoch != g.epoch {
				return &lostError{view: g.gen.View, gen: g.gen.ID, why: "was replaced by another of the same id (Redis lost its data since)"}
			}
		}
	}
	i := 0
	for li, l := range lookups {
		l.Generation, l.Model, l.Watermark = gens[li].gen.ID, gens[li].gen.Model, gens[li].watermark
		l.Found = resize(l.Found, len(l.Keys))
		l.Rows = resize(l.Rows, len(l.Keys))
		nr := l.Numbers
		if nr != nil {
			nr.Values = resize(nr.Values, len(l.Keys)*len(nr.Features))
			c.scratch = resize(c.scratch, len(types[li]))
			c.nulls = resize(c.nulls, len(types[li]))
		}
		for j := range l.Keys {
			val, found, err := c.reply(ctx, i, l.View)
			i++
			if err != nil {
				return err
			}
			row := &l.Rows[j]
			l.Found[j] = found
			if nr != nil {
				out := nr.Values[j*len(nr.Features) : (j+1)*len(nr.Features)]
				row.Values = row.Values[:0]
				if !found {
					row.EventTime = time.Time{}
					copy(out, nr.Defaults)
					continue
				}
				row.EventTime, err = decodeNumbers(val, types[li], nr.Features, nr.Defaults, out, c.scratch, c.nulls)
			} else {
				if !found {
					row.EventTime, row.Values = time.Time{}, row.Values[:0]
					continue
				}
				err = decodeRow(val, types[li], row)
			}
			if err != nil {
				return fmt.Errorf("store: read %s generation %d key %s: %w", l.View.Name, l.Generation, l.Keys[j], err)
			}
		}
	}
	return nil
}

// resize returns s with length n, reusing its capacity.
func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return append(s[:cap(s)], make([]T, n-cap(s))...)
}

// GetRow reads the row of one entity from v's live generation: Read with one
// lookup. found is false when the entity has no row. The errors are Read's.
func (s *Store) GetRow(ctx context.Context, v *larder.View, key larder.Key) (row larder.Row, found bool, err error) {
	l := &larder.Lookup{View: v, Keys: []larder.Key{key}}
	if err := s.Read(ctx, []*larder.Lookup{l}); err != nil {
		return larder.Row{}, false, err
	}
	return l.Rows[0], l.Found[0], nil
}

// Live returns the live generation of v as cached by the Store (loading it
// on first use, with no Redis call afterwards while the cache is fresh; see
// LiveFresh for a read that is never behind). It
// returns an error wrapping larder.ErrNoGeneration when v was never
// published, and larder.ErrUnavailable or ctx.Err() when loading fails.
func (s *Store) Live(ctx context.Context, v *larder.View) (larder.Generation, error) {
	g, err := s.liveFor(ctx, v.Name)
	if err != nil {
		return larder.Generation{}, err
	}
	return g.gen, nil
}

// LiveFresh returns the live generation of v as Redis holds it now: unlike
// Live, it never answers from the cache, which in a process that does not
// run Watch may lag a publish by up to twice Options.RefreshInterval. It
// refreshes the cache with what it read. It costs two round trips (the live
// id, then its metadata), for callers that read seldom and must not be
// behind, such as a metrics scrape. Its errors are those of Live.
func (s *Store) LiveFresh(ctx context.Context, v *larder.View) (larder.Generation, error) {
	g, err := s.loadLive(ctx, v.Name)
	if err != nil {
		return larder.Generation{}, err
	}
	s.cache(g)
	if g.gen.ID == 0 {
		return larder.Generation{}, fmt.Errorf("store: view %s: %w", v.Name, larder.ErrNoGeneration)
	}
	return g.gen, nil
}

// Ping reports whether Redis answers. It returns larder.ErrUnavailable or
// ctx.Err() when it does not.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return redisErr(ctx, "ping", err)
	}
	return nil
}
