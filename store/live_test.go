package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

func TestLiveFresh(t *testing.T) { forEachBackend(t, testLiveFresh) }

// testLiveFresh checks that LiveFresh sees a publish that a Store which
// does not Watch has not heard of, while Live still answers from its
// cache, and that it refreshes that cache.
func testLiveFresh(t *testing.T, client redis.UniversalClient) {
	ctx := t.Context()
	p := testProject(t)
	v := p.View("items")
	// An hour between refreshes: within the test, Live never reloads by
	// itself.
	reader := store.New(client, "test", store.Options{RefreshInterval: time.Hour})
	writer := store.New(client, "test", store.Options{})

	// Before any publish, both say so; the cache then holds "none".
	if _, err := reader.Live(ctx, v); !errors.Is(err, larder.ErrNoGeneration) {
		t.Fatalf("Live before any publish: err = %v, want ErrNoGeneration", err)
	}
	if _, err := reader.LiveFresh(ctx, v); !errors.Is(err, larder.ErrNoGeneration) {
		t.Fatalf("LiveFresh before any publish: err = %v, want ErrNoGeneration", err)
	}
	row := func(_, _ int64) larder.Row {
		return larder.Row{EventTime: time.Unix(1, 0), Values: []larder.Value{larder.Float64Value(1)}}
	}
	var cached int64 // the generation Live answers from its cache
	for range 2 {
		pub := publishKeyed(t, writer, v, row)
		if g, _ := reader.Live(ctx, v); g.ID != cached {
			t.Fatalf("Live from a fresh cache after publishing %d = generation %d, want the cached %d (the test relies on it)", pub.ID, g.ID, cached)
		}
		g, err := reader.LiveFresh(ctx, v)
		if err != nil || g.ID != pub.ID || !g.PublishedAt.Equal(pub.PublishedAt) || g.Rows != pub.Rows {
			t.Fatalf("LiveFresh after publishing %d = %+v, %v; want it, published at %v", pub.ID, g, err, pub.PublishedAt)
		}
		if g, err := reader.Live(ctx, v); err != nil || g.ID != pub.ID {
			t.Fatalf("Live after LiveFresh = generation %d, %v; want %d: LiveFresh refreshes the cache", g.ID, err, pub.ID)
		}
		cached = pub.ID
	}
}

// publishKeyed publishes a generation of the string-keyed view v with
// three items.
func publishKeyed(tb testing.TB, s *store.Store, v *larder.View, rowFn func(id, gen int64) larder.Row) larder.Generation {
	tb.Helper()
	ctx := tb.Context()
	w, err := s.BeginSized(ctx, v, -1)
	if err != nil {
		tb.Fatal(err)
	}
	for i, k := range []string{"a", "b", "c"} {
		if err := w.Put(ctx, larder.StringKey(k), rowFn(int64(i), w.ID())); err != nil {
			tb.Fatal(err)
		}
	}
	g, err := w.Publish(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}
