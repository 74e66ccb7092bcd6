package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// unlinkChunk is the number of keys deleted per pipeline.
const unlinkChunk = 1000

// CleanupOptions configure Cleanup. The zero CleanupOptions deletes.
type CleanupOptions struct {
	// DryRun finds what would be deleted without deleting or recording
	// anything.
	DryRun bool
	// View, when not "", limits the cleanup to that view; "" cleans every
	// view the project ever wrote.
	View string
}

// Cleaned is a generation Cleanup deleted (or, in a dry run, would delete).
type Cleaned struct {
	View       string
	Generation int64
	// Reason is CleanedExpired, CleanedAbandoned or CleanedNoMetadata.
	Reason string
	// State is the generation's state when it was found: "retired" or
	// "writing".
	State     string
	StartedAt time.Time
	// Buckets is the number of bucket hashes the generation had.
	Buckets int
}

// The reasons Cleanup deletes a generation.
const (
	// CleanedExpired is a replaced generation whose grace period ended.
	CleanedExpired = "expired"
	// CleanedAbandoned is a generation being written whose run was
	// killed or cut off: its lease lapsed, or another run took it.
	CleanedAbandoned = "abandoned"
	// CleanedNoMetadata is a generation whose metadata is gone (deleted by
	// hand, or lost) while its buckets were not: they are found by SCAN.
	CleanedNoMetadata = "no_metadata"
)

// CleanedReasons are the reasons Cleanup deletes a generation, in the
// order reports list them.
var CleanedReasons = []string{CleanedExpired, CleanedAbandoned, CleanedNoMetadata}

// CleanupReport lists what one Cleanup did.
type CleanupReport struct {
	Cleaned []Cleaned
	// AbandonedRuns are the runs found dead that had begun no generation
	// (those that had are among Cleaned), recorded as abandoned.
	AbandonedRuns []larder.Run
}

// Count returns the number of generations cleaned for reason.
func (r CleanupReport) Count(reason string) int {
	n := 0
	for _, c := range r.Cleaned {
		if c.Reason == reason {
			n++
		}
	}
	return n
}

// Cleanup deletes, in every view the project ever wrote, the generations
// whose grace period has passed and the generations abandoned by killed
// runs: those being written whose lease no longer holds their run's token
// (or, for generations that record no lease, that have been writing for
// longer than Options.AbandonAfter). It records the run of each abandoned
// generation as larder.RunAbandoned, once, whichever process finds it. It
// never deletes a live generation. Publish runs it for its own view;
// schedulers, workers and servers run it every sweep interval, and
// operators with `larder cleanup`. It returns what it cleaned, and the
// errors of the views it could not clean, joined.
func (s *Store) Cleanup(ctx context.Context, opts CleanupOptions) (CleanupReport, error) {
	views := []string{opts.View}
	if opts.View == "" {
		var err error
		if views, err = s.Views(ctx); err != nil {
			return CleanupReport{}, err
		}
	}
	var rep CleanupReport
	var errs []error
	for _, v := range views {
		r, err := s.cleanupView(ctx, v, opts.DryRun)
		rep.Cleaned = append(rep.Cleaned, r.Cleaned...)
		rep.AbandonedRuns = append(rep.AbandonedRuns, r.AbandonedRuns...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
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
	// State is "writing", "live", "retired" or "abandoned" (being deleted).
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
			Generation: m.generation(view, id),
			State:      m.state,
			Buckets:    m.buckets,
			Live:       id == liveID,
		}
		if !math.IsInf(z.Score, 1) {
			info.DeleteAfter = time.UnixMicro(int64(z.Score)).UTC()
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b GenerationInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// heldForReaders returns the replaced generations of view that cleanup
// keeps past their grace period because live processes read the view
// with their schema (see RegisterReaders): for each schema read other
// than the live generation's, the newest live or retired generation
// written with it.
func (s *Store) heldForReaders(ctx context.Context, view string, gens []redis.Z, liveID int64, metas []map[string]string) (map[int64]bool, error) {
	fps, err := s.readSchemas(ctx, view)
	if err != nil || len(fps) == 0 {
		return nil, err
	}
	newest := map[string]int64{}
	for i, z := range gens {
		id, _ := strconv.ParseInt(z.Member.(string), 10, 64)
		m, ok, err := parseMeta(metas[i])
		if err != nil || !ok || !fps[m.fingerprint] || (m.state != stateLive && m.state != stateRetired) {
			continue
		}
		if id == liveID {
			// Readers of the live generation's schema need nothing more.
			newest[m.fingerprint] = -1
			continue
		}
		if cur := newest[m.fingerprint]; cur >= 0 && id > cur {
			newest[m.fingerprint] = id
		}
	}
	held := map[int64]bool{}
	for _, id := range newest {
		if id > 0 {
			held[id] = true
		}
	}
	return held, nil
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

// abandonScript marks generation ARGV[1] (metadata KEYS[1]) abandoned when
// it is still being written and its lease KEYS[2] no longer holds token
// ARGV[2], so that exactly one of several concurrent cleanups records its
// run; when ARGV[3] is 1 (the lease is the view's run lease), it also
// clears the run's note in the runs in progress (KEYS[3]), which the run
// recorded this way no longer needs. It returns 1 when it marked it, 0
// otherwise.
var abandonScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'writing' then
  return 0
end
local lv = redis.call('GET', KEYS[2])
local p = ARGV[2] .. ' '
if lv and string.sub(lv, 1, #p) == p then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'abandoned')
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[3], ARGV[2])
end
return 1
`)

// endedScript clears the note of run ARGV[1] in the runs in progress
// (KEYS[1]) when its run lease (KEYS[2]) no longer holds its token: the
// run's process died. It returns 1 when it cleared it (the caller records
// the run as abandoned), 0 when the run still holds its lease or another
// cleanup got there first.
var endedScript = redis.NewScript(`
local lv = redis.call('GET', KEYS[2])
local p = ARGV[1] .. ' '
if lv and string.sub(lv, 1, #p) == p then
  return 0
end
return redis.call('HDEL', KEYS[1], ARGV[1])
`)

// stateAbandoned marks a generation Cleanup found abandoned and is
// deleting.
const stateAbandoned = "abandoned"

// cleanupView deletes the generations of view whose time has come, and
// repairs the state a run killed halfway through Publish left behind; with
// dryRun it only reports what it would delete.
func (s *Store) cleanupView(ctx context.Context, view string, dryRun bool) (CleanupReport, error) {
	gens, liveID, metas, err := s.readGenerations(ctx, view)
	if err != nil {
		return CleanupReport{}, err
	}
	now := s.now()
	var rep CleanupReport
	held, err := s.heldForReaders(ctx, view, gens, liveID, metas)
	if err != nil {
		return CleanupReport{}, err
	}
	// The leases of the generations being written, read in one round trip.
	leases := map[string]*redis.StringCmd{}
	pipe := s.client.Pipeline()
	for i := range gens {
		if k := metas[i][fieldLease]; k != "" && metas[i][fieldState] == stateWriting && leases[k] == nil {
			leases[k] = pipe.Get(ctx, k)
		}
	}
	if len(leases) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return rep, redisErr(ctx, "read leases of "+view, err)
		}
	}
	var errs []error
	for i, z := range gens {
		id, _ := strconv.ParseInt(z.Member.(string), 10, 64)
		m, ok, err := parseMeta(metas[i])
		found := Cleaned{View: view, Generation: id, State: m.state, StartedAt: m.startedAt, Buckets: m.buckets}
		switch {
		case id == liveID:
			if !math.IsInf(z.Score, 1) && !dryRun {
				err = s.client.ZAdd(ctx, s.k.gens(view), redis.Z{Score: keepScore, Member: id}).Err()
			}
		case !ok:
			// Deleted but for its entry here (deletion removes the data
			// and the metadata before the entry), or its metadata alone
			// was deleted or lost: its buckets are found by SCAN.
			var n int
			n, err = s.deleteOrphan(ctx, view, id, dryRun)
			if err == nil && n > 0 {
				found.Reason, found.Buckets = CleanedNoMetadata, n
				rep.Cleaned = append(rep.Cleaned, found)
				s.log.Warn("generation without metadata deleted", "view", view, "generation", id, "buckets", n, "dry_run", dryRun)
			}
		case err != nil:
			// Unreadable metadata: leave it for an operator.
		case !math.IsInf(z.Score, 1):
			if z.Score <= deleteScore(now) && !held[id] {
				found.Reason = CleanedExpired
				if !dryRun {
					err = s.deleteGeneration(ctx, view, id, m.buckets)
				}
				if err == nil {
					rep.Cleaned = append(rep.Cleaned, found)
					s.log.Info("generation deleted", "view", view, "generation", id, "state", m.state, "dry_run", dryRun)
				}
			}
		case m.state == stateWriting || m.state == stateAbandoned:
			if !s.abandoned(m, leases[m.lease], now) {
				break
			}
			found.Reason = CleanedAbandoned
			deleted := true
			if !dryRun {
				deleted, err = s.abandon(ctx, view, id, m, now)
			}
			if err == nil && deleted {
				rep.Cleaned = append(rep.Cleaned, found)
			}
		default:
			// Published or retired but kept forever: Publish was
			// interrupted after the flip. Give it its grace period.
			if !dryRun {
				s.retire(ctx, view, id, now.Add(s.opts.GracePeriod))
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("store: cleanup %s generation %d: %w", view, id, err))
		}
	}
	runs, err := s.endedRuns(ctx, view, now, dryRun)
	rep.AbandonedRuns = append(rep.AbandonedRuns, runs...)
	if err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

// endedRuns finds the runs of view noted in progress (StartRun) whose lease
// lapsed: their processes died, perhaps before they began a generation. It
// records each as abandoned, once, whichever process finds it; with dryRun
// it only returns them.
func (s *Store) endedRuns(ctx context.Context, view string, now time.Time, dryRun bool) ([]larder.Run, error) {
	notes, err := s.client.HGetAll(ctx, s.k.active(view)).Result()
	if err != nil || len(notes) == 0 {
		if err != nil {
			return nil, redisErr(ctx, "read the runs in progress of "+view, err)
		}
		return nil, nil
	}
	holder, _ := s.client.Get(ctx, s.k.lease(view)).Result()
	var out []larder.Run
	var errs []error
	for token, doc := range notes {
		if strings.HasPrefix(holder, token+" ") {
			continue // it runs
		}
		r, err := decodeRun(doc)
		if err != nil {
			s.log.Warn("a note of a run in progress does not decode", "view", view, "token", token, "err", err)
			continue
		}
		if !dryRun {
			won, err := endedScript.Run(ctx, s.client, []string{s.k.active(view), s.k.lease(view)}, token).Int64()
			if err != nil {
				errs = append(errs, redisErr(ctx, "clear a run in progress of "+view, err))
				continue
			}
			if won != 1 {
				continue
			}
		}
		r.State, r.Token = larder.RunAbandoned, 0
		r.Duration = max(0, now.Sub(r.StartedAt))
		r.Err = fmt.Sprintf("abandoned: the run (%s) stopped renewing its lease before it ended: it was killed, or lost Redis; it published nothing", r.Owner)
		if !dryRun {
			if err := s.RecordRun(ctx, r); err != nil {
				errs = append(errs, err)
				continue
			}
			s.log.Warn("abandoned run recorded", "view", view, "owner", r.Owner, "started_at", r.StartedAt)
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// abandoned reports whether a generation being written, with metadata m
// and lease value lease (as read), was abandoned by its run.
func (s *Store) abandoned(m meta, lease *redis.StringCmd, now time.Time) bool {
	if m.state == stateAbandoned {
		return true // a cleanup that marked it was interrupted
	}
	if m.lease == "" {
		return now.Sub(m.startedAt) > s.opts.AbandonAfter
	}
	if lease == nil {
		return false
	}
	v, err := lease.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false
	}
	return !strings.HasPrefix(v, m.token+" ")
}

// abandon deletes an abandoned generation and records its run as
// abandoned, unless another cleanup got there first, or its run renewed
// its lease meanwhile; deleted reports whether this call deleted it.
func (s *Store) abandon(ctx context.Context, view string, id int64, m meta, now time.Time) (deleted bool, err error) {
	if m.state == stateWriting {
		runLease := "0"
		if m.lease == s.k.lease(view) {
			runLease = "1"
		}
		won, err := abandonScript.Run(ctx, s.client, []string{s.k.meta(view, id), orKey(m.lease, s.k.writeLease(view, id)), s.k.active(view)},
			id, m.token, runLease).Int64()
		if err != nil {
			return false, redisErr(ctx, "abandon generation", err)
		}
		if won != 1 {
			return false, nil // renewed meanwhile, or taken by another cleanup
		}
		r := larder.Run{
			View: view, Kind: m.kind, State: larder.RunAbandoned, Generation: id,
			AsOf: m.asOf, Trigger: m.trigger, Tick: m.tick, Job: m.job, Shards: m.shards, Owner: m.owner,
			StartedAt: m.startedAt, Duration: max(0, now.Sub(m.startedAt)),
			Err: fmt.Sprintf("abandoned: the run (%s) stopped renewing its lease while it wrote generation %d: it was killed, or lost Redis; its generation was deleted", m.owner, id),
		}
		if err := s.RecordRun(ctx, r); err != nil {
			s.log.Warn("recording an abandoned run failed", "view", view, "generation", id, "err", err)
		}
	}
	if err := s.deleteGeneration(ctx, view, id, m.buckets); err != nil {
		return false, err
	}
	s.log.Warn("abandoned generation deleted", "view", view, "generation", id, "owner", m.owner, "started_at", m.startedAt)
	return true, nil
}

// orKey returns key, or def when key is "".
func orKey(key, def string) string {
	if key == "" {
		return def
	}
	return key
}

// deleteRows deletes the bucket hashes of a generation.
func (s *Store) deleteRows(ctx context.Context, view string, gen int64, buckets int) error {
	prefix := s.k.dataPrefix(view, gen)
	keys := make([]string, 0, min(buckets, unlinkChunk))
	for b := 0; b < buckets; b++ {
		keys = append(keys, prefix+strconv.Itoa(b))
		if len(keys) == unlinkChunk || b == buckets-1 {
			if err := s.unlink(ctx, keys); err != nil {
				return err
			}
			keys = keys[:0]
		}
	}
	return nil
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
	keys = append(keys, s.k.writeLease(view, gen), s.k.shards(view, gen), s.k.meta(view, gen))
	if err := s.unlink(ctx, keys); err != nil {
		return err
	}
	// The gens set and the push floors share the view's hash tag.
	pipe := s.client.TxPipeline()
	pipe.ZRem(ctx, s.k.gens(view), gen)
	pipe.ZRem(ctx, s.k.pushFloors(view), gen)
	if _, err := pipe.Exec(ctx); err != nil {
		return redisErr(ctx, "delete generation", err)
	}
	return nil
}

// deleteOrphan deletes the buckets and control keys of generation gen of
// view, whose metadata is gone, finding its buckets by SCAN on every node.
// It removes the generation's entry from the gens set only once a scan
// finds no bucket, so that buckets a run still writing adds after the scan
// are found by the next cleanup. It returns the number of buckets found;
// with dryRun it deletes nothing.
func (s *Store) deleteOrphan(ctx context.Context, view string, gen int64, dryRun bool) (int, error) {
	var found []string
	err := s.forEachNode(ctx, func(node redis.Cmdable) error {
		iter := node.Scan(ctx, 0, s.k.dataPrefix(view, gen)+"*", scanCount).Iterator()
		for iter.Next(ctx) {
			found = append(found, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return redisErr(ctx, "scan the buckets of a generation without metadata", err)
		}
		return nil
	})
	if err != nil || dryRun {
		return len(found), err
	}
	for chunk := range slices.Chunk(found, unlinkChunk) {
		if err := s.unlink(ctx, chunk); err != nil {
			return 0, err
		}
	}
	if err := s.unlink(ctx, []string{s.k.writeLease(view, gen), s.k.shards(view, gen)}); err != nil {
		return 0, err
	}
	if len(found) == 0 {
		if err := s.client.ZRem(ctx, s.k.gens(view), gen).Err(); err != nil {
			return 0, redisErr(ctx, "delete generation", err)
		}
	}
	return len(found), nil
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
