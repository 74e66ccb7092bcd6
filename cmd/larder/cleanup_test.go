package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/store"
)

// TestCleanup replaces a generation and lets its grace period end, leaves a
// generation abandoned by a run whose lease lapsed, and checks that cleanup
// --dry-run lists both and deletes nothing, that cleanup deletes them, and
// that the abandoned run is recorded.
func TestCleanup(t *testing.T) {
	p := newTinyProject(t)
	ctx := t.Context()
	client := p.redis.Client()
	dbsize := func() int64 {
		t.Helper()
		n, err := client.DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	r := p.larder(t, t0, "cleanup")
	if r.code != 0 || r.stdout != "nothing to delete\n" || r.stderr != "" {
		t.Errorf("cleanup of an empty store: exit %d, stdout %q, stderr %q; want 0, \"nothing to delete\"", r.code, r.stdout, r.stderr)
	}

	// Generation 1 of user_profile is replaced at t0+1h and may be deleted
	// after the default grace period of 10 minutes.
	mustSucceed(t, p.larder(t, t0, "materialize", "user_profile", "item_profile"), "materialize")
	mustSucceed(t, p.larder(t, t0.Add(time.Hour), "materialize", "user_profile"), "materialize again")

	t.Run("grace period not over", func(t *testing.T) {
		before := dbsize()
		r := p.larder(t, t0.Add(time.Hour+5*time.Minute), "cleanup")
		if r.code != 0 || r.stdout != "nothing to delete\n" {
			t.Errorf("cleanup within the grace period: exit %d, stdout %q, stderr %q; want nothing to delete", r.code, r.stdout, r.stderr)
		}
		if after := dbsize(); after != before {
			t.Errorf("DBSIZE went from %d to %d", before, after)
		}
	})

	// A run of item_profile begins generation 2 and is killed: its write
	// lease lapses (deleted here rather than waited for), and it never
	// publishes nor aborts.
	project, err := config.Load(p.config)
	if err != nil {
		t.Fatal(err)
	}
	began := t0.Add(90 * time.Minute)
	st := store.New(client, project.Name, store.Options{Now: func() time.Time { return began }})
	w, err := st.BeginSized(ctx, project.View("item_profile"), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Abort(t.Context()) }) // stops its goroutines
	if w.ID() != 2 {
		t.Fatalf("the killed run began generation %d, want 2", w.ID())
	}
	lease := "larder:tiny:{item_profile}:wl:2"
	if n, err := client.Del(ctx, lease).Result(); err != nil || n != 1 {
		t.Fatalf("delete the write lease %s: %d deleted, %v", lease, n, err)
	}
	meta := "larder:tiny:{item_profile}:g:2"

	later := t0.Add(2 * time.Hour)
	wantRows := []*regexp.Regexp{
		regexp.MustCompile(`^VIEW +GENERATION +REASON +STATE +STARTED +BUCKETS$`),
		regexp.MustCompile(`^item_profile +2 +abandoned +writing +2025-06-01T13:30:00Z +1$`),
		regexp.MustCompile(`^user_profile +1 +expired +retired +2025-06-01T12:00:00Z +1$`),
	}
	checkLines := func(t *testing.T, out string, want []*regexp.Regexp, summary string) {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(want)+1 {
			t.Fatalf("printed %d lines, want %d:\n%s", len(lines), len(want)+1, out)
		}
		for i, re := range want {
			if !re.MatchString(lines[i]) {
				t.Errorf("line %d:\n%s\nwant it to match %s", i, lines[i], re)
			}
		}
		if got := lines[len(lines)-1]; got != summary {
			t.Errorf("summary:\n%s\nwant:\n%s", got, summary)
		}
	}

	t.Run("dry run", func(t *testing.T) {
		before := dbsize()
		r := p.larder(t, later, "cleanup", "--dry-run")
		mustSucceed(t, r, "cleanup --dry-run")
		checkLines(t, r.stdout, wantRows, "dry run: 2 generations would be deleted: 1 expired, 1 abandoned (nothing was deleted)")
		if after := dbsize(); after != before {
			t.Errorf("a dry run changed DBSIZE from %d to %d", before, after)
		}
		if n := client.Exists(ctx, meta).Val(); n != 1 {
			t.Errorf("a dry run deleted %s", meta)
		}
		if out := mustOutput(t, p.larder(t, later, "runs", "item_profile")); strings.Contains(out, "abandoned") {
			t.Errorf("a dry run recorded the abandoned run:\n%s", out)
		}
	})

	t.Run("one view", func(t *testing.T) {
		r := p.larder(t, later, "cleanup", "--dry-run", "--view", "user_profile")
		mustSucceed(t, r, "cleanup --dry-run --view user_profile")
		checkLines(t, r.stdout, []*regexp.Regexp{wantRows[0], wantRows[2]}, "dry run: 1 generation would be deleted: 1 expired (nothing was deleted)")
	})

	t.Run("cleanup", func(t *testing.T) {
		before := dbsize()
		r := p.larder(t, later, "cleanup")
		mustSucceed(t, r, "cleanup")
		checkLines(t, r.stdout, wantRows, "2 generations deleted: 1 expired, 1 abandoned")
		// Generation 1 of user_profile: its bucket and metadata; generation
		// 2 of item_profile: its metadata (nothing was flushed) and the
		// push floor it held, the last of its view.
		if after := dbsize(); after != before-4 {
			t.Errorf("DBSIZE went from %d to %d, want 4 keys fewer", before, after)
		}
		for _, k := range []string{meta, "larder:tiny:{user_profile}:g:1"} {
			if client.Exists(ctx, k).Val() != 0 {
				t.Errorf("%s is still there", k)
			}
		}
		gens, err := st.Generations(ctx, "user_profile")
		if err != nil {
			t.Fatal(err)
		}
		if len(gens) != 1 || gens[0].ID != 2 || !gens[0].Live {
			t.Errorf("user_profile generations after cleanup: %+v, want only the live generation 2", gens)
		}

		if r := p.larder(t, later, "cleanup"); r.code != 0 || r.stdout != "nothing to delete\n" {
			t.Errorf("second cleanup: exit %d, stdout %q, stderr %q; want nothing to delete", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("runs shows the abandoned run", func(t *testing.T) {
		out := mustOutput(t, p.larder(t, later, "runs", "--full", "item_profile"))
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		want := regexp.MustCompile(`^item_profile +latest +2 +abandoned +2025-06-01T13:30:00Z +30m0s +2025-06-01T13:30:00Z +- +0 +0 +0 +- +- +the run \(.*\) stopped renewing its lease while it wrote generation 2: it was killed, or lost Redis; its generation was deleted$`)
		if len(lines) != 3 || !want.MatchString(lines[1]) {
			t.Errorf("runs item_profile:\n%s\nwant the abandoned run first, matching %s", out, want)
		}
	})
}

// TestCleanupErrors checks that cleanup fails with exit code 1 and a message
// that says what to do.
func TestCleanupErrors(t *testing.T) {
	p := newTinyProject(t)
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"unknown view", []string{"--redis", p.redis.Addr, "-c", p.config, "cleanup", "--view", "nope"},
			"larder: --view: unknown view \"nope\" (see `larder views`)\n"},
		{"an argument", []string{"--redis", p.redis.Addr, "-c", p.config, "cleanup", "user_profile"},
			"larder: unknown command \"user_profile\" for \"larder cleanup\"\n"},
		{"embedded", []string{"-c", p.config, "cleanup"},
			"larder: larder cleanup reads a Redis server, but the project uses the embedded store, which lives only inside `larder serve` or `larder demo`: pass --redis ADDR (those commands print it) or set redis.addresses\n"},
		{"no redis", []string{"--redis", "127.0.0.1:1", "-c", p.config, "cleanup"},
			""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), t0, tc.args...)
			if tc.stderr == "" {
				if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "larder: redis [127.0.0.1:1]: ") {
					t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and the connection error", r.code, r.stdout, r.stderr)
				}
				return
			}
			if r.code != 1 || r.stdout != "" || r.stderr != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, nothing on stdout, stderr:\n%s", r.code, r.stdout, r.stderr, tc.stderr)
			}
		})
	}
}
