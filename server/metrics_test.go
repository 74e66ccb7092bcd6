package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// TestAdminAndMetrics drives a server with metrics through the public and
// the admin API, then scrapes /metrics and checks every counter.
func TestAdminAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.NewMetrics(reg); err == nil {
		t.Error("NewMetrics registered twice with one registry, want an error")
	}
	v1 := newFakeModel("v1", 1)
	var next atomic.Pointer[fakeModel]
	cfg := opsConfig(t, func(p *larder.Project) { p.Rankers[0].ModelTimeout = 20 * time.Millisecond })
	cfg.Models = map[string]server.Model{"reco": v1}
	cfg.Metrics = metrics
	cfg.Jobs = newFakeQueue(time.Now)
	cfg.LoadModel = func(*larder.Ranker) (server.Model, error) {
		if m := next.Load(); m != nil {
			return m, nil
		}
		return nil, errors.New("models: load model: open reco.onnx: no such file or directory")
	}
	srv := serve(t, cfg, 5*time.Second)
	admin := larderv1.NewAdminServiceClient(srv.conn)
	ctx := t.Context()

	for range 2 {
		if resp, err := srv.client.Rank(ctx, rankRequest("i1", "i2")); err != nil || resp.GetDegraded() || resp.GetModelVersion() != "v1" {
			t.Fatalf("Rank = %v, %v; want an answer of model v1", resp, err)
		}
	}
	_, err = srv.client.Rank(ctx, &larderv1.RankRequest{Ranker: "nope"})
	wantCode(t, err, codes.InvalidArgument, "unknown ranker")
	_, err = srv.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_never:x"}})
	wantCode(t, err, codes.FailedPrecondition)

	t.Run("ReloadModel", func(t *testing.T) {
		_, err := admin.ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: "nope"})
		wantCode(t, err, codes.InvalidArgument, `unknown ranker "nope"`, "(the server's project srvtest has rankers: reco)")
		_, err = admin.ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: "reco"})
		wantCode(t, err, codes.FailedPrecondition, "new model refused", "no such file or directory")
		broken := newFakeModel("broken", 1)
		broken.fail.Store(true)
		next.Store(broken)
		_, err = admin.ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: "reco"})
		wantCode(t, err, codes.FailedPrecondition, "trial run on one row of zeros: fake: run failed")
		if !strings.Contains(srv.logs.String(), "new model refused") {
			t.Errorf("the refusals are not logged:\n%s", srv.logs.String())
		}
		next.Store(newFakeModel("v2", 2))
		resp, err := admin.ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: "reco"})
		if err != nil || resp.GetRanker() != "reco" || resp.GetOldVersion() != "v1" || resp.GetNewVersion() != "v2" {
			t.Fatalf("ReloadModel = %v, %v; want reco v1 -> v2", resp, err)
		}
	})

	t.Run("ListModels", func(t *testing.T) {
		resp, err := admin.ListModels(ctx, &larderv1.ListModelsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ms := resp.GetModels()
		if len(ms) != 1 || ms[0].GetRanker() != "reco" || ms[0].GetVersion() != "v2" || ms[0].GetPath() != "reco.onnx" || ms[0].GetLoadedAt() == nil {
			t.Errorf("ListModels = %v, want reco at v2 from reco.onnx", ms)
		}
	})

	t.Run("JobService", func(t *testing.T) {
		jobs := larderv1.NewJobServiceClient(srv.conn)
		if _, err := jobs.ListJobs(ctx, &larderv1.ListJobsRequest{}); err != nil {
			t.Fatal(err)
		}
		_, err := jobs.GetJob(ctx, &larderv1.GetJobRequest{Id: "nope"})
		wantCode(t, err, codes.NotFound)
	})

	// Degraded responses: the model fails, then takes too long.
	v2 := next.Load()
	v2.fail.Store(true)
	if resp, err := srv.client.Rank(ctx, rankRequest("i1")); err != nil || resp.GetDegradedReason() != "model failed: fake: run failed" {
		t.Fatalf("Rank with a failing model = %v, %v", resp, err)
	}
	v2.fail.Store(false)
	v2.block.Store(true)
	if resp, err := srv.client.Rank(ctx, rankRequest("i1")); err != nil || resp.GetDegradedReason() != "model timed out after 20ms" {
		t.Fatalf("Rank with a stuck model = %v, %v", resp, err)
	}
	if v1.closes.Load() != 1 {
		t.Errorf("the replaced model was closed %d times, want 1", v1.closes.Load())
	}

	web := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer web.Close()
	want := `
# HELP larder_model_info The version of the model each ranker serves with: 1 for the current version, no series for others.
# TYPE larder_model_info gauge
larder_model_info{ranker="reco",version="v2"} 1
# HELP larder_model_reloads_total Attempts to replace a ranker's model, by ranker and result: ok (swapped in) or refused (the current model kept serving).
# TYPE larder_model_reloads_total counter
larder_model_reloads_total{ranker="reco",result="ok"} 1
larder_model_reloads_total{ranker="reco",result="refused"} 2
# HELP larder_rank_degraded_total Rank responses served without the model (degraded mode), by ranker and reason: model_error, model_timeout or model_unavailable.
# TYPE larder_rank_degraded_total counter
larder_rank_degraded_total{ranker="reco",reason="model_error"} 1
larder_rank_degraded_total{ranker="reco",reason="model_timeout"} 1
larder_rank_degraded_total{ranker="reco",reason="model_unavailable"} 0
# HELP larder_store_read_errors_total Failed reads of the online store, by the gRPC status code the error maps to.
# TYPE larder_store_read_errors_total counter
larder_store_read_errors_total{code="FailedPrecondition"} 1
`
	if err := testutil.ScrapeAndCompare(web.URL, strings.NewReader(want),
		"larder_model_info", "larder_model_reloads_total", "larder_rank_degraded_total", "larder_store_read_errors_total"); err != nil {
		t.Error(err)
	}
	page := scrape(t, web.URL)
	for _, line := range []string{
		`larder_grpc_requests_total{code="OK",method="/larder.v1.FeatureService/Rank"} 4`,
		`larder_grpc_requests_total{code="InvalidArgument",method="/larder.v1.FeatureService/Rank"} 1`,
		`larder_grpc_requests_total{code="FailedPrecondition",method="/larder.v1.FeatureService/GetFeatures"} 1`,
		`larder_grpc_requests_total{code="FailedPrecondition",method="/larder.v1.AdminService/ReloadModel"} 2`,
		`larder_grpc_requests_total{code="InvalidArgument",method="/larder.v1.AdminService/ReloadModel"} 1`,
		`larder_grpc_requests_total{code="OK",method="/larder.v1.AdminService/ReloadModel"} 1`,
		`larder_grpc_requests_total{code="OK",method="/larder.v1.AdminService/ListModels"} 1`,
		`larder_grpc_requests_total{code="OK",method="/larder.v1.JobService/ListJobs"} 1`,
		`larder_grpc_requests_total{code="NotFound",method="/larder.v1.JobService/GetJob"} 1`,
		`larder_grpc_requests_total{code="OK",method="/larder.v1.JobService/SubmitJob"} 0`,
		`larder_grpc_request_duration_seconds_count{method="/larder.v1.FeatureService/Rank"} 5`,
		`larder_grpc_request_duration_seconds_bucket{method="/larder.v1.FeatureService/Rank",le="5e-05"} `,
		`larder_grpc_request_duration_seconds_bucket{method="/larder.v1.FeatureService/Rank",le="1"} `,
	} {
		if !strings.Contains(page, line) {
			t.Errorf("/metrics has no line %q", line)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", page)
	}
}

// scrape returns the text of the metrics page at url.
func scrape(tb testing.TB, url string) string {
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

// BenchmarkRankMetrics ranks 100 candidates as BenchmarkRank1x100 does,
// with the metrics off and on, to price the interceptor and the counting
// store: compare the two sub-benchmarks of one run.
func BenchmarkRankMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%v", on), func(b *testing.B) {
			cfg := opsConfig(b, func(p *larder.Project) { p.Server.MaxCandidates = 200 })
			_, model := trainRanker(b, cfg.Project.Ranker("reco"))
			cfg.Models = map[string]server.Model{"reco": model}
			if on {
				m, err := server.NewMetrics(prometheus.NewRegistry())
				if err != nil {
					b.Fatal(err)
				}
				cfg.Metrics = m
			}
			srv := serve(b, cfg, 5*time.Second)
			items := make([]string, 100)
			for i := range items {
				items[i] = fmt.Sprintf("i%d", 1+i%6)
			}
			req := rankRequest(items...)
			run(b, func(ctx context.Context) error {
				_, err := srv.client.Rank(ctx, req)
				return err
			})
		})
	}
}
