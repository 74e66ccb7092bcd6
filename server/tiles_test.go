package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// TestStreamingAggregateServed serves a streaming aggregate view: GetFeatures
// answers batch and stream together and says which T it read as of; Rank
// reads the same values in its round trip, and explain marks the inputs
// that count stream events, with the newest one's time.
func TestStreamingAggregateServed(t *testing.T) {
	ctx := context.Background()
	h, err := larder.ParseWindow("1h")
	if err != nil {
		t.Fatal(err)
	}
	p := &larder.Project{
		Name: "tilesrv",
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "item_id", KeyType: larder.TypeString},
		},
		Sources: []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "act", Kind: larder.KindAggregate, Entity: "user", Source: "events", MaxAge: time.Hour,
				Aggregations: []larder.Aggregation{{Column: "amount", Type: larder.TypeInt64, Windows: []larder.Window{h},
					Functions: []larder.AggFunc{larder.AggCount, larder.AggSum}}}},
			{Name: "item_info", Kind: larder.KindLatest, Entity: "item", Source: "events", Features: []larder.Feature{{Name: "price", Type: larder.TypeFloat64}}},
		},
		Streams: []*larder.Stream{{Name: "ev", View: "act", RedisStream: "events"}},
		Rankers: []*larder.Ranker{{Name: "r", Model: "r.onnx", Context: "user", Candidate: "item",
			Inputs: []larder.RankerInput{{Ref: "act:amount_sum_1h"}, {Ref: "item_info:price"}}}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	st, _ := newStore(t, p)
	now := time.Now()
	cut := larder.TileFloor(now.Add(-10*time.Minute), time.Minute)
	c := cut.Unix() / 60
	v := p.View("act")
	w, err := st.Begin(ctx, v, larder.BeginOptions{Run: larder.RunInfo{AsOf: cut}})
	if err != nil {
		t.Fatal(err)
	}
	var tiles []larder.EntityTiles
	for _, u := range []int64{1, 3} {
		if err := w.Put(ctx, larder.Int64Key(u), larder.Row{EventTime: cut, Values: []larder.Value{larder.Int64Value(1), larder.Int64Value(5)}}); err != nil {
			t.Fatal(err)
		}
		tiles = append(tiles, larder.EntityTiles{Key: larder.Int64Key(u), Aggs: []larder.AggTiles{{
			Tiles: []larder.Tile{{End: c - 5, Partial: larder.Partial{Count: 1, Sum: 5}}}, Rest: []larder.Partial{{}},
		}}})
	}
	if err := st.PutTiles(ctx, v, w.ID(), cut, tiles); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	publish(t, st, p, "item_info", map[larder.Key]larder.Row{
		larder.StringKey("a"): {EventTime: now, Values: []larder.Value{larder.Float64Value(2)}},
	})
	at := cut.Add(90 * time.Second).Truncate(time.Millisecond)
	out, err := st.AddEvents(ctx, v, []larder.TileEvent{
		{Key: larder.Int64Key(1), ID: "1-1", Time: at, Values: []larder.Value{larder.Int64Value(10)}},
		{Key: larder.Int64Key(2), ID: "1-2", Time: at, Values: []larder.Value{larder.Int64Value(7)}},
	})
	if err != nil || out[0].Result != larder.PushWritten || out[1].Result != larder.PushWritten {
		t.Fatalf("AddEvents: %v, %v", out, err)
	}
	srv := serve(t, server.Config{Project: p, Store: st, Models: map[string]server.Model{"r": newFakeModel("v1", 1)}}, 5*time.Second)

	resp, err := srv.client.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: intKeys(1, 2, 3), Features: []string{"act:*"}})
	if err != nil {
		t.Fatal(err)
	}
	T := resp.GetGenerations()[0].GetTileTimeMicros()
	if T == 0 || T%60e6 != 0 || T < cut.Add(10*time.Minute).UnixMicro() || T > time.Now().UnixMicro() {
		t.Errorf("tile_time_micros %d: want the request's time rounded down to the minute", T)
	}
	want := [][2]int64{{2, 15}, {1, 7}, {1, 5}} // batch + stream, stream only, batch only
	cols := resp.GetColumns()
	if len(cols) != 2 || resp.GetRowCount() != 3 {
		t.Fatalf("%d columns, %d rows, want 2 and 3", len(cols), resp.GetRowCount())
	}
	for i := range want {
		count, sum := cols[0].GetInt64Values()[i], cols[1].GetInt64Values()[i]
		if count != want[i][0] || sum != want[i][1] || resp.GetViews()[0].GetStatuses()[i] != larderv1.FeatureStatus_FEATURE_STATUS_PRESENT {
			t.Errorf("user %d: count %d sum %d status %s, want count %d sum %d", i+1, count, sum, resp.GetViews()[0].GetStatuses()[i], want[i][0], want[i][1])
		}
	}

	for _, tc := range []struct {
		user   int64
		sum    float32
		pushed bool
	}{{1, 15, true}, {2, 7, true}, {3, 5, false}} {
		r, err := srv.client.Rank(ctx, &larderv1.RankRequest{Ranker: "r", ContextKey: intKey(tc.user), CandidateKeys: strKeys("a"), Explain: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetGenerations()[0].GetTileTimeMicros() == 0 {
			t.Errorf("Rank's generations %v: no tile time for act", r.GetGenerations())
		}
		ex := r.GetCandidates()[0].GetExplanation()
		if ex.GetInputs()[0] != tc.sum || ex.GetPushed()[0] != tc.pushed {
			t.Errorf("user %d: input %v pushed %v, want %v %v", tc.user, ex.GetInputs()[0], ex.GetPushed()[0], tc.sum, tc.pushed)
		}
		if tc.pushed && ex.GetEventTimeMicros()[0] != at.UnixMicro() {
			t.Errorf("user %d: event time %d, want the stream event's %d", tc.user, ex.GetEventTimeMicros()[0], at.UnixMicro())
		}
		// Without explain, the input is read as numbers: the same sum.
		r, err = srv.client.Rank(ctx, &larderv1.RankRequest{Ranker: "r", ContextKey: intKey(tc.user), CandidateKeys: strKeys("a")})
		if err != nil || len(r.GetCandidates()) != 1 {
			t.Fatalf("Rank: %v, %v", r, err)
		}
	}
}
