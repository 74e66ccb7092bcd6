package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// BenchmarkGetFeaturesStreaming reads one entity's 36 features (count,
// sum, mean, min, max and last of a float64 and an int64 column over 5m,
// 30m and 2h) of a streaming aggregate view, through GetFeatures, against
// the batch-only aggregate view of the same windows. Each of the 1,000
// users has, in the streaming view, batch tiles for 10 events of the 2h
// before a cutoff 30 minutes ago, and 10 stream events since.
func BenchmarkGetFeaturesStreaming(b *testing.B) {
	ctx := context.Background()
	var ws []larder.Window
	for _, s := range []string{"5m", "30m", "2h"} {
		w, err := larder.ParseWindow(s)
		if err != nil {
			b.Fatal(err)
		}
		ws = append(ws, w)
	}
	fns := []larder.AggFunc{larder.AggCount, larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax, larder.AggLast}
	aggs := func() []larder.Aggregation {
		return []larder.Aggregation{
			{Column: "amount", Type: larder.TypeFloat64, Windows: ws, Functions: fns},
			{Column: "qty", Type: larder.TypeInt64, Windows: ws, Functions: fns},
		}
	}
	p := &larder.Project{
		Name:     "tilebench",
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "streaming", Kind: larder.KindAggregate, Entity: "user", Source: "events", MaxAge: time.Hour, Aggregations: aggs()},
			{Name: "batch", Kind: larder.KindAggregate, Entity: "user", Source: "events", MaxAge: time.Hour, Aggregations: aggs()},
		},
		Streams: []*larder.Stream{{Name: "ev", View: "streaming", RedisStream: "events"}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	st, _ := newStore(b, p)
	const users = 1000
	rng := rand.New(rand.NewPCG(3, 4))
	cut := larder.TileFloor(time.Now().Add(-30*time.Minute), time.Minute)
	c := cut.Unix() / 60
	for _, name := range []string{"streaming", "batch"} {
		v := p.View(name)
		w, err := st.BeginSized(ctx, v, users)
		if err != nil {
			b.Fatal(err)
		}
		var tiles []larder.EntityTiles
		for u := int64(1); u <= users; u++ {
			vals := make([]larder.Value, len(v.Features))
			for i, f := range v.Features {
				if f.Type == larder.TypeInt64 {
					vals[i] = larder.Int64Value(rng.Int64N(1000))
				} else {
					vals[i] = larder.Float64Value(rng.Float64() * 100)
				}
			}
			if err := w.Put(ctx, larder.Int64Key(u), larder.Row{EventTime: cut, Values: vals}); err != nil {
				b.Fatal(err)
			}
			et := larder.EntityTiles{Key: larder.Int64Key(u)}
			for range v.Aggregations {
				var at larder.AggTiles
				for e := c - 119; e <= c; e += 12 { // 10 events of the last 2h
					x := rng.Int64N(1000)
					at.Tiles = append(at.Tiles, larder.Tile{End: e, Partial: larder.Partial{Count: 1, Sum: uint64(x), Min: uint64(x), Max: uint64(x), LastAt: e * 60e9, Last: uint64(x)}})
				}
				at.Rest = make([]larder.Partial, len(ws))
				at.Rest[2] = larder.Partial{Count: 5, Sum: 50, Min: 1, Max: 20, LastAt: c * 60e9, Last: 3}
				et.Aggs = append(et.Aggs, at)
			}
			tiles = append(tiles, et)
		}
		if name == "streaming" {
			if err := st.PutTiles(ctx, v, w.ID(), cut, tiles); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := w.Publish(ctx); err != nil {
			b.Fatal(err)
		}
	}
	var events []larder.TileEvent
	for i := range users * 10 {
		at := cut.Add(time.Duration(1+rng.IntN(29*60)) * time.Second)
		events = append(events, larder.TileEvent{Key: larder.Int64Key(int64(i%users + 1)), ID: fmt.Sprint(i), Time: at,
			Values: []larder.Value{larder.Float64Value(rng.Float64() * 100), larder.Int64Value(rng.Int64N(1000))}})
	}
	if _, err := st.AddEvents(ctx, p.View("streaming"), events); err != nil {
		b.Fatal(err)
	}
	srv := serve(b, server.Config{Project: p, Store: st}, 5*time.Second)

	for _, name := range []string{"streaming", "batch-only"} {
		view := name
		if name == "batch-only" {
			view = "batch"
		}
		b.Run(name, func(b *testing.B) {
			i := 0
			req := &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{intKey(1)}, Features: []string{view + ":*"}}
			run(b, func(ctx context.Context) error {
				i++
				req.Keys[0] = intKey(int64(i%users + 1))
				resp, err := srv.client.GetFeatures(ctx, req)
				if err == nil && (resp.GetRowCount() != 1 || (view == "streaming") != (resp.GetGenerations()[0].GetTileTimeMicros() != 0)) {
					err = fmt.Errorf("got %d rows, generations %v", resp.GetRowCount(), resp.GetGenerations())
				}
				return err
			})
		})
	}
}
