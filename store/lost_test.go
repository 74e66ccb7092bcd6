package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// TestDataLost empties Redis under a reader that has a generation cached, as
// a restart without persistence does: the reader answers with an error
// saying the data is lost, never with rows of nothing; once the view is
// published again, under the same generation id and another bucket count,
// it reads the new generation, never the vanished one.
func TestDataLost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		wide := p.View("wide")
		at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		writer := store.New(client, p.Name, store.Options{})
		// A short refresh interval, so that a view with no generation is
		// looked for again soon.
		reader := store.New(client, p.Name, store.Options{RefreshInterval: 20 * time.Millisecond})
		g1 := publish(t, writer, wide, 50, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
		read := func() (larder.Lookup, error) {
			l := larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(7), larder.Int64Key(49)}}
			return l, reader.Read(ctx, []*larder.Lookup{&l})
		}
		if l, err := read(); err != nil || !l.Found[0] || l.Generation != g1.ID {
			t.Fatalf("read before the loss: %+v, %v", l, err)
		}
		if err := client.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		_, err := read()
		if !errors.Is(err, larder.ErrDataLost) || !errors.Is(err, larder.ErrUnavailable) {
			t.Fatalf("read after the loss = %v, want ErrDataLost", err)
		}
		if _, err := read(); !errors.Is(err, larder.ErrNoGeneration) {
			t.Fatalf("read after the loss was noticed = %v, want ErrNoGeneration", err)
		}
		// Published again: the ids start over, with many more rows (another
		// bucket count).
		g2 := publish(t, store.New(client, p.Name, store.Options{}), wide, 5000, func(id, gen int64) larder.Row { return wideRow(id, gen+100, at) })
		if g2.ID != g1.ID {
			t.Logf("the new generation has id %d (the lost one %d)", g2.ID, g1.ID)
		}
		time.Sleep(50 * time.Millisecond)
		l, err := read()
		if err != nil || !l.Found[0] || !l.Found[1] {
			t.Fatalf("read after the new publish: %+v, %v", l, err)
		}
		if got := int64(l.Rows[0].Values[0].Float64() / 1e6); got != g2.ID+100 {
			t.Errorf("read the values of generation %d, want the new one's", got)
		}
	})
}

// TestDataLostSameID has a reader cache generation 1, then Redis lose its
// data and a new generation 1 be published before the reader looks again:
// the reader tells the two apart by the store's epoch.
func TestDataLostSameID(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		wide := p.View("wide")
		at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		reader := store.New(client, p.Name, store.Options{})
		g1 := publish(t, store.New(client, p.Name, store.Options{}), wide, 50, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
		l := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(7)}}
		if err := reader.Read(ctx, []*larder.Lookup{l}); err != nil {
			t.Fatal(err)
		}
		if err := client.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		g2 := publish(t, store.New(client, p.Name, store.Options{}), wide, 5000, func(id, gen int64) larder.Row { return wideRow(id, gen+100, at) })
		if g2.ID != g1.ID {
			t.Fatalf("the new generation has id %d, not %d: the test misses its point", g2.ID, g1.ID)
		}
		if err := reader.Read(ctx, []*larder.Lookup{l}); !errors.Is(err, larder.ErrDataLost) {
			t.Fatalf("read of the replaced generation = %v, want ErrDataLost", err)
		}
		if err := reader.Read(ctx, []*larder.Lookup{l}); err != nil || !l.Found[0] || int64(l.Rows[0].Values[0].Float64()/1e6) != g2.ID+100 {
			t.Fatalf("read after: %+v, %v; want the new generation's row", l, err)
		}
	})
}

// TestPublishCountsRows loses a bucket of a generation between its writes
// and its publish, as an eviction would: the publish is refused with
// ErrIncomplete, and the generation that was live keeps serving.
func TestPublishCountsRows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		wide := p.View("wide")
		at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		s := store.New(client, p.Name, store.Options{})
		g1 := publish(t, s, wide, 200, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
		w, err := s.BeginSized(ctx, wide, 200)
		if err != nil {
			t.Fatal(err)
		}
		for id := int64(0); id < 200; id++ {
			if err := w.Put(ctx, larder.Int64Key(id), wideRow(id, 2, at)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		buckets := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", w.ID()))
		if len(buckets) == 0 {
			t.Fatal("the generation wrote no bucket")
		}
		if err := client.Del(ctx, buckets[0]).Err(); err != nil {
			t.Fatal(err)
		}
		_, err = w.Publish(ctx)
		if !errors.Is(err, store.ErrIncomplete) || !strings.Contains(err.Error(), "200 rows written") {
			t.Fatalf("publish after a bucket was lost = %v, want ErrIncomplete", err)
		}
		if err := w.Abort(ctx); err != nil {
			t.Fatal(err)
		}
		l := larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(7)}}
		if err := store.New(client, p.Name, store.Options{}).Read(ctx, []*larder.Lookup{&l}); err != nil || !l.Found[0] || l.Generation != g1.ID {
			t.Fatalf("read after the refused publish: %+v, %v; want generation %d", l, err, g1.ID)
		}
	})
}
