package larder_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
)

func TestSchedulingDefaults(t *testing.T) {
	p := validProject()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	wantScheduler := larder.Scheduler{Lease: 30 * time.Second, ShutdownGrace: 5 * time.Minute, SweepInterval: time.Minute}
	if p.Scheduler != wantScheduler || !p.Scheduler.Sweeps() {
		t.Errorf("Scheduler = %+v, want %+v", p.Scheduler, wantScheduler)
	}
	wantJobs := larder.Jobs{MaxAttempts: 3, Backoff: 10 * time.Second, MaxBackoff: 10 * time.Minute,
		Heartbeat: 2 * time.Second, Lapse: 10 * time.Second, Retention: 7 * 24 * time.Hour}
	if p.Jobs != wantJobs {
		t.Errorf("Jobs = %+v, want %+v", p.Jobs, wantJobs)
	}

	// NoSweep survives SetDefaults; explicit settings are kept.
	p = &larder.Project{Scheduler: larder.Scheduler{SweepInterval: larder.NoSweep, Lease: 2 * time.Second}, Jobs: larder.Jobs{MaxAttempts: 1}}
	p.SetDefaults()
	if p.Scheduler.SweepInterval != larder.NoSweep || p.Scheduler.Sweeps() || p.Scheduler.Lease != 2*time.Second || p.Jobs.MaxAttempts != 1 {
		t.Errorf("after SetDefaults: %+v, %+v", p.Scheduler, p.Jobs)
	}
}

func TestLocation(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	p := validProject()
	p.Views[0].Schedule, p.Views[0].TimeZone = "0 3 * * *", "America/New_York"
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		project string
		view    *larder.View
		want    string
	}{
		{"nothing set", "", p.Views[1], "UTC"},
		{"no view", "", nil, "UTC"},
		{"the project's zone", "Europe/Paris", p.Views[1], "Europe/Paris"},
		{"the project's zone, no view", "Europe/Paris", nil, "Europe/Paris"},
		{"the view's zone wins", "Europe/Paris", p.Views[0], "America/New_York"},
		{"the view's zone alone", "", p.Views[0], "America/New_York"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.TimeZone = tc.project
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			loc, err := p.Location(tc.view)
			if err != nil || loc.String() != tc.want {
				t.Errorf("Location = %v, %v; want %s", loc, err, tc.want)
			}
		})
	}
	// Validate loads each zone once; Location hands out the loaded zone.
	p.TimeZone = "Europe/Paris"
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	a, _ := p.Location(nil)
	b, _ := p.Location(p.Views[1])
	if a != b || a.String() != paris.String() {
		t.Errorf("Location gives %p and %p for one zone, want the same loaded zone", a, b)
	}

	// Before Validate, or for a zone changed since, Location loads it.
	q := validProject()
	q.TimeZone = "Asia/Tokyo"
	if loc, err := q.Location(nil); err != nil || loc.String() != "Asia/Tokyo" {
		t.Errorf("Location before Validate = %v, %v; want Asia/Tokyo", loc, err)
	}
	q.TimeZone = "Mars/Olympus_Mons"
	if _, err := q.Location(nil); err == nil || !strings.Contains(err.Error(), `unknown time zone "Mars/Olympus_Mons"`) {
		t.Errorf("Location of an unknown zone: error %v", err)
	}
}

func TestValidateScheduling(t *testing.T) {
	if _, err := time.LoadLocation("Europe/Paris"); err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(p *larder.Project)
		paths []string
		msg   string
	}{
		{"unknown zone", func(p *larder.Project) { p.TimeZone = "Europe/Pariss" }, []string{"timezone"},
			`unknown time zone "Europe/Pariss" (an IANA zone name, such as "Europe/Paris", "America/New_York" or "UTC")`},
		{"zone in lower case", func(p *larder.Project) { p.TimeZone = "europe/paris" }, []string{"timezone"},
			`unknown time zone "europe/paris"; did you mean "Europe/Paris"?`},
		{"zone with a space", func(p *larder.Project) { p.TimeZone = "America/New York" }, []string{"timezone"},
			`did you mean "America/New_York"?`},
		{"a city", func(p *larder.Project) { p.TimeZone = "Los Angeles" }, []string{"timezone"},
			`did you mean "America/Los_Angeles"?`},
		{"utc in lower case", func(p *larder.Project) { p.TimeZone = "utc" }, []string{"timezone"},
			`did you mean "UTC"?`},
		{"Local", func(p *larder.Project) { p.TimeZone = "Local" }, []string{"timezone"},
			`"Local" is each machine's own zone`},
		{"view zone", func(p *larder.Project) { p.Views[0].Schedule, p.Views[0].TimeZone = "@daily", "Paris" }, []string{"views[0].timezone"},
			`did you mean "Europe/Paris"?`},
		{"view zone without a schedule", func(p *larder.Project) { p.Views[1].TimeZone = "Europe/Paris" }, []string{"views[1].timezone"},
			"timezone applies to the schedule, and the view has none; set schedule or remove timezone"},
		{"CRON_TZ in the schedule", func(p *larder.Project) { p.Views[0].Schedule = "CRON_TZ=Europe/Paris 0 3 * * *" }, []string{"views[0].schedule"},
			`write timezone: Europe/Paris and schedule: "0 3 * * *"`},
		{"TZ in the schedule", func(p *larder.Project) { p.Views[0].Schedule = "TZ=Asia/Tokyo @daily" }, []string{"views[0].schedule"},
			`write timezone: Asia/Tokyo and schedule: "@daily"`},
		{"negative shards", func(p *larder.Project) { p.Views[0].Shards = -1 }, []string{"views[0].shards"}, "must be 0 to 256, got -1"},
		{"too many shards", func(p *larder.Project) { p.Views[1].Shards = 257 }, []string{"views[1].shards"}, "must be 0 to 256, got 257"},
		{"short lease", func(p *larder.Project) { p.Scheduler.Lease = 500 * time.Millisecond }, []string{"scheduler.lease"}, "must be at least 1s, got 500ms"},
		{"negative lease", func(p *larder.Project) { p.Scheduler.Lease = -time.Second }, []string{"scheduler.lease"}, "must be positive, got -1s"},
		{"negative shutdown grace", func(p *larder.Project) { p.Scheduler.ShutdownGrace = -90 * time.Minute }, []string{"scheduler.shutdown_grace"}, "must be positive, got -1h30m"},
		{"no attempts", func(p *larder.Project) { p.Jobs.MaxAttempts = -1 }, []string{"jobs.max_attempts"}, "must be 1 to 100, got -1"},
		{"too many attempts", func(p *larder.Project) { p.Jobs.MaxAttempts = 101 }, []string{"jobs.max_attempts"}, "must be 1 to 100, got 101"},
		{"negative backoff", func(p *larder.Project) { p.Jobs.Backoff = -time.Second }, []string{"jobs.backoff"}, "must be positive"},
		{"max_backoff below backoff", func(p *larder.Project) { p.Jobs.Backoff = time.Hour }, []string{"jobs.max_backoff"},
			"must be at least backoff (1h), got 10m"},
		{"negative heartbeat", func(p *larder.Project) { p.Jobs.Heartbeat = -time.Second }, []string{"jobs.heartbeat"}, "must be positive"},
		{"lapse below three heartbeats", func(p *larder.Project) { p.Jobs.Heartbeat = 4 * time.Second }, []string{"jobs.lapse"},
			"must be at least 3 heartbeats (3 × 4s = 12s), got 10s"},
		{"negative retention", func(p *larder.Project) { p.Jobs.Retention = -7 * 24 * time.Hour }, []string{"jobs.retention"}, "must be positive, got -7d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validProject()
			tt.edit(p)
			err := p.Validate()
			var ve *larder.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want a *ValidationError", err)
			}
			var paths []string
			for _, fe := range ve.Errs {
				paths = append(paths, fe.Path)
			}
			if strings.Join(paths, " ") != strings.Join(tt.paths, " ") {
				t.Errorf("paths = %q, want %q (%v)", paths, tt.paths, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

// TestValidateSchedulingAccepts checks settings at the edges of the rules,
// and that Validate takes a zero setting for its default, as SetDefaults
// fills it.
func TestValidateSchedulingAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *larder.Project)
	}{
		{"UTC", func(p *larder.Project) { p.TimeZone = "UTC" }},
		{"shortest lease", func(p *larder.Project) { p.Scheduler.Lease = time.Second }},
		{"no sweep", func(p *larder.Project) { p.Scheduler.SweepInterval = larder.NoSweep }},
		{"one attempt", func(p *larder.Project) { p.Jobs.MaxAttempts = 1 }},
		{"most attempts", func(p *larder.Project) { p.Jobs.MaxAttempts = 100 }},
		{"max_backoff is backoff", func(p *larder.Project) { p.Jobs.Backoff, p.Jobs.MaxBackoff = time.Minute, time.Minute }},
		{"lapse is three heartbeats", func(p *larder.Project) { p.Jobs.Heartbeat, p.Jobs.Lapse = 5*time.Second, 15*time.Second }},
		{"most shards", func(p *larder.Project) { p.Views[0].Shards = 256 }},
		{"shards on a view without a schedule", func(p *larder.Project) { p.Views[1].Shards = 8 }},
		{"every two seconds", func(p *larder.Project) { p.Views[0].Schedule = "@every 2s" }},
		{"zeros stand for the defaults", func(p *larder.Project) {
			p.Scheduler, p.Jobs = larder.Scheduler{}, larder.Jobs{Heartbeat: 3 * time.Second}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := validProject()
			tc.edit(p)
			if err := p.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestSplitScheduleZone(t *testing.T) {
	for _, tc := range []struct {
		spec, zone, rest string
		ok               bool
	}{
		{"CRON_TZ=Europe/Paris 0 3 * * *", "Europe/Paris", "0 3 * * *", true},
		{"TZ=UTC @hourly", "UTC", "@hourly", true},
		{" cron_tz=Asia/Tokyo  @daily", "Asia/Tokyo", "@daily", true},
		{"TZ=UTC", "UTC", "", true},
		{"0 3 * * *", "", "0 3 * * *", false},
		{"@every 2s", "", "@every 2s", false},
		{"X=1 0 3 * * *", "", "X=1 0 3 * * *", false},
	} {
		zone, rest, ok := larder.SplitScheduleZone(tc.spec)
		if zone != tc.zone || rest != tc.rest || ok != tc.ok {
			t.Errorf("SplitScheduleZone(%q) = %q, %q, %v; want %q, %q, %v", tc.spec, zone, rest, ok, tc.zone, tc.rest, tc.ok)
		}
	}
}
