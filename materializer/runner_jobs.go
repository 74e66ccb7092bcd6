package materializer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/larder-dev/larder"
)

// JobContext is the job a worker runs, as the Runner sees it.
type JobContext interface {
	// JobID is the job's id.
	JobID() string
	// Submit queues a child of the job: the job ends only once its
	// children have.
	Submit(ctx context.Context, spec larder.JobSpec) (larder.Job, error)
	// SetProgress reports how far the job has come.
	SetProgress(p larder.JobProgress)
}

// ShardLeaseFactor is how many run lease TTLs the lease of a sharded run
// lasts: its shards wait in the queue for workers, and renew the lease only
// while one of them runs, so it must outlast a wait. A sharded run whose
// every worker died is found abandoned this long after the last renewal.
const ShardLeaseFactor = 10

// RunJob runs a larder.JobMaterialize job: its views in dependency order,
// every one at args.AsOf (when zero, the time RunJob is called), each under
// its run lease. A view with more than one shard (View.Shards) is handed to
// shard jobs, children of this one; the views of the job that read it go
// on in a job that its last shard submits once the generation is
// published, and the job waits for its children. (A view that reads two
// sharded views of one job runs after the first of them, reading the live
// generation of the other.) A view whose live generation this job already
// published at this as-of (an earlier attempt) is not run again; for a
// streaming aggregate view, whose generation is as of its cutoff, at this
// as-of or earlier.
//
// It returns the generations published, an *larder.InvalidError for an
// unknown view, an error wrapping larder.ErrLeaseHeld when another run of a
// view is in progress (the job should be retried later), and the run's
// error otherwise.
func (r *Runner) RunJob(ctx context.Context, args larder.MaterializeArgs, jc JobContext) (larder.MaterializeResult, error) {
	var res larder.MaterializeResult
	views, err := r.views(args.Views)
	if err != nil {
		return res, err
	}
	asOf := args.AsOf
	if asOf.IsZero() {
		asOf = r.now()
	}
	asOf = asOf.UTC().Truncate(time.Microsecond)
	trigger := args.Trigger
	if trigger == "" {
		trigger = larder.TriggerJob
	}
	named := views
	if args.Dependents {
		views = append(slices.Clone(views), Dependents(r.project, views)...)
	}
	ordered := larder.Order(views)
	// waiting holds the views that wait for a sharded view of the job: they
	// run after its generation is published, in a job its last shard
	// submits.
	waiting := map[*larder.View]bool{}
	for i, v := range ordered {
		if waiting[v] {
			continue
		}
		// A view this job published already (the job is delivered again
		// after its worker died) is not run again. A streaming aggregate
		// view's generation is as of its cutoff, which may be earlier than
		// the job's as-of.
		if g, err := liveNow(ctx, r.store, v); err == nil && g.Job == jc.JobID() &&
			(g.AsOf.Equal(asOf) || v.Streaming() && !g.AsOf.After(asOf)) {
			res.Generations = append(res.Generations, larder.InputGeneration{View: v.Name, Generation: g.ID, AsOf: asOf})
			continue
		}
		if v.Shards > 1 {
			then := readersOf(v, ordered[i+1:], waiting)
			if err := r.startShards(ctx, v, asOf, trigger, args.Tick, then, jc); err != nil {
				return res, err
			}
			continue
		}
		reps, err := r.Run(ctx, RunRequest{
			Views: []*larder.View{v}, AsOf: asOf, Trigger: trigger, Tick: args.Tick, Job: jc.JobID(),
			progress: jobProgress(jc, i, len(ordered)), asDependents: !slices.Contains(named, v),
		})
		if err != nil {
			return res, err
		}
		for _, rep := range reps {
			res.Generations = append(res.Generations, larder.InputGeneration{View: rep.View, Generation: rep.Generation, AsOf: asOf})
		}
	}
	return res, nil
}

// readersOf returns the names of the views among rest that read v, directly
// or through other views of rest, marking them in waiting; a view already
// waiting for another sharded view stays with it.
func readersOf(v *larder.View, rest []*larder.View, waiting map[*larder.View]bool) []string {
	reads := map[*larder.View]bool{v: true}
	var names []string
	for _, d := range rest {
		if waiting[d] || !dependsOnAny(d, reads) {
			continue
		}
		reads[d], waiting[d] = true, true
		names = append(names, d.Name)
	}
	return names
}

// jobProgress reports a run's progress as the progress of its job, the
// view's place among the job's views in the phase.
func jobProgress(jc JobContext, i, n int) func(Progress) {
	return func(p Progress) {
		jp := larder.JobProgress{Phase: p.View + " " + p.Phase, Done: p.RowsRead, Total: p.RowsTotal, Unit: "rows"}
		if p.Phase == PhaseWriting {
			jp.Done, jp.Total, jp.Unit = p.EntitiesWritten, p.EntitiesTotal, "entities"
		}
		if n > 1 {
			jp.Phase = fmt.Sprintf("%s (view %d of %d)", jp.Phase, i+1, n)
		}
		jc.SetProgress(jp)
	}
}

// views returns the named views, or an *larder.InvalidError naming the
// first unknown one.
func (r *Runner) views(names []string) ([]*larder.View, error) {
	if len(names) == 0 {
		return nil, larder.Invalidf("the job names no view")
	}
	views := make([]*larder.View, 0, len(names))
	for _, n := range names {
		v := r.project.View(n)
		if v == nil {
			known := make([]string, len(r.project.Views))
			for i, v := range r.project.Views {
				known[i] = v.Name
			}
			return nil, larder.Invalidf("unknown view %q (views: %s)", n, strings.Join(known, ", "))
		}
		views = append(views, v)
	}
	return views, nil
}

// startShards begins a sharded generation of v under a new run lease, held
// by the job (JobOwner), and submits one shard job per shard, as children
// of the job. A retried job finds the sharded generation an earlier
// attempt began, and submits its shards again: each shard job has a key,
// so a shard already submitted is not submitted twice.
func (r *Runner) startShards(ctx context.Context, v *larder.View, asOf time.Time, trigger larder.Trigger, tick time.Time,
	then []string, jc JobContext) error {
	ss, ok := r.store.(larder.ShardedStore)
	if !ok {
		return fmt.Errorf("materialize %s: the store %T cannot write a generation in shards (larder.ShardedStore)", v.Name, r.store)
	}
	owner := JobOwner(jc.JobID())
	gen, token, genAsOf, found, err := ss.ShardedRun(ctx, v, jc.JobID())
	if err != nil {
		return fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	if !found {
		lease, err := r.store.ReclaimLease(ctx, v.Name, owner, r.opts.LeaseTTL*ShardLeaseFactor)
		if err != nil {
			return fmt.Errorf("materialize %s: %w", v.Name, err)
		}
		expected := int64(-1)
		if g, err := liveNow(ctx, r.store, v); err == nil {
			expected = g.Rows
		}
		run := larder.RunInfo{AsOf: asOf, Trigger: trigger, Tick: tick, Job: jc.JobID(), Owner: r.opts.Owner, Lease: lease}
		if v.Streaming() {
			// The generation is as of its cutoff, which the source
			// decides (see Materializer.cutoff).
			m := New(r.project, r.store, Options{Logger: r.log, Now: r.now, AsOf: asOf})
			if run.AsOf, err = m.sourceCutoff(ctx, v, asOf); err != nil {
				r.release(lease)
				return err
			}
		}
		if gen, err = ss.BeginSharded(ctx, v, larder.BeginOptions{ExpectedRows: expected, Run: run}, v.Shards); err != nil {
			r.release(lease)
			return fmt.Errorf("materialize %s: %w", v.Name, err)
		}
		token, genAsOf = lease.Token, run.AsOf
		r.started(ctx, v, RunRequest{Trigger: trigger, Tick: tick, Job: jc.JobID()}, asOf, lease, v.Shards)
	}
	// Every shard of a streaming view computes its part as of the
	// generation's cutoff, whatever the source holds when it runs.
	var cutoff time.Time
	if v.Streaming() {
		cutoff = genAsOf
	}
	for i := range v.Shards {
		sa := larder.ShardArgs{
			View: v.Name, Generation: gen, Shard: i, Shards: v.Shards, AsOf: asOf, Cutoff: cutoff,
			Token: token, Owner: owner, Then: then, Trigger: trigger, Tick: tick,
		}
		body, err := json.Marshal(sa)
		if err != nil {
			return err
		}
		if _, err := jc.Submit(ctx, larder.JobSpec{
			Kind: larder.JobShard, Args: body, Key: fmt.Sprintf("%s/%d/shard/%d", v.Name, gen, i),
			Description: fmt.Sprintf("materialize %s shard %d of %d (generation %d) as of %s", v.Name, i+1, v.Shards, gen, asOf.Format(time.RFC3339)),
		}); err != nil {
			// A retry of the job submits the shards again.
			return fmt.Errorf("materialize %s: submit shard %d: %w", v.Name, i, err)
		}
	}
	jc.SetProgress(larder.JobProgress{Phase: v.Name + " shards", Done: 0, Total: int64(v.Shards), Unit: "shards"})
	r.log.Info("sharded run started", "view", v.Name, "generation", gen, "shards", v.Shards, "as_of", asOf, "resumed", found)
	return nil
}

// RunShard runs a larder.JobShard job: it writes its shard of the
// generation under the sharded run's lease, which it renews while it runs.
// The shard that finds every other shard done publishes the generation,
// records the run, releases the lease and submits the views to run after
// it (ShardArgs.Then) as a child job. A shard whose generation was
// published already (an earlier attempt finished) succeeds at once.
//
// It returns the generation published (none for a shard that was not the
// last), an error wrapping larder.ErrLeaseLost or larder.ErrNotFound when
// the sharded run was abandoned or aborted (retrying cannot help), and
// the run's error otherwise.
func (r *Runner) RunShard(ctx context.Context, sa larder.ShardArgs, jc JobContext) (larder.MaterializeResult, error) {
	var res larder.MaterializeResult
	views, err := r.views([]string{sa.View})
	if err != nil {
		return res, err
	}
	v := views[0]
	lease := larder.Lease{View: v.Name, Token: sa.Token, Owner: sa.Owner, TTL: r.opts.LeaseTTL * ShardLeaseFactor}
	runCtx, stop := r.holdLease(ctx, lease)
	defer stop()
	opts := Options{
		Logger: r.log, Now: r.now, AsOf: sa.AsOf, Models: r.opts.Models, Reader: r.store,
		Cutoff:   sa.Cutoff,
		Run:      larder.RunInfo{AsOf: sa.AsOf, Trigger: sa.Trigger, Tick: sa.Tick, Job: jc.JobID(), Owner: r.opts.Owner, Lease: lease},
		Shard:    &larder.ShardRef{Generation: sa.Generation, Index: sa.Shard, Count: sa.Shards},
		Progress: jobProgress(jc, 0, 1),
	}
	rep, err := New(r.project, r.store, opts).Run(runCtx, v.Name)
	switch {
	case errors.Is(err, larder.ErrPublished):
		// An earlier attempt of this shard ended the run, and may have
		// died before releasing its lease and submitting the views after
		// it: both are done again, harmlessly.
		stop()
		r.release(lease)
		return res, r.submitThen(ctx, sa, jc)
	case err != nil:
		if cause := context.Cause(runCtx); errors.Is(cause, larder.ErrLeaseLost) && !errors.Is(err, larder.ErrLeaseLost) {
			err = fmt.Errorf("%w: %w", err, cause)
		}
		return res, err
	case !rep.Published:
		return res, nil
	}
	run := r.runRecord(v, RunRequest{Trigger: sa.Trigger, Tick: sa.Tick, Job: jc.JobID()}, sa.AsOf, rep, nil, ctx)
	run.Shards, run.Token = sa.Shards, sa.Token
	// The run wrote the generation's entities, over every shard.
	if g, err := liveNow(ctx, r.store, v); err == nil && g.ID == rep.Generation {
		run.EntitiesWritten = g.Rows
	}
	r.record(ctx, v, run, rep)
	stop()
	r.release(lease)
	res.Generations = append(res.Generations, larder.InputGeneration{View: v.Name, Generation: rep.Generation, AsOf: sa.AsOf})
	return res, r.submitThen(ctx, sa, jc)
}

// submitThen submits the views to run after a sharded run, if any, as a
// child of the shard's job. The job's key makes a second submission (by a
// retried shard) a no-op.
func (r *Runner) submitThen(ctx context.Context, sa larder.ShardArgs, jc JobContext) error {
	if len(sa.Then) == 0 {
		return nil
	}
	body, err := json.Marshal(larder.MaterializeArgs{Views: sa.Then, AsOf: sa.AsOf, Trigger: larder.TriggerDependency, Tick: sa.Tick})
	if err != nil {
		return err
	}
	_, err = jc.Submit(ctx, larder.JobSpec{
		Kind: larder.JobMaterialize, Args: body,
		Key:         fmt.Sprintf("%s/%d/then", sa.View, sa.Generation),
		Description: fmt.Sprintf("materialize %s as of %s, after %s generation %d", strings.Join(sa.Then, ", "), sa.AsOf.Format(time.RFC3339), sa.View, sa.Generation),
	})
	if err != nil {
		return fmt.Errorf("submit the views after %s: %w", sa.View, err)
	}
	return nil
}

// AbortShards ends a sharded run that failed for good (state
// larder.RunFailed) or was cancelled (larder.RunCancelled) with cause: it
// deletes the generation with every shard's rows, records the run, and
// releases its lease. Of the shards of one run, only the first to call it
// records the run.
func (r *Runner) AbortShards(ctx context.Context, sa larder.ShardArgs, state larder.RunState, cause string) {
	r.abortSharded(ctx, sa, state, cause)
}

func (r *Runner) abortSharded(ctx context.Context, sa larder.ShardArgs, state larder.RunState, cause string) {
	v := r.project.View(sa.View)
	ss, ok := r.store.(larder.ShardedStore)
	if v == nil || !ok {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	deleted, err := ss.AbortGeneration(actx, v, sa.Generation)
	if err != nil {
		r.log.Warn("aborting a sharded generation failed; cleanup deletes it once its lease lapses", "view", v.Name, "generation", sa.Generation, "err", err)
	}
	r.release(larder.Lease{View: v.Name, Token: sa.Token, Owner: sa.Owner})
	if !deleted {
		return
	}
	now := r.now()
	r.record(ctx, v, larder.Run{
		View: v.Name, Kind: v.Kind, State: state, AsOf: sa.AsOf, Trigger: sa.Trigger, Tick: sa.Tick,
		Shards: sa.Shards, Owner: r.opts.Owner, Token: sa.Token, StartedAt: now, Err: cause,
	}, Report{})
}
