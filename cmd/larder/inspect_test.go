package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestInspectGolden materializes the tiny project into a real redis-server
// and compares what views, get and keys print with testdata/*.golden.
func TestInspectGolden(t *testing.T) {
	p := newTinyProject(t)
	checkGolden(t, "views_empty", mustOutput(t, p.larder(t, t0, "views")))

	// user_profile twice: generation 1 stays as a retired generation (the
	// stopped clock never ends its grace period) next to the live 2.
	checkGolden(t, "materialize", mustOutput(t, p.larder(t, t0, "materialize", "user_profile", "item_profile")))
	mustOutput(t, p.larder(t, t0, "materialize", "user_profile"))

	tests := []struct {
		name string
		now  time.Time
		args []string
	}{
		{"views", t0.Add(90 * time.Minute), []string{"views"}},
		{"views_stale", t0.Add(25 * time.Hour), []string{"views"}},
		{"get_user", t0, []string{"get", "user_profile", "1", "2", "3", "12", "120", "999"}},
		{"get_user_json", t0, []string{"get", "--json", "user_profile", "1", "2", "3", "999"}},
		{"get_item", t0, []string{"get", "item_profile", "A-100", "B-200", "C-300", "Z-999"}},
		{"get_item_json", t0, []string{"get", "--json", "item_profile", "A-100", "B-200", "C-300", "Z-999"}},
		{"keys_view", t0, []string{"keys", "--view", "user_profile"}},
		{"keys_match", t0, []string{"keys", "--match", "1*"}},
		{"keys_match_view", t0, []string{"keys", "--view", "item_profile", "--match", "[AC]-*"}},
		// Exactly as many rows as the limit: nothing was left out.
		{"keys_limit_exact", t0, []string{"keys", "--view", "item_profile", "--limit", "3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := p.larder(t, tc.now, tc.args...)
			checkGolden(t, tc.name, mustOutput(t, r))
		})
	}

	t.Run("keys_limit", func(t *testing.T) {
		// Which rows a limited scan finds depends on the order of SCAN, so
		// compare with the full listing instead of a golden file.
		all := strings.Split(mustOutput(t, p.larder(t, t0, "keys")), "\n")
		r := p.larder(t, t0, "keys", "--limit", "4")
		if r.code != 0 {
			t.Fatalf("exit code %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(lines) != 5 {
			t.Fatalf("got %d lines, want a header and 4 rows:\n%s", len(lines), r.stdout)
		}
		// The columns are aligned for the rows shown, so compare fields.
		fields := func(l string) string { return strings.Join(strings.Fields(l), " ") }
		var allRows []string
		for _, l := range all {
			allRows = append(allRows, fields(l))
		}
		for _, l := range lines[1:] {
			if !slices.Contains(allRows, fields(l)) {
				t.Errorf("row %q is not in the full listing:\n%s", l, strings.Join(all, "\n"))
			}
		}
		if want := "(more rows match: stopped at --limit 4)\n"; r.stderr != want {
			t.Errorf("stderr = %q, want %q", r.stderr, want)
		}
	})
}

// mustOutput returns the standard output of a run that must succeed with
// nothing on its standard error.
func mustOutput(tb testing.TB, r result) string {
	tb.Helper()
	mustSucceed(tb, r, "larder")
	if r.stderr != "" {
		tb.Errorf("unexpected stderr:\n%s", r.stderr)
	}
	return r.stdout
}

// TestInspectErrors checks that the inspection commands fail with exit code 1
// and a message that says what to do.
func TestInspectErrors(t *testing.T) {
	p := newTinyProject(t)
	mustOutput(t, p.larder(t, t0, "materialize", "user_profile"))

	// The same project with user_profile's age retyped: the live generation
	// no longer matches the definition.
	yaml, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(p.dir, "changed.yaml")
	retyped := strings.Replace(string(yaml), "{name: age, type: int64}", "{name: age, type: float64}", 1)
	if err := os.WriteFile(changed, []byte(retyped), 0o644); err != nil {
		t.Fatal(err)
	}

	redis := slices.Clip([]string{"--redis", p.redis.Addr, "-c", p.config})
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"get unknown view", append(redis, "get", "nope", "1"),
			"larder: unknown view \"nope\" (see `larder views`)\n"},
		{"get bad key", append(redis, "get", "user_profile", "abc"),
			"larder: view user_profile is keyed by user_id: key \"abc\" is not an int64\n"},
		{"get without key", append(redis, "get", "user_profile"),
			"larder: get needs a view and at least one entity key, such as `larder get user_profile 42` (`larder views` lists the views)\n"},
		{"get never materialized", append(redis, "get", "user_country", "1"),
			"larder: view user_country has no published generation in Redis " + p.redis.Addr + ": run `larder materialize user_country` first\n"},
		{"get schema changed", []string{"--redis", p.redis.Addr, "-c", changed, "get", "user_profile", "1"},
			"larder: store: view user_profile: generation 1 has schema 5fc78c3384ddb5f8, the view's definition has 79b0969953fcb62b: the view's definition differs from the one its live generation was written with: materialize the view with this larder.yaml, or run this process with the larder.yaml that wrote the generation\n"},
		{"get embedded", []string{"-c", p.config, "get", "user_profile", "1"},
			"larder: larder get reads a Redis server, but the project uses the embedded store, which lives only inside `larder serve` or `larder demo`: pass --redis ADDR (those commands print it) or set redis.addresses\n"},
		{"keys unknown view", append(redis, "keys", "--view", "nope"),
			"larder: unknown view \"nope\" (see `larder views`)\n"},
		{"keys negative limit", append(redis, "keys", "--limit", "-1"),
			"larder: --limit must be 0 (no limit) or more\n"},
		{"views without redis", []string{"--redis", "127.0.0.1:1", "-c", p.config, "views"},
			""},
		{"views missing config", []string{"--redis", p.redis.Addr, "-c", filepath.Join(p.dir, "missing.yaml"), "views"},
			""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), t0, tc.args...)
			if r.code != 1 {
				t.Errorf("exit code %d, want 1", r.code)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if tc.stderr != "" && r.stderr != tc.stderr {
				t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, tc.stderr)
			}
			if tc.stderr == "" {
				t.Logf("stderr: %s", r.stderr)
			}
		})
	}
}
