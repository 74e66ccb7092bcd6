package config

import (
	"time"

	"github.com/larder-dev/larder"
)

// The scheduler and jobs settings take their defaults when left out: the
// decoder leaves them zero and Project.SetDefaults fills them. A zero
// written out would read as left out, so it is a problem here, except for
// scheduler.sweep_interval, where 0s turns the sweep off. Project.Validate
// checks the rest of their rules.

// scheduler decodes the scheduler settings into s.
func (d *decoder) scheduler(n node, s *larder.Scheduler) {
	for _, f := range d.fields(n, "lease", "shutdown_grace", "sweep_interval", "workers") {
		switch f.key {
		case "lease":
			s.Lease = d.setting(f, larder.DefaultLease)
		case "shutdown_grace":
			s.ShutdownGrace = d.setting(f, larder.DefaultShutdownGrace)
		case "sweep_interval":
			s.SweepInterval = d.duration(f)
			switch {
			case d.isBad(f.path), isNull(f.val):
			case s.SweepInterval == 0:
				s.SweepInterval = larder.NoSweep
			case s.SweepInterval < 0:
				d.problem(f, "must not be negative: how often expired and abandoned generations are deleted, such as 1m; 0s turns the sweep off")
			}
		case "workers":
			s.Workers = d.boolean(f)
		}
	}
}

// jobs decodes the job queue settings into j.
func (d *decoder) jobs(n node, j *larder.Jobs) {
	for _, f := range d.fields(n, "max_attempts", "backoff", "max_backoff", "heartbeat", "lapse", "retention") {
		switch f.key {
		case "max_attempts":
			j.MaxAttempts = d.integer(f)
			if j.MaxAttempts == 0 && !isNull(f.val) && !d.isBad(f.path) {
				d.problem(f, "must be 1 to %d, got 0: the attempts of a job, the first included; leave max_attempts out for the default, %d", larder.MaxJobAttempts, larder.DefaultJobAttempts)
			}
		case "backoff":
			j.Backoff = d.setting(f, larder.DefaultJobBackoff)
		case "max_backoff":
			j.MaxBackoff = d.setting(f, larder.DefaultJobMaxBackoff)
		case "heartbeat":
			j.Heartbeat = d.setting(f, larder.DefaultJobHeartbeat)
		case "lapse":
			j.Lapse = d.setting(f, larder.DefaultJobLapse)
		case "retention":
			j.Retention = d.setting(f, larder.DefaultJobRetention)
		}
	}
}

// setting decodes a duration that takes the default def when left out, and
// reports a zero written out.
func (d *decoder) setting(n node, def time.Duration) time.Duration {
	v := d.duration(n)
	if v == 0 && !isNull(n.val) && !d.isBad(n.path) {
		written, _ := text(n.val)
		d.problem(n, "must be positive, got %s; leave %s out for the default, %s", written, n.key, larder.DurationText(def))
	}
	return v
}

// comparesBad reports whether Project.Validate's problem at path compares
// the setting there with one that could not be decoded (jobs.lapse with
// jobs.heartbeat, jobs.max_backoff with jobs.backoff): Validate compared it
// with the default instead, and the problem is a follow-on.
func (d *decoder) comparesBad(path string) bool {
	switch path {
	case "jobs.lapse":
		return d.isBad("jobs.heartbeat")
	case "jobs.max_backoff":
		return d.isBad("jobs.backoff")
	}
	return false
}
