package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/demo"
	"github.com/larder-dev/larder/models"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
)

// demoProject generates a small demo shop in a temporary folder, dated
// relative to t0, with its trained re-rank model, and returns the dataset
// and the path of its larder.yaml.
func demoProject(tb testing.TB) (*demo.Dataset, string) {
	tb.Helper()
	dir := tb.TempDir()
	ds, err := demo.Generate(tb.Context(), dir, demo.Options{Users: 50, Items: 20, Events: 500, Seed: 1, Now: t0})
	if err != nil {
		tb.Fatal(err)
	}
	a := &app{stdout: io.Discard, stderr: io.Discard, now: func() time.Time { return t0 }}
	if err := a.trainDemoModels(tb.Context(), ds, dir); err != nil {
		tb.Fatal(err)
	}
	return ds, filepath.Join(dir, demo.ProjectFile)
}

// servingRun is `larder serve` running in-process.
type servingRun struct {
	addr   string
	cancel context.CancelFunc
	exit   chan int // the exit code, once serve returns

	mu     sync.Mutex
	stderr strings.Builder
}

// logMessage returns the message of a line of standard error: the line
// itself, or its "msg" under --log-format json.
func logMessage(line string) string {
	var rec struct{ Msg string }
	if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &rec) == nil {
		return rec.Msg
	}
	return line
}

// servingLine is what serve prints on its standard error once it listens.
var servingLine = regexp.MustCompile(`^serving larder\.v1\.FeatureService for project \S+ on (\S+)$`)

// startServe runs the larder command line args (a serve command) in a
// goroutine and returns once it prints the address it listens on. Cancelling
// the run's context does what SIGTERM does to the process.
func startServe(tb testing.TB, args ...string) *servingRun {
	tb.Helper()
	return startServeAt(tb, t0, args...)
}

// startServeAt is startServe with the server's clock stopped at now.
func startServeAt(tb testing.TB, now time.Time, args ...string) *servingRun {
	tb.Helper()
	ctx, cancel := context.WithCancel(tb.Context())
	s := &servingRun{cancel: cancel, exit: make(chan int, 1)}
	pr, pw := io.Pipe()
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: pw, now: func() time.Time { return now }}
	go func() {
		code := a.run(ctx, args)
		pw.Close()
		s.exit <- code
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := servingLine.FindStringSubmatch(logMessage(sc.Text())); m != nil {
				addr <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-s.exit:
		case <-time.After(30 * time.Second):
			tb.Errorf("serve did not stop 30s after its context ended")
		}
	})
	select {
	case s.addr = <-addr:
	case code := <-s.exit:
		s.exit <- code
		tb.Fatalf("serve exited with code %d before listening:\n%s", code, s.log())
	case <-time.After(30 * time.Second):
		tb.Fatalf("serve printed no address within 30s:\n%s", s.log())
	}
	return s
}

// log returns what serve printed on its standard error so far.
func (s *servingRun) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

func TestServe(t *testing.T) {
	t.Parallel()
	ds, config := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", config, "materialize"), "materialize")
	srv := startServe(t, "--redis", redis.Addr, "-c", config, "serve", "--listen", "127.0.0.1:0", "--drain", "20s")

	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := t.Context()
	client := larderv1.NewFeatureServiceClient(conn)

	t.Run("reflection lists the services", func(t *testing.T) {
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.CloseSend()
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		for _, want := range []string{"larder.v1.FeatureService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !slices.Contains(names, want) {
				t.Errorf("services %v lack %s", names, want)
			}
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, svc := range []string{"", "larder.v1.FeatureService"} {
			resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("Check(%q): %v", svc, err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Check(%q) = %v, want SERVING", svc, resp.GetStatus())
			}
		}
	})

	t.Run("ListViews", func(t *testing.T) {
		resp, err := client.ListViews(ctx, &larderv1.ListViewsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]*larderv1.ViewInfo{}
		for _, v := range resp.GetViews() {
			got[v.GetName()] = v
		}
		// Every user and item has a profile; a user may have no event.
		for _, want := range []struct {
			name          string
			minRows, rows int64
		}{
			{"user_profile", int64(ds.Users), int64(ds.Users)},
			{"item_profile", int64(ds.Items), int64(ds.Items)},
			{"user_last_event", 1, int64(ds.Users)},
		} {
			v := got[want.name]
			if v == nil {
				t.Errorf("no view %s in %v", want.name, resp.GetViews())
				continue
			}
			if v.GetGeneration() != 1 || v.GetRows() < want.minRows || v.GetRows() > want.rows || v.GetKind() != "latest" || !v.GetPublishedAt().AsTime().Equal(t0) {
				t.Errorf("view %s: generation %d, %d rows, kind %q, published %v; want 1, %d to %d, latest, %v",
					want.name, v.GetGeneration(), v.GetRows(), v.GetKind(), v.GetPublishedAt().AsTime(), want.minRows, want.rows, t0)
			}
		}
		if len(resp.GetViews()) != 7 {
			t.Errorf("%d views, want 7", len(resp.GetViews()))
		}
	})

	t.Run("GetFeatures agrees with larder get", func(t *testing.T) {
		users := ds.SampleUsers(3)
		keys := make([]*larderv1.EntityKey, len(users))
		args := []string{"--redis", redis.Addr, "-c", config, "get", "--json", "user_profile"}
		for i, u := range users {
			keys[i] = int64Key(u)
			args = append(args, strconv.FormatInt(u, 10))
		}
		resp, err := client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: append(keys, int64Key(-1)), Features: []string{"user_profile:age", "user_profile:country"}})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"user_profile:age", "user_profile:country"}; !slices.Equal(columnNames(resp), want) {
			t.Errorf("columns %v, want %v", columnNames(resp), want)
		}
		cli := strings.Split(strings.TrimSpace(mustOutput(t, larderAt(t, ctx, t0, args...))), "\n")
		cols := columnsOf(t, resp)
		if cols.Rows() != len(users)+1 || len(cli) != len(users) {
			t.Fatalf("%d rows from GetFeatures and %d from get, want %d and %d", cols.Rows(), len(cli), len(users)+1, len(users))
		}
		for i, line := range cli {
			var want struct {
				Key    int64
				Status string
				Values struct {
					Age     int64
					Country string
				}
			}
			if err := json.Unmarshal([]byte(line), &want); err != nil {
				t.Fatal(err)
			}
			if users[i] != want.Key || want.Status != "present" ||
				cols.Status(0, i) != larderv1.FeatureStatus_FEATURE_STATUS_PRESENT ||
				cols.Int64(0, i) != want.Values.Age || cols.String(1, i) != want.Values.Country {
				t.Errorf("GetFeatures row %d (%d, %q), larder get %s", i, cols.Int64(0, i), cols.String(1, i), line)
			}
		}
		missing := cols.Status(0, len(users))
		if missing != larderv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND {
			t.Errorf("unknown user: status %v, want NOT_FOUND", missing)
		}
		_, err = client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: keys, Features: []string{"nope:age"}})
		if c := status.Code(err); c != codes.InvalidArgument && c != codes.NotFound {
			t.Errorf("unknown view: %v, want InvalidArgument or NotFound", err)
		}
	})

	t.Run("Rank", func(t *testing.T) {
		items := ds.SampleItems(ds.Items)
		cands := make([]*larderv1.EntityKey, len(items))
		for i, it := range items {
			cands[i] = int64Key(it)
		}
		resp, err := client.Rank(ctx, &larderv1.RankRequest{
			Ranker: demo.RankerName, ContextKey: int64Key(ds.SampleUsers(1)[0]), CandidateKeys: cands, TopK: 5,
			RequestFeatures: map[string]*larderv1.Value{"hour_of_day": {Kind: &larderv1.Value_Int64Value{Int64Value: 12}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetCandidates()
		if len(got) != 5 || resp.GetModelVersion() == "" {
			t.Fatalf("%d candidates, model version %q: want 5 and a version", len(got), resp.GetModelVersion())
		}
		for i := 1; i < len(got); i++ {
			if got[i].GetScore() > got[i-1].GetScore() {
				t.Errorf("candidates not sorted by score: %v", got)
			}
		}
	})

	t.Run("drains and exits 0 on cancel", func(t *testing.T) {
		// A health watch is a request in flight: the drain must tell it
		// NOT_SERVING and wait for it, rather than cut it off.
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		watch, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("watch: %v, %v; want SERVING", resp, err)
		}
		srv.cancel()
		if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("watch after cancel: %v, %v; want NOT_SERVING", resp, err)
		}
		select {
		case code := <-srv.exit:
			t.Fatalf("serve exited (code %d) with a request in flight", code)
		case <-time.After(100 * time.Millisecond):
		}
		stopWatch()
		select {
		case code := <-srv.exit:
			srv.exit <- code
			if code != 0 {
				t.Errorf("exit code %d, want 0:\n%s", code, srv.log())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("serve did not exit within 10s of its last request ending (drain is 20s):\n%s", srv.log())
		}
		if log := srv.log(); !strings.HasSuffix(log, "stopped\n") || strings.Contains(log, "level=") {
			t.Errorf("stderr does not end with \"stopped\", or has warnings:\n%s", log)
		}
		callCtx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := client.ListViews(callCtx, &larderv1.ListViewsRequest{}); status.Code(err) != codes.Unavailable {
			t.Errorf("ListViews after exit: %v, want Unavailable", err)
		}
	})
}

// TestServeEmbedded serves a project without a Redis address: serve starts
// the embedded store, materializes every view into it, and the inspection
// commands read it through the address serve prints.
func TestServeEmbedded(t *testing.T) {
	t.Parallel()
	ds, config := demoProject(t)
	srv := startServe(t, "-c", config, "serve", "--listen", "127.0.0.1:0")
	m := regexp.MustCompile(`(?m)^embedded Redis at (\S+): materializing every view first$`).FindStringSubmatch(srv.log())
	if m == nil {
		t.Fatalf("serve did not print the embedded store's address:\n%s", srv.log())
	}
	views := mustOutput(t, larderAt(t, t.Context(), t0, "--redis", m[1], "-c", config, "views"))
	for _, line := range strings.Split(strings.TrimSpace(views), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 6 || f[4] != "1" || f[5] == "0" {
			t.Errorf("view line %q: want generation 1 with rows", line)
		}
	}
	got := mustOutput(t, larderAt(t, t.Context(), t0, "--redis", m[1], "-c", config, "get", "user_profile", strconv.FormatInt(ds.SampleUsers(1)[0], 10)))
	if !strings.Contains(got, "generation 1  present") {
		t.Errorf("get from the embedded store:\n%s", got)
	}
	// The README's `grpcurl list` transcript is what this server lists.
	if got, want := reflectedServices(t, srv.addr), readmeServices(t); !slices.Equal(got, want) {
		t.Errorf("the server lists %v; the README's grpcurl list shows %v", got, want)
	}
}

// reflectedServices lists the services of the server at addr through
// reflection, sorted.
func reflectedServices(tb testing.TB, addr string) []string {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		tb.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	slices.Sort(names)
	return names
}

// readmeServices returns the services the README's `grpcurl ... list`
// transcript shows, sorted.
func readmeServices(tb testing.TB) []string {
	tb.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		tb.Fatal(err)
	}
	m := regexp.MustCompile(`\$ grpcurl -plaintext \S+ list\n`).FindStringIndex(string(data))
	if m == nil {
		tb.Fatal("the README has no grpcurl list transcript")
	}
	rest := string(data)[m[1]:]
	var names []string
	for _, line := range strings.Split(rest, "\n") {
		if strings.TrimSpace(line) == "" {
			break
		}
		names = append(names, strings.TrimSpace(line))
	}
	slices.Sort(names)
	return names
}

// metricsLine is what serve prints when it serves /metrics.
var metricsLine = regexp.MustCompile(`(?m)^metrics at (http://\S+/metrics)$`)

// rankClient connects to a serve run and returns a function that ranks every
// demo item for one user and fails the test on an error.
func rankClient(tb testing.TB, srv *servingRun, ds *demo.Dataset) func() *larderv1.RankResponse {
	tb.Helper()
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	client := larderv1.NewFeatureServiceClient(conn)
	items := ds.SampleItems(ds.Items)
	req := &larderv1.RankRequest{
		Ranker: demo.RankerName, ContextKey: int64Key(ds.SampleUsers(1)[0]), CandidateKeys: make([]*larderv1.EntityKey, len(items)), TopK: 5,
		RequestFeatures: map[string]*larderv1.Value{"hour_of_day": {Kind: &larderv1.Value_Int64Value{Int64Value: 12}}},
	}
	for i, it := range items {
		req.CandidateKeys[i] = int64Key(it)
	}
	return func() *larderv1.RankResponse {
		tb.Helper()
		resp, err := client.Rank(tb.Context(), req)
		if err != nil {
			tb.Fatalf("Rank: %v", err)
		}
		return resp
	}
}

// replaceFile writes data next to path and renames it over path, as a
// deployment does.
func replaceFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// TestServeReload replaces the ranker's model file under a running serve:
// a good model is swapped in, a broken one is refused while the good one
// keeps serving, larder reload and /metrics report both.
func TestServeReload(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	ds, cfgPath := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", cfgPath, "materialize"), "materialize")
	srv := startServe(t, "--redis", redis.Addr, "-c", cfgPath, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	m := metricsLine.FindStringSubmatch(srv.log())
	if m == nil {
		t.Fatalf("serve did not print its metrics address:\n%s", srv.log())
	}
	metricsURL := m[1]
	rank := rankClient(t, srv, ds)
	v1 := rank().GetModelVersion()

	p, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Ranker(demo.RankerName)
	modelPath := p.Path(r.Model)
	net, err := models.NewRandomMLP(len(r.Inputs), []int{8}, 99)
	if err != nil {
		t.Fatal(err)
	}
	var onnx bytes.Buffer
	if err := net.WriteONNX(&onnx, r.ModelInput, r.ModelOutput); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, modelPath, onnx.Bytes())
	v2 := waitFor(t, 15*time.Second, "the new model to serve", func() (string, bool) {
		v := rank().GetModelVersion()
		return v, v != v1
	})
	// serve prints the reload once the swap is done, so the line may come
	// just after the new model's first answer.
	want := fmt.Sprintf("ranker %s: reloaded %s: model %s -> %s\n", r.Name, modelPath, v1, v2)
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(srv.log(), want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not print %q within 15s:\n%s", want, srv.log())
		}
	}

	t.Run("larder reload", func(t *testing.T) {
		res := larderAt(t, t.Context(), t0, "reload", r.Name, "--addr", srv.addr)
		if want := fmt.Sprintf("%s: %s -> %s (unchanged)\n", r.Name, v2, v2); res.code != 0 || res.stdout != want {
			t.Errorf("reload: exit %d, stdout %q, stderr %q; want 0, %q", res.code, res.stdout, res.stderr, want)
		}
		res = larderAt(t, t.Context(), t0, "reload", "nope", "--addr", srv.addr)
		if res.code != 1 || !strings.Contains(res.stderr, `InvalidArgument: ranker: unknown ranker "nope"`) {
			t.Errorf("reload of an unknown ranker: exit %d, stderr %q; want 1 and InvalidArgument", res.code, res.stderr)
		}
	})

	t.Run("a broken model is refused", func(t *testing.T) {
		replaceFile(t, modelPath, []byte("not an ONNX model"))
		waitFor(t, 15*time.Second, "the refusal to be logged", func() (string, bool) {
			return "", strings.Contains(srv.log(), "new model refused")
		})
		if resp := rank(); resp.GetModelVersion() != v2 || resp.GetDegraded() {
			t.Errorf("after a refused model: version %q, degraded %v; want %q, false", resp.GetModelVersion(), resp.GetDegraded(), v2)
		}
		res := larderAt(t, t.Context(), t0, "reload", r.Name, "--addr", srv.addr)
		if res.code != 1 || !strings.Contains(res.stderr, "FailedPrecondition") || !strings.Contains(res.stderr, "new model refused") {
			t.Errorf("reload of a broken model: exit %d, stderr %q; want 1 and FailedPrecondition with the reason", res.code, res.stderr)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		page := httpGet(t, metricsURL)
		for _, re := range []string{
			`(?m)^larder_model_reloads_total\{ranker="home_feed",result="ok"\} [1-9]`,
			`(?m)^larder_model_reloads_total\{ranker="home_feed",result="refused"\} [1-9]`,
			`(?m)^larder_model_info\{ranker="home_feed",version="` + regexp.QuoteMeta(v2) + `"\} 1$`,
			`(?m)^larder_grpc_requests_total\{code="OK",method="/larder.v1.FeatureService/Rank"\} [1-9]`,
			`(?m)^larder_grpc_requests_total\{code="FailedPrecondition",method="/larder.v1.AdminService/ReloadModel"\} 1$`,
			`(?m)^larder_grpc_request_duration_seconds_count\{method="/larder.v1.FeatureService/Rank"\} [1-9]`,
			`(?m)^larder_rank_degraded_total\{ranker="home_feed",reason="model_error"\} 0$`,
			`(?m)^go_goroutines [1-9]`,
			`(?m)^process_resident_memory_bytes [1-9]`,
		} {
			if !regexp.MustCompile(re).MatchString(page) {
				t.Errorf("/metrics has no line matching %s", re)
			}
		}
		if strings.Contains(page, `version="`+v1+`"`) {
			t.Errorf("/metrics still reports the replaced model %s", v1)
		}
		if t.Failed() {
			t.Logf("/metrics:\n%s", page)
		}
	})
}

// TestServeWithoutLibrary serves with ONNXRUNTIME_LIB naming a file that
// does not exist: serve starts anyway, Rank answers in degraded mode with
// the reason, and a reload is refused.
func TestServeWithoutLibrary(t *testing.T) {
	ds, cfgPath := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", cfgPath, "materialize"), "materialize")
	t.Setenv(models.LibraryEnv, filepath.Join(t.TempDir(), "libonnxruntime.so"))
	srv := startServe(t, "--redis", redis.Addr, "-c", cfgPath, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	if !strings.Contains(srv.log(), "warning: ONNX Runtime is unavailable, so Rank answers in degraded mode") {
		t.Errorf("serve did not warn about the missing library:\n%s", srv.log())
	}
	resp := rankClient(t, srv, ds)()
	if !resp.GetDegraded() || !strings.HasPrefix(resp.GetDegradedReason(), "model unavailable: ONNX Runtime cannot be loaded: ") ||
		resp.GetModelVersion() != "unavailable" || len(resp.GetCandidates()) != 5 {
		t.Errorf("Rank: degraded %v (%q), version %q, %d candidates; want a degraded answer of 5 with the reason",
			resp.GetDegraded(), resp.GetDegradedReason(), resp.GetModelVersion(), len(resp.GetCandidates()))
	}
	res := larderAt(t, t.Context(), t0, "reload", demo.RankerName, "--addr", srv.addr)
	if res.code != 1 || !strings.Contains(res.stderr, "FailedPrecondition") || !strings.Contains(res.stderr, "ONNX Runtime is not loaded") {
		t.Errorf("reload without the library: exit %d, stderr %q; want 1 and FailedPrecondition", res.code, res.stderr)
	}
	page := httpGet(t, metricsLine.FindStringSubmatch(srv.log())[1])
	if want := `larder_rank_degraded_total{ranker="home_feed",reason="model_unavailable"} 1`; !strings.Contains(page, want) {
		t.Errorf("/metrics has no line %q:\n%s", want, page)
	}
}

// TestServeEmbeddedWithoutLibrary serves the demo project on the embedded
// store with no ONNX Runtime library that loads (none at all, or a file
// that is not one) and an npm that records being run: serve downloads
// nothing, materializes every view that needs no model, says which views it
// left out and why, serves GetFeatures, and answers Rank degraded.
func TestServeEmbeddedWithoutLibrary(t *testing.T) {
	ds, cfgPath := demoProject(t)
	fake := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.WriteFile(fake, []byte("not a library"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, lib, says string }{
		{"no library", "", `run "larder setup"`},
		{"a library that does not load", fake, fake},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := t.TempDir()
			ran := filepath.Join(t.TempDir(), "npm-ran")
			if err := os.WriteFile(filepath.Join(bin, "npm"), []byte("#!/bin/sh\necho \"$@\" > "+ran+"\nexit 1\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", bin)
			t.Setenv("XDG_CACHE_HOME", t.TempDir())
			t.Setenv(models.LibraryEnv, tc.lib)

			srv := startServe(t, "-c", cfgPath, "serve", "--listen", "127.0.0.1:0")
			log := srv.log()
			if _, err := os.Stat(ran); err == nil {
				t.Errorf("serve ran npm:\n%s", log)
			}
			for _, want := range []string{
				"warning: ONNX Runtime is unavailable, so serve materializes no prediction view, nor any view one feeds, and these serve nothing: item_click_prior: ",
				tc.says,
				"warning: ONNX Runtime is unavailable, so Rank answers in degraded mode",
			} {
				if !strings.Contains(log, want) {
					t.Errorf("serve's log has no %q:\n%s", want, log)
				}
			}
			if strings.Contains(log, "fetching") {
				t.Errorf("serve fetched something:\n%s", log)
			}

			conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			user := ds.SampleUsers(1)[0]
			got, err := larderv1.NewFeatureServiceClient(conn).GetFeatures(t.Context(), &larderv1.GetFeaturesRequest{
				Keys: []*larderv1.EntityKey{int64Key(user)}, Features: []string{"user_profile:*"},
			})
			if err != nil {
				t.Fatalf("GetFeatures: %v", err)
			}
			if s := got.GetViews()[0].GetStatuses()[0]; s != larderv1.FeatureStatus_FEATURE_STATUS_PRESENT {
				t.Errorf("GetFeatures of user %d: status %s, want present", user, s)
			}
			if resp := rankClient(t, srv, ds)(); !resp.GetDegraded() {
				t.Errorf("Rank: not degraded: %v", resp)
			}
		})
	}
}

// waitFor polls cond every 50ms until it holds, and returns its value; it
// fails tb after d.
func waitFor[T any](tb testing.TB, d time.Duration, what string, cond func() (T, bool)) T {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok := cond()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpGet returns the body of url.
func httpGet(tb testing.TB, url string) string {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(body)
}

// adminLine is what serve prints when it serves the AdminService on a
// listener of its own.
var adminLine = regexp.MustCompile(`(?m)^serving larder\.v1\.AdminService on (\S+)$`)

// TestServeAdminListen serves with --admin-listen: the AdminService answers
// on the admin address only, the FeatureService on the main one only, larder
// reload finds the admin address through --admin-addr or the project file,
// and both listeners close on shutdown.
func TestServeAdminListen(t *testing.T) {
	t.Parallel()
	ds, cfgPath := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", cfgPath, "materialize"), "materialize")
	srv := startServe(t, "--redis", redis.Addr, "-c", cfgPath, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	m := adminLine.FindStringSubmatch(srv.log())
	if m == nil {
		t.Fatalf("serve did not print its admin address:\n%s", srv.log())
	}
	adminAddr := m[1]
	if adminAddr == srv.addr {
		t.Fatalf("the admin address is the main one, %s", adminAddr)
	}
	dial := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	mainConn, adminConn := dial(srv.addr), dial(adminAddr)
	ctx := t.Context()
	rank := rankClient(t, srv, ds)
	version := rank().GetModelVersion()

	t.Run("main address", func(t *testing.T) {
		resp, err := larderv1.NewFeatureServiceClient(mainConn).GetFeatures(ctx, &larderv1.GetFeaturesRequest{
			Keys: []*larderv1.EntityKey{int64Key(ds.SampleUsers(1)[0])}, Features: []string{"user_profile:age"},
		})
		if err != nil || resp.GetRowCount() != 1 {
			t.Errorf("GetFeatures: %v, %v; want one row", resp, err)
		}
		admin := larderv1.NewAdminServiceClient(mainConn)
		if _, err := admin.ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: demo.RankerName}); status.Code(err) != codes.Unimplemented {
			t.Errorf("ReloadModel on the main address: %v, want Unimplemented", err)
		}
		if _, err := admin.ListModels(ctx, &larderv1.ListModelsRequest{}); status.Code(err) != codes.Unimplemented {
			t.Errorf("ListModels on the main address: %v, want Unimplemented", err)
		}
	})

	t.Run("admin address", func(t *testing.T) {
		admin := larderv1.NewAdminServiceClient(adminConn)
		models, err := admin.ListModels(ctx, &larderv1.ListModelsRequest{})
		if err != nil || len(models.GetModels()) != 1 || models.GetModels()[0].GetRanker() != demo.RankerName || models.GetModels()[0].GetVersion() != version {
			t.Errorf("ListModels: %v, %v; want %s at %s", models, err, demo.RankerName, version)
		}
		resp, err := admin.ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: demo.RankerName})
		if err != nil || resp.GetNewVersion() != version {
			t.Errorf("ReloadModel: %v, %v; want %s unchanged", resp, err, version)
		}
		if _, err := larderv1.NewFeatureServiceClient(adminConn).ListViews(ctx, &larderv1.ListViewsRequest{}); status.Code(err) != codes.Unimplemented {
			t.Errorf("ListViews on the admin address: %v, want Unimplemented", err)
		}
		health, err := healthpb.NewHealthClient(adminConn).Check(ctx, &healthpb.HealthCheckRequest{Service: "larder.v1.AdminService"})
		if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of the AdminService: %v, %v; want SERVING", health.GetStatus(), err)
		}
	})

	t.Run("larder reload", func(t *testing.T) {
		want := fmt.Sprintf("%s: %s -> %s (unchanged)\n", demo.RankerName, version, version)
		res := larderAt(t, ctx, t0, "reload", demo.RankerName, "--admin-addr", adminAddr)
		if res.code != 0 || res.stdout != want {
			t.Errorf("reload --admin-addr: exit %d, stdout %q, stderr %q; want 0, %q", res.code, res.stdout, res.stderr, want)
		}
		res = larderAt(t, ctx, t0, "reload", demo.RankerName, "--addr", srv.addr)
		if res.code != 1 || !strings.Contains(res.stderr, "Unimplemented") || !strings.Contains(res.stderr, "name it with --admin-addr") {
			t.Errorf("reload --addr of the main address: exit %d, stderr %q; want 1, Unimplemented and a hint of --admin-addr", res.code, res.stderr)
		}
		// Without an address, reload calls server.admin_listen of the
		// project file, and it wins over server.listen.
		src, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		withAdmin := filepath.Join(filepath.Dir(cfgPath), "admin.yaml")
		src = fmt.Appendf(src, "\nserver:\n  listen: %s\n  admin_listen: %s\n", srv.addr, adminAddr)
		if err := os.WriteFile(withAdmin, src, 0o644); err != nil {
			t.Fatal(err)
		}
		res = larderAt(t, ctx, t0, "-c", withAdmin, "reload", demo.RankerName)
		if res.code != 0 || res.stdout != want {
			t.Errorf("reload with server.admin_listen: exit %d, stdout %q, stderr %q; want 0, %q", res.code, res.stdout, res.stderr, want)
		}
	})

	t.Run("both drain on shutdown", func(t *testing.T) {
		srv.cancel()
		select {
		case code := <-srv.exit:
			srv.exit <- code // for the cleanup
			if code != 0 {
				t.Errorf("exit code %d, want 0:\n%s", code, srv.log())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("serve did not exit within 20s:\n%s", srv.log())
		}
		for name, conn := range map[string]*grpc.ClientConn{"main": mainConn, "admin": adminConn} {
			callCtx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := healthpb.NewHealthClient(conn).Check(callCtx, &healthpb.HealthCheckRequest{})
			cancel()
			if status.Code(err) != codes.Unavailable {
				t.Errorf("health check of the %s address after exit: %v, want Unavailable", name, err)
			}
		}
	})
}

// TestServeAdminListenBusy starts serve with an admin address that is taken:
// it exits before serving, naming the address and the setting.
func TestServeAdminListenBusy(t *testing.T) {
	_, cfgPath := demoProject(t)
	redis := redistest.Start(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	res := larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", cfgPath, "serve", "--listen", "127.0.0.1:0", "--admin-listen", taken.Addr().String())
	want := "--admin-listen " + taken.Addr().String() + ": listen tcp " + taken.Addr().String()
	if res.code != 1 || !strings.Contains(res.stderr, want) || !strings.Contains(res.stderr, "pass another --admin-listen") {
		t.Errorf("serve with a taken admin address: exit %d, stderr %q; want 1, %q and the setting to change", res.code, res.stderr, want)
	}
}

// TestServeWhileRedisDown starts serve while Redis is down: it listens,
// NOT_SERVING, and turns SERVING by itself once Redis answers and a view is
// published.
func TestServeWhileRedisDown(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	_, config := demoProject(t)
	redis := redistest.Start(t)
	redis.Stop()
	srv := startServe(t, "--redis", redis.Addr, "-c", config, "serve", "--listen", "127.0.0.1:0")
	if !strings.Contains(srv.log(), "does not answer") {
		t.Errorf("serve did not say that Redis does not answer:\n%s", srv.log())
	}
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "larder.v1.FeatureService"})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return resp.GetStatus()
	}
	waitFor(t, 30*time.Second, "NOT_SERVING while Redis is down", func() (bool, bool) {
		return true, status() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	redis.Restart()
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", config, "materialize", "user_profile"), "materialize")
	waitFor(t, 30*time.Second, "SERVING once Redis answers", func() (bool, bool) {
		return true, status() == healthpb.HealthCheckResponse_SERVING
	})
	resp, err := larderv1.NewFeatureServiceClient(conn).ListViews(t.Context(), &larderv1.ListViewsRequest{})
	if err != nil || len(resp.GetViews()) == 0 {
		t.Fatalf("ListViews once Redis is back: %v", err)
	}
}

// TestServeBadListenAddresses starts serve, on the embedded store, with an
// address it cannot listen on: it stops before materializing anything,
// naming the flag or the setting and what to write.
func TestServeBadListenAddresses(t *testing.T) {
	tiny := newTinyProject(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	withServer := filepath.Join(tiny.dir, "listen.yaml")
	src, err := os.ReadFile(tiny.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(withServer, append(src, "server:\n  metrics_listen: 127.0.0.1:99999\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		config string
		args   []string
		want   string
	}{
		{"not an IP address", tiny.config, []string{"--listen", "999.1.1.1:80"},
			"--listen 999.1.1.1:80: 999.1.1.1 is not an IP address (four numbers from 0 to 255): pass --listen HOST:PORT, such as 127.0.0.1:50051 or :50051"},
		{"no port", tiny.config, []string{"--listen", "127.0.0.1"},
			"--listen 127.0.0.1: want HOST:PORT: pass --listen HOST:PORT, such as 127.0.0.1:50051 or :50051"},
		{"a port too large, in the project file", withServer, []string{"--listen", "127.0.0.1:0"},
			"server.metrics_listen 127.0.0.1:99999 in " + withServer + ": port 99999 is not 0 to 65535: set server.metrics_listen to HOST:PORT, such as 127.0.0.1:9464, or pass --metrics-listen"},
		{"a taken admin address", tiny.config, []string{"--listen", "127.0.0.1:0", "--admin-listen", busy},
			"--admin-listen " + busy + ": listen tcp " + busy + ": bind: address already in use: pass another --admin-listen, such as 127.0.0.1:50052"},
		{"a console address that is not one", tiny.config, []string{"--listen", "127.0.0.1:0", "--console", "999.1.1.1:1"},
			"--console 999.1.1.1:1: 999.1.1.1 is not an IP address (four numbers from 0 to 255): pass --console HOST:PORT, such as 127.0.0.1:8081"},
		{"a taken console address", tiny.config, []string{"--listen", "127.0.0.1:0", "--console", busy},
			"--console " + busy + ": listen tcp " + busy + ": bind: address already in use: pass another --console, such as 127.0.0.1:8081"},
		{"an HTTP address that is not one", tiny.config, []string{"--listen", "127.0.0.1:0", "--http", "999.1.1.1:1"},
			"--http 999.1.1.1:1: 999.1.1.1 is not an IP address (four numbers from 0 to 255): pass --http HOST:PORT, such as 127.0.0.1:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			r := larderAt(t, ctx, t0, append([]string{"-c", tt.config, "serve"}, tt.args...)...)
			if want := "larder: " + tt.want + "\n"; r.code != 1 || r.stderr != want {
				t.Errorf("exit %d, stderr\n%s\nwant 1 and\n%s", r.code, r.stderr, want)
			}
		})
	}
}

// TestListenTakenExample checks what a command suggests when the address it
// was given is taken: its example address, unless that is on the same
// port, which is then no way out, and port 0 of the same host instead.
func TestListenTakenExample(t *testing.T) {
	for _, tt := range []struct{ addr, example, want string }{
		{"127.0.0.1:8080", "127.0.0.1:8080", "127.0.0.1:0 (any free port: the address it listens on is printed)"},
		{":8080", "127.0.0.1:8080", ":0 (any free port: the address it listens on is printed)"},
		{"127.0.0.1:50051", "127.0.0.1:50051 or :50051", "127.0.0.1:0 (any free port: the address it listens on is printed)"},
		{"127.0.0.1:7000", "127.0.0.1:8080", "127.0.0.1:8080"},
		{"127.0.0.1:7000", "127.0.0.1:0 (any free port)", "127.0.0.1:0 (any free port)"},
	} {
		l := listenAddr{addr: tt.addr, flag: "--http", fromFlag: true, example: tt.example}
		if got := l.otherExample(); got != tt.want {
			t.Errorf("%s taken, example %q: suggests %q, want %q", tt.addr, tt.example, got, tt.want)
		}
	}
}
