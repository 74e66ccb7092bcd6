package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/scheduler"
)

func (a *app) scheduleCommand() *cobra.Command {
	var (
		grace         time.Duration
		workers       bool
		metricsListen string
	)
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Run the views' cron schedules until interrupted",
		Long: `schedule runs every view that has a schedule when its schedule comes due, as
of the tick's instant, with the views that read it and have no schedule of
their own right after it, at the same as-of. It also deletes, every
scheduler.sweep_interval, the generations whose grace period has ended and
those abandoned by killed runs.

Any number of schedulers may run at once against one Redis, for
availability: each tick starts exactly one run. A tick that comes while the
view's previous run is still going is skipped and recorded as skipped (see
larder runs). When a scheduler starts, the latest tick that no scheduler ran
(they were all down) is caught up, once.

By default a scheduler runs the views itself. With --workers (or
scheduler.workers: true) it queues each tick as a job for ` + "`larder worker`" + `
instead, and a view with shards runs as that many jobs.

On SIGTERM or SIGINT it stops claiming ticks, lets runs in progress finish
for --grace (scheduler.shutdown_grace), then stops them: they publish
nothing and leave nothing behind, and the live generations keep serving.
For a single machine, or the embedded store, ` + "`larder serve --schedule`" + ` runs the
same scheduler inside the server.`,
		Example: `  larder schedule
  larder schedule --workers --metrics-listen 127.0.0.1:9465`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			if p.Redis.Embedded() {
				return fmt.Errorf("larder schedule runs views into a Redis server, and the project uses the embedded store, which lives only inside one process: run `larder serve --schedule`, or set redis.addresses (or pass --redis)")
			}
			if cmd.Flags().Changed("grace") {
				p.Scheduler.ShutdownGrace = grace
			}
			if workers {
				p.Scheduler.Workers = true
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
			sc, err := a.startScheduling(ctx, p, b, metrics)
			if err != nil {
				return err
			}
			sc.wait()
			fmt.Fprintln(a.stderr, "stopped")
			return nil
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", 0, "on SIGTERM, how long runs in progress may take to finish before they are stopped (default: scheduler.shutdown_grace, 5m)")
	cmd.Flags().BoolVar(&workers, "workers", false, "queue each tick as a job for \"larder worker\" instead of running it here (default: scheduler.workers)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "address of a Prometheus /metrics endpoint, such as 127.0.0.1:9465 (default: none)")
	return cmd
}

// scheduling is a scheduler and a sweep running in the background.
type scheduling struct {
	s    *scheduler.Scheduler
	done sync.WaitGroup
	stop func()
}

// wait returns once the scheduler and the sweep have stopped, which they do
// when the context given to startScheduling ends (runs in progress get the
// project's shutdown grace).
func (s *scheduling) wait() { s.done.Wait() }

// startScheduling starts the scheduler of p's views and the periodic sweep,
// until ctx ends. Ticks run in this process, or go to workers as jobs when
// p.Scheduler.Workers is set. It prints the views scheduled and, as runs
// end, a line for each.
func (a *app) startScheduling(ctx context.Context, p *larder.Project, b *backend, metrics *opsMetrics) (*scheduling, error) {
	runner, release := a.newRunner(ctx, p, b, runnerOptions{summaries: true, done: metrics.ran})
	opts := scheduler.Options{
		Logger: a.logger, Now: a.now, Owner: b.store.Owner(), Log: b.store,
		LeaseTTL: p.Scheduler.Lease, ShutdownGrace: p.Scheduler.ShutdownGrace,
		Claimed: metrics.claimed,
		Skipped: func(ctx context.Context, t scheduler.Tick, holder string) {
			runner.RecordSkippedTick(ctx, t.View, t.At, t.Trigger, holder)
		},
		LiveAsOf: func(ctx context.Context, v *larder.View) (time.Time, error) {
			g, err := b.store.Live(ctx, v)
			if errors.Is(err, larder.ErrNoGeneration) {
				return time.Time{}, nil
			}
			return coveredUntil(v, g), err
		},
	}
	if p.Scheduler.Workers {
		q := a.newQueue(p, b, metrics.job)
		opts.Enqueue = func(ctx context.Context, t scheduler.Tick) (string, error) {
			names := []string{t.View.Name}
			for _, d := range materializer.Dependents(p, []*larder.View{t.View}) {
				names = append(names, d.Name)
			}
			body, err := json.Marshal(larder.MaterializeArgs{Views: []string{t.View.Name}, Dependents: true, AsOf: t.At, Trigger: t.Trigger, Tick: t.At})
			if err != nil {
				return "", err
			}
			// The key makes the submission idempotent per tick.
			j, err := q.Submit(ctx, larder.JobSpec{
				Kind: larder.JobMaterialize, Args: body,
				Key:         fmt.Sprintf("tick/%s/%d", t.View.Name, t.At.UnixMicro()),
				Description: fmt.Sprintf("materialize %s as of %s (%s)", strings.Join(names, ", "), t.At.UTC().Format(time.RFC3339), t.Trigger),
			})
			return j.ID, err
		}
		opts.JobActive = func(ctx context.Context, id string) (bool, error) {
			j, err := q.Job(ctx, id)
			if err != nil {
				return false, err
			}
			return !j.State.Done(), nil
		}
	} else {
		opts.Run = func(ctx context.Context, t scheduler.Tick) error {
			_, err := runner.Run(ctx, materializer.RunRequest{
				Views: []*larder.View{t.View}, AsOf: t.At, Trigger: t.Trigger, Tick: t.At, Lease: t.Lease, Dependents: true,
			})
			return err
		}
	}
	s, err := scheduler.New(p, opts)
	if err != nil {
		release()
		return nil, err
	}
	sc := &scheduling{s: s}
	where := "in this process"
	if p.Scheduler.Workers {
		where = "as jobs for larder worker"
	}
	if len(s.Views()) == 0 {
		fmt.Fprintln(a.stderr, "no view has a schedule: nothing to run (set schedule: on a view in larder.yaml); sweeping old generations only")
	}
	for _, v := range s.Views() {
		fmt.Fprintf(a.stderr, "scheduling %s (%s): next run %s, %s\n", v.Name, scheduleText(p, v),
			s.Next(v).UTC().Format(time.RFC3339), where)
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	sc.stop = stopSweep
	sc.done.Add(2)
	go func() {
		defer sc.done.Done()
		defer release()
		_ = s.Run(ctx)
	}()
	go func() {
		defer sc.done.Done()
		a.sweep(sweepCtx, b.store, p.Scheduler.SweepInterval, metrics.swept)
	}()
	return sc, nil
}

// scheduleText prints a view's schedule with its zone when not UTC.
func scheduleText(p *larder.Project, v *larder.View) string {
	loc, err := p.Location(v)
	if err != nil || loc == nil || loc.String() == "UTC" {
		return v.Schedule
	}
	return v.Schedule + " " + loc.String()
}

// coveredUntil returns the latest tick that generation g of view v covers,
// so that the scheduler does not catch that tick up: g's as-of; or, for a
// streaming aggregate view, whose as-of is the cutoff its files decide,
// the time g's run started, since that run read the files as they were
// then. That holds only while the cutoff is within the view's horizon of
// the start (files that lag behind the stream, as the horizon allows): a
// run as of a time further back, by hand with --as-of, covers its as-of
// alone.
func coveredUntil(v *larder.View, g larder.Generation) time.Time {
	if v.Streaming() && g.StartedAt.After(g.AsOf) && g.StartedAt.Sub(g.AsOf) <= v.TileHorizon() {
		return g.StartedAt
	}
	return g.AsOf
}
