package scheduler

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a view's cron schedule read in a time zone: the instants
// (ticks) at which the view is due.
//
// Five-field specs and descriptors (@hourly, @daily, ...) are read in the
// zone, so "0 3 * * *" in Europe/Paris is 03:00 Paris time, whatever the
// season. An "@every D" schedule ticks at the multiples of D since the Unix
// epoch, so that every scheduler agrees on its ticks whenever it started;
// its zone does not matter. Times before 1970 are not supported.
type Schedule struct {
	spec  string
	loc   *time.Location
	cron  cron.Schedule
	every time.Duration
}

// Parse reads spec (a five-field cron spec or a descriptor, as robfig/cron's
// ParseStandard reads it) in loc (UTC when nil).
func Parse(spec string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	c, err := cron.ParseStandard(spec)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", spec, err)
	}
	s := Schedule{spec: spec, loc: loc, cron: c}
	switch c := c.(type) {
	case cron.ConstantDelaySchedule:
		s.every = c.Delay
	case *cron.SpecSchedule:
		c.Location = loc
	}
	return s, nil
}

// String returns the spec as written.
func (s Schedule) String() string { return s.spec }

// Location returns the zone the schedule is read in.
func (s Schedule) Location() *time.Location { return s.loc }

// Next returns the first tick strictly after t.
func (s Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		d := s.every.Nanoseconds()
		return time.Unix(0, (t.UnixNano()/d+1)*d).In(t.Location())
	}
	return s.cron.Next(t)
}

// Prev returns the last tick at or before t, or the zero time when there is
// none in the five years before t.
func (s Schedule) Prev(t time.Time) time.Time {
	if s.every > 0 {
		d := s.every.Nanoseconds()
		return time.Unix(0, t.UnixNano()/d*d).In(t.Location())
	}
	// Search back in widening windows, then walk forward to the last tick
	// at or before t: a handful of Next calls for any usual schedule.
	for _, back := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 367 * 24 * time.Hour} {
		tick := s.cron.Next(t.Add(-back))
		if tick.IsZero() || tick.After(t) {
			continue
		}
		for {
			next := s.cron.Next(tick)
			if next.IsZero() || next.After(t) {
				return tick
			}
			tick = next
		}
	}
	return time.Time{}
}

// Period returns the time from tick to the tick after it.
func (s Schedule) Period(tick time.Time) time.Duration {
	if s.every > 0 {
		return s.every
	}
	next := s.cron.Next(tick)
	if next.IsZero() {
		return 0
	}
	return next.Sub(tick)
}
