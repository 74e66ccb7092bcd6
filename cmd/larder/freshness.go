package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
	"github.com/larder-dev/larder/scheduler"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// freshnessRuns is how many of a view's newest run records are read to find
// its last success and its last failure: one short LRANGE per view, however
// long the history kept (store.RunHistory).
const freshnessRuns = 50

// freshness tells what is known of the views' runs besides their live
// generations: the last run that succeeded and the last that failed, from
// the run records in the store, and when each scheduled view is due, from
// its schedule. ListViews (through viewFreshness), `larder views` and the
// freshness gauges share it.
type freshness struct {
	p   *larder.Project
	st  *store.Store
	now func() time.Time
	// schedules holds the schedule of every scheduled view, read in its
	// zone once.
	schedules map[*larder.View]scheduler.Schedule

	// lags holds the lag of every stream of the project as last read, and
	// lagsRead when (by the wall clock), so that the views of one call
	// share one read (streamLags).
	lagMu    sync.Mutex
	lags     map[*larder.Stream]larder.StreamLag
	lagsRead time.Time
}

// newFreshness returns the freshness of p's views over st, with now as the
// clock. A schedule that does not parse (Project.Validate refuses it) is
// left out: the view then has no next run.
func newFreshness(p *larder.Project, st *store.Store, now func() time.Time) *freshness {
	f := &freshness{p: p, st: st, now: now, schedules: map[*larder.View]scheduler.Schedule{}}
	if f.now == nil {
		f.now = time.Now
	}
	for _, v := range p.Views {
		if v.Schedule == "" {
			continue
		}
		if s, err := scheduler.ViewSchedule(p, v); err == nil {
			f.schedules[v] = s
		}
	}
	return f
}

// viewFreshness returns the hook that tells ListViews what is known of a
// view's runs (server.Config.Freshness): its last success and last failure
// among its newest run records, its next scheduled run, the zone its
// schedule is read in, and its shards. It costs one read of the run records
// per view, and the live generation from st's cache. It returns an error
// wrapping larder.ErrUnavailable or ctx.Err() when Redis cannot be read.
func viewFreshness(p *larder.Project, st *store.Store, now func() time.Time) server.FreshnessFunc {
	f := newFreshness(p, st, now)
	return func(ctx context.Context, v *larder.View) (larder.ViewFreshness, error) {
		live, err := st.Live(ctx, v)
		if err != nil && !errors.Is(err, larder.ErrNoGeneration) {
			return larder.ViewFreshness{}, err
		}
		return f.view(ctx, v, live, f.now())
	}
}

// view returns the freshness of v at now; live is v's live generation (ID 0
// when it has none).
//
// LastSuccess is the newest run that published or wrote its generation
// (larder.RunOK). When the records read hold none, or only runs of an older
// generation than the live one, it is the run that published the live
// generation, rebuilt from the generation's metadata: that run succeeded,
// even when its record is gone (past freshnessRuns failures since, or a
// record that could not be written).
//
// LastFailure is the newest run that failed (larder.RunFailed) or was
// abandoned by its process (larder.RunAbandoned), whether or not a success
// came after it. A cancelled run was stopped on purpose (a cancelled job, a
// shutdown) and a skipped tick started no run: neither is a failure, nor a
// success.
//
// NextRun and TimeZone are set for scheduled views only; TimeZone is the
// zone in effect (the view's, else the project's, else "UTC").
func (f *freshness) view(ctx context.Context, v *larder.View, live larder.Generation, now time.Time) (larder.ViewFreshness, error) {
	runs, err := f.st.Runs(ctx, v.Name, freshnessRuns)
	if err != nil {
		return larder.ViewFreshness{}, fmt.Errorf("view %s: %w", v.Name, err)
	}
	out := larder.ViewFreshness{Shards: v.Shards}
	out.LastSuccess, out.LastFailure = lastRuns(runs)
	if live.ID != 0 && (out.LastSuccess == nil || out.LastSuccess.Generation < live.ID) {
		out.LastSuccess = publishingRun(v, live)
	}
	if s, ok := f.schedules[v]; ok {
		out.NextRun = s.Next(now)
		out.TimeZone = s.Location().String()
	}
	var lags map[*larder.Stream]larder.StreamLag
	for _, s := range f.p.Streams {
		if s.View == v.Name {
			if lags == nil {
				lags = f.streamLags(ctx, now)
			}
			out.Streams = append(out.Streams, lags[s])
		}
	}
	return out, nil
}

// lagReuse is how long the lags read for one view answer for the others.
const lagReuse = time.Second

// streamLags returns the lag of every stream of the project, each read
// within streamLag's timeout, all at once: a transport that does not
// answer costs a ListViews, a `larder views` or a scrape of the gauges one
// timeout, not one per stream and view in turn, which would outlast their
// deadlines. A read less than lagReuse old answers again, unless its
// context ended while it read.
func (f *freshness) streamLags(ctx context.Context, now time.Time) map[*larder.Stream]larder.StreamLag {
	f.lagMu.Lock()
	defer f.lagMu.Unlock()
	if f.lags != nil && time.Since(f.lagsRead) < lagReuse {
		return f.lags
	}
	lags := make([]larder.StreamLag, len(f.p.Streams))
	var wg sync.WaitGroup
	for i, s := range f.p.Streams {
		wg.Go(func() { lags[i] = streamLag(ctx, f.st, s, now) })
	}
	wg.Wait()
	out := make(map[*larder.Stream]larder.StreamLag, len(lags))
	for i, s := range f.p.Streams {
		out[s] = lags[i]
	}
	// Lags read under a context that ended say only that: they are the
	// caller's, not the next one's.
	if ctx.Err() == nil {
		f.lags, f.lagsRead = out, time.Now()
	}
	return out
}

// streamLag returns how far the consumers of s are behind it, at now;
// within 2 seconds, or with the reason it is not known.
func streamLag(ctx context.Context, st *store.Store, s *larder.Stream, now time.Time) larder.StreamLag {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var lag ingest.Lag
	var err error
	if s.Transport() == "kafka" {
		lag, err = ingest.KafkaLag(ctx, s, now)
	} else {
		lag, err = ingest.RedisLag(ctx, st.Client(), s, now)
	}
	out := larder.StreamLag{Stream: s.Name, Source: s.Source()}
	if err != nil {
		out.Err = err.Error()
		return out
	}
	out.Entries, out.Pending, out.Seconds = lag.Entries, lag.Pending, lag.Seconds
	return out
}

// due returns the newest tick of v's schedule at or before now: when its
// latest scheduled run was due. ok is false for a view without a schedule,
// or with no tick in the five years before now.
func (f *freshness) due(v *larder.View, now time.Time) (time.Time, bool) {
	s, ok := f.schedules[v]
	if !ok {
		return time.Time{}, false
	}
	t := s.Prev(now)
	return t, !t.IsZero()
}

// lastRuns returns, of runs (newest first), the newest that succeeded and
// the newest that failed or was abandoned; nil when there is none.
func lastRuns(runs []larder.Run) (success, failure *larder.Run) {
	for i := range runs {
		switch runs[i].Result() {
		case larder.RunOK:
			if success == nil {
				success = &runs[i]
			}
		case larder.RunFailed, larder.RunAbandoned:
			if failure == nil {
				failure = &runs[i]
			}
		}
		if success != nil && failure != nil {
			break
		}
	}
	return success, failure
}

// publishingRun rebuilds the run that published generation g of v from
// the generation's metadata.
func publishingRun(v *larder.View, g larder.Generation) *larder.Run {
	r := &larder.Run{
		View: v.Name, Kind: v.Kind, State: larder.RunOK, Generation: g.ID,
		AsOf: g.AsOf, Inputs: g.Inputs, Trigger: g.Trigger, Job: g.Job,
		StartedAt: g.StartedAt, EntitiesWritten: g.Rows,
	}
	switch {
	case r.StartedAt.IsZero():
		r.StartedAt = g.PublishedAt
	case g.PublishedAt.After(g.StartedAt):
		r.Duration = g.PublishedAt.Sub(g.StartedAt)
	}
	return r
}

// finishedAt returns when run r ended.
func finishedAt(r *larder.Run) time.Time { return r.StartedAt.Add(r.Duration) }

// failing reports whether f's last failure came after its last success:
// the view's latest run that ended either way failed.
func failing(f larder.ViewFreshness) bool {
	return f.LastFailure != nil && (f.LastSuccess == nil || finishedAt(f.LastFailure).After(finishedAt(f.LastSuccess)))
}
