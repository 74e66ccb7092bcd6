package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
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
