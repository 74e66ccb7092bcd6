package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
)

// setNonFinite rewrites the tiny project's file with another policy for
// user_profile's non-finite values (user 3's score is NaN); "" leaves it to
// the default.
func (p *tinyProject) setNonFinite(tb testing.TB, policy string) {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "tiny", "larder.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	repl := ""
	if policy != "" {
		repl = "    non_finite: " + policy + "\n"
	}
	const line = "    non_finite: keep\n"
	if !strings.Contains(string(data), line) {
		tb.Fatalf("the tiny project has no line %q", line)
	}
	if err := os.WriteFile(p.config, []byte(strings.Replace(string(data), line, repl, 1)), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// TestMaterializeNulled checks what materialize, get and runs show of a
// value stored as null by the default rules, and what materialize says of
// a value it rejects.
func TestMaterializeNulled(t *testing.T) {
	p := newTinyProject(t)
	p.setNonFinite(t, "")

	r := p.larder(t, t0, "materialize", "user_profile")
	mustSucceed(t, r, "materialize")
	want := "user_profile: generation 1 published: 10 rows read from 1 file(s), 5 entities written, 4 (1 null event time, 1 null key, 2 after run time) skipped, 1 value(s) stored as null (1 non-finite), 0.00s, 0 rows/s\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	// A warning says where to find the value in the data.
	if warn := `level=WARN msg="values stored as null by the view's value rules" view=user_profile reason=non-finite values=1 first_key=3 first_feature=score first_value=NaN`; !strings.Contains(r.stderr, warn) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr:\n%s\nwant one line holding %s", r.stderr, warn)
	}
	if got := mustOutput(t, p.larder(t, t0, "get", "--json", "user_profile", "3")); !strings.Contains(got, `"score":null`) {
		t.Errorf("get user 3:\n%s\nwant its NaN score stored as null", got)
	}
	// The columns are aligned: NULLED's value starts where its header does.
	runs := strings.Split(mustOutput(t, p.larder(t, t0, "runs", "user_profile")), "\n")
	at := strings.Index(runs[0], " NULLED ") + 1
	if at == 0 || len(runs[1]) <= at || strings.Fields(runs[1][at:])[0] != "1" {
		t.Errorf("runs:\n%s\nwant a NULLED column holding 1", strings.Join(runs, "\n"))
	}

	p.setNonFinite(t, "reject")
	r = p.larder(t, t0.Add(time.Hour), "materialize", "user_profile")
	users := filepath.Join(p.dir, "data", "users.parquet")
	wantErr := "larder: materialize user_profile: source file " + users + `, row 3, column "score": user 3's feature "score" is NaN, and the view's non_finite policy is reject: fix the source, or set non_finite to null (to store such values as null) or keep (the live generation, if any, still serves)` + "\n"
	if r.code != 1 || r.stdout != "" || r.stderr != wantErr {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant 1, nothing, and:\n%s", r.code, r.stdout, r.stderr, wantErr)
	}
	if got := mustOutput(t, p.larder(t, t0.Add(time.Hour), "get", "--json", "user_profile", "3")); !strings.Contains(got, `"generation":1,`) {
		t.Errorf("get user 3 after the rejected run:\n%s\nwant generation 1, still live", got)
	}
}

// TestRunsNulledColumn checks that runs shows a NULLED column when a run
// listed nulled values, and none otherwise, and what the summaries say.
func TestRunsNulledColumn(t *testing.T) {
	plain := larder.Run{View: "v", Kind: larder.KindLatest, Generation: 1, StartedAt: t0, RowsRead: 10, EntitiesWritten: 5}
	withNulled := plain
	withNulled.Generation, withNulled.Nulled = 2, map[string]int64{"oversize": 1, "non-finite": 2}
	for _, tc := range []struct {
		runs []larder.Run
		want bool
	}{{[]larder.Run{plain}, false}, {[]larder.Run{withNulled, plain}, true}} {
		var b strings.Builder
		if err := printRuns(&b, tc.runs, 0, false); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(b.String(), "\n")
		if got := strings.Contains(lines[0], " NULLED "); got != tc.want {
			t.Errorf("NULLED column shown: %v, want %v:\n%s", got, tc.want, b.String())
		}
		if tc.want {
			at := strings.Index(lines[0], " NULLED ") + 1
			if a, b := strings.Fields(lines[1][at:])[0], strings.Fields(lines[2][at:])[0]; a != "3" || b != "0" {
				t.Errorf("NULLED = %s and %s, want 3 and 0:\n%s", a, b, strings.Join(lines, "\n"))
			}
		}
	}
	if got, want := nulledSummary(withNulled.Nulled), ", 3 value(s) stored as null (1 oversize, 2 non-finite)"; got != want {
		t.Errorf("nulledSummary = %q, want %q", got, want)
	}
	if got := nulledSummary(nil); got != "" {
		t.Errorf("nulledSummary(nil) = %q, want \"\"", got)
	}
}
