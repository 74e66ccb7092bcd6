package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/queue"
	"github.com/larder-dev/larder/store"
)

// runnerOptions say how a command's runs report themselves.
type runnerOptions struct {
	// bars draws a progress bar (or progress lines) per run and prints
	// each run's summary, for commands an operator watches.
	bars bool
	// summaries prints a line per run that ended, for long-running
	// commands (a scheduler, a worker).
	summaries bool
	// done, when set, is called after every run (metrics).
	done func(larder.Run, materializer.Report)
}

// newRunner returns the runner of p's views on b, loading models lazily,
// and the function that releases the models it loaded.
func (a *app) newRunner(ctx context.Context, p *larder.Project, b *backend, ro runnerOptions) (*materializer.Runner, func()) {
	loader := &lazyModels{ctx: ctx, a: a}
	opts := materializer.RunnerOptions{
		Logger: a.logger, Now: a.now, Models: loader.load, Owner: b.store.Owner(),
		LeaseTTL: p.Scheduler.Lease, PeakRSS: peakRSS,
	}
	if ro.bars {
		opts.Progress = func(view string) func(materializer.Progress) {
			prog := newProgress(a.stderr, view)
			return prog.update
		}
	}
	opts.Done = func(r larder.Run, rep materializer.Report) {
		switch {
		case ro.bars:
			a.printRun(r, rep)
		case ro.summaries:
			a.printRunLine(r)
		}
		if ro.done != nil {
			ro.done(r, rep)
		}
	}
	return materializer.NewRunner(p, b.store, opts), loader.close
}

// printRun prints the summary of a run that published, or the line of a
// run that was skipped.
func (a *app) printRun(r larder.Run, rep materializer.Report) {
	switch r.Result() {
	case larder.RunOK:
		if r.Incremental {
			printIncrementalReport(a.stdout, rep)
		} else {
			printReport(a.stdout, rep)
		}
	case larder.RunSkipped:
		fmt.Fprintf(a.stdout, "%s: skipped: %s\n", r.View, runError(r, 0))
	}
}

// printRunLine prints one line for a run that ended, with its trigger, as
// long-running commands log them.
func (a *app) printRunLine(r larder.Run) {
	at := r.AsOf.UTC().Format(time.RFC3339)
	how := string(r.Trigger)
	switch {
	case r.Job != "" && r.Trigger == larder.TriggerJob:
		how = "job " + r.Job
	case r.Job != "":
		how += ", job " + r.Job
	}
	switch r.Result() {
	case larder.RunOK:
		fmt.Fprintf(a.stdout, "%s %s: generation %d published as of %s (%s): %d rows read, %d entities written%s, %s\n",
			a.now().UTC().Format(time.RFC3339), r.View, r.Generation, at, how, r.RowsRead, r.EntitiesWritten, nulledSummary(r.Nulled), formatDuration(r.Duration))
	default:
		fmt.Fprintf(a.stdout, "%s %s: %s as of %s (%s): %s\n",
			a.now().UTC().Format(time.RFC3339), r.View, r.Result(), at, how, runError(r, 0))
	}
}

// newQueue returns the job queue of p on b, with the project's settings.
func (a *app) newQueue(p *larder.Project, b *backend, onEvent func(larder.JobKind, queue.Event)) *queue.Queue {
	j := p.Jobs
	return queue.New(b.client, p.Name, queue.Options{
		Logger: a.logger, Now: a.now,
		Heartbeat: j.Heartbeat, Lapse: j.Lapse, MaxAttempts: j.MaxAttempts,
		Backoff: j.Backoff, MaxBackoff: j.MaxBackoff, Retention: j.Retention,
		Kinds:   []larder.JobKind{larder.JobMaterialize, larder.JobShard, larder.JobScore},
		OnEvent: onEvent,
	})
}

// sweep deletes expired and abandoned generations every interval until ctx
// ends (never when interval is larder.NoSweep or less than zero), reporting
// each sweep's result to report when set.
func (a *app) sweep(ctx context.Context, st *store.Store, interval time.Duration, report func(store.CleanupReport, error)) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := st.Cleanup(ctx, store.CleanupOptions{})
		if err != nil && !errors.Is(err, context.Canceled) {
			a.logger.Warn("sweeping old generations failed; the next sweep retries", "err", err)
		}
		if report != nil {
			report(rep, err)
		}
	}
}
