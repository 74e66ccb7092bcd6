package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/larder-dev/larder/redistest"
)

// fromViewProject is a project whose candidates view ranks the users of a
// latest view per country, written first so that only the dependency order
// makes it run last.
const fromViewProject = `project: tinyc
entities:
  - {name: user, key: user_id, type: int64}
  - {name: country, key: country_code, type: string}
sources:
  - {name: users, path: data/users.parquet, event_time: updated_at}
views:
  - name: top_users_by_country
    kind: candidates
    entity: country
    candidates: {entity: user, from_view: user_ctr, score: ctr, context: user_profile:country, top_k: 2}
  - name: user_profile
    kind: latest
    entity: user
    source: users
    max_age: 24h
    features:
      - {name: country, type: string, column: country_code}
  - name: user_ctr
    kind: latest
    entity: user
    source: users
    features: [{name: ctr, type: float32}]
`

// TestMaterializeCandidatesFromView runs `larder materialize` over every
// view of a project with a view-fed candidates view, then `larder views`.
// The candidates view runs after the views it reads, in the order of its
// dependencies (from_view, then the context's view).
func TestMaterializeCandidatesFromView(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "larder.yaml")
	if err := os.WriteFile(config, []byte(fromViewProject), 0o644); err != nil {
		t.Fatal(err)
	}
	writeParquet(t, filepath.Join(dir, "data", "users.parquet"), tinyUsers())
	srv := redistest.Start(t)
	run := func(args ...string) result {
		return larderAt(t, t.Context(), t0, append([]string{"--redis", srv.Addr, "-c", config}, args...)...)
	}

	r := run("materialize")
	mustSucceed(t, r, "larder materialize")
	var order []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		name, _, _ := strings.Cut(line, ":")
		order = append(order, name)
	}
	if got, want := strings.Join(order, " "), "user_ctr user_profile top_users_by_country"; got != want {
		t.Errorf("views ran in the order %q, want %q:\n%s", got, want, r.stdout)
	}
	// Users 1, 3, 12 and 120 are ranked in their countries; user 2's
	// profile is 30 hours old, stale for its max age of 24h.
	if !strings.Contains(r.stdout, "top_users_by_country: generation 1 published: 5 rows read from user_ctr@1,user_profile@1, 4 entities written, 1 (1 stale context) skipped") {
		t.Errorf("the candidates view's summary is not as expected:\n%s", r.stdout)
	}

	r = run("views")
	mustSucceed(t, r, "larder views")
	if !regexp.MustCompile(`(?m)^top_users_by_country\s+candidates\s+country\s+2\s+1\s+4\s`).MatchString(r.stdout) {
		t.Errorf("larder views does not list top_users_by_country with generation 1 and 4 rows:\n%s", r.stdout)
	}
}
