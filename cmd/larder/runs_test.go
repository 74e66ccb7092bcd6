package main

import (
	"context"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
)

// TestRunsGolden records runs of every shape in the tiny project's Redis and
// compares what runs and views print with testdata/*.golden.
func TestRunsGolden(t *testing.T) {
	p := newTinyProject(t)
	r := p.larder(t, t0, "runs")
	if r.code != 0 || r.stdout != "" || r.stderr != "no run of any view is recorded: `larder materialize` records one\n" {
		t.Errorf("runs before any run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	s := store.New(p.redis.Client(), "tiny", store.Options{})
	for _, run := range []larder.Run{
		{View: "user_profile", Kind: larder.KindLatest, Generation: 1, StartedAt: t0.Add(-26 * time.Hour),
			Duration: 83*time.Minute + 20*time.Second, RowsRead: 10_000_000, EntitiesWritten: 100_000,
			Skipped: map[string]int64{"null key": 3, "after run time": 2}, PeakRSS: 1536 << 20},
		{View: "user_profile", Kind: larder.KindLatest, Generation: 1, Incremental: true, StartedAt: t0.Add(-time.Hour),
			Duration: 250 * time.Millisecond, RowsRead: 5000, EntitiesWritten: 4800, PeakRSS: 48<<20 + 200<<10},
		{View: "item_profile", Kind: larder.KindLatest, StartedAt: t0.Add(-30 * time.Minute),
			Duration: 2*time.Minute + 3400*time.Millisecond, RowsRead: 10,
			Err: `materialize item_profile: source file /data/items/part-0001.parquet: column "price" (the float64 feature "price") is BYTE_ARRAY, want DOUBLE or FLOAT: fix the source or the type in larder.yaml`},
		{View: "user_country", Kind: larder.KindLatest, StartedAt: t0.Add(-10 * time.Minute), Duration: 20 * time.Millisecond,
			PeakRSS: 900, Err: "materialize user_country: context canceled\n(interrupted)"},
		// Records with a state, an as-of, a trigger and what the run read.
		{View: "user_country", Kind: larder.KindLatest, State: larder.RunOK, Generation: 3, AsOf: t0.Add(-8 * time.Minute),
			Inputs:  []larder.InputGeneration{{View: "user_profile", Generation: 1, AsOf: t0.Add(-26 * time.Hour)}, {View: "item_profile", Generation: 2}},
			Trigger: larder.TriggerDependency, Owner: "host-a:41", StartedAt: t0.Add(-8 * time.Minute), Duration: 1500 * time.Millisecond,
			RowsRead: 7, EntitiesWritten: 5, PeakRSS: 64 << 20},
		{View: "item_profile", Kind: larder.KindLatest, State: larder.RunAbandoned, Generation: 4, AsOf: t0.Add(-7 * time.Minute),
			Trigger: larder.TriggerSchedule, Tick: t0.Add(-7 * time.Minute), Job: "20250601T115300.000Z-1a2b3c4d", Shards: 4, Owner: "worker-2:77",
			StartedAt: t0.Add(-7 * time.Minute), Duration: 3 * time.Minute,
			Err: "abandoned: the run (worker-2:77) stopped renewing its lease while it wrote generation 4: it was killed, or lost Redis; its generation was deleted"},
		{View: "user_profile", Kind: larder.KindLatest, State: larder.RunCancelled, AsOf: t0.Add(-6 * time.Minute), Trigger: larder.TriggerJob,
			Job: "20250601T115400.000Z-5e6f7a8b", Owner: "worker-1:12", StartedAt: t0.Add(-6 * time.Minute), Duration: 2 * time.Second,
			Err: "materialize user_profile: context canceled"},
		{View: "user_profile", Kind: larder.KindLatest, State: larder.RunSkipped, AsOf: t0.Add(-5 * time.Minute), Trigger: larder.TriggerSchedule,
			Tick: t0.Add(-5 * time.Minute), Owner: "sched-1:9", StartedAt: t0.Add(-5 * time.Minute),
			Err: "skipped: the previous run (worker-1:12) still holds the view's lease"},
	} {
		if err := s.RecordRun(context.Background(), run); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name string
		args []string
	}{
		{"runs", []string{"runs"}},
		{"runs_view", []string{"runs", "user_profile"}},
		{"runs_limit", []string{"runs", "--limit", "2"}},
		{"runs_full", []string{"runs", "--full", "item_profile"}},
		{"runs_state", []string{"runs", "--state", "failed"}},
		{"runs_state_view", []string{"runs", "--state", "ok", "--limit", "1", "user_profile"}},
		{"runs_wide", []string{"runs", "--wide", "--limit", "5"}},
		{"views_last_run", []string{"views"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden(t, tc.name, mustOutput(t, p.larder(t, t0, tc.args...)))
		})
	}
}

// TestRunsRecorded checks that materialize records every run, successful or
// not, with what the run did, and that a run whose record cannot be written
// still succeeds.
func TestRunsRecorded(t *testing.T) {
	p := newTinyProject(t)
	ctx := context.Background()
	mustOutput(t, p.larder(t, t0, "materialize", "user_profile", "item_profile"))
	writeParquet(t, filepath.Join(p.dir, "data", "users.parquet"), []badUserRow{{UserID: 1, UpdatedAt: t0, Age: "thirty"}})
	if r := p.larder(t, t0.Add(time.Hour), "materialize", "user_profile"); r.code != 1 {
		t.Fatalf("materialize with a bad column: exit %d, want 1", r.code)
	}

	runs, err := store.New(p.redis.Client(), "tiny", store.Options{}).Runs(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 {
		t.Fatalf("%d runs recorded, want 3: %+v", len(runs), runs)
	}
	for _, r := range runs {
		// The process's real peak: a Go program with Parquet and gRPC
		// linked in holds more than a few MiB.
		if r.PeakRSS < 4<<20 || r.PeakRSS > 64<<30 {
			t.Errorf("%s: peak RSS %d bytes, want the process's", r.View, r.PeakRSS)
		}
		r.PeakRSS = 0
	}
	failed, item, user := runs[0], runs[1], runs[2]
	if failed.View != "user_profile" || failed.Generation != 0 || !failed.StartedAt.Equal(t0.Add(time.Hour)) ||
		!strings.HasPrefix(failed.Err, "materialize user_profile: source file ") {
		t.Errorf("failed run = %+v, want user_profile at %v with the materializer's error", failed, t0.Add(time.Hour))
	}
	if item.View != "item_profile" || item.Generation != 1 || item.RowsRead != 4 || item.EntitiesWritten != 3 ||
		len(item.Skipped) != 0 || item.Err != "" || item.Kind != larder.KindLatest {
		t.Errorf("item_profile run = %+v", item)
	}
	wantSkipped := map[string]int64{"null key": 1, "null event time": 1, "after run time": 2}
	if user.View != "user_profile" || user.Generation != 1 || user.RowsRead != 10 || user.EntitiesWritten != 5 ||
		!equalCounts(user.Skipped, wantSkipped) || user.Err != "" || !user.StartedAt.Equal(t0) {
		t.Errorf("user_profile run = %+v, want generation 1, 10 rows, 5 entities, skipped %v", user, wantSkipped)
	}

	t.Run("runs", func(t *testing.T) {
		out := mustOutput(t, p.larder(t, t0.Add(time.Hour), "runs"))
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		want := []*regexp.Regexp{
			regexp.MustCompile(`^VIEW +KIND +GENERATION +STATE +STARTED +DURATION +AS OF +TRIGGER +ROWS +ENTITIES +SKIPPED +PEAK RSS +INPUTS +RESULT$`),
			regexp.MustCompile(`^user_profile +latest +- +failed +2025-06-01T13:00:00Z +0\.00s +2025-06-01T13:00:00Z +manual +0 +0 +0 +[0-9.]+ [MG]iB +- +source file \S+users\.parquet: .*…$`),
			regexp.MustCompile(`^item_profile +latest +1 +ok +2025-06-01T12:00:00Z +0\.00s +2025-06-01T12:00:00Z +manual +4 +3 +0 +[0-9.]+ [MG]iB +- +-$`),
			regexp.MustCompile(`^user_profile +latest +1 +ok +2025-06-01T12:00:00Z +0\.00s +2025-06-01T12:00:00Z +manual +10 +5 +4 +[0-9.]+ [MG]iB +- +-$`),
		}
		if len(lines) != len(want) {
			t.Fatalf("runs printed %d lines, want %d:\n%s", len(lines), len(want), out)
		}
		for i, re := range want {
			if !re.MatchString(lines[i]) {
				t.Errorf("line %d:\n%s\nwant it to match %s", i, lines[i], re)
			}
		}
	})

	t.Run("runs --full", func(t *testing.T) {
		out := mustOutput(t, p.larder(t, t0.Add(time.Hour), "runs", "--full", "--limit", "1", "user_profile"))
		want := regexp.MustCompile(`(?m)^user_profile .* source file \S+users\.parquet: column "age" \(the int64 feature "age"\) is .*: fix the source or the type in larder\.yaml$`)
		if !want.MatchString(out) {
			t.Errorf("runs --full:\n%s\nwant the whole error, matching %s", out, want)
		}
	})

	t.Run("views", func(t *testing.T) {
		out := mustOutput(t, p.larder(t, t0.Add(time.Hour), "views"))
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		at := strings.Index(lines[0], "LAST OK")
		var last []string
		for _, l := range lines[1:] {
			last = append(last, strings.Fields(l)[0]+": "+strings.Join(strings.Fields(l[at:]), " "))
		}
		// The failure's error is shortened to keep the line within 160
		// characters.
		want := []string{"user_profile: 1h ago 0s ago: source file …", "item_profile: 1h ago -", "user_country: - -"}
		if re := regexp.MustCompile(`^(user_profile: 1h ago 0s ago: source file )/\S*(…)$`); len(last) > 0 {
			last[0] = re.ReplaceAllString(last[0], "$1$2")
		}
		if utf8.RuneCountInString(lines[1]) != 160 || !slices.Equal(last, want) {
			t.Errorf("views, last runs:\n%s\ngot  %q\nwant %q", out, last, want)
		}
	})

	t.Run("a run whose record fails still succeeds", func(t *testing.T) {
		// The server refuses LPUSH to the default user: every other command
		// the run needs still works.
		admin := p.redis.Client()
		if err := admin.Do(ctx, "ACL", "SETUSER", "default", "-lpush").Err(); err != nil {
			t.Fatal(err)
		}
		defer admin.Do(ctx, "ACL", "SETUSER", "default", "+lpush")
		r := p.larder(t, t0.Add(2*time.Hour), "materialize", "item_profile")
		mustSucceed(t, r, "materialize")
		if !strings.HasPrefix(r.stdout, "item_profile: generation 2 published") {
			t.Errorf("stdout = %q, want the run's summary", r.stdout)
		}
		if !strings.Contains(r.stderr, "could not record the run") || !strings.Contains(r.stderr, "NOPERM") {
			t.Errorf("stderr = %q, want a warning with the reason", r.stderr)
		}
	})
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRunsErrors checks that runs fails with exit code 1 and a message that
// says what to do.
func TestRunsErrors(t *testing.T) {
	p := newTinyProject(t)
	redis := slices.Clip([]string{"--redis", p.redis.Addr, "-c", p.config})
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"unknown view", append(redis, "runs", "nope"),
			"larder: unknown view \"nope\" (see `larder views`)\n"},
		{"two views", append(redis, "runs", "user_profile", "item_profile"),
			"larder: runs takes at most one view, such as `larder runs user_profile`; got 2 arguments\n"},
		{"negative limit", append(redis, "runs", "--limit", "-1"),
			"larder: --limit must be 0 (every run kept) or more\n"},
		{"embedded", []string{"-c", p.config, "runs"},
			"larder: larder runs reads a Redis server, but the project uses the embedded store, which lives only inside `larder serve` or `larder demo`: pass --redis ADDR (those commands print it) or set redis.addresses\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), t0, tc.args...)
			if r.code != 1 || r.stdout != "" || r.stderr != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, nothing on stdout, stderr:\n%s", r.code, r.stdout, r.stderr, tc.stderr)
			}
		})
	}
}

func TestFormatRunColumns(t *testing.T) {
	durations := []struct {
		d    time.Duration
		want string
	}{
		{0, "0.00s"}, {420 * time.Millisecond, "0.42s"}, {59990 * time.Millisecond, "59.99s"},
		{time.Minute, "1m0s"}, {3*time.Minute + 4600*time.Millisecond, "3m5s"}, {time.Hour + 2*time.Minute + 3*time.Second, "1h2m3s"},
	}
	for _, tc := range durations {
		if got := formatDuration(tc.d); got != tc.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	sizes := []struct {
		n    int64
		want string
	}{
		{0, "-"}, {1, "1 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {512 << 10, "512 KiB"},
		{48<<20 + 200<<10, "48.2 MiB"}, {1536 << 20, "1.5 GiB"}, {3 << 40, "3.0 TiB"}, {5000 << 40, "5000 TiB"},
	}
	for _, tc := range sizes {
		if got := formatBytes(tc.n); got != tc.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
