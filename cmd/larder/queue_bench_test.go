package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
)

// BenchmarkQueuedRun measures a materialization run through the job queue
// (submitted, taken by a worker in this process, followed to its end)
// against the same run done directly by the runner, in the same process
// and on the same redis-server: the queue's cost is the ratio between the
// two. The view is a latest view of 100,000 events of 20,000 users.
func BenchmarkQueuedRun(b *testing.B) {
	srv := redistest.Start(b)
	sp := newSchedProject(b, srv.Addr, "jobs: {heartbeat: 500ms, lapse: 2s}", `  - name: last
    kind: latest
    entity: user
    source: events
    features:
      - {name: x, type: float64}
      - {name: n, type: int64}
`, 100_000, 20_000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &app{stdout: io.Discard, stderr: io.Discard, now: time.Now, configPath: sp.config, logger: slog.New(slog.DiscardHandler)}
	bk, err := a.openStore(ctx, sp.p)
	if err != nil {
		b.Fatal(err)
	}
	defer bk.Close()
	v := sp.p.View("last")
	runner, release := a.newRunner(ctx, sp.p, bk, runnerOptions{})
	defer release()

	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := runner.Run(ctx, materializer.RunRequest{Views: []*larder.View{v}, Trigger: larder.TriggerManual}); err != nil {
				b.Fatal(err)
			}
		}
	})

	ops, err := newOpsMetrics(nil)
	if err != nil {
		b.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	w := a.startWorkers(wctx, sp.p, bk, ops, workerSettings{concurrency: 1})
	defer func() { stop(); _ = w.wait() }()
	q := a.newQueue(sp.p, bk, nil)
	body, err := json.Marshal(larder.MaterializeArgs{Views: []string{"last"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("queued", func(b *testing.B) {
		for b.Loop() {
			j, err := q.Submit(ctx, larder.JobSpec{Kind: larder.JobMaterialize, Args: body})
			if err != nil {
				b.Fatal(err)
			}
			for !j.State.Done() {
				time.Sleep(2 * time.Millisecond)
				if j, err = q.Job(ctx, j.ID); err != nil {
					b.Fatal(err)
				}
			}
			if j.State != larder.JobSucceeded {
				b.Fatalf("job %s %s: %s", j.ID, j.State, j.LastError)
			}
		}
	})
}
