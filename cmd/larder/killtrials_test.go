package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// Environment of TestKillTrials: the number of trials (`make kill-trials`
// runs 50), and the seed of the kill moments, to repeat a run.
const (
	killTrialsEnv = "LARDER_KILL_TRIALS"
	killSeedEnv   = "LARDER_KILL_SEED"
	// killTrialsDefault keeps `go test` quick.
	killTrialsDefault = 3
)

// The trials' view: one row per user, whose values say which version of the
// source they come from. Version v gives user u x = v*versionScale + u and
// n = v, so that a reader can tell, from one row, the version it was
// written from, and that it belongs to its user.
const (
	trialEntities = 250_000
	versionScale  = 1e6
	trialView     = `  - name: trial
    kind: latest
    entity: user
    source: events
    features:
      - {name: x, type: float64}
      - {name: n, type: int64}
`
)

// trialOutcome is how one materialize trial ended.
type trialOutcome string

const (
	// trialFinished: the run ended by itself before the kill.
	trialFinished trialOutcome = "finished"
	// trialKilledBefore: killed before it noted its run in Redis: it
	// leaves nothing to record (at most a lease, which lapses).
	trialKilledBefore trialOutcome = "killed before its run began"
	// trialKilledInRun: killed while its run was in progress, before it
	// began a generation: the run must be recorded as abandoned.
	trialKilledInRun trialOutcome = "killed in its run"
	// trialKilledWriting: killed while its run wrote its generation: the
	// run must be recorded as abandoned, the generation deleted.
	trialKilledWriting trialOutcome = "killed writing its generation"
	// trialKilledAfter: killed after its run was recorded as ended.
	trialKilledAfter trialOutcome = "killed after its run ended"
)

// TestKillTrials runs `larder materialize` of one view as a process again
// and again, each time over a new version of its source, and kills it with
// SIGKILL at a random moment of its run, while readers read the view
// without pause. Every answer must hold every key asked for, all from one
// generation, each row with the values of that generation's source version.
// After the last kill, with no publish after it, one sweep (`larder
// cleanup`, once the dead run's lease has lapsed) must leave in Redis only
// the live generation's keys and those of replaced generations still in
// their grace period, and every run killed in progress must show in `larder
// runs` as abandoned.
//
// LARDER_KILL_TRIALS sets the number of trials (3 by default; `make
// kill-trials` runs 50), LARDER_KILL_SEED the seed of the kill moments (the
// test logs the one it used).
func TestKillTrials(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	if testing.Short() {
		t.Skip("starts materialize processes and kills them")
	}
	trials := killTrialsDefault
	if s := os.Getenv(killTrialsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a number of trials, 1 or more", killTrialsEnv, s)
		}
		trials = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(killSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", killSeedEnv, s)
		}
		seed = n
	}
	t.Logf("%d trials, seed %d (%s=%d repeats the kill moments)", trials, seed, killSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	began := time.Now()

	srv := redistest.Start(t)
	// A short run lease, so that the lease of a killed run lapses soon
	// (the next trial waits for it); a grace period far longer than the
	// test, so that readers never lose the generation they hold.
	sp := newSchedProjectGrace(t, srv.Addr, "1h", "scheduler: {lease: 2s}", trialView, 1, 1)
	ctx := context.Background()
	client := srv.Client()
	source := filepath.Join(sp.dir, "data", "events.parquet")
	eventAt := time.Now().Add(-time.Hour).Truncate(time.Second)
	writeVersion := func(v int) {
		rows := make([]eventRow, trialEntities)
		for u := range rows {
			rows[u] = eventRow{UserID: int64(u), TS: eventAt, X: float64(v)*versionScale + float64(u), N: int64(v)}
		}
		writeParquet(t, source, rows)
	}
	leaseKey := "larder:" + sp.p.Name + ":{trial}:lease"
	waitLeaseFree := func() {
		t.Helper()
		waitFor(t, 60*time.Second, "the run lease of the last run to lapse", func() (bool, bool) {
			n, err := client.Exists(ctx, leaseKey).Result()
			return true, err == nil && n == 0
		})
	}

	// Version 1, published whole: what the readers start with.
	writeVersion(1)
	mustSucceed(t, sp.larder(t, "materialize", "trial"), "the first materialize")
	rd := startTrialReaders(t, sp, 2)
	// Version 2, published whole under the readers. Its time, process start
	// included, sets the span of the kill moments.
	writeVersion(2)
	rd.maxVersion.Store(2)
	start := time.Now()
	second := sp.start(t, "materialize", "trial")
	<-second.done
	runTime := time.Since(start)
	if second.err != nil {
		t.Fatalf("the second materialize failed: %v\n%s", second.err, second.out.String())
	}
	t.Logf("a whole run of %d entities takes %s here, under the readers", trialEntities, runTime.Round(time.Millisecond))

	st := sp.store(t)
	writing := func() int {
		gens, err := st.Generations(ctx, "trial")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range gens {
			if g.State == "writing" {
				n++
			}
		}
		return n
	}
	host, _ := os.Hostname()
	outcomes := map[trialOutcome]int{}
	var inRun []string // the owners of the runs killed in progress
	published := 2     // the newest version whose run published
	for i := range trials {
		v := i + 3
		waitLeaseFree()
		writeVersion(v)
		// A version may become visible as soon as its run starts.
		rd.maxVersion.Store(int64(v))
		// Anywhere from before the process starts to twice the longest
		// whole run seen, so that some runs publish; the last one is
		// killed in its run's span, so that the sweep after it has
		// something to find.
		wait := time.Duration(rng.Int64N(int64(runTime) * 2))
		if i == trials-1 {
			wait = runTime/5 + time.Duration(rng.Int64N(int64(runTime)*7/10))
		}
		writingBefore := writing()
		launched := time.Now()
		p := sp.start(t, "materialize", "trial")
		select {
		case <-p.done:
		case <-time.After(wait):
		}
		outcome := trialFinished
		select {
		case <-p.done:
			if p.err != nil {
				t.Fatalf("trial %d: materialize failed by itself: %v\n%s", i, p.err, p.out.String())
			}
			published = v
			runTime = max(runTime, time.Since(launched))
		default:
			p.stop(t, syscall.SIGKILL)
			owner := host + ":" + strconv.Itoa(p.cmd.Process.Pid)
			switch state := runOf(t, sp, owner); {
			case state == "noted":
				outcome = trialKilledInRun
				if writing() > writingBefore {
					outcome = trialKilledWriting
				}
				inRun = append(inRun, owner)
			case state != "":
				outcome = trialKilledAfter
				published = v
			default:
				outcome = trialKilledBefore
			}
		}
		outcomes[outcome]++
		t.Logf("trial %d: version %d, kill after %s: %s", i, v, wait.Round(time.Millisecond), outcome)
		if err := rd.failed(); err != nil {
			t.Fatalf("trial %d: %v", i, err)
		}
	}
	waitLeaseFree()
	answers, mixed, missing := rd.stop()
	t.Logf("readers: %d answers checked, %d mixed, %d missing", answers, mixed, missing)
	if err := rd.failed(); err != nil {
		t.Error(err)
	}

	// One sweep, with no publish since the last kill.
	before := generationKeys(t, client, sp.p.Name)
	sweep := sp.larder(t, "cleanup")
	mustSucceed(t, sweep, "cleanup")
	t.Logf("the sweep after the last kill:\n%s", sweep.stdout)
	gens, err := st.Generations(ctx, "trial")
	if err != nil {
		t.Fatal(err)
	}
	keep := map[int64]bool{}
	live := int64(0)
	for _, g := range gens {
		switch {
		case g.Live:
			live = g.ID
			keep[g.ID] = true
		case g.State == "retired" && g.DeleteAfter.After(time.Now()):
			keep[g.ID] = true
		default:
			t.Errorf("after the sweep, generation %d is %s (delete after %v): want only the live one and those in grace", g.ID, g.State, g.DeleteAfter)
		}
	}
	keys := generationKeys(t, client, sp.p.Name)
	left := 0
	for gen, n := range keys {
		if !keep[gen] {
			t.Errorf("after the sweep, %d keys of generation %d are left in Redis", n, gen)
		}
		left += n
	}
	t.Logf("after the sweep: live generation %d, %d generations in grace, %d generation keys in Redis, of generations %v",
		live, len(keep)-1, left, slices.Sorted(maps.Keys(keys)))
	if n := client.Exists(ctx, "larder:"+sp.p.Name+":{trial}:active").Val(); n != 0 {
		t.Errorf("after the sweep, runs are still noted in progress: %v", client.HGetAll(ctx, "larder:"+sp.p.Name+":{trial}:active").Val())
	}
	if g, ok := liveVersion(t, sp, st); !ok || g < published {
		t.Errorf("the live generation holds version %d, want %d or newer (the newest published)", g, published)
	}

	// Every run killed in progress shows in `larder runs` as abandoned.
	runs := sp.larder(t, "runs", "trial", "--state", "abandoned", "--wide", "--limit", "0")
	mustSucceed(t, runs, "runs")
	for _, owner := range inRun {
		if !regexp.MustCompile(`(?m)^trial .* abandoned .*` + regexp.QuoteMeta(owner) + `\s`).MatchString(runs.stdout) {
			t.Errorf("the run of %s, killed in progress, is not listed as abandoned:\n%s", owner, runs.stdout)
		}
	}

	// Once the grace period has passed, a sweep leaves the live generation
	// alone.
	mustSucceed(t, larderAt(t, ctx, time.Now().Add(2*time.Hour), "-c", sp.config, "cleanup"), "cleanup after the grace period")
	after := generationKeys(t, client, sp.p.Name)
	if len(after) != 1 || after[live] == 0 {
		t.Errorf("after the grace period, a sweep left the keys of generations %v, want only the live %d", slices.Sorted(maps.Keys(after)), live)
	}

	t.Logf("kill trials: %d trials (%d finished, %d killed before their run began, %d killed in their run before writing, "+
		"%d killed writing their generation, %d killed after their run ended); "+
		"%d answers checked, %d mixed, %d missing; generation keys: %d before the sweep, %d after it (live %d + %d in grace), %d after the grace period; %s in all",
		trials, outcomes[trialFinished], outcomes[trialKilledBefore], outcomes[trialKilledInRun], outcomes[trialKilledWriting], outcomes[trialKilledAfter],
		answers, mixed, missing, total(before), left, keys[live], left-keys[live], total(after), time.Since(began).Round(time.Second))
}

// total adds up the keys of every generation.
func total(keys map[int64]int) int {
	n := 0
	for _, k := range keys {
		n += k
	}
	return n
}

// runOf returns what Redis says of the run of owner: "noted" when it is
// noted in progress, its state when it is recorded as ended, "" when
// neither (it never began).
func runOf(tb testing.TB, sp *schedProject, owner string) string {
	tb.Helper()
	ctx := context.Background()
	st := sp.store(tb)
	runs, err := st.Runs(ctx, "trial", 0)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range runs {
		if r.Owner == owner {
			return string(r.Result())
		}
	}
	c, err := store.Connect(sp.p.Redis)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	notes, err := c.HGetAll(ctx, "larder:"+sp.p.Name+":{trial}:active").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, doc := range notes {
		var r struct {
			Owner string `json:"owner"`
		}
		if json.Unmarshal([]byte(doc), &r) == nil && r.Owner == owner {
			return "noted"
		}
	}
	return ""
}

// liveVersion returns the source version of the live generation of the
// trial view, read from its first row.
func liveVersion(tb testing.TB, sp *schedProject, st *store.Store) (int, bool) {
	tb.Helper()
	l := &larder.Lookup{View: sp.p.View("trial"), Keys: []larder.Key{larder.Int64Key(0)}}
	if err := st.Read(context.Background(), []*larder.Lookup{l}); err != nil || !l.Found[0] {
		return 0, false
	}
	return int(l.Rows[0].Values[1].Int64()), true
}

// generationKeys counts the keys in Redis of each generation of the trial
// view: its buckets, metadata, write lease and shard set.
func generationKeys(tb testing.TB, c *redis.Client, project string) map[int64]int {
	tb.Helper()
	re := regexp.MustCompile(`^larder:` + regexp.QuoteMeta(project) + `:(?:trial:(\d+):\d+|\{trial\}:(?:g|wl|shards):(\d+))$`)
	out := map[int64]int{}
	iter := c.Scan(context.Background(), 0, "larder:"+project+":*", 1000).Iterator()
	for iter.Next(context.Background()) {
		m := re.FindStringSubmatch(iter.Val())
		if m == nil {
			continue
		}
		gen, _ := strconv.ParseInt(m[1]+m[2], 10, 64)
		out[gen]++
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// trialReaders read random users of the trial view without pause and check
// every answer.
type trialReaders struct {
	view *larder.View
	// maxVersion is the newest source version a run may have published.
	maxVersion atomic.Int64

	cancel context.CancelFunc
	wg     sync.WaitGroup

	answers, mixed, missing atomic.Int64
	mu                      sync.Mutex
	byGen                   map[int64]int64 // the version each generation read holds
	firstErr                error
}

// startTrialReaders starts n readers on a store of their own, which looks
// for a new live generation often.
func startTrialReaders(tb testing.TB, sp *schedProject, n int) *trialReaders {
	tb.Helper()
	c, err := store.Connect(sp.p.Redis)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	st := store.New(c, sp.p.Name, store.Options{RefreshInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	r := &trialReaders{view: sp.p.View("trial"), cancel: cancel, byGen: map[int64]int64{}}
	r.maxVersion.Store(1)
	tb.Cleanup(func() { r.stop() })
	for i := range n {
		r.wg.Go(func() { r.read(ctx, st, uint64(i)) })
	}
	return r
}

// read reads 20 random users at a time until ctx ends.
func (r *trialReaders) read(ctx context.Context, st *store.Store, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	keys := make([]larder.Key, 20)
	for ctx.Err() == nil {
		for i := range keys {
			keys[i] = larder.Int64Key(rng.Int64N(trialEntities))
		}
		l := &larder.Lookup{View: r.view, Keys: keys}
		err := st.Read(ctx, []*larder.Lookup{l})
		if ctx.Err() != nil {
			return
		}
		r.answers.Add(1)
		if err != nil {
			r.missing.Add(1)
			r.fail(fmt.Errorf("an answer failed: %w", err))
			continue
		}
		if err := r.check(l); err != nil {
			r.fail(err)
		}
	}
}

// check checks one answer: every key found, every row of one version, that
// of the generation read, and each row its own user's.
func (r *trialReaders) check(l *larder.Lookup) error {
	version := int64(-1)
	for i, k := range l.Keys {
		if !l.Found[i] {
			r.missing.Add(1)
			return fmt.Errorf("generation %d: user %s not found", l.Generation, k)
		}
		x, n := l.Rows[i].Values[0].Float64(), l.Rows[i].Values[1].Int64()
		u := k.Int64()
		if x != float64(n)*versionScale+float64(u) {
			r.mixed.Add(1)
			return fmt.Errorf("generation %d: user %d has x %v and n %d, which no version of the source holds", l.Generation, u, x, n)
		}
		if version >= 0 && n != version {
			r.mixed.Add(1)
			return fmt.Errorf("generation %d: one answer holds rows of versions %d and %d", l.Generation, version, n)
		}
		version = n
	}
	if newest := r.maxVersion.Load(); version > newest {
		r.mixed.Add(1)
		return fmt.Errorf("generation %d holds version %d, newer than any written (%d)", l.Generation, version, newest)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.byGen[l.Generation]; ok && v != version {
		r.mixed.Add(1)
		return fmt.Errorf("generation %d was read with version %d, and now with %d", l.Generation, v, version)
	}
	r.byGen[l.Generation] = version
	return nil
}

func (r *trialReaders) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstErr == nil {
		r.firstErr = err
	}
}

// failed returns the first wrong answer, or nil.
func (r *trialReaders) failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstErr == nil {
		return nil
	}
	return fmt.Errorf("readers: %d answers checked, %d mixed, %d missing; the first: %w", r.answers.Load(), r.mixed.Load(), r.missing.Load(), r.firstErr)
}

// stop stops the readers and returns the answers they checked, and how many
// were mixed or missing.
func (r *trialReaders) stop() (answers, mixed, missing int64) {
	r.cancel()
	r.wg.Wait()
	return r.answers.Load(), r.mixed.Load(), r.missing.Load()
}
