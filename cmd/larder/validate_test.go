package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		config string
		args   []string
		code   int
		// stdout and stderr name golden files; "" means the stream stays empty.
		stdout, stderr string
	}{
		// The tiny project's data are written by the tests that use them.
		{name: "good", config: filepath.Join("testdata", "tiny", "larder.yaml"), args: []string{"--offline"}, code: 0, stdout: "validate_good"},
		// Every problem of the file is printed with its file:line:col, not
		// only the first.
		{name: "bad", config: filepath.Join("testdata", "bad.yaml"), code: 1, stderr: "validate_bad"},
		{name: "missing", config: filepath.Join("testdata", "missing.yaml"), code: 1, stderr: "validate_missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), t0, append([]string{"-c", tc.config, "validate"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, out := range []struct{ golden, got, stream string }{{tc.stdout, r.stdout, "stdout"}, {tc.stderr, r.stderr, "stderr"}} {
				if out.golden != "" {
					checkGolden(t, out.golden, out.got)
				} else if out.got != "" {
					t.Errorf("unexpected %s:\n%s", out.stream, out.got)
				}
			}
		})
	}
}

// TestValidateData breaks the demo project's data and models one way at a
// time: validate, which opens them, names the view or ranker, the file and
// the column at fault, and --offline does not look.
func TestValidateData(t *testing.T) {
	_, cfgPath := demoProject(t)
	original, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	r := larderAt(t, t.Context(), t0, "-c", cfgPath, "validate")
	mustSucceed(t, r, "validate of the demo")
	if !strings.Contains(r.stdout, "sources and models checked") {
		t.Errorf("validate of the demo says:\n%s", r.stdout)
	}
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"a source that does not exist", "path: data/users.parquet", "path: data/user.parquet",
			"view user_profile: source users: " + filepath.Join(filepath.Dir(cfgPath), "data", "user.parquet") + " does not exist"},
		{"an empty glob", "path: data/events,", "path: data/events/nothing-*.parquet,", "no files match"},
		{"a misspelled column", "column: dwell_seconds}", "column: dwell_secs}", `has no column "dwell_secs"`},
		{"a column of the wrong type", "{name: last_event_type, type: string, column: event_type}", "{name: last_event_type, type: int64, column: event_type}", `column "event_type"`},
		{"a missing model", "model: models/rerank.onnx", "model: models/nope.onnx", "ranker home_feed: "},
		{"a model that does not fit its ranker", "      - user_profile:is_premium\n", "", "ranker home_feed: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edited := strings.Replace(string(original), tc.from, tc.to, 1)
			if edited == string(original) {
				t.Fatalf("the demo's larder.yaml has no %q", tc.from)
			}
			if err := os.WriteFile(cfgPath, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(cfgPath, original, 0o644)
			r := larderAt(t, t.Context(), t0, "-c", cfgPath, "validate")
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("validate: exit %d, stderr:\n%s\nwant exit 1 and %q", r.code, r.stderr, tc.want)
			}
			if r := larderAt(t, t.Context(), t0, "-c", cfgPath, "validate", "--offline"); r.code != 0 {
				t.Errorf("validate --offline: exit %d: %s", r.code, r.stderr)
			}
		})
	}
}
