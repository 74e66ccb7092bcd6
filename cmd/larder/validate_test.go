package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/larder-dev/larder/models"
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
// time, in a project file named p1.yaml: validate, which opens them, prints
// each problem on a line of its own, placed at the field of p1.yaml at fault
// as the file's own problems are, naming the view or ranker, the file and the
// column at fault, and what to change in p1.yaml; --offline does not look.
func TestValidateData(t *testing.T) {
	_, demoPath := demoProject(t)
	original, err := os.ReadFile(demoPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(demoPath)
	cfgPath := filepath.Join(dir, "p1.yaml")
	if err := os.WriteFile(cfgPath, original, 0o644); err != nil {
		t.Fatal(err)
	}
	r := larderAt(t, t.Context(), t0, "-c", cfgPath, "validate")
	mustSucceed(t, r, "validate of the demo")
	if !strings.Contains(r.stdout, "sources and models checked") {
		t.Errorf("validate of the demo says:\n%s", r.stdout)
	}
	users := filepath.Join(dir, "data", "users.parquet")
	events := filepath.Join(dir, "data", "events", "part-0000.parquet")
	// finding is one line validate prints: at is the text of p1.yaml (after
	// the edits) where it is placed (at its "^", or its start), field the
	// field it names, and says what the rest of the line holds, in order.
	type finding struct {
		at, field string
		says      []string
	}
	for _, tc := range []struct {
		name     string
		edits    []string // from, to, from, to...
		noORT    bool     // check without the ONNX Runtime library
		findings []finding
	}{
		{name: "a source that does not exist", edits: []string{"path: data/users.parquet", "path: data/user.parquet"},
			findings: []finding{{"data/user.parquet", "sources[0].path",
				[]string{"view user_profile: source users: " + filepath.Join(dir, "data", "user.parquet") + " does not exist", "check the source path in p1.yaml"}}}},
		{name: "an empty glob", edits: []string{"path: data/events,", "path: data/events/nothing-*.parquet,"},
			findings: []finding{
				{"data/events/nothing-*.parquet", "sources[2].path", []string{"view user_last_event: source events: no files match", "in p1.yaml"}},
				{"data/events/nothing-*.parquet", "sources[2].path", []string{"view user_activity: source events: no files match", "in p1.yaml"}},
				{"data/events/nothing-*.parquet", "sources[2].path", []string{"view user_items: source events: no files match", "in p1.yaml"}},
			}},
		{name: "a misspelled column", edits: []string{"column: dwell_seconds}", "column: dwell_secs}"},
			findings: []finding{{"dwell_secs}", "views[2].features[2].column",
				[]string{"view user_last_event: ", events, `has no column "dwell_secs"`, `did you mean "dwell_seconds"?`, "column name in p1.yaml"}}}},
		{name: "a misspelled aggregation column", edits: []string{"column: price_paid ", "column: price_payed "},
			findings: []finding{{"price_payed ", "views[3].aggregations[1].column",
				[]string{"view user_activity: ", events, `has no column "price_payed"`, `did you mean "price_paid"?`, "in p1.yaml"}}}},
		{name: "a column of the wrong type", edits: []string{"{name: last_event_type, type: string, column: event_type}", "{name: last_event_type, type: int64, column: event_type}"},
			findings: []finding{{"{name: last_event_type, type: ^int64, column: event_type}", "views[2].features[1].type",
				[]string{"view user_last_event: ", events, `column "event_type"`, "the type in p1.yaml"}}}},
		{name: "three problems in one view", edits: []string{
			"{name: age, type: int64}", "{name: age, type: string}",
			"{name: tenure_days, type: int64}", "{name: tenure_days, type: int64, column: tenure_dys}",
			"{name: device, type: string}", "{name: device, type: int64}"},
			findings: []finding{
				{"{name: age, type: ^string}", "views[0].features[0].type", []string{"view user_profile: ", users, `column "age"`, "in p1.yaml"}},
				{"tenure_dys}", "views[0].features[1].column", []string{"view user_profile: ", users, `has no column "tenure_dys"`, `did you mean "tenure_days"?`, "in p1.yaml"}},
				{"{name: device, type: ^int64}", "views[0].features[3].type", []string{"view user_profile: ", users, `column "device"`, "in p1.yaml"}},
			}},
		{name: "a Kafka CA file that does not exist", edits: []string{"streams:\n", "streams:\n  - name: orders\n    view: user_last_event\n    kafka:\n      brokers: [\"k:9092\"]\n      topic: orders\n      tls: {ca_file: certs/ca.pem}\n    group: larder-orders\n"},
			findings: []finding{{"certs/ca.pem", "streams[0].kafka.tls.ca_file",
				[]string{"stream orders: open " + filepath.Join(dir, "certs", "ca.pem") + ": no such file or directory"}}}},
		{name: "missing models", edits: []string{"model: models/rerank.onnx", "model: models/nope.onnx", "model: models/item_prior.onnx", "model: models/prior.onnx"},
			findings: []finding{
				{"models/prior.onnx", "views[5].model", []string{"view item_click_prior: model file " + filepath.Join(dir, "models", "prior.onnx") + " does not exist", "in p1.yaml"}},
				{"models/nope.onnx", "rankers[0].model", []string{"ranker home_feed: model file " + filepath.Join(dir, "models", "nope.onnx") + " does not exist", "in p1.yaml"}},
			}},
		{name: "a missing model without ONNX Runtime", edits: []string{"model: models/rerank.onnx", "model: models/nope.onnx"}, noORT: true,
			findings: []finding{{"models/nope.onnx", "rankers[0].model", []string{"ranker home_feed: model file " + filepath.Join(dir, "models", "nope.onnx") + " does not exist", "in p1.yaml"}}}},
		{name: "a model that does not fit its ranker", edits: []string{"      - user_profile:is_premium\n", ""},
			findings: []finding{{"models/rerank.onnx", "rankers[0].model", []string{"ranker home_feed: ", "[N, 11]", "in p1.yaml"}}}},
		{name: "a model that does not fit its ranker, without ONNX Runtime", edits: []string{"      - user_profile:is_premium\n", ""}, noORT: true,
			findings: []finding{{"models/rerank.onnx", "rankers[0].model", []string{"ranker home_feed: ", `want float32 tensor "features" [N, 11], the file has float32 tensor "features" [N, 12]`, "in p1.yaml"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noORT {
				t.Setenv(models.LibraryEnv, filepath.Join(t.TempDir(), "no-library.so"))
			}
			edited := string(original)
			for i := 0; i < len(tc.edits); i += 2 {
				e := strings.Replace(edited, tc.edits[i], tc.edits[i+1], 1)
				if e == edited {
					t.Fatalf("the demo's larder.yaml has no %q", tc.edits[i])
				}
				edited = e
			}
			if err := os.WriteFile(cfgPath, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(cfgPath, original, 0o644)
			r := larderAt(t, t.Context(), t0, "-c", cfgPath, "validate")
			if r.code != 1 {
				t.Errorf("validate: exit %d, want 1; stderr:\n%s", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			want := fmt.Sprintf("%d problem(s) in the data and models of %s", len(tc.findings), cfgPath)
			if len(lines) != len(tc.findings)+1 || lines[len(lines)-1] != want {
				t.Fatalf("validate printed:\n%s\nwant %d lines, one a problem, then %q", r.stderr, len(tc.findings), want)
			}
			for i, f := range tc.findings {
				line, col := placeOf(t, edited, f.at)
				prefix := fmt.Sprintf("%s:%d:%d: %s: ", cfgPath, line, col, f.field)
				got, ok := strings.CutPrefix(lines[i], prefix)
				if !ok {
					t.Errorf("problem %d is\n%s\nwant it to start with %q", i+1, lines[i], prefix)
				}
				for _, s := range f.says {
					j := strings.Index(got, s)
					if j < 0 {
						t.Errorf("problem %d is\n%s\nwant it to say %q after what came before", i+1, lines[i], s)
						break
					}
					got = got[j+len(s):]
				}
			}
			if strings.Contains(r.stderr, "larder.yaml") {
				t.Errorf("validate of p1.yaml names larder.yaml:\n%s", r.stderr)
			}
			if r := larderAt(t, t.Context(), t0, "-c", cfgPath, "validate", "--offline"); r.code != 0 {
				t.Errorf("validate --offline: exit %d: %s", r.code, r.stderr)
			}
		})
	}
}

// placeOf returns the line and column, counting from 1, of the "^" of at
// (or of its start, without one) in the only occurrence of at, without the
// "^", in text.
func placeOf(tb testing.TB, text, at string) (line, col int) {
	tb.Helper()
	mark := max(0, strings.Index(at, "^"))
	at = strings.Replace(at, "^", "", 1)
	i := strings.Index(text, at)
	if i < 0 || strings.Count(text, at) != 1 {
		tb.Fatalf("the edited project file holds %q %d times, want once", at, strings.Count(text, at))
	}
	before := text[:i+mark]
	return strings.Count(before, "\n") + 1, len(before) - strings.LastIndex(before, "\n")
}

// TestValidateLibraryThatDoesNotLoad checks that validate says why it
// checked the models without ONNX Runtime when a library is set but does
// not load, instead of sending the user to larder setup.
func TestValidateLibraryThatDoesNotLoad(t *testing.T) {
	_, cfgPath := demoProject(t)
	fake := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.WriteFile(fake, []byte("not a library"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(models.LibraryEnv, fake)
	r := larderAt(t, t.Context(), t0, "-c", cfgPath, "validate")
	if r.code != 0 || !strings.Contains(r.stdout, "ONNX Runtime cannot be loaded: ") || !strings.Contains(r.stdout, fake) || strings.Contains(r.stdout, "larder setup") {
		t.Errorf("validate: exit %d, stdout %q, stderr %q; want 0 and a note that the library at %s cannot be loaded", r.code, r.stdout, r.stderr, fake)
	}
}
