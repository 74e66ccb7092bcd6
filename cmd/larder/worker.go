package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/queue"
)

func (a *app) workerCommand() *cobra.Command {
	var (
		concurrency   int
		name          string
		grace         time.Duration
		metricsListen string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Process jobs from the job queue until interrupted",
		Long: `worker processes the jobs of the project's job queue in Redis: materialization
runs (` + "`larder materialize --async`" + `, or a scheduler with --workers), the shards
of views with shards, and batch scoring jobs (` + "`larder score --async`" + `). Run any
number of workers, on any number of machines; each takes up to --concurrency
jobs at a time.

A job that fails is retried with backoff (jobs.backoff, doubling up to
jobs.max_backoff) up to jobs.max_attempts attempts, then stays visible as
failed (` + "`larder jobs`" + `). A worker that dies mid-job stops sending heartbeats, and
another worker takes its job over once jobs.lapse has passed; a sharded
generation is still published exactly once. A worker also deletes, every
scheduler.sweep_interval, the generations whose grace period has ended and
those abandoned by killed runs.

On SIGTERM or SIGINT it takes no new job, lets running ones finish for
--grace, then hands them back to the queue for another worker.`,
		Example: `  larder worker
  larder worker --concurrency 2 --metrics-listen 127.0.0.1:9466`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			if concurrency < 1 {
				return fmt.Errorf("--concurrency %d: want 1 or more jobs at a time", concurrency)
			}
			if p.Redis.Embedded() {
				return fmt.Errorf("larder worker takes jobs from a Redis server, and the project uses the embedded store, which lives only inside one process: run `larder serve --workers N`, or set redis.addresses (or pass --redis)")
			}
			if !cmd.Flags().Changed("grace") {
				grace = p.Scheduler.ShutdownGrace
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			if err := a.checkEviction(ctx, p, b); err != nil {
				return err
			}
			metrics, stopMetrics, err := a.startOpsMetrics(metricsListen, p, b.store)
			if err != nil {
				return err
			}
			defer stopMetrics()
			w := a.startWorkers(ctx, p, b, metrics, workerSettings{concurrency: concurrency, name: name, grace: grace, sweep: true})
			fmt.Fprintf(a.stderr, "worker %s: processing jobs of project %s, %d at a time\n", w.name, p.Name, concurrency)
			err = w.wait()
			fmt.Fprintln(a.stderr, "stopped")
			return err
		},
	}
	cmd.Flags().IntVar(&concurrency, "concurrency", 1, "the most jobs this worker runs at once")
	cmd.Flags().StringVar(&name, "name", "", "the worker's name in \"larder jobs\" (default: host:pid)")
	cmd.Flags().DurationVar(&grace, "grace", 0, "on SIGTERM, how long running jobs may take to finish before they are handed back to the queue (default: scheduler.shutdown_grace)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "address of a Prometheus /metrics endpoint, such as 127.0.0.1:9466 (default: none)")
	return cmd
}

// workerSettings configure startWorkers.
type workerSettings struct {
	concurrency int
	name        string
	grace       time.Duration
	// sweep runs the periodic sweep of old generations too.
	sweep bool
}

// workers is a queue worker (and maybe a sweep) running in the background.
type workers struct {
	name string
	done sync.WaitGroup
	err  error
}

// wait returns once the worker has stopped, which it does when the context
// given to startWorkers ends.
func (w *workers) wait() error {
	w.done.Wait()
	return w.err
}

// startWorkers starts processing p's jobs on b until ctx ends.
func (a *app) startWorkers(ctx context.Context, p *larder.Project, b *backend, metrics *opsMetrics, ws workerSettings) *workers {
	runner, release := a.newRunner(ctx, p, b, runnerOptions{summaries: true, done: metrics.ran})
	q := a.newQueue(p, b, metrics.job)
	name := ws.name
	if name == "" {
		name = b.store.Owner()
	}
	h := &jobHandlers{a: a, p: p, b: b, runner: runner, q: q}
	w := &workers{name: name}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		defer release()
		w.err = q.Work(ctx, queue.WorkerOptions{
			Name: name, Concurrency: ws.concurrency, ShutdownGrace: ws.grace,
			Handlers: map[larder.JobKind]queue.Handler{
				larder.JobMaterialize: h.materialize,
				larder.JobShard:       h.shard,
				larder.JobScore:       h.score,
			},
			Hooks: map[larder.JobKind]queue.Hooks{
				larder.JobShard: {
					Retrying:  h.shardRetrying,
					Failed:    func(ctx context.Context, j larder.Job) { h.shardEnded(ctx, j, larder.RunFailed) },
					Cancelled: func(ctx context.Context, j larder.Job) { h.shardEnded(ctx, j, larder.RunCancelled) },
				},
			},
		})
	}()
	if ws.sweep {
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			a.sweep(ctx, b.store, p.Scheduler.SweepInterval, metrics.swept)
		}()
	}
	return w
}

// jobHandlers run the jobs of each kind.
type jobHandlers struct {
	a      *app
	p      *larder.Project
	b      *backend
	runner *materializer.Runner
	q      *queue.Queue
}

// task adapts a queue task to the runner's JobContext.
type task struct{ t *queue.Task }

func (t task) JobID() string { return t.t.Job().ID }
func (t task) Submit(ctx context.Context, spec larder.JobSpec) (larder.Job, error) {
	return t.t.Submit(ctx, spec)
}
func (t task) SetProgress(p larder.JobProgress) { t.t.SetProgress(p) }

// decodeArgs decodes a job's arguments; a job whose arguments do not decode
// can never run, so the error is permanent.
func decodeArgs(j larder.Job, v any) error {
	if err := json.Unmarshal(j.Args, v); err != nil {
		return queue.Permanent(fmt.Errorf("job %s: its arguments do not decode as a %s job's: %w", j.ID, j.Kind, err))
	}
	return nil
}

// permanent marks the errors that no retry can help: a bad request, a
// source or input whose columns do not fit, or a sharded run that was
// abandoned or aborted.
func permanent(err error) error {
	if err == nil {
		return nil
	}
	var inv *larder.InvalidError
	var col *materializer.ColumnError
	if errors.As(err, &inv) || errors.As(err, &col) || errors.Is(err, larder.ErrNotFound) {
		return queue.Permanent(err)
	}
	return err
}

func (h *jobHandlers) materialize(ctx context.Context, t *queue.Task) ([]byte, error) {
	var args larder.MaterializeArgs
	if err := decodeArgs(t.Job(), &args); err != nil {
		return nil, err
	}
	res, err := h.runner.RunJob(ctx, args, task{t})
	if err != nil {
		return nil, permanent(err)
	}
	return json.Marshal(res)
}

func (h *jobHandlers) shard(ctx context.Context, t *queue.Task) ([]byte, error) {
	var args larder.ShardArgs
	if err := decodeArgs(t.Job(), &args); err != nil {
		return nil, err
	}
	res, err := h.runner.RunShard(ctx, args, task{t})
	switch {
	case err == nil:
		return json.Marshal(res)
	case errors.Is(context.Cause(ctx), queue.ErrCancelled):
		h.runner.AbortShards(ctx, args, larder.RunCancelled, "cancelled: "+err.Error())
		return nil, err
	case errors.Is(err, larder.ErrLeaseLost):
		// The sharded run lost its lease: it was abandoned, or another
		// run took the view over. No retry can publish it.
		return nil, queue.Permanent(err)
	}
	return nil, permanent(err)
}

// shardRetrying keeps a sharded run's lease while one of its shards waits
// for its next attempt, so that the run is not taken for abandoned.
func (h *jobHandlers) shardRetrying(ctx context.Context, j larder.Job, delay time.Duration) {
	var args larder.ShardArgs
	if json.Unmarshal(j.Args, &args) != nil {
		return
	}
	lease := larder.Lease{View: args.View, Token: args.Token, Owner: args.Owner,
		TTL: delay + h.p.Scheduler.Lease*materializer.ShardLeaseFactor}
	if err := h.b.store.RenewLease(ctx, lease); err != nil {
		h.a.logger.Warn("keeping a sharded run's lease for a retry failed", "view", args.View, "generation", args.Generation, "err", err)
	}
}

// shardEnded ends a sharded run whose shard failed for good or was
// cancelled: the generation and every shard's rows are deleted, the run is
// recorded, and its lease released.
func (h *jobHandlers) shardEnded(ctx context.Context, j larder.Job, state larder.RunState) {
	var args larder.ShardArgs
	if json.Unmarshal(j.Args, &args) != nil {
		return
	}
	why := fmt.Sprintf("shard %d of %d %s", args.Shard+1, args.Shards, j.State)
	if j.LastError != "" {
		why += ": " + j.LastError
	}
	h.runner.AbortShards(ctx, args, state, why)
	// The other shards of the run cannot publish any more: stop them now
	// rather than when they next renew the run's lease.
	if j.Parent == "" {
		return
	}
	parent, err := h.q.Job(ctx, j.Parent)
	if err != nil {
		return
	}
	for _, id := range parent.Children {
		if id == j.ID {
			continue
		}
		if c, err := h.q.Job(ctx, id); err == nil && c.Kind == larder.JobShard && !c.State.Done() {
			if _, err := h.q.Cancel(ctx, id); err != nil {
				h.a.logger.Warn("cancelling a shard of a failed run failed", "job", id, "err", err)
			}
		}
	}
}

func (h *jobHandlers) score(ctx context.Context, t *queue.Task) ([]byte, error) {
	var args larder.ScoreArgs
	if err := decodeArgs(t.Job(), &args); err != nil {
		return nil, err
	}
	loader := &lazyModels{ctx: ctx, a: h.a}
	defer loader.close()
	m := materializer.New(h.p, h.b.store, materializer.Options{
		Logger: h.a.logger, Now: h.a.now, Models: loader.load, Reader: h.b.store,
		Progress: func(p materializer.Progress) {
			t.SetProgress(larder.JobProgress{Phase: materializer.PhaseScoring, Done: p.RowsRead, Total: p.RowsTotal, Unit: "rows"})
		},
	})
	rep, err := m.Score(ctx, args)
	if err != nil {
		return nil, permanent(err)
	}
	fmt.Fprintf(h.a.stdout, "%s job %s: scored %d rows into %s in %s (%.0f rows/s), model %s\n",
		h.a.now().UTC().Format(time.RFC3339), t.Job().ID, rep.Rows, rep.Output, formatDuration(rep.Duration), rep.RowsPerSecond, rep.Model)
	return json.Marshal(rep.Result())
}
