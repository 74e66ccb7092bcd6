package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/server"
	"github.com/larder-dev/larder/store"
)

// freshProjectYAML is the project of the freshness tests: a view scheduled
// in Paris in four shards (user_profile), one run on demand that went stale
// and whose latest run failed (item_stats), a view scheduled in UTC that was
// never published and whose runs were abandoned (user_country), and a view
// whose generation has no run record (user_legacy). Its sources are never
// read.
const freshProjectYAML = `project: fresh

entities:
  - {name: user, key: user_id, type: int64}
  - {name: item, key: item_id, type: string}

sources:
  - {name: users, path: data/users.parquet, event_time: updated_at}
  - {name: items, path: data/items.parquet, event_time: updated_at}

views:
  - name: user_profile
    kind: latest
    entity: user
    source: users
    max_age: 1d
    schedule: "0 3 * * *"
    timezone: Europe/Paris
    shards: 4
    features:
      - {name: age, type: int64}
  - name: item_stats
    kind: latest
    entity: item
    source: items
    description: Prices.
    max_age: 2h
    features:
      - {name: price, type: float64}
  - name: user_country
    kind: latest
    entity: user
    source: users
    schedule: "*/15 * * * *"
    features:
      - {name: country, type: string}
  - name: user_legacy
    kind: latest
    entity: user
    source: users
    features:
      - {name: age, type: int64}
`

// freshProject is freshProjectYAML in a temporary folder, with a
// redis-server holding its generations and run records, dated relative
// to t0.
type freshProject struct {
	config string
	redis  *redistest.Server
	p      *larder.Project
	store  *store.Store
	// gens are the live generations, by view.
	gens map[string]larder.Generation
}

// The instants of the fresh project. On 1 June, Paris is at UTC+2: the
// 03:00 run of user_profile is due at 01:00 UTC, t0 - 11h.
var (
	freshProfileAsOf = t0.Add(-11 * time.Hour)
	freshStatsAsOf   = t0.Add(-5 * time.Hour)
	freshLegacyAt    = t0.Add(-26 * time.Hour)
)

func newFreshProject(tb testing.TB) *freshProject {
	tb.Helper()
	dir := tb.TempDir()
	fp := &freshProject{config: filepath.Join(dir, "larder.yaml"), redis: redistest.Start(tb), gens: map[string]larder.Generation{}}
	if err := os.WriteFile(fp.config, []byte(freshProjectYAML), 0o644); err != nil {
		tb.Fatal(err)
	}
	var err error
	if fp.p, err = config.Load(fp.config); err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	clock := t0
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	at := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	fp.store = store.New(fp.redis.Client(), "fresh", store.Options{Now: now})
	ctx := tb.Context()

	publish := func(view string, run larder.RunInfo, started, published time.Time, inputs []larder.InputGeneration, keys ...larder.Key) {
		tb.Helper()
		v := fp.p.View(view)
		at(started)
		w, err := fp.store.BeginWith(ctx, v, larder.BeginOptions{ExpectedRows: -1, Run: run})
		if err != nil {
			tb.Fatal(err)
		}
		for _, k := range keys {
			row := larder.Row{EventTime: started, Values: []larder.Value{larder.Int64Value(1)}}
			if v.Features[0].Type == larder.TypeFloat64 {
				row.Values[0] = larder.Float64Value(1.5)
			}
			if v.Features[0].Type == larder.TypeString {
				row.Values[0] = larder.StringValue("FR")
			}
			if err := w.Put(ctx, k, row); err != nil {
				tb.Fatal(err)
			}
		}
		w.SetInputs(inputs)
		at(published)
		g, err := w.Publish(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		fp.gens[view] = g
	}
	publish("item_stats", larder.RunInfo{AsOf: freshStatsAsOf, Trigger: larder.TriggerManual},
		freshStatsAsOf, freshStatsAsOf.Add(30*time.Second), nil,
		larder.StringKey("A-1"), larder.StringKey("B-2"))
	publish("user_profile", larder.RunInfo{AsOf: freshProfileAsOf, Trigger: larder.TriggerSchedule, Tick: freshProfileAsOf, Job: "j-profile"},
		freshProfileAsOf, freshProfileAsOf.Add(2*time.Minute),
		[]larder.InputGeneration{{View: "item_stats", Generation: fp.gens["item_stats"].ID, AsOf: freshStatsAsOf}},
		larder.Int64Key(1), larder.Int64Key(2), larder.Int64Key(3))
	publish("user_legacy", larder.RunInfo{AsOf: freshLegacyAt, Trigger: larder.TriggerManual},
		freshLegacyAt, freshLegacyAt.Add(time.Minute), nil, larder.Int64Key(1))
	at(t0)

	// Oldest first: the store keeps each view's newest record first.
	for _, r := range []larder.Run{
		{View: "user_profile", Kind: larder.KindLatest, State: larder.RunFailed, AsOf: t0.Add(-35 * time.Hour),
			Trigger: larder.TriggerSchedule, Tick: t0.Add(-35 * time.Hour), Shards: 4, StartedAt: t0.Add(-35 * time.Hour), Duration: time.Minute,
			Err: "materialize user_profile: redis: connection refused"},
		{View: "user_profile", Kind: larder.KindLatest, State: larder.RunOK, Generation: fp.gens["user_profile"].ID, AsOf: freshProfileAsOf,
			Inputs: fp.gens["user_profile"].Inputs, Trigger: larder.TriggerSchedule, Tick: freshProfileAsOf, Job: "j-profile", Shards: 4,
			Owner: "worker-1:12", StartedAt: freshProfileAsOf, Duration: 2 * time.Minute, RowsRead: 3, EntitiesWritten: 3},
		{View: "item_stats", Kind: larder.KindLatest, State: larder.RunOK, Generation: fp.gens["item_stats"].ID, AsOf: freshStatsAsOf,
			Trigger: larder.TriggerManual, StartedAt: freshStatsAsOf, Duration: 30 * time.Second, RowsRead: 2, EntitiesWritten: 2},
		{View: "item_stats", Kind: larder.KindLatest, State: larder.RunFailed, AsOf: t0.Add(-time.Hour), Trigger: larder.TriggerManual,
			StartedAt: t0.Add(-time.Hour), Duration: 30 * time.Second, RowsRead: 1,
			Err: `materialize item_stats: source file /data/items.parquet: column "price" (the float64 feature "price") is BYTE_ARRAY, want DOUBLE or FLOAT: fix the source or the type in larder.yaml`},
		// Cancelled on purpose: not a failure, nor a success.
		{View: "item_stats", Kind: larder.KindLatest, State: larder.RunCancelled, AsOf: t0.Add(-10 * time.Minute), Trigger: larder.TriggerJob,
			Job: "j-stats", StartedAt: t0.Add(-10 * time.Minute), Duration: 5 * time.Second, Err: "materialize item_stats: context canceled"},
		{View: "user_country", Kind: larder.KindLatest, State: larder.RunAbandoned, Generation: 1, AsOf: t0.Add(-30 * time.Minute),
			Trigger: larder.TriggerSchedule, Tick: t0.Add(-30 * time.Minute), Owner: "worker-2:77", StartedAt: t0.Add(-30 * time.Minute), Duration: 11 * time.Minute,
			Err: "abandoned: the run (worker-2:77) stopped renewing its lease while it wrote generation 1: it was killed, or lost Redis; its generation was deleted"},
		// A skipped tick: not a failure either.
		{View: "user_country", Kind: larder.KindLatest, State: larder.RunSkipped, AsOf: t0.Add(-15 * time.Minute),
			Trigger: larder.TriggerSchedule, Tick: t0.Add(-15 * time.Minute), StartedAt: t0.Add(-15 * time.Minute),
			Err: "skipped: the previous run (worker-2:77) still holds the view's lease"},
	} {
		if err := fp.store.RecordRun(ctx, r); err != nil {
			tb.Fatal(err)
		}
	}
	return fp
}

// larder runs the command against the fresh project at now.
func (fp *freshProject) larder(tb testing.TB, now time.Time, args ...string) result {
	tb.Helper()
	return larderAt(tb, tb.Context(), now, append([]string{"--redis", fp.redis.Addr, "-c", fp.config}, args...)...)
}

func TestLastRuns(t *testing.T) {
	ok := func(at time.Duration) larder.Run { return larder.Run{StartedAt: t0.Add(at)} }
	state := func(s larder.RunState, at time.Duration) larder.Run {
		return larder.Run{State: s, StartedAt: t0.Add(at), Err: "boom"}
	}
	legacyFailed := larder.Run{StartedAt: t0.Add(-time.Minute), Err: "boom"} // no state: failed
	tests := []struct {
		name             string
		runs             []larder.Run
		success, failure int // indexes into runs; -1: none
		failing          bool
	}{
		{"none", nil, -1, -1, false},
		{"one success", []larder.Run{ok(0)}, 0, -1, false},
		{"failure after success", []larder.Run{state(larder.RunFailed, 0), ok(-time.Hour)}, 1, 0, true},
		{"recovered", []larder.Run{ok(0), state(larder.RunFailed, -time.Hour)}, 0, 1, false},
		{"the newest of each", []larder.Run{state(larder.RunAbandoned, 0), ok(-time.Hour), state(larder.RunFailed, -2*time.Hour), ok(-3 * time.Hour)}, 1, 0, true},
		{"cancelled and skipped are neither", []larder.Run{state(larder.RunCancelled, 0), state(larder.RunSkipped, -time.Minute), ok(-time.Hour)}, 2, -1, false},
		{"a record without a state", []larder.Run{legacyFailed, ok(-time.Hour)}, 1, 0, true},
		{"failures only", []larder.Run{state(larder.RunFailed, 0), state(larder.RunAbandoned, -time.Hour)}, -1, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			success, failure := lastRuns(tc.runs)
			want := func(i int) *larder.Run {
				if i < 0 {
					return nil
				}
				return &tc.runs[i]
			}
			if success != want(tc.success) || failure != want(tc.failure) {
				t.Errorf("lastRuns = %v, %v; want runs %d and %d", success, failure, tc.success, tc.failure)
			}
			if got := failing(larder.ViewFreshness{LastSuccess: success, LastFailure: failure}); got != tc.failing {
				t.Errorf("failing = %v, want %v", got, tc.failing)
			}
		})
	}
}

// TestFreshnessListViews serves the fresh project with viewFreshness as
// the Freshness hook, and checks what ListViews reports of each view.
func TestFreshnessListViews(t *testing.T) {
	fp := newFreshProject(t)
	now := t0
	svc, err := server.New(server.Config{Project: fp.p, Store: fp.store, Now: func() time.Time { return now },
		Freshness: viewFreshness(fp.p, fp.store, func() time.Time { return now })})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := svc.ListViews(t.Context(), &larderv1.ListViewsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ts := timestamppb.New
	profile, stats, legacy := fp.gens["user_profile"], fp.gens["item_stats"], fp.gens["user_legacy"]
	want := []*larderv1.ViewInfo{
		{
			Name: "user_profile", Generation: profile.ID, AsOf: ts(freshProfileAsOf), Age: durationpb.New(11 * time.Hour),
			Trigger: "schedule", Inputs: []*larderv1.InputGeneration{{View: "item_stats", Generation: stats.ID, AsOf: ts(freshStatsAsOf)}},
			TimeZone: "Europe/Paris", Shards: 4, NextRunAt: ts(t0.Add(13 * time.Hour)),
			LastSuccess: &larderv1.RunSummary{StartedAt: ts(freshProfileAsOf), FinishedAt: ts(freshProfileAsOf.Add(2 * time.Minute)),
				Generation: profile.ID, AsOf: ts(freshProfileAsOf), Trigger: "schedule"},
			LastFailure: &larderv1.RunSummary{StartedAt: ts(t0.Add(-35 * time.Hour)), FinishedAt: ts(t0.Add(-35*time.Hour + time.Minute)),
				AsOf: ts(t0.Add(-35 * time.Hour)), Trigger: "schedule", Error: "materialize user_profile: redis: connection refused"},
		},
		{
			Name: "item_stats", Generation: stats.ID, AsOf: ts(freshStatsAsOf), Age: durationpb.New(5 * time.Hour), Trigger: "manual",
			LastSuccess: &larderv1.RunSummary{StartedAt: ts(freshStatsAsOf), FinishedAt: ts(freshStatsAsOf.Add(30 * time.Second)),
				Generation: stats.ID, AsOf: ts(freshStatsAsOf), Trigger: "manual"},
			LastFailure: &larderv1.RunSummary{StartedAt: ts(t0.Add(-time.Hour)), FinishedAt: ts(t0.Add(-time.Hour + 30*time.Second)),
				AsOf: ts(t0.Add(-time.Hour)), Trigger: "manual",
				Error: `materialize item_stats: source file /data/items.parquet: column "price" (the float64 feature "price") is BYTE_ARRAY, want DOUBLE or FLOAT: fix the source or the type in larder.yaml`},
		},
		{
			Name: "user_country", TimeZone: "UTC", NextRunAt: ts(t0.Add(15 * time.Minute)),
			LastFailure: &larderv1.RunSummary{StartedAt: ts(t0.Add(-30 * time.Minute)), FinishedAt: ts(t0.Add(-19 * time.Minute)), Generation: 1,
				AsOf: ts(t0.Add(-30 * time.Minute)), Trigger: "schedule",
				Error: "abandoned: the run (worker-2:77) stopped renewing its lease while it wrote generation 1: it was killed, or lost Redis; its generation was deleted"},
		},
		{
			// No run record: the last success is the run that published
			// the live generation, from its metadata.
			Name: "user_legacy", Generation: legacy.ID, AsOf: ts(freshLegacyAt), Age: durationpb.New(26 * time.Hour), Trigger: "manual",
			LastSuccess: &larderv1.RunSummary{StartedAt: ts(freshLegacyAt), FinishedAt: ts(freshLegacyAt.Add(time.Minute)),
				Generation: legacy.ID, AsOf: ts(freshLegacyAt), Trigger: "manual"},
		},
	}
	if len(resp.GetViews()) != len(want) {
		t.Fatalf("ListViews lists %d views, want %d", len(resp.GetViews()), len(want))
	}
	for i, info := range resp.GetViews() {
		got := &larderv1.ViewInfo{
			Name: info.GetName(), Generation: info.GetGeneration(), Age: info.GetAge(), AsOf: info.GetAsOf(),
			Inputs: info.GetInputs(), Trigger: info.GetTrigger(), TimeZone: info.GetTimeZone(), Shards: info.GetShards(),
			LastSuccess: info.GetLastSuccess(), LastFailure: info.GetLastFailure(), NextRunAt: info.GetNextRunAt(),
		}
		if !proto.Equal(got, want[i]) {
			t.Errorf("%s:\ngot  %v\nwant %v", info.GetName(), got, want[i])
		}
	}
}

// TestStreamLagSlowBroker reads the views of a project whose four Kafka
// streams, two per view, name a broker that takes connections and never
// answers. Each stream's lag is unknown, and the lags are read at once,
// within one timeout for all the views, not one per stream in turn: a
// broker down must not make ListViews, `larder views` or a scrape of the
// freshness gauges outlast their deadlines.
func TestStreamLagSlowBroker(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var held sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	held.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c) // held open, never answered
			connsMu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		held.Wait()
		for _, c := range conns {
			c.Close()
		}
	})

	srv := redistest.Start(t)
	var views, streams strings.Builder
	for _, v := range []string{"a", "b"} {
		fmt.Fprintf(&views, "  - {name: %s, kind: latest, entity: user, source: events, features: [{name: x, type: float64}]}\n", v)
		for i := range 2 {
			fmt.Fprintf(&streams, "  - {name: %s%d, view: %s, group: g%s%d, kafka: {brokers: [\"%s\"], topic: t%s%d}}\n", v, i, v, v, i, ln.Addr(), v, i)
		}
	}
	sp := newSchedProject(t, srv.Addr, "", views.String()+"streams:\n"+streams.String(), 10, 5)

	start := time.Now()
	r := sp.larder(t, "views")
	took := time.Since(start)
	mustSucceed(t, r, "views")
	for _, s := range []string{"a0 unknown", "a1 unknown", "b0 unknown", "b1 unknown"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("larder views does not say %q:\n%s", s, r.stdout)
		}
	}
	if took > 4*time.Second {
		t.Errorf("larder views took %s with four streams on a broker that does not answer; want the lags read at once, within one timeout of 2s", took.Round(time.Millisecond))
	}
}

// TestStreamLagsNotSharedOnCancel checks that lags read under a context
// that ended, which say only that, are not kept for the next caller: a
// ListViews whose caller went away must not make the views of the next
// one say their lags are unknown.
func TestStreamLagsNotSharedOnCancel(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "", `  - {name: a, kind: latest, entity: user, source: events, features: [{name: x, type: float64}]}
streams:
  - {name: s, view: a, redis_stream: clicks}
`, 10, 5)
	f := newFreshness(sp.p, sp.store(t), nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s := sp.p.Streams[0]
	if lag := f.streamLags(ctx, time.Now())[s]; lag.Err == "" {
		t.Fatalf("a lag read under a context canceled: %+v, want its error", lag)
	}
	if lag := f.streamLags(t.Context(), time.Now())[s]; lag.Err != "" {
		t.Errorf("the lag read next, within %s: %+v, want no error", lagReuse, lag)
	}
}
