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

// liveGen is the cached live generation of one view. It is immutable except
// for checked, which remembers a view definition whose fingerprint matched.
type liveGen struct {
	gen        larder.Generation // ID 0: the view has no live generation
	buckets    uint32
	dataPrefix string
	// bucketKeys are the bucket key names, built once per generation when
	// there are at most maxCachedBuckets, to save an allocation per key read.
	bucketKeys []string
	loadedAt   time.Time
	checked    atomic.Pointer[checkedView]
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
// missing or older than twice the refresh interval. It returns an error
// wrapping larder.ErrNoGeneration when the view was never published.
func (s *Store) liveFor(ctx context.Context, view string) (*liveGen, error) {
	s.mu.RLock()
	g := s.live[view]
	s.mu.RUnlock()
	if g == nil || s.now().Sub(g.loadedAt) > 2*s.opts.RefreshInterval {
		var err error
		if g, err = s.refresh(ctx, view); err != nil {
			return nil, err
		}
	}
	if g.gen.ID == 0 {
		return nil, fmt.Errorf("store: view %s: %w", view, larder.ErrNoGeneration)
	}
	return g, nil
}

// refresh re-reads the live generation of view from Redis into the cache and
// returns the cached entry.
func (s *Store) refresh(ctx context.Context, view string) (*liveGen, error) {
	id, err := s.client.Get(ctx, s.k.live(view)).Int64()
	if errors.Is(err, redis.Nil) {
		return s.cache(&liveGen{gen: larder.Generation{View: view}, loadedAt: s.now()}), nil
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
	g := s.newLiveGen(view, id, m)
	g.gen.Model = h[fieldModel]
	return s.cache(g), nil
}

func (s *Store) newLiveGen(view string, id int64, m meta) *liveGen {
	g := &liveGen{
		gen: larder.Generation{
			View:        view,
			ID:          id,
			Rows:        m.rows,
			Fingerprint: m.fingerprint,
			StartedAt:   m.startedAt,
			PublishedAt: m.publishedAt,
		},
		buckets:    uint32(m.buckets),
		dataPrefix: s.k.dataPrefix(view, id),
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
	if old != nil && old.gen.ID > g.gen.ID && g.loadedAt.Sub(old.loadedAt) <= 2*s.opts.RefreshInterval {
		return old
	}
	if old != nil && old.gen == g.gen {
		// Keep the checked view definition of the same generation.
		g.checked.Store(old.checked.Load())
	}
	s.live[g.gen.View] = g
	return g
}

// Read fills every lookup from its view's live generation with one pipelined
// round trip (one per node on a cluster). For each lookup it sets Generation
// and resizes Found and Rows to len(Keys), reusing their capacity and that
// of each Rows[i].Values. A key with no row gets Found[i] false and an empty
// Rows[i].
//
// Read returns an error wrapping larder.ErrNoGeneration when a view has
// never been published, larder.ErrSchemaChanged when a live generation was
// written with another schema than its view's definition, ErrCorruptRow
// when a stored value does not decode, larder.ErrUnavailable when Redis
// cannot be reached, and ctx.Err() when ctx ends first. On error the
// lookups' results are unspecified.
func (s *Store) Read(ctx context.Context, lookups []*larder.Lookup) error {
	var genBuf [8]*liveGen
	var typeBuf [8][]larder.Type
	gens, types := genBuf[:0], typeBuf[:0]
	n := 0
	for i, l := range lookups {
		if l.View == nil {
			return larder.Invalidf("lookup %d names no view", i)
		}
		g, err := s.liveFor(ctx, l.View.Name)
		if err != nil {
			return err
		}
		t, err := g.schema(l.View)
		if err != nil {
			return err
		}
		gens, types = append(gens, g), append(types, t)
		n += len(l.Keys)
	}
	if n == 0 {
		for i, l := range lookups {
			l.Generation, l.Model = gens[i].gen.ID, gens[i].gen.Model
			l.Found, l.Rows = l.Found[:0], l.Rows[:0]
		}
		return nil
	}

	pipe := s.client.Pipeline()
	var field, key []byte
	for i, l := range lookups {
		g := gens[i]
		for _, k := range l.Keys {
			field = k.AppendCanonical(field[:0])
			b := bucketOf(field, g.buckets)
			if g.bucketKeys != nil {
				pipe.HGet(ctx, g.bucketKeys[b], string(field))
				continue
			}
			key = g.bucketKey(key[:0], b)
			pipe.HGet(ctx, string(key), string(field))
		}
	}
	cmds, _ := pipe.Exec(ctx) // errors are per command, and redis.Nil is one

	c := 0
	for i, l := range lookups {
		l.Generation, l.Model = gens[i].gen.ID, gens[i].gen.Model
		l.Found = resize(l.Found, len(l.Keys))
		l.Rows = resize(l.Rows, len(l.Keys))
		for j := range l.Keys {
			cmd := cmds[c].(*redis.StringCmd)
			c++
			row := &l.Rows[j]
			val, err := cmd.Result()
			if errors.Is(err, redis.Nil) {
				l.Found[j] = false
				row.EventTime, row.Values = time.Time{}, row.Values[:0]
				continue
			}
			if err != nil {
				return redisErr(ctx, "read "+l.View.Name, err)
			}
			if err := decodeRow(val, types[i], row); err != nil {
				return fmt.Errorf("store: read %s generation %d key %s: %w", l.View.Name, l.Generation, l.Keys[j], err)
			}
			l.Found[j] = true
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
// on first use, with no Redis call afterwards while the cache is fresh). It
// returns an error wrapping larder.ErrNoGeneration when v was never
// published, and larder.ErrUnavailable or ctx.Err() when loading fails.
func (s *Store) Live(ctx context.Context, v *larder.View) (larder.Generation, error) {
	g, err := s.liveFor(ctx, v.Name)
	if err != nil {
		return larder.Generation{}, err
	}
	return g.gen, nil
}
