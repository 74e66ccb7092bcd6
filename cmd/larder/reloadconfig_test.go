package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/larder-dev/larder/demo"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
)

// TestServeConfigReload edits larder.yaml under a running serve, with
// clients calling GetFeatures and Rank all along: a file that does not
// load is refused with its line and the previous configuration keeps
// serving; a feature removed, materialized first with the new file, is
// served by the old configuration from its own schema's generation until
// the file is replaced, then the new configuration applies at once; no
// call fails.
func TestServeConfigReload(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	ds, cfgPath := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", cfgPath, "materialize"), "materialize")
	srv := startServe(t, "--redis", redis.Addr, "-c", cfgPath, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	metricsURL := metricsLine.FindStringSubmatch(srv.log())[1]

	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := larderv1.NewFeatureServiceClient(conn)
	user := int64Key(ds.SampleUsers(1)[0])
	columns := func() []string {
		t.Helper()
		resp, err := client.GetFeatures(t.Context(), &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{user}, Features: []string{"user_profile:*"}})
		if err != nil {
			t.Fatalf("GetFeatures user_profile:*: %v", err)
		}
		return columnNames(resp)
	}

	// The load: calls that every configuration of this test answers.
	var calls, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			req := &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{user}, Features: []string{"user_profile:age"}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := client.GetFeatures(t.Context(), req)
				if err == nil {
					_, err = client.Rank(t.Context(), &larderv1.RankRequest{Ranker: demo.RankerName, ContextKey: user, TopK: 3,
						RequestFeatures: map[string]*larderv1.Value{"hour_of_day": {Kind: &larderv1.Value_Int64Value{Int64Value: 9}}}})
				}
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
		t.Logf("%d calls during the reloads, %d failed", calls.Load(), failed.Load())
		if n := failed.Load(); n > 0 {
			t.Errorf("%d calls failed during the reloads; the first: %v", n, firstErr.Load())
		}
	}()

	before := columns()
	original, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	const removed = "      - {name: pref_toys, type: float32}\n"
	if !strings.Contains(string(original), removed) {
		t.Fatalf("the demo's larder.yaml has no line %q", removed)
	}

	t.Run("a broken file is refused", func(t *testing.T) {
		broken := strings.Replace(string(original), "    kind: latest\n", "    kind: lastest\n", 1)
		replaceFile(t, cfgPath, []byte(broken))
		waitFor(t, 20*time.Second, "the refusal", func() (string, bool) {
			return "", strings.Contains(srv.log(), "not applied, the previous configuration keeps serving")
		})
		if !regexp.MustCompile(`larder\.yaml:\d+`).MatchString(srv.log()) || !strings.Contains(srv.log(), "lastest") {
			t.Errorf("the refusal does not name the line and the value:\n%s", srv.log())
		}
		if got := columns(); len(got) != len(before) {
			t.Errorf("after a refused file: %d columns, want %d", len(got), len(before))
		}
	})

	t.Run("a feature removed", func(t *testing.T) {
		edited := strings.Replace(string(original), removed, "", 1)
		// Rollout order: materialize with the new file first...
		next := filepath.Join(filepath.Dir(cfgPath), "larder.next.yaml")
		if err := os.WriteFile(next, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		res := larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", next, "materialize", "user_profile")
		mustSucceed(t, res, "materialize with the feature removed")
		if !strings.Contains(res.stderr, "read view user_profile with another definition") {
			t.Errorf("materialize did not warn of the server that reads the old schema:\n%s", res.stderr)
		}
		// ... while the running server serves its own schema's generation.
		if got := columns(); len(got) != len(before) {
			t.Errorf("old configuration after the new materialize: %d columns, want %d", len(got), len(before))
		}
		// Then the server takes the file.
		replaceFile(t, cfgPath, []byte(edited))
		waitFor(t, 20*time.Second, "the reload", func() (string, bool) {
			return "", strings.Contains(srv.log(), "reloaded: view user_profile changed")
		})
		got := columns()
		if len(got) != len(before)-1 || strings.Contains(strings.Join(got, ","), "pref_toys") {
			t.Errorf("after the reload: columns %v, want %d without pref_toys", got, len(before)-1)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		page := httpGet(t, metricsURL)
		for _, re := range []string{
			`(?m)^larder_config_reloads_total\{result="ok"\} [1-9]`,
			`(?m)^larder_config_reloads_total\{result="refused"\} [1-9]`,
		} {
			if !regexp.MustCompile(re).MatchString(page) {
				t.Errorf("/metrics has no line matching %s", re)
			}
		}
	})
}

// TestServeSIGHUP reloads larder.yaml on SIGHUP in a serve process that
// does not watch the file, and refuses to when serve runs the schedules,
// which read the file at start-up only.
func TestServeSIGHUP(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	if testing.Short() {
		t.Skip("starts larder processes")
	}
	_, cfgPath := demoProject(t)
	original, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(original), "    top_k: 10\n", "    top_k: 7\n", 1)
	if edited == string(original) {
		t.Fatal("the demo's larder.yaml has no top_k: 10")
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"serve", nil, "reloaded: no view or ranker added, removed or retyped"},
		{"serve --schedule", []string{"--schedule"}, "this serve also runs --schedule, which reads " + cfgPath + " only at start-up: restart serve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(cfgPath, original, 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"-c", cfgPath, "serve", "--listen", "127.0.0.1:0", "--watch-config=false"}, tc.args...)
			p := startLarder(t, args...)
			waitFor(t, 60*time.Second, "serve to listen", func() (string, bool) {
				return "", strings.Contains(p.out.String(), "serving larder.v1.FeatureService")
			})
			if err := os.WriteFile(cfgPath, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, tc.want, func() (string, bool) {
				return "", strings.Contains(p.out.String(), tc.want)
			})
			p.stop(t, syscall.SIGTERM)
		})
	}
}

// TestServeConfigMapReload mounts larder.yaml as Kubernetes mounts a
// ConfigMap (a symlink through a ..data symlink to a timestamped folder)
// and updates it as Kubernetes does, by swapping ..data: serve reloads.
func TestServeConfigMapReload(t *testing.T) {
	t.Parallel()
	_, cfgPath := demoProject(t)
	original, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(cfgPath)
	mount := filepath.Join(dir, "mount")
	version := func(name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(mount, name), 0o755); err != nil {
			t.Fatal(err)
		}
		// Relative paths in the file stay those of the project folder.
		edited := strings.ReplaceAll(string(data), "model: models/", "model: "+filepath.Join(dir, "models")+"/")
		edited = strings.ReplaceAll(edited, "path: data/", "path: "+filepath.Join(dir, "data")+"/")
		if err := os.WriteFile(filepath.Join(mount, name, "larder.yaml"), []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", original)
	if err := os.Symlink("..v1", filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "larder.yaml"), filepath.Join(mount, "larder.yaml")); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, "-c", filepath.Join(mount, "larder.yaml"), "serve", "--listen", "127.0.0.1:0")
	version("..v2", []byte(strings.Replace(string(original), "    top_k: 10\n", "    top_k: 7\n", 1)))
	// The swap: a new symlink renamed over ..data.
	if err := os.Symlink("..v2", filepath.Join(mount, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mount, "..data_tmp"), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the reload", func() (string, bool) {
		return "", strings.Contains(srv.log(), "larder.yaml reloaded")
	})
}
