package queue_test

import (
	"context"
	"testing"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/queue"
	"github.com/larder-dev/larder/redistest"
)

// TestCluster runs the queues of two projects on a Redis Cluster: every
// script touches several keys, which must share one slot per project.
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	ctx := context.Background()
	for _, project := range []string{"p", "other"} {
		q := queue.New(cl.Client(), project, fast())
		work(t, q, queue.WorkerOptions{
			Concurrency: 2,
			Handlers: map[larder.JobKind]queue.Handler{
				"parent": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					for range 3 {
						if _, err := tk.Submit(ctx, larder.JobSpec{Kind: "child"}); err != nil {
							return nil, err
						}
					}
					return nil, nil
				},
				"child": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					tk.SetProgress(larder.JobProgress{Done: 1, Total: 1})
					return nil, nil
				},
			},
		})
		p := submit(t, q, larder.JobSpec{Kind: "parent"})
		p = waitState(t, q, p.ID, larder.JobSucceeded)
		if len(p.Children) != 3 {
			t.Errorf("project %s: parent = %+v, want 3 children", project, p)
		}
		queued := submit(t, q, larder.JobSpec{Kind: "idle"})
		if j, err := q.Cancel(ctx, queued.ID); err != nil || j.State != larder.JobCancelled {
			t.Errorf("project %s: Cancel = %+v, %v", project, j, err)
		}
		jobs, err := q.Jobs(ctx, larder.JobFilter{State: larder.JobSucceeded})
		if err != nil || len(jobs) != 4 {
			t.Errorf("project %s: Jobs = %d jobs, %v; want 4 succeeded", project, len(jobs), err)
		}
		if _, err := q.Cleanup(ctx); err != nil {
			t.Errorf("project %s: Cleanup: %v", project, err)
		}
	}
}
