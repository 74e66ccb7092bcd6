package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// A view's schema can change while servers run: a new larder.yaml adds,
// removes or retypes a feature, and the view is materialized with it. A
// server still running the old definition cannot read the new generation.
// Rather than fail, a Store with Options.ServeOwnSchema serves such a
// server the newest generation written with its own definition, and keeps
// telling the other processes that it reads that schema, so that cleanup
// keeps that generation for as long as the server runs.
//
// Registrations live in one sorted set per view, {view}:readers, whose
// members are "<fingerprint> <owner>" and whose scores are the times, in
// Unix microseconds, when they lapse unless renewed.

// DefaultReaderTTL is how long a registration of the schemas a process
// reads lasts unless renewed; KeepReadersRegistered renews it every third
// of that.
const DefaultReaderTTL = time.Minute

// readers is the sorted set of the schemas live processes read view with.
func (k keys) readers(view string) string { return k.control(view) + "readers" }

// RegisterReaders records, for each view, that this process (named by
// Options.Owner) reads it with its definition's schema, until ttl from
// now; registrations of this process with another schema, made before a
// reload, are removed. It also drops lapsed registrations. It returns
// larder.ErrUnavailable or ctx.Err() when Redis cannot be written.
func (s *Store) RegisterReaders(ctx context.Context, views []*larder.View, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = DefaultReaderTTL
	}
	now := s.now()
	until := float64(now.Add(ttl).UnixMicro())
	owner := s.opts.Owner
	current := make(map[string]string, len(views))
	pipe := s.client.Pipeline()
	for _, v := range views {
		member := v.Fingerprint() + " " + owner
		current[v.Name] = member
		key := s.k.readers(v.Name)
		pipe.ZAdd(ctx, key, redis.Z{Score: until, Member: member})
		pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.UnixMicro(), 10))
	}
	s.regMu.Lock()
	for view, member := range s.registered {
		if current[view] != member {
			pipe.ZRem(ctx, s.k.readers(view), member)
		}
	}
	s.regMu.Unlock()
	if _, err := pipe.Exec(ctx); err != nil {
		return redisErr(ctx, "register the schemas read", err)
	}
	s.regMu.Lock()
	s.registered = current
	s.regMu.Unlock()
	return nil
}

// UnregisterReaders removes this process's registrations, as it stops.
func (s *Store) UnregisterReaders(ctx context.Context) error {
	s.regMu.Lock()
	registered := s.registered
	s.registered = nil
	s.regMu.Unlock()
	if len(registered) == 0 {
		return nil
	}
	pipe := s.client.Pipeline()
	for view, member := range registered {
		pipe.ZRem(ctx, s.k.readers(view), member)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return redisErr(ctx, "unregister the schemas read", err)
	}
	return nil
}

// KeepReadersRegistered registers the schemas of views() (RegisterReaders)
// at once and every third of ttl until ctx ends, then removes the
// registrations. views is called at each renewal, so that a reloaded
// configuration is registered within a third of ttl (a caller that
// reloads may call RegisterReaders to register it at once). A failed
// registration is logged and retried at the next renewal.
func (s *Store) KeepReadersRegistered(ctx context.Context, views func() []*larder.View, ttl time.Duration) {
	if ttl <= 0 {
		ttl = DefaultReaderTTL
	}
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	failing := false
	for {
		err := s.RegisterReaders(ctx, views(), ttl)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			s.log.Warn("registering the schemas this process reads failed; retrying", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("the schemas this process reads are registered again")
			failing = false
		}
		select {
		case <-ctx.Done():
			end, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = s.UnregisterReaders(end)
			cancel()
			return
		case <-tick.C:
		}
	}
}

// Reader is a process that reads a view, and the schema it reads.
type Reader struct {
	Fingerprint string
	Owner       string
	// Until is when the registration lapses unless renewed.
	Until time.Time
}

// Readers returns the registrations of the processes that read view and
// have not lapsed. It returns larder.ErrUnavailable or ctx.Err() when
// Redis cannot be read.
func (s *Store) Readers(ctx context.Context, view string) ([]Reader, error) {
	zs, err := s.client.ZRangeByScoreWithScores(ctx, s.k.readers(view), &redis.ZRangeBy{
		Min: strconv.FormatInt(s.now().UnixMicro(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, redisErr(ctx, "read the schemas read of "+view, err)
	}
	out := make([]Reader, 0, len(zs))
	for _, z := range zs {
		fp, owner, _ := strings.Cut(fmt.Sprint(z.Member), " ")
		out = append(out, Reader{Fingerprint: fp, Owner: owner, Until: time.UnixMicro(int64(z.Score)).UTC()})
	}
	return out, nil
}

// readSchemas returns the fingerprints live processes read view with.
func (s *Store) readSchemas(ctx context.Context, view string) (map[string]bool, error) {
	rs, err := s.Readers(ctx, view)
	if err != nil {
		return nil, err
	}
	fps := make(map[string]bool, len(rs))
	for _, r := range rs {
		fps[r.Fingerprint] = true
	}
	return fps, nil
}

// warnOtherReaders logs a warning when live processes read view with
// another schema than fp, the schema of generation gen just published:
// they keep serving their schema's newest generation until they run the
// new definition.
func (s *Store) warnOtherReaders(ctx context.Context, view string, gen int64, fp string) {
	rs, err := s.Readers(ctx, view)
	if err != nil {
		return
	}
	var others []string
	for _, r := range rs {
		if r.Fingerprint != fp {
			others = append(others, r.Owner+" (schema "+r.Fingerprint+")")
		}
	}
	if len(others) > 0 {
		s.log.Warn(fmt.Sprintf("%d live server(s) read view %s with another definition than generation %d's; they keep serving the newest generation of their own schema until they are reloaded (SIGHUP) or restarted with this larder.yaml", len(others), view, gen),
			"view", view, "generation", gen, "schema", fp, "servers", strings.Join(others, ", "))
	}
}

// ownSchema is the generation a Store with Options.ServeOwnSchema reads
// for a view definition whose schema differs from its live generation's:
// the newest live or retired generation written with that schema.
type ownSchema struct {
	view     *larder.View
	gen      *liveGen // nil when none is held: err says so
	types    []larder.Type
	err      error
	loadedAt time.Time
}

// ownSchemaFor returns the generation to read for v when live, its live
// generation, has another schema, and v's feature types; or an error
// wrapping larder.ErrSchemaChanged. The answer is cached on live for the
// refresh interval.
func (s *Store) ownSchemaFor(ctx context.Context, live *liveGen, v *larder.View, schemaErr error) (*liveGen, []larder.Type, error) {
	if !s.opts.ServeOwnSchema {
		return nil, nil, schemaErr
	}
	if o := live.own.Load(); o != nil && o.view == v && s.now().Sub(o.loadedAt) <= s.opts.RefreshInterval {
		return o.gen, o.types, o.err
	}
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	if o := live.own.Load(); o != nil && o.view == v && s.now().Sub(o.loadedAt) <= s.opts.RefreshInterval {
		return o.gen, o.types, o.err
	}
	gens, _, metas, err := s.readGenerations(ctx, v.Name)
	if err != nil {
		return nil, nil, err
	}
	fp := v.Fingerprint()
	var best int64
	var bestMeta meta
	for i, z := range gens {
		m, ok, err := parseMeta(metas[i])
		if err != nil || !ok || m.fingerprint != fp || m.epoch != live.epoch || (m.state != stateLive && m.state != stateRetired) {
			continue
		}
		if id, _ := strconv.ParseInt(z.Member.(string), 10, 64); id > best {
			best, bestMeta = id, m
		}
	}
	o := &ownSchema{view: v, loadedAt: s.now()}
	if best == 0 {
		o.err = fmt.Errorf("store: view %s: its live generation %d was written with another definition of the view (schema %s) than this process's (schema %s), and no generation of this process's schema is held: materialize the view with this process's larder.yaml, or run this process with the larder.yaml that wrote generation %d: %w",
			v.Name, live.gen.ID, live.gen.Fingerprint, fp, live.gen.ID, larder.ErrSchemaChanged)
	} else {
		o.gen, o.types = s.newLiveGen(v.Name, best, bestMeta), featureTypes(v)
		if prev := live.own.Load(); prev == nil || prev.gen == nil || prev.gen.gen.ID != best {
			s.log.Warn("serving an older generation of a view: its live generation was written with another definition of the view than this process's; reload or restart this process with the new larder.yaml",
				"view", v.Name, "generation", best, "live_generation", live.gen.ID, "schema", fp, "live_schema", live.gen.Fingerprint)
		}
	}
	live.own.Store(o)
	return o.gen, o.types, o.err
}
