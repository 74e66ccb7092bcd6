package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder/demo"
)

// TestDemo runs the whole demo in-process, ONNX Runtime included: the test
// fails, never skips, when the library cannot be fetched.
func TestDemo(t *testing.T) {
	t.Parallel()
	r := larderAt(t, t.Context(), t0, "demo", "--dir", t.TempDir(), "--users", "200", "--items", "100", "--events", "20000")
	mustSucceed(t, r, "larder demo")
	// A Rank whose model takes longer than the ranker's timeout (100 ms by
	// default) is served without the model, and logged: that tells of the
	// machine's speed, not of a fault.
	var warnings []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "level=") && !strings.Contains(l, "reason=model_timeout") {
			warnings = append(warnings, l)
		}
	}
	if len(warnings) > 0 {
		t.Errorf("the demo logged warnings:\n%s", strings.Join(warnings, "\n"))
	}
	out := r.stdout
	for i := 1; i <= 6; i++ {
		if !strings.Contains(out, "["+strconv.Itoa(i)+"/6] ") {
			t.Errorf("no step %d/6 in the output:\n%s", i, out)
		}
	}

	t.Run("GetFeatures table", func(t *testing.T) {
		if !strings.Contains(out, "GetFeatures(3 users × 8 features) → generations user_profile@1, user_last_event@1, user_activity@1, user_items@1\n") {
			t.Errorf("no GetFeatures summary line:\n%s", out)
		}
		rows := table(t, out, "user_id", 3)
		want := []string{"user_id", "user_profile:age", "user_profile:country", "user_profile:ctr_7d", "user_last_event:last_event_type",
			"user_activity:dwell_count_7d", "user_activity:dwell_mean_7d", "user_activity:spend_sum_30d", "user_items:items_count_distinct_30d"}
		if strings.Join(rows[0], "|") != strings.Join(want, "|") {
			t.Errorf("header %q, want %q", rows[0], want)
		}
		for _, row := range rows[1:] {
			if len(row) != len(want) || !isInt(row[0]) || !isInt(row[1]) || strings.Contains(strings.Join(row, " "), "not found") {
				t.Errorf("row %q: want a user id, then %d values, all found", row, len(want)-1)
			}
		}
	})

	t.Run("Rank top list", func(t *testing.T) {
		if !regexp.MustCompile(`Rank\(home_feed, user \d+, 100 candidates, hour 18\) → top 10, model sha256:[0-9a-f]{12}\n`).MatchString(out) {
			t.Errorf("no Rank summary line (hour 18: the demo's day ends at 18:00 when its data set does, whatever the clock says):\n%s", out)
		}
		rows := table(t, out, "#", 10)
		if want := "#|item_id|score|category|price|rating|true click probability"; strings.Join(rows[0], "|") != want {
			t.Errorf("header %q, want %s", rows[0], want)
		}
		prev := 2.0
		for i, row := range rows[1:] {
			if len(row) != 7 || row[0] != strconv.Itoa(i+1) || !isInt(row[1]) {
				t.Errorf("row %d: %q", i+1, row)
				continue
			}
			score, err := strconv.ParseFloat(row[2], 64)
			if err != nil || score > prev || score < 0 || score > 1 {
				t.Errorf("row %d: score %q: want a probability no higher than the row above's", i+1, row[2])
			}
			prev = score
		}
	})

	t.Run("latency table", func(t *testing.T) {
		rows := table(t, out, "call", 2)
		if want := "call|calls|p50|p90|p99"; strings.Join(rows[0], "|") != want {
			t.Errorf("header %q, want %s", rows[0], want)
		}
		for i, want := range []struct{ call, calls string }{{"GetFeatures (1 user, user_profile:*)", "1000"}, {"Rank (1 user + 100 items, 12 inputs)", "500"}} {
			row := rows[i+1]
			if len(row) != 5 || row[0] != want.call || row[1] != want.calls {
				t.Errorf("row %q: want %s with %s calls", row, want.call, want.calls)
				continue
			}
			for _, p := range row[2:] {
				if us, ok := strings.CutSuffix(p, "µs"); !ok || !isInt(us) {
					t.Errorf("row %q: latency %q is not in µs", row, p)
				}
			}
		}
	})
}

// table returns the header and the n rows after it of the first table in out
// whose header starts with first, split into cells at runs of two or more
// spaces (the demo prints its tables with a tabwriter).
func table(tb testing.TB, out, first string, n int) [][]string {
	tb.Helper()
	cells := regexp.MustCompile(`\s{2,}`)
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		row := cells.Split(strings.TrimSpace(l), -1)
		if row[0] != first {
			continue
		}
		if i+n >= len(lines) {
			break
		}
		rows := [][]string{row}
		for _, l := range lines[i+1 : i+1+n] {
			rows = append(rows, cells.Split(strings.TrimSpace(l), -1))
		}
		return rows
	}
	tb.Fatalf("no table with header %q and %d rows in:\n%s", first, n, out)
	return nil
}

func isInt(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

// TestDemoKeepServing leaves the demo's server up: it runs the views on
// their schedules, and stops cleanly when interrupted.
func TestDemoKeepServing(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr lockedBuffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: time.Now}
	done := make(chan int, 1)
	go func() {
		done <- a.run(ctx, []string{"demo", "--dir", t.TempDir(), "--users", "100", "--items", "50", "--events", "2000", "--keep-serving", "--http", "127.0.0.1:0"})
	}()
	waitFor(t, 60*time.Second, "the demo to keep serving", func() (bool, bool) {
		ok := strings.Contains(stdout.String(), "Serving until interrupted")
		return ok, ok
	})
	for _, want := range []string{"scheduling user_last_event (*/10 * * * *): next run ", "in this process",
		"ingesting redis stream events:live into view user_last_event", "ingesting redis stream events:live into view user_activity"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the demo's log lacks %q:\n%s", want, stderr.String())
		}
	}
	// The trickle of events moves the user's last event and activity
	// between runs.
	get := func(view string) func() string {
		m := regexp.MustCompile(`(?m)^  larder (--redis \S+ -c \S+ get ` + view + ` \d+)$`).FindStringSubmatch(stdout.String())
		if m == nil {
			t.Fatalf("the demo does not say how to watch the streamed events in %s:\n%s", view, stdout.String())
		}
		return func() string {
			r := larderAt(t, t.Context(), time.Now(), strings.Fields(m[1])...)
			if r.code != 0 {
				t.Fatalf("larder %s: exit %d: %s", m[1], r.code, r.stderr)
			}
			return r.stdout
		}
	}
	getLast, getActivity := get("user_last_event"), get("user_activity")
	// The user's count of events of the last hour, streamed ones included.
	count1h := func() int {
		m := regexp.MustCompile(`(?m)^\s+dwell_count_1h\s+int64\s+(\d+)$`).FindStringSubmatch(getActivity())
		if m == nil {
			t.Fatalf("larder get user_activity printed no dwell_count_1h")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	first, firstCount := getLast(), count1h()

	// The Go client's example program reads the demo's server as a
	// product service would.
	addr := regexp.MustCompile(`gRPC on (\S+)`).FindStringSubmatch(stdout.String())
	if addr == nil {
		t.Fatalf("the demo does not print its gRPC address:\n%s", stdout.String())
	}
	example := exec.CommandContext(t.Context(), "go", "run", "./examples/democlient", "-addr", addr[1])
	example.Dir = filepath.Join("..", "..")
	out, err := example.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./examples/democlient: %v\n%s", err, out)
	}
	for _, want := range []string{"user row 0: age ", "user row 2: FEATURE_STATUS_NOT_FOUND", "home feed 1: item ",
		"view user_activity (aggregate): 24 features", "view user_items (aggregate): 2 features"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("examples/democlient printed no %q:\n%s", want, out)
		}
	}

	// --http serves the same calls over HTTP/JSON, as the hint shows.
	curl := regexp.MustCompile(`curl -s -X POST (http://\S+/v1/features) -d '(.+)'`).FindStringSubmatch(stdout.String())
	if curl == nil {
		t.Fatalf("the demo shows no curl of its HTTP/JSON gateway:\n%s", stdout.String())
	}
	resp, err := http.Post(curl[1], "application/json", strings.NewReader(curl[2]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"name":"user_profile:age"`) {
		t.Errorf("POST %s: %s\n%s", curl[1], resp.Status, body)
	}

	waitFor(t, 30*time.Second, "the streamed events to move the user's last event", func() (string, bool) {
		now := getLast()
		return now, now != first
	})
	// user_activity answers as of the request's time rounded down to its
	// tile (10s): the streamed events count once their tile is past.
	waitFor(t, 60*time.Second, "the streamed events to move the user's count of the last hour", func() (int, bool) {
		n := count1h()
		return n, n > firstCount
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop 30s after it was interrupted")
	}
}

// TestTrickleCapped checks that the demo's event trickle keeps only the
// newest events of its stream: a demo left serving must not grow without
// end.
func TestTrickleCapped(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	ds, err := demo.New(demo.Options{Seed: 1, Users: 100, Items: 50, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	a := &app{stdout: io.Discard, stderr: io.Discard, now: time.Now, logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.trickle(ctx, &backend{client: client}, "events:live", ds, ds.SampleUsers(1)[0], 3)
	}()
	// Wait until the first of the stream's events has been trimmed away,
	// then look at its length.
	var first string
	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs, err := client.XRangeN(t.Context(), "events:live", "-", "+", 1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) > 0 && first == "" {
			first = msgs[0].ID
		}
		if len(msgs) > 0 && msgs[0].ID != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream's first event %q is still there after 30s: the stream is not trimmed", first)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := client.XLen(t.Context(), "events:live").Val(); n != 3 {
		t.Errorf("the stream holds %d events, want the newest 3", n)
	}
	cancel()
	<-done
}
