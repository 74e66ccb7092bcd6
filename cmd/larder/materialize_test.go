package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder/materializer"
)

// badUserRow is a users file whose age column holds strings, which cannot
// feed user_profile's int64 age.
type badUserRow struct {
	UserID      int64     `parquet:"user_id"`
	UpdatedAt   time.Time `parquet:"updated_at,timestamp(millisecond)"`
	Age         string    `parquet:"age"`
	CountryCode string    `parquet:"country_code"`
	Premium     bool      `parquet:"premium"`
	Score       float64   `parquet:"score"`
	CTR         float32   `parquet:"ctr"`
}

func TestMaterialize(t *testing.T) {
	p := newTinyProject(t)

	t.Run("summary", func(t *testing.T) {
		r := p.larder(t, t0, "materialize")
		got := mustOutput(t, r)
		want := []string{
			"user_profile: generation 1 published: 10 rows read from 1 file(s), 5 entities written, 4 (1 null event time, 1 null key, 2 after run time) skipped, 0.00s, 0 rows/s",
			"item_profile: generation 1 published: 4 rows read from 2 file(s), 3 entities written, 0 skipped, 0.00s, 0 rows/s",
			"user_country: generation 1 published: 10 rows read from 1 file(s), 5 entities written, 4 (1 null event time, 1 null key, 2 after run time) skipped, 0.00s, 0 rows/s",
		}
		if got != strings.Join(want, "\n")+"\n" {
			t.Errorf("stdout:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
		}
	})

	t.Run("unknown view", func(t *testing.T) {
		r := p.larder(t, t0, "materialize", "user_profile", "unknown_view")
		if r.code != 1 || r.stdout != "" {
			t.Errorf("exit code %d, stdout %q: want 1 and nothing (no view runs when one name is wrong)", r.code, r.stdout)
		}
		if want := "larder: unknown view \"unknown_view\" (views: user_profile, item_profile, user_country)\n"; r.stderr != want {
			t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
		}
	})

	t.Run("wrong column type keeps the live generation", func(t *testing.T) {
		before := mustOutput(t, p.larder(t, t0, "get", "--json", "user_profile", "1"))
		if !strings.Contains(before, `"generation":1,`) || !strings.Contains(before, `"age":31`) {
			t.Fatalf("before the failed run: %s", before)
		}
		users := filepath.Join(p.dir, "data", "users.parquet")
		writeParquet(t, users, []badUserRow{{UserID: 1, UpdatedAt: t0.Add(-time.Minute), Age: "thirty-two", CountryCode: "FR"}})

		// item_profile runs first and publishes; user_profile then fails.
		r := p.larder(t, t0.Add(time.Hour), "materialize", "item_profile", "user_profile")
		if r.code != 1 {
			t.Errorf("exit code %d, want 1", r.code)
		}
		if want := "item_profile: generation 2 published: 4 rows read from 2 file(s), 3 entities written, 0 skipped, 0.00s, 0 rows/s\n"; r.stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
		}
		// The reason is the materializer's; the command must print it once,
		// on one line, with the file and the column, and say what still serves.
		prefix := "larder: materialize user_profile: source file " + users + `: column "age"`
		suffix := "fix the source or the type in larder.yaml (the live generation, if any, still serves)\n"
		if !strings.HasPrefix(r.stderr, prefix) || !strings.HasSuffix(r.stderr, suffix) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("stderr:\n%s\nwant one line starting with %q and ending with %q", r.stderr, prefix, suffix)
		}

		after := mustOutput(t, p.larder(t, t0.Add(time.Hour), "get", "--json", "user_profile", "1"))
		if after != before {
			t.Errorf("after the failed run, get prints\n%s\nwant what it printed before:\n%s", after, before)
		}
		views := mustOutput(t, p.larder(t, t0.Add(time.Hour), "views"))
		// VIEW KIND ENTITY FEATURES GENERATION ROWS ...
		if f := strings.Fields(strings.Split(views, "\n")[1]); f[0] != "user_profile" || f[4] != "1" || f[5] != "5" {
			t.Errorf("views after the failed run:\n%s\nwant user_profile at generation 1 with 5 rows", views)
		}
	})
}

// TestProgressRateWaits checks that a bar shows no rate, nor time left,
// over the first moments of a phase, when a first batch reported as the bar
// appears would make the rate absurd, then the phase's rate since its first
// report once minRateTime has passed, and starts over with the next phase.
func TestProgressRateWaits(t *testing.T) {
	var out bytes.Buffer
	clock := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	p := newProgress(&out, "export")
	p.terminal, p.now = true, func() time.Time { return clock }
	start := clock
	steps := []struct {
		at   time.Duration // since the first report
		pr   materializer.Progress
		want string
	}{
		{0, materializer.Progress{Phase: materializer.PhaseExporting, RowsRead: 200_000, RowsTotal: 1_000_000}, "export: exporting"},
		{3 * time.Millisecond, materializer.Progress{Phase: materializer.PhaseExporting, RowsRead: 400_000, RowsTotal: 1_000_000}, "export: exporting"},
		{2 * time.Second, materializer.Progress{Phase: materializer.PhaseExporting, RowsRead: 700_000, RowsTotal: 1_000_000}, "export: exporting, 250000 rows/s, 1s left"},
		{10 * time.Second, materializer.Progress{Phase: materializer.PhaseWriting, EntitiesWritten: 50, EntitiesTotal: 100}, "export: writing"},
		{10*time.Second + 500*time.Millisecond, materializer.Progress{Phase: materializer.PhaseWriting, EntitiesWritten: 60, EntitiesTotal: 100}, "export: writing"},
		{12 * time.Second, materializer.Progress{Phase: materializer.PhaseWriting, EntitiesWritten: 90, EntitiesTotal: 100}, "export: writing, 20 entities/s, 1s left"},
	}
	for _, s := range steps {
		clock = start.Add(s.at)
		// Past the bar's throttle, so that it draws each step.
		time.Sleep(110 * time.Millisecond)
		p.update(s.pr)
		if got := p.bar.State().Description; got != s.want {
			t.Errorf("at %v: description %q, want %q", s.at, got, s.want)
		}
		if !strings.Contains(s.want, "/s") && strings.Contains(p.bar.String(), "/s") {
			t.Errorf("at %v: the bar shows a rate: %q", s.at, p.bar.String())
		}
	}
	p.done()
}
