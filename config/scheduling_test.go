package config_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// scheduled sets every scheduling field: the project's time zone, the
// scheduler and jobs settings, and a time zone and shards on views of
// every kind. The bad cases below edit one line of it; the expected line
// numbers are its line numbers.
const scheduled = `project: shop
timezone: Europe/Paris
scheduler:
  lease: 45s
  shutdown_grace: 2m
  sweep_interval: 5m
  workers: true
jobs:
  max_attempts: 5
  backoff: 30s
  max_backoff: 1h
  heartbeat: 1s
  lapse: 5s
  retention: 30d
entities:
  - {name: user, key: user_id, type: int64}
  - {name: item, key: item_id, type: int64}
sources:
  - {name: users, path: users.parquet, event_time: ts}
  - {name: orders, path: orders/, event_time: ts}
  - {name: recs, path: recs.parquet, event_time: ts}
views:
  - name: user_profile
    kind: latest
    entity: user
    source: users
    schedule: "0 3 * * *"
    timezone: America/New_York
    shards: 16
    features:
      - {name: age, type: int64}
  - name: user_orders
    kind: aggregate
    entity: user
    source: orders
    schedule: "@every 2s"
    aggregations:
      - {column: amount, type: float64, functions: [sum], windows: [1d]}
  - name: user_churn
    kind: prediction
    entity: user
    schedule: "@daily"
    timezone: UTC
    shards: 4
    model: churn.onnx
    inputs: [user_profile:age]
    features:
      - {name: churn, type: float32}
  - name: user_recs
    kind: candidates
    entity: user
    source: recs
    shards: 256
    candidates: {entity: item, score: score}
`

// TestParseScheduling reads the project's time zone, the scheduler and
// jobs settings, and the time zone and shards of views.
func TestParseScheduling(t *testing.T) {
	if _, err := time.LoadLocation("Europe/Paris"); err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	p, err := config.Parse("larder.yaml", []byte(scheduled))
	if err != nil {
		t.Fatal(err)
	}
	if p.TimeZone != "Europe/Paris" {
		t.Errorf("TimeZone = %q, want Europe/Paris", p.TimeZone)
	}
	wantScheduler := larder.Scheduler{Lease: 45 * time.Second, ShutdownGrace: 2 * time.Minute, SweepInterval: 5 * time.Minute, Workers: true}
	if p.Scheduler != wantScheduler {
		t.Errorf("Scheduler = %+v, want %+v", p.Scheduler, wantScheduler)
	}
	wantJobs := larder.Jobs{MaxAttempts: 5, Backoff: 30 * time.Second, MaxBackoff: time.Hour,
		Heartbeat: time.Second, Lapse: 5 * time.Second, Retention: 30 * 24 * time.Hour}
	if p.Jobs != wantJobs {
		t.Errorf("Jobs = %+v, want %+v", p.Jobs, wantJobs)
	}
	for _, w := range []struct {
		view, timeZone, location string
		shards                   int
	}{
		{"user_profile", "America/New_York", "America/New_York", 16},
		{"user_orders", "", "Europe/Paris", 0},
		{"user_churn", "UTC", "UTC", 4},
		{"user_recs", "", "Europe/Paris", 256},
	} {
		v := p.View(w.view)
		loc, err := p.Location(v)
		if v.TimeZone != w.timeZone || v.Shards != w.shards || err != nil || loc.String() != w.location {
			t.Errorf("view %s: timezone %q, shards %d, location %v (%v); want %q, %d, %s",
				w.view, v.TimeZone, v.Shards, loc, err, w.timeZone, w.shards, w.location)
		}
	}
}

func TestParseSchedulingDefaults(t *testing.T) {
	wantScheduler := larder.Scheduler{Lease: larder.DefaultLease, ShutdownGrace: larder.DefaultShutdownGrace, SweepInterval: larder.DefaultSweepInterval}
	wantJobs := larder.Jobs{MaxAttempts: larder.DefaultJobAttempts, Backoff: larder.DefaultJobBackoff, MaxBackoff: larder.DefaultJobMaxBackoff,
		Heartbeat: larder.DefaultJobHeartbeat, Lapse: larder.DefaultJobLapse, Retention: larder.DefaultJobRetention}
	for _, tc := range []struct {
		name, src string
	}{
		{"left out", base},
		{"empty mappings", edit(t, base, 7, "  max_entities: 500", "  max_entities: 500\nscheduler: {}\njobs: {}")},
		{"null mappings and values", edit(t, base, 7, "  max_entities: 500", "  max_entities: 500\ntimezone:\nscheduler:\njobs:\n  backoff:\n  max_attempts:")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := config.Parse("larder.yaml", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if p.Scheduler != wantScheduler || !p.Scheduler.Sweeps() {
				t.Errorf("Scheduler = %+v, want %+v", p.Scheduler, wantScheduler)
			}
			if p.Jobs != wantJobs {
				t.Errorf("Jobs = %+v, want %+v", p.Jobs, wantJobs)
			}
			if p.TimeZone != "" {
				t.Errorf("TimeZone = %q, want empty", p.TimeZone)
			}
			for _, v := range p.Views {
				loc, err := p.Location(v)
				if v.TimeZone != "" || v.Shards != 0 || err != nil || loc != time.UTC {
					t.Errorf("view %s: timezone %q, shards %d, location %v (%v); want none, 0, UTC", v.Name, v.TimeZone, v.Shards, loc, err)
				}
			}
		})
	}
}

// TestParseSweepOff checks that a zero sweep_interval, and only a zero
// written out, turns the sweep off.
func TestParseSweepOff(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  time.Duration
	}{
		{"0s", larder.NoSweep},
		{"0", larder.NoSweep},
		{"0d", larder.NoSweep},
		{"", larder.DefaultSweepInterval},
		{"90s", 90 * time.Second},
	} {
		t.Run(tc.value, func(t *testing.T) {
			src := edit(t, scheduled, 6, "  sweep_interval: 5m", "  sweep_interval: "+tc.value)
			src = edit(t, src, 2, "timezone: Europe/Paris", "timezone: UTC")
			p, err := config.Parse("larder.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if p.Scheduler.SweepInterval != tc.want || p.Scheduler.Sweeps() != (tc.want > 0) {
				t.Errorf("SweepInterval = %s, Sweeps() = %v; want %s", p.Scheduler.SweepInterval, p.Scheduler.Sweeps(), tc.want)
			}
		})
	}
}

func TestParseSchedulingBad(t *testing.T) {
	if _, err := time.LoadLocation("Europe/Paris"); err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	const (
		zoneNames   = `(an IANA zone name, such as "Europe/Paris", "America/New_York" or "UTC")`
		schedFields = "(fields here: lease, shutdown_grace, sweep_interval, workers)"
		jobsFields  = "(fields here: max_attempts, backoff, max_backoff, heartbeat, lapse, retention)"
	)
	type change struct {
		line     int
		old, new string
	}
	tests := []struct {
		name    string
		changes []change

		wantLine, wantColumn int
		wantField            string
		wantMsg              string
	}{
		// The project's time zone.
		{"unknown zone", []change{{2, "timezone: Europe/Paris", "timezone: Europe/Pariss"}},
			2, 11, "timezone", `unknown time zone "Europe/Pariss" ` + zoneNames},
		{"zone in lower case", []change{{2, "timezone: Europe/Paris", "timezone: europe/paris"}},
			2, 11, "timezone", `unknown time zone "europe/paris"; did you mean "Europe/Paris"? ` + zoneNames},
		{"a city for a zone", []change{{2, "timezone: Europe/Paris", "timezone: New York"}},
			2, 11, "timezone", `unknown time zone "New York"; did you mean "America/New_York"?`},
		{"the machine's zone", []change{{2, "timezone: Europe/Paris", "timezone: Local"}},
			2, 11, "timezone", `"Local" is each machine's own zone, which can differ from one machine to the next: name the zone`},
		{"zone misspelt as a field", []change{{2, "timezone: Europe/Paris", "time_zone: Europe/Paris"}},
			2, 1, "time_zone", `unknown field "time_zone"; did you mean "timezone"?`},

		// scheduler.
		{"short lease", []change{{4, "  lease: 45s", "  lease: 500ms"}},
			4, 10, "scheduler.lease", "must be at least 1s, got 500ms: a run renews its lease every third of the TTL"},
		{"zero lease", []change{{4, "  lease: 45s", "  lease: 0s"}},
			4, 10, "scheduler.lease", "must be positive, got 0s; leave lease out for the default, 30s"},
		{"negative lease", []change{{4, "  lease: 45s", "  lease: -45s"}},
			4, 10, "scheduler.lease", "must be positive, got -45s: the TTL of a view's run lease, such as 30s"},
		{"bad lease", []change{{4, "  lease: 45s", "  lease: long"}},
			4, 10, "scheduler.lease", `invalid duration "long": write a number and a unit`},
		{"zero shutdown grace", []change{{5, "  shutdown_grace: 2m", "  shutdown_grace: 0"}},
			5, 19, "scheduler.shutdown_grace", "must be positive, got 0; leave shutdown_grace out for the default, 5m"},
		{"negative shutdown grace", []change{{5, "  shutdown_grace: 2m", "  shutdown_grace: -2m"}},
			5, 19, "scheduler.shutdown_grace", "must be positive, got -2m: how long a running run may take to finish"},
		{"negative sweep interval", []change{{6, "  sweep_interval: 5m", "  sweep_interval: -5m"}},
			6, 19, "scheduler.sweep_interval", "must not be negative: how often expired and abandoned generations are deleted, such as 1m; 0s turns the sweep off"},
		{"workers not a boolean", []change{{7, "  workers: true", "  workers: sometimes"}},
			7, 12, "scheduler.workers", `want true or false; got "sometimes"`},
		{"unknown scheduler field", []change{{4, "  lease: 45s", "  leese: 45s"}},
			4, 3, "scheduler.leese", `unknown field "leese"; did you mean "lease"? ` + schedFields},
		{"scheduler not a mapping", []change{{3, "scheduler:", "scheduler: fast\nx-old:"}},
			3, 12, "scheduler", `want a mapping of lease, shutdown_grace, sweep_interval, workers; got "fast"`},

		// jobs.
		{"zero attempts", []change{{9, "  max_attempts: 5", "  max_attempts: 0"}},
			9, 17, "jobs.max_attempts", "must be 1 to 100, got 0: the attempts of a job, the first included; leave max_attempts out for the default, 3"},
		{"too many attempts", []change{{9, "  max_attempts: 5", "  max_attempts: 101"}},
			9, 17, "jobs.max_attempts", "must be 1 to 100, got 101"},
		{"negative attempts", []change{{9, "  max_attempts: 5", "  max_attempts: -1"}},
			9, 17, "jobs.max_attempts", "must be 1 to 100, got -1"},
		{"attempts not a number", []change{{9, "  max_attempts: 5", "  max_attempts: three"}},
			9, 17, "jobs.max_attempts", `want a whole number; got "three"`},
		{"zero backoff", []change{{10, "  backoff: 30s", "  backoff: 0s"}},
			10, 12, "jobs.backoff", "must be positive, got 0s; leave backoff out for the default, 10s"},
		{"backoff above max_backoff", []change{{10, "  backoff: 30s", "  backoff: 2h"}},
			11, 16, "jobs.max_backoff", "must be at least backoff (2h), got 1h: the delay doubles from backoff with each failed attempt, up to max_backoff; raise max_backoff or lower backoff"},
		{"max_backoff below backoff", []change{{11, "  max_backoff: 1h", "  max_backoff: 10s"}},
			11, 16, "jobs.max_backoff", "must be at least backoff (30s), got 10s"},
		{"max_backoff below the default backoff", []change{{10, "  backoff: 30s", ""}, {11, "  max_backoff: 1h", "  max_backoff: 5s"}},
			11, 16, "jobs.max_backoff", "must be at least backoff (10s), got 5s"},
		// A setting that cannot be decoded is not compared with another.
		{"bad backoff", []change{{10, "  backoff: 30s", "  backoff: 2x"}, {11, "  max_backoff: 1h", "  max_backoff: 5s"}},
			10, 12, "jobs.backoff", `invalid duration "2x"`},
		{"zero heartbeat", []change{{12, "  heartbeat: 1s", "  heartbeat: 0s"}},
			12, 14, "jobs.heartbeat", "must be positive, got 0s; leave heartbeat out for the default, 2s"},
		{"lapse below three heartbeats", []change{{13, "  lapse: 5s", "  lapse: 2s"}},
			13, 10, "jobs.lapse", "must be at least 3 heartbeats (3 × 1s = 3s), got 2s, so that a worker that misses a beat or two keeps its job; raise lapse or shorten heartbeat"},
		{"heartbeat too long for the lapse", []change{{12, "  heartbeat: 1s", "  heartbeat: 2s"}},
			13, 10, "jobs.lapse", "must be at least 3 heartbeats (3 × 2s = 6s), got 5s"},
		// The default lapse is not written: the problem is placed at the
		// jobs mapping.
		{"heartbeat too long for the default lapse", []change{{12, "  heartbeat: 1s", "  heartbeat: 4s"}, {13, "  lapse: 5s", "  # lapse: the default"}},
			9, 3, "jobs.lapse", "must be at least 3 heartbeats (3 × 4s = 12s), got 10s"},
		{"zero retention", []change{{14, "  retention: 30d", "  retention: 0d"}},
			14, 14, "jobs.retention", "must be positive, got 0d; leave retention out for the default, 7d"},
		{"negative retention", []change{{14, "  retention: 30d", "  retention: -30d"}},
			14, 14, "jobs.retention", "must be positive, got -30d: how long finished jobs are kept, such as 7d"},
		{"unknown jobs field", []change{{9, "  max_attempts: 5", "  max_attempt: 5"}},
			9, 3, "jobs.max_attempt", `unknown field "max_attempt"; did you mean "max_attempts"? ` + jobsFields},
		{"jobs not a mapping", []change{{8, "jobs:", "jobs: [a]\nx-old:"}},
			8, 7, "jobs", "want a mapping of max_attempts, backoff, max_backoff, heartbeat, lapse, retention; got a list"},

		// Views.
		{"unknown view zone", []change{{28, "    timezone: America/New_York", "    timezone: America/New_Yrok"}},
			28, 15, "views[0].timezone", `unknown time zone "America/New_Yrok" ` + zoneNames},
		{"view zone in lower case", []change{{43, "    timezone: UTC", "    timezone: utc"}},
			43, 15, "views[2].timezone", `unknown time zone "utc"; did you mean "UTC"?`},
		{"view zone without a schedule", []change{{27, `    schedule: "0 3 * * *"`, "    # no schedule"}},
			28, 15, "views[0].timezone", "timezone applies to the schedule, and the view has none; set schedule or remove timezone"},
		{"CRON_TZ in the schedule", []change{{27, `    schedule: "0 3 * * *"`, `    schedule: "CRON_TZ=Asia/Tokyo 0 3 * * *"`}},
			27, 15, "views[0].schedule", `larder reads a schedule's time zone from timezone, not from the schedule: write timezone: Asia/Tokyo and schedule: "0 3 * * *"`},
		{"TZ in the schedule", []change{{36, `    schedule: "@every 2s"`, `    schedule: "TZ=UTC @every 2s"`}},
			36, 15, "views[1].schedule", `write timezone: UTC and schedule: "@every 2s"`},
		// A bad spec after the zone is reported as such, once.
		{"TZ and a bad spec", []change{{27, `    schedule: "0 3 * * *"`, `    schedule: "TZ=UTC 0 25 * * *"`}},
			27, 15, "views[0].schedule", `invalid schedule "TZ=UTC 0 25 * * *": end of range (25) above maximum (23)`},
		{"too many shards", []change{{29, "    shards: 16", "    shards: 257"}},
			29, 13, "views[0].shards", "must be 0 to 256, got 257: the number of pieces a run of the view is split into on workers"},
		{"negative shards", []change{{44, "    shards: 4", "    shards: -4"}},
			44, 13, "views[2].shards", "must be 0 to 256, got -4"},
		{"shards not a number", []change{{53, "    shards: 256", "    shards: all"}},
			53, 13, "views[3].shards", `want a whole number; got "all"`},
		{"misspelt view zone", []change{{28, "    timezone: America/New_York", "    timezon: America/New_York"}},
			28, 5, "views[0].timezon", `unknown field "timezon"; did you mean "timezone"? (fields of a latest view: name, kind, entity, source, description, max_age, schedule, timezone, shards, max_value_bytes, non_finite, oversize, features)`},
		{"misspelt shards", []change{{44, "    shards: 4", "    shard: 4"}},
			44, 5, "views[2].shard", `unknown field "shard"; did you mean "shards"? (fields of a prediction view:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := scheduled
			for _, c := range tt.changes {
				src = edit(t, src, c.line, c.old, c.new)
			}
			_, err := config.Parse("larder.yaml", []byte(src))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Errorf("%d problems, want one:\n%v", len(ps), err)
			}
			if !slices.ContainsFunc(ps, func(p config.Problem) bool {
				return p.File == "larder.yaml" && p.Line == tt.wantLine && p.Column == tt.wantColumn && p.Field == tt.wantField && strings.Contains(p.Msg, tt.wantMsg)
			}) {
				t.Errorf("no problem at %d:%d, field %q, saying %q; got:\n%v", tt.wantLine, tt.wantColumn, tt.wantField, tt.wantMsg, err)
			}
			prefix := "larder.yaml:" + strconv.Itoa(tt.wantLine) + ":" + strconv.Itoa(tt.wantColumn) + ": " + tt.wantField + ": "
			if !strings.Contains(err.Error(), prefix) {
				t.Errorf("message does not start with %q:\n%v", prefix, err)
			}
		})
	}
}
