package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/demo"
	"github.com/larder-dev/larder/queue"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

const lastView = `  - name: last
    kind: latest
    entity: user
    source: events
    schedule: "@every 2s"
    features:
      - {name: x, type: float64}
      - {name: n, type: int64}
`

// TestTwoSchedulers runs two `larder schedule` processes against one
// redis-server over a schedule of a tick every two seconds, kills one with
// SIGKILL half-way, and checks from the run records that every tick started
// exactly one run, that no two runs of the view overlapped, and that no tick
// was missed after the kill.
func TestTwoSchedulers(t *testing.T) {
	// Its 24 seconds are mostly waiting for ticks: it runs beside the
	// package's other parallel tests (see TestConsoleChromium).
	t.Parallel()
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "scheduler: {lease: 1s, sweep_interval: 1s}", lastView, 2000, 100)
	a := sp.start(t, "schedule")
	b := sp.start(t, "schedule")
	// Kill a between two ticks, after five of them.
	begin := time.Now()
	time.Sleep(time.Until(begin.Truncate(2 * time.Second).Add(11 * time.Second)))
	a.stop(t, syscall.SIGKILL)
	killed := time.Now()
	time.Sleep(13 * time.Second)
	b.stop(t, syscall.SIGTERM)

	runs, err := sp.store(t).Runs(context.Background(), "last", 0)
	if err != nil {
		t.Fatal(err)
	}
	byTick := map[time.Time][]larder.Run{}
	for _, r := range runs {
		byTick[r.Tick] = append(byTick[r.Tick], r)
	}
	var ticks []time.Time
	for tick := range byTick {
		ticks = append(ticks, tick)
	}
	slices.SortFunc(ticks, func(x, y time.Time) int { return x.Compare(y) })
	if len(ticks) < 10 {
		t.Fatalf("%d ticks ran, want at least 10: %v", len(ticks), ticks)
	}
	var delays []time.Duration
	for i, tick := range ticks {
		if tick.IsZero() {
			t.Errorf("runs without a tick: %+v", byTick[tick])
			continue
		}
		if i > 0 && tick.Sub(ticks[i-1]) != 2*time.Second {
			t.Errorf("ticks %s and %s: a tick was missed", ticks[i-1].Format(time.TimeOnly), tick.Format(time.TimeOnly))
		}
		rs := byTick[tick]
		// A tick may be skipped only when the run before it outlasted the
		// time a tick waits (a very slow machine): never for any other
		// reason.
		if len(rs) == 1 && rs[0].Result() == larder.RunSkipped && i > 0 {
			if prev := byTick[ticks[i-1]]; len(prev) == 1 && prev[0].Duration >= time.Second {
				continue
			}
		}
		if len(rs) != 1 || rs[0].Result() != larder.RunOK {
			t.Errorf("tick %s: %d runs (%+v), want one that published", tick.Format(time.TimeOnly), len(rs), rs)
			continue
		}
		if !rs[0].AsOf.Equal(tick) {
			t.Errorf("tick %s ran as of %s, want the tick", tick, rs[0].AsOf)
		}
		if rs[0].Trigger == larder.TriggerSchedule {
			delays = append(delays, rs[0].StartedAt.Sub(tick))
		}
	}
	if last := ticks[len(ticks)-1]; last.Before(killed.Add(8 * time.Second)) {
		t.Errorf("the last tick run was %s, %s after the kill: the surviving scheduler stopped", last.Format(time.TimeOnly), last.Sub(killed))
	}
	slices.SortFunc(runs, func(x, y larder.Run) int { return x.StartedAt.Compare(y.StartedAt) })
	for i := 1; i < len(runs); i++ {
		if prevEnd := runs[i-1].StartedAt.Add(runs[i-1].Duration); runs[i].StartedAt.Before(prevEnd) {
			t.Errorf("runs of ticks %s and %s overlapped", runs[i-1].Tick.Format(time.TimeOnly), runs[i].Tick.Format(time.TimeOnly))
		}
	}
	slices.Sort(delays)
	if len(delays) > 0 {
		t.Logf("%d ticks, one run each; tick-to-run-start delay of %d scheduled ticks: p50 %s, max %s",
			len(ticks), len(delays), delays[len(delays)/2], delays[len(delays)-1])
	}
}

// TestWorkerKilledInShardedRun runs a view in four shards on two `larder
// worker` processes, kills one with SIGKILL while it writes a shard, and
// checks that the other finishes the run, that exactly one generation is
// published, and that it holds what a run in one piece at the same as-of
// writes.
func TestWorkerKilledInShardedRun(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, `scheduler: {lease: 1s}
jobs: {heartbeat: 200ms, lapse: 1s, backoff: 200ms, max_backoff: 1s}`, `  - name: big
    kind: latest
    entity: user
    source: events
    shards: 4
    features:
      - {name: x, type: float64}
      - {name: n, type: int64}
`, 600_000, 150_000)
	st := sp.store(t)
	ctx := context.Background()
	q := queue.New(srv.Client(), sp.p.Name, queue.Options{})
	w1 := sp.start(t, "worker", "--name", "w1")
	sp.start(t, "worker", "--name", "w2")

	asOf := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
	r := sp.larder(t, "materialize", "--async", "--as-of", asOf.Format(time.RFC3339), "big")
	mustSucceed(t, r, "materialize --async")
	root := regexp.MustCompile(`job (\S+) submitted`).FindStringSubmatch(r.stdout)
	if root == nil {
		t.Fatalf("no job id in %q", r.stdout)
	}
	// The kill must land while w1 writes a shard. w1 is frozen as soon as
	// it is seen running one, so that it cannot finish it while the job is
	// read again; should it have finished it meanwhile, it is thawed and
	// the wait goes on for its next one.
	var victim larder.Job
	waitFor(t, 60*time.Second, "a shard running on w1", func() (bool, bool) {
		running := func() (larder.Job, bool) {
			jobs, err := q.Jobs(ctx, larder.JobFilter{Kind: larder.JobShard, State: larder.JobRunning})
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range jobs {
				if j.Worker == "w1" {
					return j, true
				}
			}
			return larder.Job{}, false
		}
		j, ok := running()
		if !ok {
			time.Sleep(5 * time.Millisecond)
			return false, false
		}
		w1.signal(t, syscall.SIGSTOP)
		if again, ok := running(); ok && again.ID == j.ID && again.Attempts == j.Attempts {
			victim = j
			return true, true
		}
		w1.signal(t, syscall.SIGCONT)
		return false, false
	})
	w1.stop(t, syscall.SIGKILL)

	job := waitFor(t, 120*time.Second, "the sharded run to end", func() (larder.Job, bool) {
		j, err := q.Job(ctx, root[1])
		if err != nil {
			t.Fatal(err)
		}
		return j, j.State.Done()
	})
	if job.State != larder.JobSucceeded {
		t.Fatalf("job %s %s: %s", job.ID, job.State, job.LastError)
	}
	taken, err := q.Job(ctx, victim.ID)
	if err != nil {
		t.Fatal(err)
	}
	if taken.State != larder.JobSucceeded || taken.Attempts < 2 || taken.Worker == "w1" {
		t.Errorf("the killed worker's shard: %s after %d attempts on %s; want it finished by w2 on a later attempt", taken.State, taken.Attempts, taken.Worker)
	}
	runs, err := st.Runs(ctx, "big", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Result() != larder.RunOK || runs[0].Shards != 4 || !runs[0].AsOf.Equal(asOf) {
		t.Fatalf("runs %+v, want one published run in 4 shards as of %s", runs, asOf)
	}
	v := sp.p.View("big")
	sharded, err := st.Live(ctx, v)
	if err != nil || sharded.ID != runs[0].Generation || sharded.Job != job.ID {
		t.Fatalf("live generation %+v, %v; want the run's %d", sharded, err, runs[0].Generation)
	}
	gens, err := st.Generations(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(gens) != 1 {
		t.Errorf("generations held: %+v, want only the published one", gens)
	}

	// The same run in one piece, at the same as-of, writes the same rows.
	mustSucceed(t, sp.larder(t, "materialize", "--as-of", asOf.Format(time.RFC3339), "big"), "materialize")
	whole, err := store.New(srv.Client(), sp.p.Name, store.Options{}).Live(ctx, v)
	if err != nil || whole.ID == sharded.ID {
		t.Fatalf("live generation after the run in one piece: %+v, %v", whole, err)
	}
	a, b := rowsOf(t, st, v, sharded.ID), rowsOf(t, st, v, whole.ID)
	if len(a) != 150_000 {
		t.Errorf("the sharded generation holds %d entities, want 150000", len(a))
	}
	if err := sameRows(a, b); err != nil {
		t.Errorf("the sharded generation differs from the run in one piece: %v", err)
	}
}

// TestMaterializeAsOfTwice runs every view of the demo project twice as of
// one instant: the two runs write the same values, and the prediction view
// records the generations of its inputs, published by the same call at the
// same as-of.
func TestMaterializeAsOfTwice(t *testing.T) {
	t.Parallel()
	_, cfg := demoProject(t)
	srv := redistest.Start(t)
	asOf := t0.Add(-90 * time.Minute)
	run := func() {
		r := larderAt(t, t.Context(), t0, "--redis", srv.Addr, "-c", cfg, "materialize", "--as-of", asOf.Format(time.RFC3339))
		mustSucceed(t, r, "materialize --as-of")
	}
	p := loadProjectAt(t, cfg, srv.Addr)
	st := store.New(srv.Client(), p.Name, store.Options{Now: func() time.Time { return t0 }})
	run()
	first := map[string]larder.Generation{}
	for _, v := range p.Views {
		g, err := st.Live(t.Context(), v)
		if err != nil {
			t.Fatal(err)
		}
		first[v.Name] = g
		if !g.AsOf.Equal(asOf) || g.Trigger != larder.TriggerManual {
			t.Errorf("%s generation %d: as of %s by %q, want as of %s by manual", v.Name, g.ID, g.AsOf, g.Trigger, asOf)
		}
	}
	run()
	st = store.New(srv.Client(), p.Name, store.Options{Now: func() time.Time { return t0 }})
	for _, v := range p.Views {
		g, err := st.Live(t.Context(), v)
		if err != nil {
			t.Fatal(err)
		}
		if g.ID == first[v.Name].ID {
			t.Fatalf("%s: the second run published nothing", v.Name)
		}
		if err := sameRows(rowsOf(t, st, v, first[v.Name].ID), rowsOf(t, st, v, g.ID)); err != nil {
			t.Errorf("%s: two runs as of one instant differ: %v", v.Name, err)
		}
		if v.Kind != larder.KindPrediction {
			continue
		}
		if len(g.Inputs) != len(v.DependsOn()) || len(g.Inputs) == 0 {
			t.Fatalf("%s records inputs %v, want one per view it reads", v.Name, g.Inputs)
		}
		for _, in := range g.Inputs {
			dep, err := st.Live(t.Context(), p.View(in.View))
			if err != nil || dep.ID != in.Generation || !in.AsOf.Equal(asOf) {
				t.Errorf("%s input %+v: the same call published %s generation %d as of %s", v.Name, in, in.View, dep.ID, dep.AsOf)
			}
		}
		runs, err := st.Runs(t.Context(), v.Name, 1)
		if err != nil || len(runs) != 1 || len(runs[0].Inputs) != len(g.Inputs) {
			t.Errorf("the run record of %s does not name its inputs: %+v, %v", v.Name, runs, err)
		}
	}
}

// loadProjectAt loads a project file, pointed at a Redis address.
func loadProjectAt(tb testing.TB, cfg, addr string) *larder.Project {
	tb.Helper()
	a := &app{configPath: cfg, redisAddr: addr}
	p, err := a.loadProject()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestSweep checks that, with a publish and a killed run behind it and no
// further publish, a long-running process's sweep leaves no key of the
// replaced or the abandoned generation once the grace period and one sweep
// interval have passed: DBSIZE is back to its baseline, and the killed run
// is recorded as abandoned.
func TestSweep(t *testing.T) {
	// Mostly waiting for the grace period and the sweeps (see
	// TestConsoleChromium).
	t.Parallel()
	srv := redistest.Start(t)
	sp := newSchedProjectGrace(t, srv.Addr, "1s", "scheduler: {lease: 3s, sweep_interval: 1s}",
		strings.Replace(lastView, `    schedule: "@every 2s"
`, "", 1), 2_000_000, 400_000)
	ctx := context.Background()
	client := srv.Client()
	mustSucceed(t, sp.larder(t, "materialize", "last"), "materialize")
	baseline := client.DBSize(ctx).Val()
	mustSucceed(t, sp.larder(t, "materialize", "last"), "materialize again")
	if n := client.DBSize(ctx).Val(); n <= baseline {
		t.Fatalf("DBSIZE %d after a second publish, baseline %d: the replaced generation holds no key?", n, baseline)
	}

	// A run killed while it writes.
	killed := sp.start(t, "materialize", "last")
	waitFor(t, 60*time.Second, "the run to write a generation", func() (bool, bool) {
		gens, err := sp.store(t).Generations(ctx, "last")
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gens {
			if g.State == "writing" {
				return true, true
			}
		}
		return false, false
	})
	killed.stop(t, syscall.SIGKILL)

	sweeper := sp.start(t, "schedule")
	waitFor(t, 30*time.Second, "DBSIZE back to its baseline", func() (int64, bool) {
		n := client.DBSize(ctx).Val()
		return n, n == baseline
	})
	sweeper.stop(t, syscall.SIGTERM)
	runs, err := sp.store(t).Runs(ctx, "last", 1)
	if err != nil || len(runs) != 1 || runs[0].Result() != larder.RunAbandoned {
		t.Errorf("the killed run is not recorded as abandoned: %+v, %v", runs, err)
	}
	if !strings.Contains(sweeper.out.String(), "stopped") {
		t.Errorf("schedule did not stop cleanly:\n%s", sweeper.out.String())
	}
}

// TestCoveredUntil checks which missed tick a live generation covers: a
// batch view's is its as-of; a streaming aggregate view's, whose as-of is
// the cutoff its files decide (before the run), is the later of that and
// the time its run started, so that a run at start-up is not followed by
// a catch-up of the tick before it.
func TestCoveredUntil(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "larder.yaml")
	if err := os.WriteFile(cfg, demo.ProjectYAML(), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadProjectAt(t, cfg, "127.0.0.1:1")
	cutoff := time.Date(2026, 12, 3, 11, 40, 0, 0, time.UTC)
	started := cutoff.Add(25 * time.Minute)
	g := larder.Generation{ID: 1, AsOf: cutoff, StartedAt: started}
	streaming, batch := p.View("user_activity"), p.View("user_items")
	if !streaming.Streaming() || batch.Streaming() {
		t.Fatalf("the demo's user_activity streams, user_items does not: %v, %v", streaming.Streaming(), batch.Streaming())
	}
	if got := coveredUntil(streaming, g); !got.Equal(started) {
		t.Errorf("streaming view: covered until %s, want its run's start %s", got, started)
	}
	if got := coveredUntil(batch, g); !got.Equal(cutoff) {
		t.Errorf("batch view: covered until %s, want its as-of %s", got, cutoff)
	}
	// A run as of a time after it started (a tick's run that began early)
	// covers its as-of.
	g.StartedAt = cutoff.Add(-time.Second)
	if got := coveredUntil(streaming, g); !got.Equal(cutoff) {
		t.Errorf("streaming view, run started before its as-of: covered until %s, want %s", got, cutoff)
	}
	// A run as of a month back (--as-of by hand) covers that month-old
	// instant only: the ticks since are caught up.
	g.StartedAt = cutoff.Add(30 * 24 * time.Hour)
	if got := coveredUntil(streaming, g); !got.Equal(cutoff) {
		t.Errorf("streaming view, run as of a month before its start: covered until %s, want its as-of %s", got, cutoff)
	}
	// At the edge of the horizon, the start still counts.
	g.StartedAt = cutoff.Add(streaming.TileHorizon())
	if got := coveredUntil(streaming, g); !got.Equal(g.StartedAt) {
		t.Errorf("streaming view, cutoff a horizon before the start: covered until %s, want the start %s", got, g.StartedAt)
	}
}
