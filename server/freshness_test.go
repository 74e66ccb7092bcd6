package server_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// provenanceStore adds what a test says to the live generations of a real
// store, as a store that records as-of, inputs and trigger returns them.
type provenanceStore struct {
	larder.FeatureStore
	edit map[string]func(*larder.Generation)
}

func (s provenanceStore) Live(ctx context.Context, v *larder.View) (larder.Generation, error) {
	g, err := s.FeatureStore.Live(ctx, v)
	if f := s.edit[v.Name]; err == nil && f != nil {
		f(&g)
	}
	return g, err
}

// freshnessFields keeps the fields of info that say how fresh the view is,
// and where its live generation came from.
func freshnessFields(info *larderv1.ViewInfo) *larderv1.ViewInfo {
	return &larderv1.ViewInfo{
		Name: info.GetName(), Generation: info.GetGeneration(), Age: info.GetAge(), AsOf: info.GetAsOf(),
		Inputs: info.GetInputs(), Trigger: info.GetTrigger(), TimeZone: info.GetTimeZone(), Shards: info.GetShards(),
		LastSuccess: info.GetLastSuccess(), LastFailure: info.GetLastFailure(), NextRunAt: info.GetNextRunAt(),
		Streams: info.GetStreams(),
	}
}

// TestListViewsFreshness fills the freshness fields of ListViews from the
// live generations (as-of, inputs, trigger; the age from the as-of, or from
// the publish without one) and from a Freshness hook (runs, next run, zone,
// shards, streams' lag), and fails the call with the hook's error.
func TestListViewsFreshness(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second).Add(time.Minute)
	asOf := now.Add(-3 * time.Hour)
	cfg := opsConfig(t, nil)
	cfg.Models = map[string]server.Model{"reco": newFakeModel("v1", 1)}
	cfg.Now = newClock(now).Now
	cfg.Store = provenanceStore{FeatureStore: cfg.Store, edit: map[string]func(*larder.Generation){
		"user_profile": func(g *larder.Generation) {
			g.AsOf = asOf
			g.Inputs = []larder.InputGeneration{{View: "user_stats", Generation: 3, AsOf: asOf}, {View: "item_info", Generation: 9}}
			g.Trigger = larder.TriggerSchedule
			g.Job = "j-7"
		},
		// Generations written before as-ofs were kept have none: the age
		// is then counted from the publish.
		"user_stats": func(g *larder.Generation) { g.AsOf = time.Time{} },
		"item_info":  func(g *larder.Generation) { g.AsOf, g.Trigger = time.Time{}, larder.TriggerManual },
	}}
	success := &larder.Run{View: "user_profile", Generation: 5, StartedAt: asOf.Add(time.Minute), Duration: 90 * time.Second}
	failure := &larder.Run{View: "user_profile", StartedAt: now.Add(-time.Hour), Duration: time.Second, Err: "read events.parquet: no such file"}
	never := &larder.Run{View: "user_never", Generation: 2, StartedAt: now.Add(-2 * time.Hour), Duration: time.Minute, Err: "redis: connection refused"}
	next := now.Add(42 * time.Minute)
	var asked []string
	var hookErr error
	cfg.Freshness = func(_ context.Context, v *larder.View) (larder.ViewFreshness, error) {
		asked = append(asked, v.Name)
		if hookErr != nil {
			return larder.ViewFreshness{}, hookErr
		}
		switch v.Name {
		case "user_profile":
			return larder.ViewFreshness{LastSuccess: success, LastFailure: failure, NextRun: next, TimeZone: "Europe/Paris", Shards: 4,
				Streams: []larder.StreamLag{{Stream: "clicks", Source: "redis stream events:clicks", Entries: 120, Pending: 3, Seconds: 2.5},
					{Stream: "orders", Source: "kafka topic orders", Err: "dial tcp: connection refused"}}}, nil
		case "user_never":
			return larder.ViewFreshness{LastFailure: never}, nil
		}
		return larder.ViewFreshness{}, nil
	}
	svc, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]larder.Generation{}
	for _, v := range cfg.Project.Views {
		if g, err := cfg.Store.Live(t.Context(), v); err == nil {
			live[v.Name] = g
		}
	}

	resp, err := svc.ListViews(t.Context(), &larderv1.ListViewsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*larderv1.ViewInfo{
		"user_profile": {
			Name: "user_profile", Generation: live["user_profile"].ID,
			Age: durationpb.New(3 * time.Hour), AsOf: ts(asOf),
			Inputs:   []*larderv1.InputGeneration{{View: "user_stats", Generation: 3, AsOf: ts(asOf)}, {View: "item_info", Generation: 9}},
			Trigger:  "schedule",
			TimeZone: "Europe/Paris", Shards: 4, NextRunAt: ts(next),
			Streams: []*larderv1.StreamLag{{Stream: "clicks", Source: "redis stream events:clicks", Entries: 120, Pending: 3, Behind: durationpb.New(2500 * time.Millisecond)},
				{Stream: "orders", Source: "kafka topic orders", Behind: durationpb.New(0), Error: "dial tcp: connection refused"}},
			LastSuccess: &larderv1.RunSummary{StartedAt: ts(success.StartedAt), FinishedAt: ts(success.StartedAt.Add(90 * time.Second)), Generation: 5},
			LastFailure: &larderv1.RunSummary{StartedAt: ts(failure.StartedAt), FinishedAt: ts(failure.StartedAt.Add(time.Second)), Error: "read events.parquet: no such file"},
		},
		"user_stats": {
			Name: "user_stats", Generation: live["user_stats"].ID,
			Age: durationpb.New(now.Sub(live["user_stats"].PublishedAt)),
		},
		"item_info": {
			Name: "item_info", Generation: live["item_info"].ID,
			Age: durationpb.New(now.Sub(live["item_info"].PublishedAt)), Trigger: "manual",
		},
		"user_never": {
			Name:        "user_never",
			LastFailure: &larderv1.RunSummary{StartedAt: ts(never.StartedAt), FinishedAt: ts(never.StartedAt.Add(time.Minute)), Generation: 2, Error: "redis: connection refused"},
		},
	}
	for _, info := range resp.GetViews() {
		if got := freshnessFields(info); !proto.Equal(got, want[info.GetName()]) {
			t.Errorf("%s:\ngot  %v\nwant %v", info.GetName(), got, want[info.GetName()])
		}
	}
	if names := []string{"user_profile", "user_stats", "item_info", "user_never"}; !slices.Equal(asked, names) {
		t.Errorf("the hook was asked for %v, want each view once: %v", asked, names)
	}

	hookErr = fmt.Errorf("runs: %w", larder.ErrUnavailable)
	_, err = svc.ListViews(t.Context(), &larderv1.ListViewsRequest{})
	wantCode(t, err, codes.Unavailable, "runs: unavailable")
}
