package main

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/queue"
	"github.com/larder-dev/larder/redistest"
)

// TestServeJobs serves the demo on the embedded store with a worker in the
// process: a job submitted through the JobService runs, shows its result,
// and its generation is live, recorded as computed by a job.
func TestServeJobs(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	_, cfg := demoProject(t)
	srv := startServe(t, "-c", cfg, "serve", "--listen", "127.0.0.1:0", "--workers", "1")
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := t.Context()
	jobs := larderv1.NewJobServiceClient(conn)
	resp, err := jobs.SubmitJob(ctx, &larderv1.SubmitJobRequest{Job: &larderv1.SubmitJobRequest_Materialize{
		Materialize: &larderv1.MaterializeJob{Views: []string{"item_profile", "item_click_prior"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetJob().GetId()
	job := waitFor(t, 60*time.Second, "the job to end", func() (*larderv1.Job, bool) {
		j, err := jobs.GetJob(ctx, &larderv1.GetJobRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		s := j.GetJob().GetState()
		return j.GetJob(), s == larderv1.JobState_JOB_STATE_SUCCEEDED || s == larderv1.JobState_JOB_STATE_FAILED || s == larderv1.JobState_JOB_STATE_CANCELLED
	})
	if job.GetState() != larderv1.JobState_JOB_STATE_SUCCEEDED || job.GetAttempts() != 1 {
		t.Fatalf("job %v", job)
	}
	gens := job.GetMaterializeResult().GetGenerations()
	if len(gens) != 2 || gens[0].GetView() != "item_profile" || gens[1].GetView() != "item_click_prior" || gens[0].GetGeneration() != 2 {
		t.Fatalf("job result %v, want item_profile and item_click_prior published as generation 2", gens)
	}
	views, err := larderv1.NewFeatureServiceClient(conn).ListViews(ctx, &larderv1.ListViewsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views.GetViews() {
		if v.GetName() == "item_click_prior" {
			if v.GetGeneration() != 2 || v.GetTrigger() != string(larder.TriggerJob) || len(v.GetInputs()) != 1 ||
				!v.GetAsOf().AsTime().Equal(gens[0].GetAsOf().AsTime()) {
				t.Errorf("ListViews: %v", v)
			}
		}
	}
	list, err := jobs.ListJobs(ctx, &larderv1.ListJobsRequest{})
	if err != nil || len(list.GetJobs()) != 1 || list.GetJobs()[0].GetId() != id {
		t.Errorf("ListJobs = %v, %v", list.GetJobs(), err)
	}
}

// TestCancelRunningJob cancels a run while a worker process writes it: the
// job ends cancelled, the live generation keeps serving, no key of the
// cancelled generation is left, and the run is recorded as cancelled.
func TestCancelRunningJob(t *testing.T) {
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "jobs: {heartbeat: 200ms, lapse: 1s}", strings.Replace(lastView, `    schedule: "@every 2s"
`, "", 1), 2_000_000, 400_000)
	ctx := context.Background()
	client := srv.Client()
	mustSucceed(t, sp.larder(t, "materialize", "last"), "materialize")
	baseline := client.DBSize(ctx).Val()
	sp.start(t, "worker")
	r := sp.larder(t, "materialize", "--async", "last")
	mustSucceed(t, r, "materialize --async")
	id := regexp.MustCompile(`job (\S+) submitted`).FindStringSubmatch(r.stdout)[1]
	q := queue.New(client, sp.p.Name, queue.Options{})
	st := sp.store(t)
	// Cancelled once it writes its generation (and not merely once the
	// worker took the job, which on a slow machine can be well before the
	// run begins), the run is cancelled, and cannot finish first.
	waitFor(t, 60*time.Second, "the job's run to write", func() (bool, bool) {
		j, err := q.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State.Done() {
			t.Fatalf("the job ended before it could be cancelled: %s", j.State)
		}
		gens, err := st.Generations(ctx, "last")
		if err != nil {
			t.Fatal(err)
		}
		writing := false
		for _, g := range gens {
			writing = writing || g.State == "writing"
		}
		return true, j.State == larder.JobRunning && writing
	})
	mustSucceed(t, sp.larder(t, "jobs", "cancel", id), "jobs cancel")
	j := waitFor(t, 60*time.Second, "the job to stop", func() (larder.Job, bool) {
		j, err := q.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return j, j.State.Done()
	})
	if j.State != larder.JobCancelled {
		t.Fatalf("job %s %s: %s", j.ID, j.State, j.LastError)
	}
	waitFor(t, 30*time.Second, "no generation being written", func() (bool, bool) {
		gens, err := st.Generations(ctx, "last")
		if err != nil {
			t.Fatal(err)
		}
		return true, len(gens) == 1 && gens[0].Live && gens[0].ID == 1
	})
	runs, err := st.Runs(ctx, "last", 1)
	if err != nil || len(runs) != 1 || runs[0].Result() != larder.RunCancelled || runs[0].Job != id {
		t.Errorf("runs %+v, %v; want the job's run cancelled", runs, err)
	}
	// The queue's keys come and go with their jobs; the store's are back.
	if n := client.DBSize(ctx).Val(); n < baseline {
		t.Errorf("DBSIZE %d, below the baseline %d", n, baseline)
	}
	if left := client.Keys(ctx, "larder:sched:last:2:*").Val(); len(left) != 0 {
		t.Errorf("keys of the cancelled generation are left: %v", left)
	}
}

// TestScheduleShutdown stops a scheduler with SIGTERM while its run writes:
// once the grace time has passed, the run stops, publishes nothing, leaves
// nothing behind and is recorded as cancelled.
func TestScheduleShutdown(t *testing.T) {
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "scheduler: {sweep_interval: 0s}", lastView, 2_000_000, 400_000)
	ctx := context.Background()
	st := sp.store(t)
	sched := sp.start(t, "schedule", "--grace", "100ms")
	waitFor(t, 60*time.Second, "a scheduled run to write", func() (bool, bool) {
		gens, err := st.Generations(ctx, "last")
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
	sched.stop(t, syscall.SIGTERM)
	gens, err := st.Generations(ctx, "last")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gens {
		if g.State == "writing" {
			t.Errorf("generation %d is left writing", g.ID)
		}
	}
	runs, err := st.Runs(ctx, "last", 1)
	if err != nil || len(runs) != 1 || runs[0].Result() != larder.RunCancelled {
		t.Errorf("runs %+v, %v; want the interrupted run cancelled", runs, err)
	}
	if _, _, held, _ := st.LeaseHolder(ctx, "last"); held {
		t.Error("the interrupted run's lease is still held")
	}
	published := map[string]bool{}
	for _, g := range gens {
		published[strconv.FormatInt(g.ID, 10)] = true
	}
	for _, k := range srv.Client().Keys(ctx, "larder:sched:last:*").Val() {
		if gen := strings.Split(k, ":")[3]; !published[gen] {
			t.Errorf("key %s of the interrupted run is left", k)
		}
	}
}

// TestWorkerKilledInRun kills a worker while it runs a view in one piece:
// another worker takes the job over once the first one's heartbeat lapses,
// takes over the run lease of the dead attempt (long before that lease would
// lapse), and publishes one generation; the dead attempt's half-written
// generation is deleted, its run recorded as abandoned.
func TestWorkerKilledInRun(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, `scheduler: {lease: 1m, sweep_interval: 1s}
jobs: {heartbeat: 200ms, lapse: 1s, backoff: 200ms, max_attempts: 2}`, strings.Replace(lastView, `    schedule: "@every 2s"
`, "", 1), 2_000_000, 400_000)
	ctx := context.Background()
	client := srv.Client()
	q := queue.New(client, sp.p.Name, queue.Options{})
	w1 := sp.start(t, "worker", "--name", "w1")
	r := sp.larder(t, "materialize", "--async", "last")
	mustSucceed(t, r, "materialize --async")
	id := regexp.MustCompile(`job (\S+) submitted`).FindStringSubmatch(r.stdout)[1]
	waitFor(t, 60*time.Second, "the job to start on w1", func() (bool, bool) {
		j, err := q.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State.Done() {
			t.Fatalf("the job ended before the kill: %s", j.State)
		}
		// Its run has begun: it holds the view's lease and noted its start.
		return true, j.State == larder.JobRunning && j.Worker == "w1" && client.Exists(ctx, "larder:sched:{last}:active").Val() == 1
	})
	w1.stop(t, syscall.SIGKILL)
	sp.start(t, "worker", "--name", "w2")
	j := waitFor(t, 60*time.Second, "the job to end", func() (larder.Job, bool) {
		j, err := q.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return j, j.State.Done()
	})
	if j.State != larder.JobSucceeded || j.Attempts != 2 || j.Worker != "w2" {
		t.Fatalf("job %s after %d attempts on %s: %s", j.State, j.Attempts, j.Worker, j.LastError)
	}
	st := sp.store(t)
	waitFor(t, 30*time.Second, "only the published generation", func() (bool, bool) {
		gens, err := st.Generations(ctx, "last")
		if err != nil {
			t.Fatal(err)
		}
		return true, len(gens) == 1 && gens[0].Live
	})
	runs, err := st.Runs(ctx, "last", 0)
	if err != nil {
		t.Fatal(err)
	}
	var states []larder.RunState
	for _, r := range runs {
		states = append(states, r.Result())
	}
	// The killed attempt is recorded whether it died before or after it
	// began a generation.
	waitFor(t, 30*time.Second, "the killed run recorded", func() (bool, bool) {
		runs, err = st.Runs(ctx, "last", 0)
		if err != nil {
			t.Fatal(err)
		}
		states = states[:0]
		for _, r := range runs {
			states = append(states, r.Result())
		}
		return true, len(states) == 2
	})
	slices.Sort(states)
	if !slices.Equal(states, []larder.RunState{larder.RunAbandoned, larder.RunOK}) {
		t.Errorf("runs %v, want one published and the killed one abandoned", states)
	}
}

// queuedJobs is a job queue whose every job stays queued, as one is when no
// worker runs.
type queuedJobs struct {
	larder.JobQueue
	created time.Time
}

func (q queuedJobs) Job(_ context.Context, id string) (larder.Job, error) {
	return larder.Job{ID: id, State: larder.JobQueued, CreatedAt: q.created}, nil
}

// TestFollowQueuedJob follows a job that no worker takes: --wait says so
// once, and what to start, instead of "queued" and then nothing.
func TestFollowQueuedJob(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		queued time.Duration
		hint   bool
	}{{time.Second, false}, {time.Minute, true}} {
		var stderr strings.Builder
		a := &app{stderr: &stderr, now: func() time.Time { return t0 }}
		ctx, cancel := context.WithTimeout(t.Context(), 1200*time.Millisecond)
		err := a.followJob(ctx, queuedJobs{created: t0.Add(-tt.queued)}, "j1")
		cancel()
		if err == nil || !strings.Contains(err.Error(), "stopped following job j1") {
			t.Errorf("following a job queued %s: error %v, want that it stopped following", tt.queued, err)
		}
		want := "job j1: still queued after 1m: no worker has taken it; is a `larder worker` (or `larder serve --workers N`) running against this Redis"
		if got := strings.Contains(stderr.String(), want); got != tt.hint || strings.Count(stderr.String(), "still queued") > 1 {
			t.Errorf("following a job queued %s printed:\n%s\nwant the hint %v, at most once", tt.queued, stderr.String(), tt.hint)
		}
	}
}
