package client_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// python returns a Python interpreter that has the Python client's
// dependencies (grpcio and protobuf, Debian's python3-grpcio and
// python3-protobuf, which `make setup` installs): Debian's /usr/bin/python3
// first, since another python3 first in PATH may lack them. The test is
// skipped only where there is no Python at all.
func python(t *testing.T) string {
	t.Helper()
	var found []string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		found = append(found, path)
		if exec.Command(path, "-c", "import grpc, google.protobuf").Run() == nil {
			return path
		}
	}
	if len(found) == 0 {
		t.Skip("no python3: the Python client is not tested here")
	}
	t.Fatalf("%v: none has grpcio and protobuf: run `make setup` (or apt-get install python3-grpcio python3-protobuf)", found)
	return ""
}

// pythonDir returns clients/python.
func pythonDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "clients", "python")
}

// TestPythonUnit runs the Python client's own tests, which decode
// hand-built responses.
func TestPythonUnit(t *testing.T) {
	py := python(t)
	cmd := exec.CommandContext(t.Context(), py, "-m", "unittest", "discover", "-s", "tests")
	cmd.Dir = pythonDir(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python unittest: %v\n%s", err, out)
	}
}

// pythonDump is what clients/python/tests/dump.py prints.
type pythonDump struct {
	Names      []string                   `json:"names"`
	RowCount   int                        `json:"row_count"`
	Types      map[string]string          `json:"types"`
	Values     map[string]json.RawMessage `json:"values"`
	Nulls      map[string][]bool          `json:"nulls"`
	Statuses   map[string][]int32         `json:"statuses"`
	EventTimes map[string][]int64         `json:"event_times"`
	Rank       struct {
		Keys         []string  `json:"keys"`
		Scores       []float32 `json:"scores"`
		ModelVersion string    `json:"model_version"`
	} `json:"rank"`
	Views []string `json:"views"`
	Error struct {
		Code    string `json:"code"`
		Details string `json:"details"`
	} `json:"error"`
}

// TestPythonReadsWhatGoReads reads features of fresh, stale and missing
// users (every type of the test project, nulls included), a ranking and
// the views with the Python client from a real server, and checks each
// value against the Go client's.
func TestPythonReadsWhatGoReads(t *testing.T) {
	py := python(t)
	addr := serveTest(t)
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ids := []int64{1, 2, 3, 1}
	f, err := c.GetFeatures(t.Context(), client.Int64Keys(ids...), "user_profile:*")
	if err != nil {
		t.Fatal(err)
	}
	rank, err := c.Rank(t.Context(), &larderv1.RankRequest{Ranker: "reco", ContextKey: client.Int64Key(1), CandidateKeys: client.StringKeys("a", "b", "c")})
	if err != nil {
		t.Fatal(err)
	}

	spec, _ := json.Marshal(map[string]any{
		"keys": ids, "features": []string{"user_profile:*"},
		"rank": map[string]any{"ranker": "reco", "context": 1, "candidates": []string{"a", "b", "c"}},
	})
	cmd := exec.CommandContext(t.Context(), py, filepath.Join("tests", "dump.py"), addr, string(spec))
	cmd.Dir = pythonDir(t)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dump.py: %v", err)
	}
	var d pythonDump
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("dump.py printed %q: %v", out, err)
	}

	if d.RowCount != f.Rows() || len(d.Names) != f.Columns() {
		t.Fatalf("python: %d rows × %d columns, go: %d × %d", d.RowCount, len(d.Names), f.Rows(), f.Columns())
	}
	for col := range f.Columns() {
		name := f.Name(col)
		if d.Names[col] != name {
			t.Errorf("column %d: python %q, go %q", col, d.Names[col], name)
			continue
		}
		var vals []any
		if err := json.Unmarshal(d.Values[name], &vals); err != nil || len(vals) != f.Rows() {
			t.Errorf("%s: python values %s", name, d.Values[name])
			continue
		}
		for row := range f.Rows() {
			if d.Nulls[name][row] != f.IsNull(col, row) {
				t.Errorf("%s row %d: python null %v, go %v", name, row, d.Nulls[name][row], f.IsNull(col, row))
			}
			if f.IsNull(col, row) {
				continue
			}
			want := goValue(f, col, row)
			gotJSON, _ := json.Marshal(vals[row])
			wantJSON, _ := json.Marshal(want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("%s row %d: python %s, go %s", name, row, gotJSON, wantJSON)
			}
		}
		view := f.View(col)
		for row := range f.Rows() {
			if got, want := d.Statuses[view][row], int32(f.Status(col, row)); got != want {
				t.Errorf("%s row %d: python status %d, go %d", view, row, got, want)
			}
			want := int64(0)
			if et := f.EventTime(col, row); !et.IsZero() {
				want = et.UnixMicro()
			}
			if got := d.EventTimes[view][row]; got != want {
				t.Errorf("%s row %d: python event time %d, go %d (%s)", view, row, got, want, time.UnixMicro(want).UTC())
			}
		}
	}

	if len(d.Rank.Keys) != len(rank.GetCandidates()) || d.Rank.ModelVersion != rank.GetModelVersion() {
		t.Fatalf("python ranking %+v, go %v", d.Rank, rank)
	}
	for i, cand := range rank.GetCandidates() {
		if d.Rank.Keys[i] != cand.GetKey().GetStringValue() || d.Rank.Scores[i] != cand.GetScore() {
			t.Errorf("candidate %d: python %s %v, go %s %v", i, d.Rank.Keys[i], d.Rank.Scores[i], cand.GetKey().GetStringValue(), cand.GetScore())
		}
	}
	views, err := c.ListViews(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Views) != len(views) {
		t.Errorf("python views %v, go %d views", d.Views, len(views))
	}
	if d.Error.Code != "INVALID_ARGUMENT" || d.Error.Details == "" {
		t.Errorf("python error for an unknown view: %+v, want INVALID_ARGUMENT with the reason", d.Error)
	}
}

// goValue returns the value at (col, row) as dump.py prints it.
func goValue(f *client.Features, col, row int) any {
	switch f.Type(col) {
	case larderv1.ValueType_VALUE_TYPE_INT64:
		return f.Int64(col, row)
	case larderv1.ValueType_VALUE_TYPE_FLOAT64:
		return f.Float64(col, row)
	case larderv1.ValueType_VALUE_TYPE_FLOAT32:
		return float64(f.Float32(col, row))
	case larderv1.ValueType_VALUE_TYPE_BOOL:
		return f.Bool(col, row)
	case larderv1.ValueType_VALUE_TYPE_STRING:
		return f.String(col, row)
	case larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR:
		out := []float64{}
		for _, x := range f.Float32Vector(col, row) {
			out = append(out, float64(x))
		}
		return out
	case larderv1.ValueType_VALUE_TYPE_INT64_LIST:
		return append([]int64{}, f.Int64List(col, row)...)
	case larderv1.ValueType_VALUE_TYPE_STRING_LIST:
		return append([]string{}, f.StringList(col, row)...)
	}
	return nil
}
