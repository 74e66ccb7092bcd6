package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// unlinkChunk is the number of keys deleted per pipeline.
const unlinkChunk = 1000

// Cleanup deletes, in every view the project ever wrote, the generations
// whose grace period has passed and the generations abandoned in the writing
// state for longer than Options.AbandonAfter by a killed run. It never
// deletes a live generation. Publish runs it for its own view; operators and
// schedulers may call it at any time. It returns the errors of the views it
// could not clean, joined.
func (s *Store) Cleanup(ctx context.Context) error {
	views, err := s.Views(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range views {
		if err := s.cleanupView(ctx, v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Views returns the names of the views the project ever wrote a generation
// of, sorted. It returns larder.ErrUnavailable or ctx.Err() when Redis
// cannot be read.
func (s *Store) Views(ctx context.Context) ([]string, error) {
	views, err := s.client.SMembers(ctx, s.k.views()).Result()
	if err != nil {
		return nil, redisErr(ctx, "list views", err)
	}
	slices.Sort(views)
	return views, nil
}

// GenerationInfo is a generation as the store keeps it, for operators.
type GenerationInfo struct {
	larder.Generation
	// State is "writing", "live" or "retired".
	State   string
	Buckets int
	// Live reports whether the view's live pointer names this generation.
	Live bool
	// DeleteAfter is when cleanup may delete the generation: set for
	// retired generations, zero for writing and live ones.
	DeleteAfter time.Time
}

// Generations returns the generations of view that the store holds, oldest
// first: the live one, those being written, and retired ones waiting for
// their grace period to end. It returns an empty slice for an unknown view,
// and larder.ErrUnavailable or ctx.Err() when Redis cannot be read.
func (s *Store) Generations(ctx context.Context, view string) ([]GenerationInfo, error) {
	gens, liveID, metas, err := s.readGenerations(ctx, view)
	if err != nil {
		return nil, err
	}
	out := make([]GenerationInfo, 0, len(gens))
	for i, z := range gens {
		id, _ := strconv.ParseInt(z.Member.(string), 10, 64)
		m, ok, err := parseMeta(metas[i])
		if err != nil {
			return nil, fmt.Errorf("store: view %s generation %d: %w", view, id, err)
		}
		if !ok {
			continue
		}
		info := GenerationInfo{
			Generation: larder.Generation{
				View: view, ID: id, Rows: m.rows, Fingerprint: m.fingerprint,
				StartedAt: m.startedAt, PublishedAt: m.publishedAt, Model: metas[i][fieldModel],
			},
			State:   m.state,
			Buckets: m.buckets,
			Live:    id == liveID,
		}
		if !math.IsInf(z.Score, 1) {
			info.DeleteAfter = time.UnixMicro(int64(z.Score)).UTC()
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b GenerationInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// readGenerations reads the gens set of view with the live id and each
// generation's metadata hash (empty when deleted).
func (s *Store) readGenerations(ctx context.Context, view string) ([]redis.Z, int64, []map[string]string, error) {
	pipe := s.client.Pipeline()
	zcmd := pipe.ZRangeWithScores(ctx, s.k.gens(view), 0, -1)
	lcmd := pipe.Get(ctx, s.k.live(view))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, nil, redisErr(ctx, "list generations of "+view, err)
	}
	gens := zcmd.Val()
	liveID, _ := lcmd.Int64()

	pipe = s.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(gens))
	for i, z := range gens {
		id, err := strconv.ParseInt(fmt.Sprint(z.Member), 10, 64)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("store: view %s: bad generation id %q in %s", view, z.Member, s.k.gens(view))
		}
		gens[i].Member = strconv.FormatInt(id, 10)
		cmds[i] = pipe.HGetAll(ctx, s.k.meta(view, id))
	}
	if len(gens) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, 0, nil, redisErr(ctx, "read generations of "+view, err)
		}
	}
	metas := make([]map[string]string, len(gens))
	for i, c := range cmds {
		metas[i] = c.Val()
	}
	return gens, liveID, metas, nil
}

// cleanupView deletes the generations of view whose time has come, and
// repairs the state a run killed halfway through Publish left behind.
func (s *Store) cleanupView(ctx context.Context, view string) error {
	gens, liveID, metas, err := s.readGenerations(ctx, view)
	if err != nil {
		return err
	}
	now := s.now()
	var errs []error
	for i, z := range gens {
		id, _ := strconv.ParseInt(z.Member.(string), 10, 64)
		m, ok, err := parseMeta(metas[i])
		switch {
		case id == liveID:
			if !math.IsInf(z.Score, 1) {
				err = s.client.ZAdd(ctx, s.k.gens(view), redis.Z{Score: keepScore, Member: id}).Err()
			}
		case !ok:
			// Deleted but for its entry here: deletion removes the data
			// and the metadata before the entry.
			err = s.client.ZRem(ctx, s.k.gens(view), id).Err()
		case err != nil:
			// Unreadable metadata: leave it for an operator.
		case !math.IsInf(z.Score, 1):
			if z.Score <= deleteScore(now) {
				err = s.deleteGeneration(ctx, view, id, m.buckets)
				if err == nil {
					s.log.Info("generation deleted", "view", view, "generation", id, "state", m.state)
				}
			}
		case m.state == stateWriting:
			if now.Sub(m.startedAt) > s.opts.AbandonAfter {
				err = s.deleteGeneration(ctx, view, id, m.buckets)
				if err == nil {
					s.log.Warn("abandoned generation deleted", "view", view, "generation", id,
						"started_at", m.startedAt)
				}
			}
		default:
			// Published or retired but kept forever: Publish was
			// interrupted after the flip. Give it its grace period.
			s.retire(ctx, view, id, now.Add(s.opts.GracePeriod))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("store: cleanup %s generation %d: %w", view, id, err))
		}
	}
	return errors.Join(errs...)
}

// deleteGeneration deletes the buckets of a generation, then its metadata,
// then its entry in the gens set, so that an interrupted deletion is found
// and finished by the next cleanup.
func (s *Store) deleteGeneration(ctx context.Context, view string, gen int64, buckets int) error {
	prefix := s.k.dataPrefix(view, gen)
	keys := make([]string, 0, min(buckets, unlinkChunk))
	for b := 0; b < buckets; b++ {
		keys = append(keys, prefix+strconv.Itoa(b))
		if len(keys) == unlinkChunk {
			if err := s.unlink(ctx, keys); err != nil {
				return err
			}
			keys = keys[:0]
		}
	}
	keys = append(keys, s.k.meta(view, gen))
	if err := s.unlink(ctx, keys); err != nil {
		return err
	}
	if err := s.client.ZRem(ctx, s.k.gens(view), gen).Err(); err != nil {
		return redisErr(ctx, "delete generation", err)
	}
	return nil
}

// unlink deletes keys with one UNLINK each in one pipeline (one key per
// command, so that it works across cluster slots), falling back to DEL on
// servers that do not know UNLINK.
func (s *Store) unlink(ctx context.Context, keys []string) error {
	for {
		cmdName := "unlink"
		if s.noUnlink.Load() {
			cmdName = "del"
		}
		pipe := s.client.Pipeline()
		for _, k := range keys {
			pipe.Do(ctx, cmdName, k)
		}
		_, err := pipe.Exec(ctx)
		if cmdName == "unlink" && isUnknownCommand(err) {
			s.noUnlink.Store(true)
			continue
		}
		if err != nil {
			return redisErr(ctx, "delete generation", err)
		}
		return nil
	}
}
