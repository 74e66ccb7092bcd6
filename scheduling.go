package larder

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Location returns the zone that the schedule of v is read in: v's
// TimeZone, else the project's TimeZone, else UTC; a nil v gives the
// project's zone. It returns the zones that Validate loaded, and an error
// that says why when the zone does not load (Validate reports that too).
func (p *Project) Location(v *View) (*time.Location, error) {
	name := p.TimeZone
	if v != nil && v.TimeZone != "" {
		name = v.TimeZone
	}
	if loc := p.locations[name]; loc != nil {
		return loc, nil
	}
	loc, msg := loadZone(name)
	if msg != "" {
		return nil, errors.New(msg)
	}
	return loc, nil
}

// SplitScheduleZone splits a cron spec that starts with a time zone, such
// as "CRON_TZ=Europe/Paris 0 3 * * *" or "TZ=Europe/Paris 0 3 * * *" (in
// any case), into the zone and the rest of the spec. ok is false when spec
// does not start with one. Validate refuses such specs: larder reads a
// schedule's zone from TimeZone only, so that one field says it.
func SplitScheduleZone(spec string) (zone, rest string, ok bool) {
	s := strings.TrimSpace(spec)
	key, after, found := strings.Cut(s, "=")
	if !found {
		return "", spec, false
	}
	if k := strings.ToUpper(key); k != "TZ" && k != "CRON_TZ" {
		return "", spec, false
	}
	zone, rest, _ = strings.Cut(after, " ")
	return zone, strings.TrimSpace(rest), true
}

// validateScheduling checks the project's time zone and its scheduler and
// jobs settings, and starts the cache of loaded zones that Location reads.
// A zero setting stands for its default, as SetDefaults fills it.
func (p *Project) validateScheduling(add addFunc) {
	p.locations = make(map[string]*time.Location)
	p.checkZone("timezone", p.TimeZone, add)

	s := p.Scheduler
	switch {
	case s.Lease < 0:
		add("scheduler.lease", "must be positive, got %s: the TTL of a view's run lease, such as 30s", DurationText(s.Lease))
	case s.Lease > 0 && s.Lease < MinLease:
		add("scheduler.lease", "must be at least %s, got %s: a run renews its lease every third of the TTL, and a shorter lease lapses on an ordinary stall", DurationText(MinLease), DurationText(s.Lease))
	}
	if s.ShutdownGrace < 0 {
		add("scheduler.shutdown_grace", "must be positive, got %s: how long a running run may take to finish when its process is stopped, such as 5m", DurationText(s.ShutdownGrace))
	}
	// A negative SweepInterval turns the sweep off.

	j := p.Jobs
	if j.MaxAttempts < 0 || j.MaxAttempts > MaxJobAttempts {
		add("jobs.max_attempts", "must be 1 to %d, got %d: the attempts of a job, the first included, such as 3", MaxJobAttempts, j.MaxAttempts)
	}
	backoff, maxBackoff := cmp.Or(j.Backoff, DefaultJobBackoff), cmp.Or(j.MaxBackoff, DefaultJobMaxBackoff)
	switch {
	case j.Backoff < 0:
		add("jobs.backoff", "must be positive, got %s: the delay before a job's second attempt, such as 10s", DurationText(j.Backoff))
	case j.MaxBackoff < 0:
		add("jobs.max_backoff", "must be positive, got %s: the longest delay between two attempts of a job, such as 10m", DurationText(j.MaxBackoff))
	case maxBackoff < backoff:
		add("jobs.max_backoff", "must be at least backoff (%s), got %s: the delay doubles from backoff with each failed attempt, up to max_backoff; raise max_backoff or lower backoff", DurationText(backoff), DurationText(maxBackoff))
	}
	heartbeat, lapse := cmp.Or(j.Heartbeat, DefaultJobHeartbeat), cmp.Or(j.Lapse, DefaultJobLapse)
	switch {
	case j.Heartbeat < 0:
		add("jobs.heartbeat", "must be positive, got %s: how often a worker proves that it is alive, such as 2s", DurationText(j.Heartbeat))
	case j.Lapse < 0:
		add("jobs.lapse", "must be positive, got %s: how long a running job's worker may go without a heartbeat before another worker takes the job over, such as 10s", DurationText(j.Lapse))
	case lapse < LapseBeats*heartbeat:
		add("jobs.lapse", "must be at least %d heartbeats (%d × %s = %s), got %s, so that a worker that misses a beat or two keeps its job; raise lapse or shorten heartbeat", LapseBeats, LapseBeats, DurationText(heartbeat), DurationText(LapseBeats*heartbeat), DurationText(lapse))
	}
	if j.Retention < 0 {
		add("jobs.retention", "must be positive, got %s: how long finished jobs are kept, such as 7d", DurationText(j.Retention))
	}
}

// validateViewSchedule checks the schedule settings of view v: its time
// zone, which applies to its schedule, a zone written into the schedule,
// and its shards.
func (p *Project) validateViewSchedule(v *View, path string, add addFunc) {
	if zone, rest, ok := SplitScheduleZone(v.Schedule); ok {
		add(path+".schedule", "larder reads a schedule's time zone from timezone, not from the schedule: write timezone: %s and schedule: %q", zone, rest)
	}
	switch {
	case v.TimeZone == "":
	case v.Schedule == "":
		add(path+".timezone", "timezone applies to the schedule, and the view has none; set schedule or remove timezone")
	default:
		p.checkZone(path+".timezone", v.TimeZone, add)
	}
	if v.Shards < 0 || v.Shards > MaxShards {
		add(path+".shards", "must be 0 to %d, got %d: the number of pieces a run of the view is split into on workers (0 and 1 both mean one piece)", MaxShards, v.Shards)
	}
}

// checkZone loads the zone name written at path into the cache, or
// reports why it does not load.
func (p *Project) checkZone(path, name string, add addFunc) {
	if name == "" || p.locations[name] != nil {
		return
	}
	loc, msg := loadZone(name)
	if msg != "" {
		add(path, "%s", msg)
		return
	}
	p.locations[name] = loc
}

// zoneExamples closes the message about a zone that does not load.
const zoneExamples = `an IANA zone name, such as "Europe/Paris", "America/New_York" or "UTC"`

// loadZone loads the zone named name ("" is UTC), or returns why it cannot.
func loadZone(name string) (*time.Location, string) {
	switch name {
	case "":
		return time.UTC, ""
	case "Local":
		// time.LoadLocation takes it, as the zone of the machine: two
		// machines could then read one schedule differently.
		return nil, `"Local" is each machine's own zone, which can differ from one machine to the next: name the zone (` + zoneExamples + ")"
	}
	loc, err := time.LoadLocation(name)
	if err == nil {
		return loc, ""
	}
	if _, err := time.LoadLocation("Europe/Paris"); err != nil {
		return nil, fmt.Sprintf("cannot load time zone %q: no time zone database was found; install one (the tzdata package), or import time/tzdata in the program", name)
	}
	msg := fmt.Sprintf("unknown time zone %q", name)
	if hint := zoneHint(name); hint != "" && hint != name {
		msg += fmt.Sprintf("; did you mean %q?", hint)
	}
	return nil, msg + " (" + zoneExamples + ")"
}

// zoneHint returns the zone that name likely means, or "": name with the
// case of its parts mended and spaces made underscores ("europe/paris",
// "America/New York"), or one of a few much-used zones that name writes
// loosely or names the city of ("NewYork", "paris").
func zoneHint(name string) string {
	if mended := mendZone(name); mended != name {
		if _, err := time.LoadLocation(mended); err == nil {
			return mended
		}
	}
	loose := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", " ", "", "-", "").Replace(s))
	}
	for _, z := range []string{
		"Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Madrid", "Europe/Rome", "Europe/Amsterdam",
		"America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Sao_Paulo",
		"Asia/Tokyo", "Asia/Shanghai", "Asia/Kolkata", "Asia/Singapore", "Australia/Sydney",
	} {
		_, city, _ := strings.Cut(z, "/")
		if n := loose(name); n == loose(z) || n == loose(city) {
			return z
		}
	}
	return ""
}

// mendZone writes name the way zone names are written: a name without a
// slash in capitals ("utc"), otherwise each word of each part capitalized,
// with underscores between words ("america/new york").
func mendZone(name string) string {
	name = strings.TrimSpace(name)
	if !strings.Contains(name, "/") {
		return strings.ToUpper(name)
	}
	b := []byte(strings.ToLower(strings.ReplaceAll(name, " ", "_")))
	for i, c := range b {
		if (i == 0 || b[i-1] == '/' || b[i-1] == '_' || b[i-1] == '-') && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// DurationText writes d the way larder.yaml writes durations, for
// messages: 7d, 36h, 5m, 1h30m, 500ms.
func DurationText(d time.Duration) string {
	const day = 24 * time.Hour
	if d != 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// AgeText prints how old something is the way an operator reads it, to its
// largest two units: 45s, 12m, 3h20m, 2d4h. A negative age is 0s.
func AgeText(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) % 60; m != 0 {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	}
	days := int(d.Hours()) / 24
	if h := int(d.Hours()) % 24; h != 0 {
		return fmt.Sprintf("%dd%dh", days, h)
	}
	return fmt.Sprintf("%dd", days)
}
