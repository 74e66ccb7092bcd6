package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// pushYAML is a small project with a latest view of several types and an
// aggregate view, which push does not take. Nothing is materialized: the
// server behind push holds a memPush.
const pushYAML = `project: pushtest
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: events, path: events.parquet, event_time: ts}
views:
  - name: user_profile
    kind: latest
    entity: user
    source: events
    features:
      - {name: age, type: int64}
      - {name: score, type: float64}
      - {name: ratio, type: float32}
      - {name: country, type: string}
      - {name: premium, type: bool}
      - {name: embedding, type: float32_vector}
      - {name: tags, type: string_list}
  - name: user_activity
    kind: aggregate
    entity: user
    source: events
    aggregations:
      - {column: dwell, type: float64, functions: [count], windows: [1h]}
`

// memPush is a larder.PushStore in memory, with write-if-newer, over no
// FeatureStore: it stands in for the Redis store so that these tests cover
// the command (flags, JSON lines, printing, exit codes) and its call of the
// server, not the store, whose own tests prove Push against Redis.
type memPush struct {
	larder.FeatureStore
	mu   sync.Mutex
	rows map[larder.Key]larder.Row
}

func (m *memPush) Push(_ context.Context, v *larder.View, rows []larder.PushRow) ([]larder.PushOutcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]larder.PushOutcome, len(rows))
	for i, r := range rows {
		if old, ok := m.rows[r.Key]; ok && old.EventTime.After(r.Row.EventTime) {
			out[i] = larder.PushOutcome{Result: larder.PushOlder}
			continue
		}
		m.rows[r.Key] = larder.Row{EventTime: r.Row.EventTime, Values: slices.Clone(r.Row.Values)}
		out[i] = larder.PushOutcome{Result: larder.PushWritten}
	}
	return out, nil
}

func (m *memPush) row(k int64) (larder.Row, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[larder.Int64Key(k)]
	return r, ok
}

// servePushProject writes pushYAML and serves it over a memPush on
// loopback until the test ends. It returns the project file and the
// server's address.
func servePushProject(tb testing.TB) (string, string, *memPush) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "larder.yaml")
	if err := os.WriteFile(path, []byte(pushYAML), 0o644); err != nil {
		tb.Fatal(err)
	}
	p, err := config.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	st := &memPush{rows: map[larder.Key]larder.Row{}}
	svc, err := server.New(server.Config{Project: p, Store: st, Now: func() time.Time { return t0 }})
	if err != nil {
		tb.Fatal(err)
	}
	g := server.NewGRPC(svc, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, lis, 5*time.Second) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return path, lis.Addr().String(), st
}

// larderIn runs the larder command in-process with stdin as its standard
// input and its clock stopped at t0.
func larderIn(tb testing.TB, stdin string, args ...string) result {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, now: func() time.Time { return t0 }}
	code := a.run(tb.Context(), args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// TestPush pushes rows through larder push, from flags and from JSON lines,
// against a server over an in-memory push store, and checks what is printed,
// what reaches the store and the exit codes.
func TestPush(t *testing.T) {
	cfg, addr, st := servePushProject(t)
	push := func(stdin string, args ...string) result {
		return larderIn(t, stdin, append([]string{"-c", cfg, "push", "--addr", addr}, args...)...)
	}

	t.Run("one row from flags", func(t *testing.T) {
		res := push("", "user_profile", "--key", "42", "--time", "2025-06-01T11:00:00Z",
			"age=35", "score=0.5", "ratio=NaN", "country=fr", "premium=true", "embedding=[0.5,-1]", `tags=["a","b"]`)
		mustSucceed(t, res, "push --key")
		if res.stdout != "user_profile user_id=42 written\n" {
			t.Errorf("push printed %q", res.stdout)
		}
		row, ok := st.row(42)
		want := []larder.Value{larder.Int64Value(35), larder.Float64Value(0.5), larder.Null, larder.StringValue("fr"), larder.BoolValue(true),
			larder.Float32VectorValue([]float32{0.5, -1}), larder.StringListValue([]string{"a", "b"})}
		// NaN is stored as null: the view's non_finite rule is null by default.
		if !ok || !row.EventTime.Equal(time.Date(2025, 6, 1, 11, 0, 0, 0, time.UTC)) || !slices.EqualFunc(row.Values, want, larder.Value.Equal) {
			t.Errorf("stored %v, want %v at 11:00", row, want)
		}
	})

	t.Run("an older row", func(t *testing.T) {
		res := push("", "user_profile", "--key", "42", "--time", "2025-06-01T10:00:00Z", "age=1")
		mustSucceed(t, res, "push an older row")
		if res.stdout != "user_profile user_id=42 older\n" {
			t.Errorf("push printed %q", res.stdout)
		}
	})

	t.Run("the time defaults to now", func(t *testing.T) {
		mustSucceed(t, push("", "user_profile", "--key", "7", "age=3"), "push without --time")
		if row, ok := st.row(7); !ok || !row.EventTime.Equal(t0) {
			t.Errorf("stored %v, want a row at %s", row, t0)
		}
	})

	t.Run("JSON lines", func(t *testing.T) {
		stdin := `{"key": 1, "event_time": "2025-06-01T11:00:00Z", "values": {"age": 20, "score": 1, "country": null, "tags": []}}

{"key": 1, "event_time": "2025-06-01T09:00:00Z", "values": {"age": 19}}
{"key": "x", "event_time": "2025-06-01T11:00:00Z"}
{"key": 2, "values": {}}
{"key": 3, "event_time": "2025-06-01T11:00:00Z", "values": {"nope": 1}}
{"key": 4, "event_time": "2025-06-01T11:00:00Z", "values": {"age": 1.5}}
not json
{"key": 5, "event_time": "2025-06-01T11:00:00Z", "values": {"ratio": "-Inf", "embedding": [1, "NaN"]}}
{"key": 6, "event_time": "2999-01-01T00:00:00Z"}
{"view": "user_activity", "key": 7, "event_time": "2025-06-01T11:00:00Z"}
`
		res := push(stdin, "user_profile", "--batch", "3")
		if res.code != 1 {
			t.Fatalf("push of invalid rows: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
		}
		for _, want := range []string{
			"line 1: user_profile user_id=1 written\n",
			"line 3: user_profile user_id=1 older\n",
			"line 4: user_profile invalid: key: entity user is keyed by int64 user_id: want a JSON integer\n",
			"line 5: user_profile user_id=2 invalid: event_time: required",
			`line 6: user_profile user_id=3 invalid: values: view user_profile has no feature "nope"`,
			"line 7: user_profile user_id=4 invalid: values.age: age is int64: not an integer\n",
			"line 8: user_profile invalid: not a JSON object",
			"line 9: user_profile user_id=5 written\n",
			"line 10: user_profile user_id=6 invalid: event_time: 2999-01-01T00:00:00Z is more than 1m0s past the server's clock",
			`line 11: user_profile invalid: view: the line is a row of view "user_activity", not of user_profile`,
			"user_profile: 10 rows: 2 written, 1 older, 7 invalid\n",
		} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("push printed:\n%s\nwant %q in it", res.stdout, want)
			}
		}
		row, ok := st.row(1)
		if !ok || len(row.Values) != 7 {
			t.Fatalf("user 1 = %v, %v; want a row of 7 values", row, ok)
		}
		if !row.Values[0].Equal(larder.Int64Value(20)) || !row.Values[3].IsNull() || len(row.Values[6].StringList()) != 0 || row.Values[6].IsNull() {
			t.Errorf("user 1 = %v, want age 20, country null and no tags", row.Values)
		}
	})

	t.Run("all written", func(t *testing.T) {
		res := push(`{"key": 9, "event_time": "2025-06-01T11:00:00Z", "values": {"age": 9}}`+"\n", "user_profile")
		mustSucceed(t, res, "push a JSON line")
		if !strings.HasSuffix(res.stdout, "user_profile: 1 rows: 1 written, 0 older, 0 invalid\n") {
			t.Errorf("push printed %q", res.stdout)
		}
	})

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"no view", "", nil, "push needs a view"},
		{"unknown view", "", []string{"nope", "--key", "1"}, `unknown view "nope" (latest views of the project file: user_profile)`},
		{"an aggregate view", "", []string{"user_activity", "--key", "1"}, "view user_activity is not a latest view (its kind is aggregate)"},
		{"values without --key", "", []string{"user_profile", "age=1"}, "FEATURE=VALUE arguments need --key"},
		{"a bad key", "", []string{"user_profile", "--key", "x"}, "--key: entity user is keyed by int64 user_id"},
		{"a bad time", "", []string{"user_profile", "--key", "1", "--time", "yesterday"}, `--time "yesterday": want an RFC 3339 time`},
		{"an unknown feature", "", []string{"user_profile", "--key", "1", "nope=1"}, "nope: view user_profile has no such feature (features: age int64, score float64"},
		{"a bad value", "", []string{"user_profile", "--key", "1", "age=old"}, "age=old: age is int64: not an integer"},
		{"not an assignment", "", []string{"user_profile", "--key", "1", "age"}, `"age": write FEATURE=VALUE`},
		{"empty input", "\n", []string{"user_profile"}, "no rows on standard input"},
		{"--time without --key", "", []string{"user_profile", "--time", "2025-06-01T11:00:00Z"}, "--time goes with --key"},
		// More rows in one call than server.max_entities.
		{"a refused request", strings.Repeat(`{"key": 1, "event_time": "2025-06-01T11:00:00Z"}`+"\n", 1001), []string{"user_profile", "--batch", "2000"},
			"push user_profile at ADDR: InvalidArgument: rows: 1001 rows is more than the limit of 1000 per request (server.max_entities)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := strings.ReplaceAll(tc.want, "ADDR", addr)
			res := push(tc.stdin, tc.args...)
			if res.code == 0 || !strings.Contains(res.stderr, want) {
				t.Errorf("push %v: exit %d, stderr %q; want a failure saying %q", tc.args, res.code, res.stderr, want)
			}
		})
	}
}

// TestPushServe pushes through larder push into larder serve over a real
// redis-server, and reads the row back with larder get: the command, the
// server and the store end to end.
func TestPushServe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "larder.yaml")
	if err := os.WriteFile(path, []byte(pushYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	redis := redistest.Start(t)
	// An empty generation of user_profile, as a run over no rows would
	// publish: Push writes into the live generation.
	st := store.New(redis.Client(), p.Name, store.Options{})
	w, err := st.BeginSized(t.Context(), p.View("user_profile"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, "--redis", redis.Addr, "-c", path, "serve", "--listen", "127.0.0.1:0")

	res := larderIn(t, "", "-c", path, "push", "--addr", srv.addr, "user_profile", "--key", "42", "--time", "2025-06-01T11:30:00Z",
		"age=35", "country=fr", "embedding=[0.5,-1]")
	mustSucceed(t, res, "push --key")
	res = larderIn(t, `{"key": 43, "event_time": "2025-06-01T11:00:00Z", "values": {"age": 50, "tags": ["a"]}}
{"key": 42, "event_time": "2025-06-01T11:00:00Z", "values": {"age": 1}}
`, "-c", path, "push", "--addr", srv.addr, "user_profile")
	mustSucceed(t, res, "push JSON lines")
	if !strings.Contains(res.stdout, "line 2: user_profile user_id=42 older\n") || !strings.Contains(res.stdout, "2 rows: 1 written, 1 older, 0 invalid") {
		t.Errorf("push printed:\n%s", res.stdout)
	}

	res = larderIn(t, "", "--redis", redis.Addr, "-c", path, "get", "--json", "user_profile", "42", "43")
	mustSucceed(t, res, "get")
	for _, want := range []string{
		`"key":42`, `"event_time":"2025-06-01T11:30:00Z"`, `"age":35`, `"country":"fr"`, `"embedding":[0.5,-1]`,
		`"key":43`, `"age":50`, `"tags":["a"]`,
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("get printed:\n%s\nwant %s in it", res.stdout, want)
		}
	}

	// What get --json prints pushes again, and is found no newer.
	res = larderIn(t, res.stdout, "-c", path, "push", "--addr", srv.addr, "user_profile")
	mustSucceed(t, res, "push what get --json printed")
	if !strings.Contains(res.stdout, "2 rows: 2 written, 0 older, 0 invalid") {
		t.Errorf("push of get's lines printed:\n%s\nwant both written again (same event times)", res.stdout)
	}
}
