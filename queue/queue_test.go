package queue_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/queue"
)

func TestSubmitGetList(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 12, 2, 5, 30, 0, 0, time.UTC), step: time.Millisecond}
	q, _ := newQueue(t, queue.Options{Now: clk.Now})
	ctx := context.Background()

	a1 := submit(t, q, larder.JobSpec{Kind: "a"})
	b1 := submit(t, q, larder.JobSpec{Kind: "b"})
	a2 := submit(t, q, larder.JobSpec{Kind: "a", Args: []byte(`{"views":["v"]}`), Description: "materialize v", MaxAttempts: 5})
	if _, err := q.Cancel(ctx, b1.ID); err != nil {
		t.Fatal(err)
	}

	got, err := q.Job(ctx, a2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != "a" || string(got.Args) != `{"views":["v"]}` || got.Description != "materialize v" ||
		got.MaxAttempts != 5 || got.State != larder.JobQueued || got.Attempts != 0 ||
		!got.CreatedAt.Equal(a2.CreatedAt) || got.CreatedAt.IsZero() || got.ID != a2.ID {
		t.Errorf("Job(a2) = %+v; submitted %+v", got, a2)
	}
	if a1.MaxAttempts != queue.DefaultMaxAttempts {
		t.Errorf("MaxAttempts of a job with 0 = %d, want the default %d", a1.MaxAttempts, queue.DefaultMaxAttempts)
	}
	if !(a1.ID < b1.ID && b1.ID < a2.ID) {
		t.Errorf("ids %s, %s, %s do not sort in submission order", a1.ID, b1.ID, a2.ID)
	}
	if _, err := q.Job(ctx, "20261202T053000.000Z-00000000"); !errors.Is(err, larder.ErrNotFound) {
		t.Errorf("Job(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := q.Cancel(ctx, "20261202T053000.000Z-00000000"); !errors.Is(err, larder.ErrNotFound) {
		t.Errorf("Cancel(unknown) error = %v, want ErrNotFound", err)
	}

	tests := []struct {
		name string
		f    larder.JobFilter
		want []larder.Job
	}{
		{"all", larder.JobFilter{}, []larder.Job{a2, b1, a1}},
		{"queued", larder.JobFilter{State: larder.JobQueued}, []larder.Job{a2, a1}},
		{"kind b", larder.JobFilter{Kind: "b"}, []larder.Job{b1}},
		{"cancelled", larder.JobFilter{State: larder.JobCancelled}, []larder.Job{b1}},
		{"cancelled a", larder.JobFilter{State: larder.JobCancelled, Kind: "a"}, nil},
		{"limit", larder.JobFilter{Limit: 2}, []larder.Job{a2, b1}},
		{"kind a limit 1", larder.JobFilter{Kind: "a", Limit: 1}, []larder.Job{a2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, err := q.Jobs(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(jobs), ids(tt.want)) {
				t.Errorf("Jobs(%+v) = %v, want %v", tt.f, ids(jobs), ids(tt.want))
			}
		})
	}

	for _, f := range []larder.JobFilter{{State: "bogus"}, {Limit: -1}} {
		if _, err := q.Jobs(ctx, f); !larder.IsInvalid(err) {
			t.Errorf("Jobs(%+v) error = %v, want an InvalidError", f, err)
		}
	}
}

func ids(jobs []larder.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func TestSubmitInvalid(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t, queue.Options{Kinds: []larder.JobKind{larder.JobMaterialize, larder.JobShard}})
	ctx := context.Background()
	done := submit(t, q, larder.JobSpec{Kind: larder.JobMaterialize})
	if _, err := q.Cancel(ctx, done.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec larder.JobSpec
	}{
		{"no kind", larder.JobSpec{}},
		{"unknown kind", larder.JobSpec{Kind: "frobnicate"}},
		{"negative max attempts", larder.JobSpec{Kind: larder.JobShard, MaxAttempts: -1}},
		{"args not JSON", larder.JobSpec{Kind: larder.JobShard, Args: []byte("{views")}},
		{"unknown parent", larder.JobSpec{Kind: larder.JobShard, Parent: "20261202T053000.000Z-00000000"}},
		{"finished parent", larder.JobSpec{Kind: larder.JobShard, Parent: done.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if j, err := q.Submit(ctx, tt.spec); !larder.IsInvalid(err) {
				t.Errorf("Submit = %+v, %v; want an InvalidError", j, err)
			}
		})
	}
	jobs, err := q.Jobs(ctx, larder.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 {
		t.Errorf("after invalid submits the queue holds %d jobs, want 1", len(jobs))
	}
	if err := q.Work(ctx, queue.WorkerOptions{}); err == nil {
		t.Error("Work without handlers: no error")
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 12, 2, 5, 30, 0, 0, time.UTC), step: time.Millisecond}
	q, srv := newQueue(t, queue.Options{Now: clk.Now, Retention: time.Hour, MaxFinished: 4})
	c := srv.Client()
	ctx := context.Background()

	var finished []larder.Job
	for range 3 {
		finished = append(finished, submit(t, q, larder.JobSpec{Kind: "a"}))
	}
	parent := submit(t, q, larder.JobSpec{Kind: "a"})
	child := submit(t, q, larder.JobSpec{Kind: "a", Parent: parent.ID})
	finished = append(finished, child, parent)
	active := submit(t, q, larder.JobSpec{Kind: "a"})
	for _, j := range finished[:3] {
		if _, err := q.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	}
	if j, err := q.Cancel(ctx, parent.ID); err != nil || j.State != larder.JobCancelled {
		t.Fatalf("Cancel(parent) = %+v, %v", j, err)
	}

	// Five finished jobs, four kept: the oldest goes.
	if n, err := q.Cleanup(ctx); err != nil || n != 1 {
		t.Fatalf("Cleanup = %d, %v; want 1 job deleted (over MaxFinished)", n, err)
	}
	if _, err := q.Job(ctx, finished[0].ID); !errors.Is(err, larder.ErrNotFound) {
		t.Errorf("the oldest finished job is still there (%v)", err)
	}
	if _, err := q.Job(ctx, finished[1].ID); err != nil {
		t.Errorf("a finished job within MaxFinished was deleted: %v", err)
	}

	clk.Add(2 * time.Hour)
	if n, err := q.Cleanup(ctx); err != nil || n != 4 {
		t.Fatalf("Cleanup after the retention = %d, %v; want 4 jobs deleted", n, err)
	}
	jobs, err := q.Jobs(ctx, larder.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(jobs), []string{active.ID}) {
		t.Errorf("after retention the queue lists %v, want only the active job %s", ids(jobs), active.ID)
	}
	if n := c.Exists(ctx, "larder:p:{p:jobs}:children:"+parent.ID, "larder:p:{p:jobs}:job:"+child.ID).Val(); n != 0 {
		t.Errorf("%d keys of deleted jobs remain", n)
	}
	if n := streamLen(t, c); n != 1 {
		t.Errorf("the stream holds %d entries, want 1 (the active job's)", n)
	}
	if n := c.ZCard(ctx, "larder:p:{p:jobs}:finished").Val(); n != 0 {
		t.Errorf("%d finished jobs remain listed", n)
	}
}

// TestSubmitKey checks that a second Submit with the key of a job the queue
// holds returns that job and queues nothing.
func TestSubmitKey(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t, queue.Options{})
	ctx := context.Background()
	first := submit(t, q, larder.JobSpec{Kind: "a", Key: "v/7/then"})
	again := submit(t, q, larder.JobSpec{Kind: "a", Key: "v/7/then", Description: "a second try"})
	if again.ID != first.ID || again.Key != "v/7/then" || again.Description != "" {
		t.Errorf("second submit = %+v, want the first job %+v", again, first)
	}
	other := submit(t, q, larder.JobSpec{Kind: "a", Key: "v/8/then"})
	if other.ID == first.ID {
		t.Error("two keys gave one job")
	}
	jobs, err := q.Jobs(ctx, larder.JobFilter{})
	if err != nil || len(jobs) != 2 {
		t.Errorf("jobs = %d, %v; want 2", len(jobs), err)
	}
}
