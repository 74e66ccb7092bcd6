package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
)

// amplificationViews are a view of 20 features, as the user_profile of the
// incident that issue 10 reports, and one of 120, wider than
// server.max_request_cells allows for 1000 keys. Their features all read
// the events' columns.
func amplificationViews() string {
	var b strings.Builder
	for _, v := range []struct {
		name string
		n    int
	}{{"profile", 20}, {"wide", 120}} {
		fmt.Fprintf(&b, "  - name: %s\n    kind: latest\n    entity: user\n    source: events\n    features:\n", v.name)
		for i := range v.n {
			col, typ := "x", "float64"
			if i%2 == 1 {
				col, typ = "n", "int64"
			}
			fmt.Fprintf(&b, "      - {name: f%03d, type: %s, column: %s}\n", i, typ, col)
		}
	}
	return b.String()
}

// procStatus reads a field of /proc/PID/status, in kB.
func procStatus(tb testing.TB, pid int, field string) int {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Skipf("no /proc/%d/status to read the server's memory from: %v", pid, err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB$`).FindSubmatch(data)
	if m == nil {
		tb.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestServeLoadAmplification runs `larder serve` as a process and sends it
// the request of issue 10 (1000 keys × 400 copies of a view:* reference) ten
// at once, of a view of 20 features and of one of 120: the first, folded
// to 1000 × 20 values, is answered; the second, 1000 × 120, is refused with
// RESOURCE_EXHAUSTED. Either way, within 10 s; the refused requests leave
// the server's resident memory under twice what it is idle (its peak,
// VmHWM, reset before each ten), the answered ones add at most 12 MB each.
func TestServeLoadAmplification(t *testing.T) {
	redis := redistest.Start(t)
	sp := newSchedProject(t, redis.Addr, "", amplificationViews(), 4000, 1000)
	mustSucceed(t, sp.larder(t, "materialize"), "materialize")
	p := sp.start(t, "serve", "--listen", "127.0.0.1:0", "--watch-models=false")
	serving := regexp.MustCompile(`serving larder\.v1\.FeatureService for project \S+ on (\S+)`)
	addr := waitFor(t, 60*time.Second, "serve to listen", func() (string, bool) {
		if m := serving.FindStringSubmatch(p.out.String()); m != nil {
			return m[1], true
		}
		return "", false
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := larderv1.NewFeatureServiceClient(conn)
	ctx := t.Context()

	keys := make([]*larderv1.EntityKey, 1000)
	for i := range keys {
		keys[i] = &larderv1.EntityKey{Key: &larderv1.EntityKey_Int64Value{Int64Value: int64(i)}}
	}
	request := func(view string) *larderv1.GetFeaturesRequest {
		refs := make([]string, 400)
		for i := range refs {
			refs[i] = view + ":*"
		}
		return &larderv1.GetFeaturesRequest{Keys: keys, Features: refs}
	}
	// Warm up: the server's pools and the connection, with small requests.
	for range 20 {
		if _, err := client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: keys[:10], Features: []string{"profile:*"}}); err != nil {
			t.Fatal(err)
		}
	}
	pid := p.cmd.Process.Pid
	idle := procStatus(t, pid, "VmRSS")

	for _, tc := range []struct {
		view string
		code codes.Code
		// most is the most the peak RSS may be, in kB.
		most int
	}{
		// Refused before anything is read: the server's memory does not
		// move.
		{"wide", codes.ResourceExhausted, 2 * idle},
		// Answered: ten responses of 20,000 values each, a few MB each
		// while they are built and sent, and the garbage collector's
		// headroom over them.
		{"profile", codes.OK, idle + 10*12<<10},
	} {
		t.Run(tc.view, func(t *testing.T) {
			// Writing 5 to clear_refs resets the peak (VmHWM) to the RSS
			// of now.
			reset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
			if reset != nil {
				t.Logf("the peak RSS cannot be reset (%v): it counts from the start of serve", reset)
			}
			start := time.Now()
			var wg sync.WaitGroup
			errs := make([]error, 10)
			cols := make([]int, 10)
			for i := range errs {
				wg.Go(func() {
					resp, err := client.GetFeatures(ctx, request(tc.view))
					errs[i], cols[i] = err, len(resp.GetColumns())
				})
			}
			wg.Wait()
			took := time.Since(start)
			for i, err := range errs {
				if status.Code(err) != tc.code {
					t.Fatalf("request %d: %v, want %s", i, err, tc.code)
				}
				if tc.code == codes.OK && cols[i] != 20 {
					t.Errorf("request %d: %d columns, want the 20 of the view once", i, cols[i])
				}
			}
			peak := procStatus(t, pid, "VmHWM")
			t.Logf("%s: 10 requests of 1000 keys × 400 × %s:* in %s: %s; RSS idle %d kB, peak %d kB (%.2f×)",
				tc.view, tc.view, took.Round(time.Millisecond), tc.code, idle, peak, float64(peak)/float64(idle))
			if reset == nil && peak > tc.most {
				t.Errorf("the server's RSS peaked at %d kB, more than %d kB (idle: %d kB)", peak, tc.most, idle)
			}
		})
	}
}

// TestServeLimitFlags checks serve's --max-concurrent-requests and
// --default-deadline: refused when out of range, and in force otherwise. With
// Redis paused (SIGSTOP), two requests without a deadline hold the two
// slots: a third is refused at once, and the two end at the deadline of
// the flag.
func TestServeLimitFlags(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	redis := redistest.Start(t)
	views := "  - name: profile\n    kind: latest\n    entity: user\n    source: events\n    features: [{name: x, type: float64}]\n"
	sp := newSchedProject(t, redis.Addr, "", views, 100, 10)
	mustSucceed(t, sp.larder(t, "materialize"), "materialize")

	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--max-concurrent-requests", "-1"}, "--max-concurrent-requests -1: want a positive number, such as 256"},
		{[]string{"--default-deadline", "-1s"}, "--default-deadline -1s: want a positive duration, such as 5s"},
		{[]string{"--default-deadline", "1m"}, "--default-deadline 1m0s: longer than server.max_deadline (30s)"},
	} {
		r := sp.larder(t, append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.flags...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("serve %s: exit %d, %q; want an error containing %q", strings.Join(tc.flags, " "), r.code, r.stderr, tc.want)
		}
	}

	srv := startServe(t, "-c", sp.config, "serve", "--listen", "127.0.0.1:0", "--watch-models=false",
		"--max-concurrent-requests", "2", "--default-deadline", "3s")
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := larderv1.NewFeatureServiceClient(conn)
	get := &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{{Key: &larderv1.EntityKey_Int64Value{Int64Value: 1}}}, Features: []string{"profile:x"}}
	bg := context.Background() // no deadline
	if _, err := client.GetFeatures(bg, get); err != nil {
		t.Fatal(err)
	}

	redis.Pause()
	t.Cleanup(redis.Resume)
	held := make(chan error, 2)
	for range 2 {
		go func() {
			// A probe below may hold a slot for a moment: try again.
			for {
				_, err := client.GetFeatures(bg, get)
				if status.Code(err) != codes.ResourceExhausted {
					held <- err
					return
				}
			}
		}()
	}
	// Probe, with a deadline of the probe's own, until a probe finds both
	// slots taken.
	var shed error
	for shed == nil {
		select {
		case err := <-held:
			t.Fatalf("a held request ended (%v) before any other was shed", err)
		default:
		}
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		_, err := client.GetFeatures(ctx, get)
		cancel()
		if status.Code(err) == codes.ResourceExhausted {
			shed = err
		}
	}
	if msg := status.Convert(shed).Message(); !strings.Contains(msg, "server busy: 2 requests are in progress") {
		t.Errorf("shed with %q, want the limit of --max-concurrent-requests 2", msg)
	}
	for range 2 {
		select {
		case err := <-held:
			if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "server.default_deadline, 3s") {
				t.Errorf("a held request: %v, want DEADLINE_EXCEEDED at the --default-deadline of 3s", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a request without a deadline is still held 30s after Redis stalled")
		}
	}
}
