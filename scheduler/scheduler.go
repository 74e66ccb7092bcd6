// Package scheduler runs the views' cron schedules.
//
// Any number of schedulers may run at once against one store, for
// availability: each tick of a view is claimed in the store
// (larder.ScheduleLog), so that exactly one of them starts its run. A
// scheduler either runs the tick itself, holding the view's run lease that
// it took with the claim, or queues it as a job for workers. A tick that
// comes while the view's previous run is still going waits for that run's
// lease to be released or to lapse, for at most half the schedule's period
// and the lease's time to live; if the run still goes on, the tick is
// recorded as skipped. When a scheduler starts, it catches up the latest
// tick of each view that no scheduler claimed (they were all down), once,
// however many were missed, unless the view's live generation is as of
// that tick or later already.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/larder-dev/larder"
)

// Tick is one due run of a view.
type Tick struct {
	View *larder.View
	// At is the tick's instant: the run is computed as of it.
	At time.Time
	// Trigger is larder.TriggerSchedule, or larder.TriggerCatchUp for a
	// tick missed while no scheduler ran.
	Trigger larder.Trigger
	// Lease is the view's run lease, taken with the claim, for a run the
	// scheduler starts itself: the run renews and releases it.
	Lease larder.Lease
}

// Options configure a Scheduler. Log and one of Run or Enqueue are
// required.
type Options struct {
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Owner names the scheduler in claims and leases.
	Owner string
	// Log records the ticks claimed, shared by every scheduler.
	Log larder.ScheduleLog
	// LeaseTTL is the run lease of a run the scheduler starts itself (and
	// how long a tick waits at most for a busy view's lease); 0 means 30s.
	LeaseTTL time.Duration
	// ShutdownGrace is how long runs in progress may take to finish once
	// Run's context ends; after it, their context is cancelled, and they
	// stop without publishing. 0 means they are cancelled at once.
	ShutdownGrace time.Duration
	// Run runs a tick in this process, on its own goroutine, and returns
	// when the run (and the runs it triggers) ended. Its context is not
	// Run's: it ends ShutdownGrace after Run's does.
	Run func(ctx context.Context, t Tick) error
	// Enqueue, when set, queues a tick's run as a job instead, and returns
	// the job's id; it must be idempotent per tick (a second call for the
	// same view and tick returns the same job). JobActive then tells
	// whether the job of a previous tick is still to finish (queued,
	// running, retrying or waiting).
	Enqueue   func(ctx context.Context, t Tick) (string, error)
	JobActive func(ctx context.Context, id string) (bool, error)
	// Skipped is called when this scheduler records a tick as skipped
	// because the view's previous run was still going; holder names that
	// run when known.
	Skipped func(ctx context.Context, t Tick, holder string)
	// Claimed is called for every tick this scheduler claims, with the
	// outcome of the claim and the delay from the tick's instant to it.
	Claimed func(v *larder.View, outcome larder.TickOutcome, delay time.Duration)
	// LiveAsOf, when set, returns the latest tick a view's live generation
	// covers, its as-of in general (zero when none): a missed tick is not
	// caught up when the live generation covers it already (a run by hand,
	// or at start-up, did).
	LiveAsOf func(ctx context.Context, v *larder.View) (time.Time, error)
}

// Scheduler runs the schedules of a project's views.
type Scheduler struct {
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	views     []*larder.View
	schedules map[*larder.View]Schedule

	runs   sync.WaitGroup
	runCtx context.Context
	cancel context.CancelFunc
}

// busyPoll is how often a busy tick checks whether the view's previous run
// has ended.
const busyPoll = 100 * time.Millisecond

// enqueueAttempts is how many times a tick's job is submitted before the
// tick is given up (Enqueue must be idempotent per tick).
const enqueueAttempts = 3

// New returns a Scheduler of the views of p that have a schedule, read in
// their time zone. It returns an error naming a view whose schedule or
// zone does not parse (Project.Validate has checked them).
func New(p *larder.Project, opts Options) (*Scheduler, error) {
	if opts.Log == nil || (opts.Run == nil && opts.Enqueue == nil) {
		return nil, errors.New("scheduler: Options.Log and one of Options.Run or Options.Enqueue are required")
	}
	if opts.Enqueue != nil && opts.JobActive == nil {
		return nil, errors.New("scheduler: Options.Enqueue needs Options.JobActive")
	}
	s := &Scheduler{opts: opts, log: opts.Logger, now: opts.Now, schedules: map[*larder.View]Schedule{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.opts.LeaseTTL <= 0 {
		s.opts.LeaseTTL = 30 * time.Second
	}
	for _, v := range p.Views {
		if v.Schedule == "" {
			continue
		}
		sched, err := ViewSchedule(p, v)
		if err != nil {
			return nil, err
		}
		s.views = append(s.views, v)
		s.schedules[v] = sched
	}
	return s, nil
}

// ViewSchedule returns the schedule of v, read in its zone (the view's, or
// the project's, or UTC). It returns an error when v has no schedule or
// its schedule or zone does not parse.
func ViewSchedule(p *larder.Project, v *larder.View) (Schedule, error) {
	if v.Schedule == "" {
		return Schedule{}, fmt.Errorf("scheduler: view %s has no schedule", v.Name)
	}
	loc, err := p.Location(v)
	if err != nil {
		return Schedule{}, fmt.Errorf("scheduler: view %s: %w", v.Name, err)
	}
	sched, err := Parse(v.Schedule, loc)
	if err != nil {
		return Schedule{}, fmt.Errorf("scheduler: view %s: %w", v.Name, err)
	}
	return sched, nil
}

// Views returns the scheduled views, in project order.
func (s *Scheduler) Views() []*larder.View { return s.views }

// Next returns the next tick of v after now, or the zero time when v has
// no schedule.
func (s *Scheduler) Next(v *larder.View) time.Time {
	sched, ok := s.schedules[v]
	if !ok {
		return time.Time{}
	}
	return sched.Next(s.now())
}

// Run runs the schedules until ctx ends: it first catches up each view's
// latest missed tick, then claims every tick as it comes. When ctx ends,
// it stops claiming, lets the runs it started finish for at most
// ShutdownGrace, then cancels them and waits for them to stop (a cancelled
// run aborts its generation and releases its lease). It returns nil.
func (s *Scheduler) Run(ctx context.Context) error {
	s.runCtx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer s.cancel()
	var views sync.WaitGroup
	for _, v := range s.views {
		views.Add(1)
		go func() {
			defer views.Done()
			s.loop(ctx, v)
		}()
	}
	views.Wait()

	done := make(chan struct{})
	go func() {
		s.runs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	default:
	}
	if s.opts.ShutdownGrace > 0 {
		s.log.Info("waiting for the runs in progress to finish", "grace", s.opts.ShutdownGrace)
		select {
		case <-done:
			return nil
		case <-time.After(s.opts.ShutdownGrace):
		}
	}
	s.log.Warn("stopping the runs still in progress: they publish nothing")
	s.cancel()
	<-done
	return nil
}

// loop claims the ticks of v until ctx ends.
func (s *Scheduler) loop(ctx context.Context, v *larder.View) {
	sched := s.schedules[v]
	last := time.Time{}
	now := s.now()
	// The latest tick no scheduler claimed is caught up, once.
	if prev := sched.Prev(now); !prev.IsZero() {
		st, err := s.opts.Log.ScheduleState(ctx, v.Name)
		switch {
		case err != nil:
			s.log.Warn("reading the schedule state failed; no tick is caught up", "view", v.Name, "err", err)
		case st.LastTick.Before(prev) && !s.coveredBy(ctx, v, prev):
			s.fire(ctx, v, sched, prev, larder.TriggerCatchUp)
		case s.opts.Enqueue != nil && st.LastTick.Equal(prev) && st.Outcome == larder.TickStarted && st.Job == "":
			// Claimed, but a scheduler may have died before it queued the
			// tick's job: queue it (Enqueue is idempotent per tick).
			s.start(ctx, Tick{View: v, At: prev, Trigger: larder.TriggerSchedule})
		}
		last = prev
	}
	for {
		var next time.Time
		if last.IsZero() {
			next = sched.Next(s.now())
		} else {
			next = sched.Next(last)
		}
		if next.IsZero() {
			return // a schedule with no future tick
		}
		if now := s.now(); !next.After(now) {
			// Late (a busy tick, a slow machine): the tick still runs, now.
			// When more than one tick is due (the process was stopped or
			// suspended), only the latest runs, once.
			if latest := sched.Prev(now); latest.After(next) {
				next = latest
			}
		} else {
			t := time.NewTimer(next.Sub(now))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			// Timers may fire a little early on some systems.
			for s.now().Before(next) {
				time.Sleep(next.Sub(s.now()))
			}
		}
		if ctx.Err() != nil {
			return
		}
		s.fire(ctx, v, sched, next, larder.TriggerSchedule)
		last = next
	}
}

// fire claims tick at of v and, when this scheduler wins it, starts its
// run. A busy tick is tried again until the view's previous run ends, for
// at most half the period and the lease's TTL; then it is recorded as
// skipped.
func (s *Scheduler) fire(ctx context.Context, v *larder.View, sched Schedule, at time.Time, trigger larder.Trigger) {
	wait := s.opts.LeaseTTL
	if p := sched.Period(at); p > 0 {
		wait = min(wait, p/2)
	}
	deadline := maxTime(at, s.now()).Add(wait)
	tick := Tick{View: v, At: at, Trigger: trigger}
	for {
		busy := false
		if s.opts.Enqueue != nil {
			var err error
			if busy, err = s.previousJobActive(ctx, v); err != nil {
				s.log.Warn("checking the previous run's job failed; taking it as ended", "view", v.Name, "err", err)
			}
		}
		opts := larder.ClaimOptions{Owner: s.opts.Owner, Busy: busy, Skip: !s.now().Before(deadline)}
		if s.opts.Enqueue == nil {
			opts.LeaseTTL = s.opts.LeaseTTL
		}
		c, err := s.opts.Log.ClaimTick(ctx, v.Name, at, opts)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("claiming a tick failed; retrying", "view", v.Name, "tick", at, "err", err)
			if !s.sleep(ctx, busyPoll) || !s.now().Before(deadline.Add(wait)) {
				return
			}
			continue
		}
		delay := s.now().Sub(at)
		switch c.Outcome {
		case larder.TickBusy:
			if !s.sleep(ctx, busyPoll) {
				return
			}
			continue
		case larder.TickTaken:
			return
		case larder.TickSkipped:
			s.claimed(v, c.Outcome, delay)
			s.log.Warn("tick skipped: the view's previous run is still going", "view", v.Name, "tick", at, "holder", c.Holder)
			if s.opts.Skipped != nil {
				s.opts.Skipped(ctx, tick, c.Holder)
			}
			return
		}
		s.claimed(v, c.Outcome, delay)
		tick.Lease = c.Lease
		s.start(ctx, tick)
		return
	}
}

// coveredBy reports whether v's live generation is as of tick or later.
func (s *Scheduler) coveredBy(ctx context.Context, v *larder.View, tick time.Time) bool {
	if s.opts.LiveAsOf == nil {
		return false
	}
	asOf, err := s.opts.LiveAsOf(ctx, v)
	if err != nil {
		s.log.Warn("reading the live generation failed; catching the missed tick up", "view", v.Name, "err", err)
		return false
	}
	return !asOf.IsZero() && !asOf.Before(tick)
}

// start runs or queues a claimed tick.
func (s *Scheduler) start(ctx context.Context, t Tick) {
	if s.opts.Enqueue != nil {
		var id string
		var err error
		for attempt := range enqueueAttempts {
			if id, err = s.opts.Enqueue(ctx, t); err == nil || ctx.Err() != nil {
				break
			}
			s.log.Warn("queueing a tick's run failed; retrying", "view", t.View.Name, "tick", t.At, "attempt", attempt+1, "err", err)
			if !s.sleep(ctx, time.Duration(attempt+1)*busyPoll) {
				break
			}
		}
		if err != nil {
			s.log.Error("queueing a tick's run failed; the next tick tries again", "view", t.View.Name, "tick", t.At, "err", err)
			return
		}
		if err := s.opts.Log.SetTickJob(ctx, t.View.Name, t.At, id); err != nil {
			s.log.Warn("recording a tick's job failed", "view", t.View.Name, "tick", t.At, "job", id, "err", err)
		}
		s.log.Info("tick queued", "view", t.View.Name, "tick", t.At, "job", id, "trigger", t.Trigger)
		return
	}
	s.log.Info("tick started", "view", t.View.Name, "tick", t.At, "trigger", t.Trigger, "lease", t.Lease.Token)
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		if err := s.opts.Run(s.runCtx, t); err != nil {
			s.log.Warn("scheduled run failed", "view", t.View.Name, "tick", t.At, "err", err)
		}
	}()
}

// previousJobActive reports whether the job of v's last claimed tick is
// still to finish.
func (s *Scheduler) previousJobActive(ctx context.Context, v *larder.View) (bool, error) {
	st, err := s.opts.Log.ScheduleState(ctx, v.Name)
	if err != nil || st.Job == "" {
		return false, err
	}
	return s.opts.JobActive(ctx, st.Job)
}

func (s *Scheduler) claimed(v *larder.View, outcome larder.TickOutcome, delay time.Duration) {
	if s.opts.Claimed != nil {
		s.opts.Claimed(v, outcome, delay)
	}
}

// sleep waits d, or until ctx ends; it reports whether ctx is still alive.
func (s *Scheduler) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
