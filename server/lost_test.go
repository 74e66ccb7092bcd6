package server_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// TestLostAndNotFoundMetrics counts the keys found and not found by view,
// then empties Redis under the server, as a restart without persistence
// does: the next call is UNAVAILABLE with the reason, never OK with every
// key NOT_FOUND, and the loss is counted by view.
func TestLostAndNotFoundMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p := testProject(t, nil)
	st, rs := newStore(t, p)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	publish(t, st, p, "user_stats", fixtureData(t0)["user_stats"])
	srv := serve(t, server.Config{Project: p, Store: st, Now: newClock(t0).Now, Metrics: metrics,
		Models: map[string]server.Model{"reco": newFakeModel("v1", 1)}}, 5*time.Second)
	ctx := t.Context()

	req := &larderv1.GetFeaturesRequest{Keys: intKeys(1, 2, 99), Features: []string{"user_stats:*"}}
	if _, err := srv.client.GetFeatures(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := rs.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = srv.client.GetFeatures(ctx, req)
	wantCode(t, err, codes.Unavailable, "user_stats", "gone", "materialize the view again")

	web := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer web.Close()
	page := scrape(t, web.URL)
	for _, line := range []string{
		`larder_store_rows_read_total{result="found",view="user_stats"} 2`,
		`larder_store_rows_read_total{result="not_found",view="user_stats"} 1`,
		`larder_store_data_lost_total{view="user_stats"} 1`,
	} {
		if !strings.Contains(page, line+"\n") {
			t.Errorf("the metrics lack %q", line)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(page, "larder_store_"))
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
