package materializer_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/store"
)

// runnerEvent is a row of the events source of the prediction project.
type runnerEvent struct {
	UserID  int64     `parquet:"user_id"`
	TS      time.Time `parquet:"ts,timestamp(microsecond)"`
	Age     int64     `parquet:"age"`
	Score   float64   `parquet:"score"`
	Active  bool      `parquet:"active"`
	Country string    `parquet:"country"`
	Clicks  int64     `parquet:"clicks"`
	Spend   float64   `parquet:"spend"`
}

// runnerFixture is the prediction project with an events source to run its
// latest views from, on a real redis-server.
type runnerFixture struct {
	*predFixture
	asOf time.Time
}

func newRunnerFixture(tb testing.TB) *runnerFixture {
	tb.Helper()
	f := &runnerFixture{predFixture: newPredFixture(tb, nil)}
	f.asOf = f.runTime.Add(-time.Hour)
	var rows []runnerEvent
	for i := range 600 {
		rows = append(rows, runnerEvent{
			UserID: int64(i % 200), TS: f.runTime.Add(-time.Duration(600-i) * 10 * time.Second),
			Age: int64(20 + i%50), Score: float64(i%7) / 3, Active: i%3 == 0, Country: "FR",
			Clicks: int64(i % 11), Spend: float64(i%13) / 2,
		})
	}
	writeParquet(tb, filepath.Join(f.dir, "events", "part-0.parquet"), rows)
	return f
}

func (f *runnerFixture) runner(opts materializer.RunnerOptions) *materializer.Runner {
	if opts.Models == nil {
		opts.Models = modelLoader(f.rt)
	}
	if opts.Now == nil {
		opts.Now = fixedClock(f.runTime)
	}
	return materializer.NewRunner(f.project, f.store, opts)
}

// TestRunnerDependents runs two views with their dependents: the prediction
// view that reads them runs after them, at their as-of, triggered by them,
// and records the generations it read.
func TestRunnerDependents(t *testing.T) {
	f := newRunnerFixture(t)
	ctx := context.Background()
	var mu sync.Mutex
	var done []larder.Run
	r := f.runner(materializer.RunnerOptions{Owner: "test:1", Done: func(run larder.Run, _ materializer.Report) {
		mu.Lock()
		done = append(done, run)
		mu.Unlock()
	}})
	reps, err := r.Run(ctx, materializer.RunRequest{
		Views: []*larder.View{f.project.View("stats"), f.project.View("profile")}, AsOf: f.asOf,
		Trigger: larder.TriggerSchedule, Tick: f.asOf, Dependents: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	gens := map[string]int64{}
	for _, rep := range reps {
		order = append(order, rep.View)
		gens[rep.View] = rep.Generation
		if !rep.RunTime.Equal(f.asOf) {
			t.Errorf("%s ran as of %s, want %s", rep.View, rep.RunTime, f.asOf)
		}
	}
	if !slices.Equal(order, []string{"stats", "profile", "pred"}) {
		t.Fatalf("ran %v, want the inputs as named, then pred", order)
	}
	pred, err := store.New(f.client, f.project.Name, store.Options{}).Live(ctx, f.project.View("pred"))
	if err != nil {
		t.Fatal(err)
	}
	want := []larder.InputGeneration{{View: "profile", Generation: gens["profile"], AsOf: f.asOf}, {View: "stats", Generation: gens["stats"], AsOf: f.asOf}}
	if !pred.AsOf.Equal(f.asOf) || pred.Trigger != larder.TriggerDependency || !sameInputs(pred.Inputs, want) {
		t.Errorf("pred generation %+v, want as of %s, trigger dependency, inputs %v", pred, f.asOf, want)
	}
	runs, err := f.store.Runs(ctx, "pred", 1)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs of pred: %+v, %v", runs, err)
	}
	if r := runs[0]; r.State != larder.RunOK || r.Trigger != larder.TriggerDependency || !r.Tick.Equal(f.asOf) ||
		!sameInputs(r.Inputs, want) || r.Owner != "test:1" || r.Generation != gens["pred"] {
		t.Errorf("run of pred %+v", r)
	}
	if len(done) != 3 {
		t.Errorf("the Done hook saw %d runs, want 3", len(done))
	}
	// Every lease was released.
	for _, v := range f.project.Views {
		if _, _, held, err := f.store.LeaseHolder(ctx, v.Name); err != nil || held {
			t.Errorf("the lease of %s is still held (%v)", v.Name, err)
		}
	}
}

func sameInputs(a, b []larder.InputGeneration) bool {
	return slices.EqualFunc(a, b, func(x, y larder.InputGeneration) bool {
		return x.View == y.View && x.Generation == y.Generation && x.AsOf.Equal(y.AsOf)
	})
}

// TestRunnerBusyView checks that a view whose lease another run holds is
// not run: an error for a view the request names, a skipped run for a
// dependent.
func TestRunnerBusyView(t *testing.T) {
	f := newRunnerFixture(t)
	ctx := context.Background()
	// A dependent waits two lease TTLs for a busy lease before it is
	// skipped.
	r := f.runner(materializer.RunnerOptions{LeaseTTL: 200 * time.Millisecond})
	other, err := f.store.AcquireLease(ctx, "pred", "other:9", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	reps, err := r.Run(ctx, materializer.RunRequest{Views: []*larder.View{f.project.View("profile"), f.project.View("stats")}, Dependents: true, Trigger: larder.TriggerSchedule})
	if err != nil || len(reps) != 2 {
		t.Fatalf("Run = %d reports, %v; want the two inputs", len(reps), err)
	}
	runs, err := f.store.Runs(ctx, "pred", 0)
	if err != nil || len(runs) != 1 || runs[0].State != larder.RunSkipped || runs[0].Trigger != larder.TriggerDependency {
		t.Fatalf("runs of the busy dependent: %+v, %v; want one skipped", runs, err)
	}
	_, err = r.Run(ctx, materializer.RunRequest{Views: []*larder.View{f.project.View("pred")}, Trigger: larder.TriggerManual})
	var held *larder.LeaseHeldError
	if !errors.As(err, &held) || held.Owner != "other:9" {
		t.Fatalf("Run of a busy view = %v, want a LeaseHeldError naming other:9", err)
	}
	if err := f.store.ReleaseLease(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx, materializer.RunRequest{Views: []*larder.View{f.project.View("pred")}, Trigger: larder.TriggerManual}); err != nil {
		t.Fatalf("Run once the lease is free: %v", err)
	}
}

// fakeJob is a JobContext that keeps the jobs submitted.
type fakeJob struct {
	id        string
	mu        sync.Mutex
	submitted []larder.JobSpec
	keys      map[string]bool
}

func (j *fakeJob) JobID() string { return j.id }
func (j *fakeJob) Submit(_ context.Context, spec larder.JobSpec) (larder.Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if spec.Key != "" {
		if j.keys == nil {
			j.keys = map[string]bool{}
		}
		if j.keys[spec.Key] {
			return larder.Job{JobSpec: spec}, nil
		}
		j.keys[spec.Key] = true
	}
	j.submitted = append(j.submitted, spec)
	return larder.Job{ID: j.id + "-child", JobSpec: spec}, nil
}
func (j *fakeJob) SetProgress(larder.JobProgress) {}

// TestRunnerShards runs a view in three shards as jobs would: the job starts
// the shards and the views after it wait for them; the last shard
// publishes the generation with every shard's rows, records the run and
// submits the views after it once, however often it is retried.
func TestRunnerShards(t *testing.T) {
	f := newRunnerFixture(t)
	ctx := context.Background()
	f.project.View("stats").Shards = 3
	r := f.runner(materializer.RunnerOptions{})
	job := &fakeJob{id: "job-1"}
	res, err := r.RunJob(ctx, larder.MaterializeArgs{Views: []string{"stats", "pred", "profile"}, AsOf: f.asOf}, job)
	if err != nil {
		t.Fatal(err)
	}
	// profile runs first (pred reads it), then stats is handed to shards.
	if len(res.Generations) != 1 || res.Generations[0].View != "profile" || len(job.submitted) != 3 {
		t.Fatalf("RunJob = %+v with %d jobs submitted; want profile published and 3 shards", res, len(job.submitted))
	}
	var shards []larder.ShardArgs
	for _, spec := range job.submitted {
		var sa larder.ShardArgs
		if spec.Kind != larder.JobShard || json.Unmarshal(spec.Args, &sa) != nil {
			t.Fatalf("submitted %+v", spec)
		}
		if !slices.Equal(sa.Then, []string{"pred"}) || !sa.AsOf.Equal(f.asOf) {
			t.Errorf("shard %+v: want pred after it, as of %s", sa, f.asOf)
		}
		shards = append(shards, sa)
	}
	live := store.New(f.client, f.project.Name, store.Options{})
	for i, sa := range shards {
		sj := &fakeJob{id: "shard-" + sa.View}
		res, err := r.RunShard(ctx, sa, sj)
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		last := i == len(shards)-1
		if got := len(res.Generations) == 1; got != last {
			t.Fatalf("shard %d published: %v, want %v", i, got, last)
		}
		if last {
			g, err := live.Live(ctx, f.project.View("stats"))
			if err != nil || g.ID != sa.Generation || g.Rows != 200 || !g.AsOf.Equal(f.asOf) {
				t.Fatalf("live stats %+v, %v; want generation %d with 200 rows", g, err, sa.Generation)
			}
			if len(sj.submitted) != 1 || sj.submitted[0].Kind != larder.JobMaterialize {
				t.Fatalf("the last shard submitted %+v, want the job of pred", sj.submitted)
			}
			// A retry of the last shard finds the run published, and
			// submits pred again under the same key.
			if _, err := r.RunShard(ctx, sa, sj); err != nil || len(sj.submitted) != 1 {
				t.Fatalf("retried shard: %v, %d submitted", err, len(sj.submitted))
			}
		}
	}
	runs, err := f.store.Runs(ctx, "stats", 0)
	if err != nil || len(runs) != 1 || runs[0].Shards != 3 || runs[0].State != larder.RunOK || runs[0].EntitiesWritten != 200 {
		t.Fatalf("runs of stats %+v, %v; want one published run in 3 shards", runs, err)
	}
	if _, _, held, _ := f.store.LeaseHolder(ctx, "stats"); held {
		t.Error("the sharded run's lease is still held")
	}
}

// TestRunnerShardsAbort ends a sharded run whose shard failed for good:
// nothing is published, no key of the generation is left, and the run is
// recorded once.
func TestRunnerShardsAbort(t *testing.T) {
	f := newRunnerFixture(t)
	ctx := context.Background()
	f.project.View("stats").Shards = 2
	r := f.runner(materializer.RunnerOptions{})
	before := f.client.DBSize(ctx).Val()
	job := &fakeJob{id: "job-2"}
	if _, err := r.RunJob(ctx, larder.MaterializeArgs{Views: []string{"stats"}, AsOf: f.asOf}, job); err != nil {
		t.Fatal(err)
	}
	var shards []larder.ShardArgs
	for _, spec := range job.submitted {
		var sa larder.ShardArgs
		if err := json.Unmarshal(spec.Args, &sa); err != nil {
			t.Fatal(err)
		}
		shards = append(shards, sa)
	}
	if _, err := r.RunShard(ctx, shards[0], &fakeJob{id: "s0"}); err != nil {
		t.Fatal(err)
	}
	r.AbortShards(ctx, shards[1], larder.RunFailed, "shard 2 of 2 failed: the disk is gone")
	r.AbortShards(ctx, shards[0], larder.RunFailed, "shard 2 of 2 failed: the disk is gone")
	if _, err := store.New(f.client, f.project.Name, store.Options{}).Live(ctx, f.project.View("stats")); !errors.Is(err, larder.ErrNoGeneration) {
		t.Errorf("stats is live after its sharded run failed: %v", err)
	}
	// No row of the failed generation is left; its metadata stays, marked
	// aborted, until its grace period ends, for a shard that still writes.
	if left := f.client.Keys(ctx, "larder:test:stats:*").Val(); len(left) != 0 {
		t.Errorf("rows of the failed generation are left: %v", left)
	}
	later := store.New(f.client, f.project.Name, store.Options{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if _, err := later.Cleanup(ctx, store.CleanupOptions{}); err != nil {
		t.Fatal(err)
	}
	// What is left: the views set, the run records, the counters of
	// generation ids and lease tokens, which must never go back, and the
	// store's epoch.
	if got := f.client.DBSize(ctx).Val(); got != before+5 {
		t.Errorf("DBSIZE %d after the failed run and its grace period, want %d: %v", got, before+5, f.client.Keys(ctx, "*").Val())
	}
	runs, err := f.store.Runs(ctx, "stats", 0)
	if err != nil || len(runs) != 1 || runs[0].State != larder.RunFailed || runs[0].Shards != 2 {
		t.Fatalf("runs of stats %+v, %v; want one failed run", runs, err)
	}
	// A shard that runs after the abort finds its generation gone.
	if _, err := r.RunShard(ctx, shards[1], &fakeJob{id: "s1"}); !errors.Is(err, larder.ErrNotFound) {
		t.Errorf("a shard of an aborted run = %v, want ErrNotFound", err)
	}

}

// TestRunnerJobTakesOverItsLease retries a job whose first attempt died
// holding its view's run lease: the second attempt takes the lease over
// (fencing the first off) instead of waiting for it to lapse.
func TestRunnerJobTakesOverItsLease(t *testing.T) {
	f := newRunnerFixture(t)
	ctx := context.Background()
	r := f.runner(materializer.RunnerOptions{})
	dead, err := f.store.AcquireLease(ctx, "stats", materializer.JobOwner("job-3"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.RunJob(ctx, larder.MaterializeArgs{Views: []string{"stats"}, AsOf: f.asOf}, &fakeJob{id: "job-3"})
	if err != nil || len(res.Generations) != 1 {
		t.Fatalf("the retried job: %+v, %v", res, err)
	}
	if err := f.store.RenewLease(ctx, dead); !errors.Is(err, larder.ErrLeaseLost) {
		t.Errorf("the dead attempt still holds its lease: %v", err)
	}
	// Another job's lease is not taken over.
	other, err := f.store.AcquireLease(ctx, "stats", materializer.JobOwner("job-4"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.RunJob(ctx, larder.MaterializeArgs{Views: []string{"stats"}, AsOf: f.asOf}, &fakeJob{id: "job-5"})
	if !errors.Is(err, larder.ErrLeaseHeld) {
		t.Errorf("a job took over another job's lease: %v", err)
	}
	_ = f.store.ReleaseLease(ctx, other)
}

// TestRunnerJobResumesShards retries a job whose shards are in flight: the
// retry goes on with them, and submits no shard twice.
func TestRunnerJobResumesShards(t *testing.T) {
	f := newRunnerFixture(t)
	ctx := context.Background()
	f.project.View("stats").Shards = 2
	r := f.runner(materializer.RunnerOptions{})
	job := &fakeJob{id: "job-6"}
	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := r.RunJob(ctx, larder.MaterializeArgs{Views: []string{"stats"}, AsOf: f.asOf}, job); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	if len(job.submitted) != 2 {
		t.Fatalf("%d shard jobs submitted over two attempts, want 2", len(job.submitted))
	}
	gens, err := f.store.Generations(ctx, "stats")
	if err != nil || len(gens) != 1 {
		t.Errorf("generations %+v, %v; want the one sharded generation", gens, err)
	}
}

// TestRunnerPastAsOfReadsNoFuture runs a prediction view alone as of an
// instant before its inputs' as-of: by hand, it refuses, naming what to run.
func TestRunnerPastAsOfReadsNoFuture(t *testing.T) {
	f := newRunnerFixture(t)
	ctx := context.Background()
	r := f.runner(materializer.RunnerOptions{})
	if _, err := r.Run(ctx, materializer.RunRequest{Views: []*larder.View{f.project.View("profile"), f.project.View("stats")}, AsOf: f.asOf, Trigger: larder.TriggerManual}); err != nil {
		t.Fatal(err)
	}
	_, err := r.Run(ctx, materializer.RunRequest{Views: []*larder.View{f.project.View("pred")}, AsOf: f.asOf.Add(-time.Hour), Trigger: larder.TriggerManual})
	if err == nil || !strings.Contains(err.Error(), "would read data from after its as-of") {
		t.Fatalf("a past run reading newer inputs = %v, want a refusal", err)
	}
	if _, err := r.Run(ctx, materializer.RunRequest{Views: []*larder.View{f.project.View("profile"), f.project.View("stats"), f.project.View("pred")}, AsOf: f.asOf.Add(-time.Hour), Trigger: larder.TriggerManual}); err != nil {
		t.Fatalf("the same past run with its inputs: %v", err)
	}
}
