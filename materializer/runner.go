package materializer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/larder-dev/larder"
)

// RunnerStore is what a Runner needs of the online store: it writes
// generations, reads the views that others read, records runs and hands
// out run leases.
type RunnerStore interface {
	larder.GenerationStore
	larder.FeatureStore
	larder.RunLog
	larder.RunLeases
}

// RunnerOptions configure a Runner. The zero RunnerOptions is valid.
type RunnerOptions struct {
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Models loads the models of prediction views.
	Models larder.ModelLoader
	// Owner names this process in leases and run records; "" means
	// "<host>:<pid>" as the store names it.
	Owner string
	// LeaseTTL is how long a run's lease lasts unless renewed (every third
	// of it): when the process dies, the view is free again, and its
	// generation found abandoned, this long after; 0 means
	// larder.DefaultLease.
	LeaseTTL time.Duration
	// Progress, when set, returns the progress sink of a run of view (nil
	// for none), such as a progress bar; it is called once per run.
	Progress func(view string) func(Progress)
	// Done, when set, is called when a run ends, with its record as
	// stored (or as it would have been, if recording failed) and its
	// report.
	Done func(r larder.Run, rep Report)
	// PeakRSS, when set, gives the process's peak memory for run records.
	PeakRSS func() int64
}

// Runner runs views the way operators and schedulers expect: each view
// under its run lease (so that two runs of a view never overlap and a run
// that stalls past its lease cannot publish over the next), every view of
// one request at one as-of and after the views it reads, and every run
// recorded (larder.RunLog), successful or not. It is safe for concurrent
// use.
type Runner struct {
	project *larder.Project
	store   RunnerStore
	log     *slog.Logger
	now     func() time.Time
	opts    RunnerOptions
}

// NewRunner returns a Runner of project's views on st.
func NewRunner(project *larder.Project, st RunnerStore, opts RunnerOptions) *Runner {
	r := &Runner{project: project, store: st, log: opts.Logger, now: opts.Now, opts: opts}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.opts.LeaseTTL <= 0 {
		r.opts.LeaseTTL = larder.DefaultLease
	}
	return r
}

// RunRequest is one request to run views.
type RunRequest struct {
	// Views are run in dependency order: a view that reads another of
	// them runs after it.
	Views []*larder.View
	// AsOf is the instant every view of the request is computed as of;
	// the zero time means when Run is called.
	AsOf    time.Time
	Trigger larder.Trigger
	// Tick is the schedule tick that started the request, if any.
	Tick time.Time
	// Job is the id of the job that runs the request, if any.
	Job string
	// Lease, when held, is the run lease of Views[0], which the caller
	// took (a scheduler takes it with the tick); the Runner renews and
	// releases it.
	Lease larder.Lease
	// Incremental runs latest views incrementally (RunIncremental).
	Incremental bool
	// Dependents adds, after the views, the views without a schedule of
	// their own that read them (and, in turn, those that read these),
	// computed at the same as-of.
	Dependents bool

	// progress, when set, replaces RunnerOptions.Progress for the runs of
	// the request.
	progress func(Progress)
	// asDependents runs every view of the request as a dependent: with
	// trigger dependency, and skipped when another run holds its lease.
	asDependents bool
}

// dependentWait is how long a view run after its inputs (a dependent)
// waits for its run lease when another run of it holds the lease (a run
// triggered by another of its inputs, at the same tick), before it is
// recorded as skipped; busyPoll how often it looks.
const (
	dependentWaitLeases = 2
	busyPoll            = 100 * time.Millisecond
)

// Run runs the views of req one after the other. A view whose run lease
// another run holds is not run: Run returns an error wrapping
// larder.ErrLeaseHeld for a view the request names, and records a view
// added by Dependents as skipped, once it has waited for the lease for two
// lease TTLs (the other run may be the same view's, triggered by another of
// its inputs). Run stops at the first failed run: the views after it do
// not run, and keep their live generations; those that read the failed
// view are recorded as skipped. It returns the reports of the runs that
// published, and the error of the failed run.
func (r *Runner) Run(ctx context.Context, req RunRequest) ([]Report, error) {
	asOf := req.AsOf
	if asOf.IsZero() {
		asOf = r.now()
	}
	asOf = asOf.UTC().Truncate(time.Microsecond)
	named := slices.Clone(req.Views)
	views := named
	if req.Dependents {
		views = append(views, Dependents(r.project, named)...)
	}
	views = larder.Order(views)
	var reports []Report
	skipped := map[*larder.View]bool{}
	for i, v := range views {
		vreq := req
		dependent := !slices.Contains(named, v) || req.asDependents
		if dependent {
			vreq.Trigger = larder.TriggerDependency
		}
		if dependsOnAny(v, skipped) {
			skipped[v] = true
			r.record(ctx, v, r.skippedRun(v, vreq, asOf, "a view it reads was skipped"), Report{})
			continue
		}
		lease := larder.Lease{}
		if len(req.Views) > 0 && v == req.Views[0] && req.Lease.Held() {
			lease = req.Lease
		}
		rep, err := r.runOne(ctx, v, vreq, asOf, lease, dependent)
		var held *larder.LeaseHeldError
		switch {
		case errors.As(err, &held) && dependent:
			skipped[v] = true
			r.record(ctx, v, r.skippedRun(v, vreq, asOf, held.Error()), Report{})
			continue
		case err != nil:
			failed := map[*larder.View]bool{v: true}
			for _, d := range views[i+1:] {
				if dependsOnAny(d, failed) {
					failed[d] = true
					dreq := req
					dreq.Trigger = larder.TriggerDependency
					r.record(ctx, d, r.skippedRun(d, dreq, asOf, "view "+v.Name+", which it reads, failed"), Report{})
				}
			}
			return reports, err
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

// dependsOnAny reports whether v reads a view of set.
func dependsOnAny(v *larder.View, set map[*larder.View]bool) bool {
	for _, d := range v.DependsOn() {
		if set[d] {
			return true
		}
	}
	return false
}

// Dependents returns the views without a schedule of their own that read
// one of views, directly or through other such views, excluding views
// itself, in project order. They run after views, at their as-of.
func Dependents(p *larder.Project, views []*larder.View) []*larder.View {
	in := map[*larder.View]bool{}
	for _, v := range views {
		in[v] = true
	}
	var out []*larder.View
	for changed := true; changed; {
		changed = false
		for _, v := range p.Views {
			if in[v] || v.Schedule != "" || !dependsOnAny(v, in) {
				continue
			}
			in[v] = true
			out = append(out, v)
			changed = true
		}
	}
	slices.SortStableFunc(out, func(a, b *larder.View) int { return slices.Index(p.Views, a) - slices.Index(p.Views, b) })
	return out
}

// runOne runs v at asOf under its run lease (taken unless lease is held
// already; waited for, when v runs as a dependent), renewing the lease
// while it runs, and records the run.
func (r *Runner) runOne(ctx context.Context, v *larder.View, req RunRequest, asOf time.Time, lease larder.Lease, dependent bool) (Report, error) {
	if !lease.Held() {
		var err error
		if lease, err = r.acquire(ctx, v, req, dependent); err != nil {
			return Report{View: v.Name}, fmt.Errorf("materialize %s: %w: wait for it to end (`larder runs %s` shows it when it does)", v.Name, err, v.Name)
		}
	}
	if lease.TTL <= 0 {
		lease.TTL = r.opts.LeaseTTL
	}
	runCtx, stop := r.holdLease(ctx, lease)
	defer r.release(lease)
	defer stop() // before the release, so that no renewal finds it released
	r.started(ctx, v, req, asOf, lease, 0)

	opts := Options{
		Logger: r.log, Now: r.now, AsOf: asOf, Models: r.opts.Models, Reader: r.store,
		Run: larder.RunInfo{AsOf: asOf, Trigger: req.Trigger, Tick: req.Tick, Job: req.Job, Owner: r.opts.Owner, Lease: lease},
	}
	switch {
	case req.progress != nil:
		opts.Progress = req.progress
	case r.opts.Progress != nil:
		opts.Progress = r.opts.Progress(v.Name)
	}
	m := New(r.project, r.store, opts)
	var rep Report
	var err error
	if req.Incremental {
		rep, err = m.RunIncremental(runCtx, v.Name)
	} else {
		rep, err = m.Run(runCtx, v.Name)
	}
	if err != nil {
		if cause := context.Cause(runCtx); errors.Is(cause, larder.ErrLeaseLost) && !errors.Is(err, larder.ErrLeaseLost) {
			err = fmt.Errorf("%w: %w", err, cause)
		}
	}
	run := r.runRecord(v, req, asOf, rep, err, ctx)
	run.Token = lease.Token
	r.record(ctx, v, run, rep)
	return rep, err
}

// started notes that a run of v under lease has started (larder.RunLog's
// StartRun), so that the run is recorded as abandoned if the process dies
// before it ends. A failure to note it is logged: the run goes on.
func (r *Runner) started(ctx context.Context, v *larder.View, req RunRequest, asOf time.Time, lease larder.Lease, shards int) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	err := r.store.StartRun(rctx, larder.Run{
		View: v.Name, Kind: v.Kind, AsOf: asOf, Trigger: req.Trigger, Tick: req.Tick, Job: req.Job,
		Shards: shards, Owner: r.opts.Owner, Token: lease.Token, StartedAt: r.now(), Incremental: req.Incremental,
	})
	if err != nil {
		r.log.Warn("could not note the start of a run; if its process dies, `larder runs` will not show it", "view", v.Name, "err", err)
	}
}

// JobOwner is the owner of the run leases that a job's runs take: every
// attempt of the job, on any worker, has the same, so that an attempt takes
// over the lease of an earlier one whose worker died (ReclaimLease).
func JobOwner(job string) string { return "job:" + job }

// acquire takes the run lease of v for a run of req: a job's run takes it
// over from an earlier attempt of the job; a dependent waits for it while
// another run holds it, for at most dependentWaitLeases lease TTLs.
func (r *Runner) acquire(ctx context.Context, v *larder.View, req RunRequest, dependent bool) (larder.Lease, error) {
	// The wait is measured on the wall clock, whatever r.now says: it
	// waits for another process.
	var deadline time.Time
	if dependent {
		deadline = time.Now().Add(dependentWaitLeases * r.opts.LeaseTTL)
	}
	for {
		var lease larder.Lease
		var err error
		if req.Job != "" {
			lease, err = r.store.ReclaimLease(ctx, v.Name, JobOwner(req.Job), r.opts.LeaseTTL)
		} else {
			lease, err = r.store.AcquireLease(ctx, v.Name, r.opts.Owner, r.opts.LeaseTTL)
		}
		if !errors.Is(err, larder.ErrLeaseHeld) || !time.Now().Before(deadline) {
			return lease, err
		}
		select {
		case <-ctx.Done():
			return lease, err
		case <-time.After(busyPoll):
		}
	}
}

// holdLease returns a context for a run under lease, which it renews every
// third of its TTL until stop is called. When the lease is lost, the
// context is cancelled with a cause wrapping larder.ErrLeaseLost, so that
// the run stops without publishing. stop may be called more than once.
func (r *Runner) holdLease(ctx context.Context, lease larder.Lease) (context.Context, func()) {
	runCtx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		every := max(lease.TTL/3, time.Millisecond)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-runCtx.Done():
				return
			case <-t.C:
			}
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), every)
			err := r.store.RenewLease(rctx, lease)
			rcancel()
			switch {
			case errors.Is(err, larder.ErrLeaseLost):
				r.log.Warn("the run lost its lease; stopping it", "view", lease.View, "token", lease.Token, "err", err)
				cancel(fmt.Errorf("view %s: %w", lease.View, larder.ErrLeaseLost))
				return
			case err != nil:
				r.log.Warn("renewing a run lease failed; retrying", "view", lease.View, "err", err)
			}
		}
	}()
	var once sync.Once
	return runCtx, func() {
		once.Do(func() {
			close(done)
			<-stopped
			cancel(nil)
		})
	}
}

// release gives lease up, on a context of its own: a run that was
// interrupted releases its lease too.
func (r *Runner) release(lease larder.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if err := r.store.ReleaseLease(ctx, lease); err != nil {
		r.log.Warn("releasing a run lease failed; it lapses by itself", "view", lease.View, "err", err)
	}
}

// recordTimeout bounds the recording of a run and the release of its lease,
// which happen even when the run's context has ended.
const recordTimeout = 5 * time.Second

// runRecord returns the record of a run of v that ended with rep and err.
// parent is the context the run was started with: when it ended, the run
// was cancelled rather than failed.
func (r *Runner) runRecord(v *larder.View, req RunRequest, asOf time.Time, rep Report, err error, parent context.Context) larder.Run {
	run := larder.Run{
		View: v.Name, Kind: v.Kind, State: larder.RunOK,
		Generation: rep.Generation, Incremental: req.Incremental,
		AsOf: asOf, Inputs: rep.Inputs, Trigger: req.Trigger, Tick: req.Tick, Job: req.Job,
		Owner: r.opts.Owner, StartedAt: rep.StartedAt, Duration: rep.Duration,
		RowsRead: rep.RowsRead, EntitiesWritten: rep.EntitiesWritten, Skipped: rep.Skipped, Nulled: rep.Nulled,
	}
	if run.StartedAt.IsZero() {
		run.StartedAt = r.now()
	}
	if run.Duration <= 0 {
		run.Duration = max(0, r.now().Sub(run.StartedAt))
	}
	if r.opts.PeakRSS != nil {
		run.PeakRSS = r.opts.PeakRSS()
	}
	if err != nil {
		run.State, run.Err = larder.RunFailed, err.Error()
		if parent.Err() != nil {
			run.State = larder.RunCancelled
		}
		if !req.Incremental {
			run.Generation = 0 // discarded
		}
	}
	return run
}

// skippedRun returns the record of a view of req that did not run.
func (r *Runner) skippedRun(v *larder.View, req RunRequest, asOf time.Time, why string) larder.Run {
	now := r.now()
	return larder.Run{
		View: v.Name, Kind: v.Kind, State: larder.RunSkipped, AsOf: asOf,
		Trigger: req.Trigger, Tick: req.Tick, Job: req.Job, Owner: r.opts.Owner,
		StartedAt: now, Err: "skipped: " + strings.TrimPrefix(why, "skipped: "),
	}
}

// record stores run in the run log (a failure to record is logged, never
// returned: it must not fail the run) and calls the Done hook.
func (r *Runner) record(ctx context.Context, v *larder.View, run larder.Run, rep Report) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := r.store.RecordRun(rctx, run); err != nil {
		r.log.Warn("could not record the run; `larder runs` will not show it", "view", v.Name, "err", err)
	}
	if r.opts.Done != nil {
		r.opts.Done(run, rep)
	}
}

// RecordSkippedTick records a schedule tick of v that started no run
// because the view's previous run was still going (holder names it).
func (r *Runner) RecordSkippedTick(ctx context.Context, v *larder.View, tick time.Time, trigger larder.Trigger, holder string) {
	why := "the previous run was still going"
	if holder != "" {
		why += " (" + holder + ")"
	}
	r.record(ctx, v, r.skippedRun(v, RunRequest{Trigger: trigger, Tick: tick}, tick, why), Report{})
}
