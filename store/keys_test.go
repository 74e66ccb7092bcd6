package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// listKeys returns every key Keys gives for v, failing tb on a duplicate.
func listKeys(tb testing.TB, s *store.Store, v *larder.View) []larder.Key {
	tb.Helper()
	var out []larder.Key
	seen := make(map[larder.Key]bool)
	err := s.Keys(context.Background(), v, 0, func(keys []larder.Key) error {
		for _, k := range keys {
			if seen[k] {
				tb.Errorf("Keys gave %#v twice", k)
			}
			seen[k] = true
			out = append(out, k)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("Keys(%s): %v", v.Name, err)
	}
	return out
}

func int64Keys(from, to int64) []larder.Key {
	var keys []larder.Key
	for id := from; id <= to; id++ {
		keys = append(keys, larder.Int64Key(id))
	}
	return keys
}

func sameKeys(a, b []larder.Key) bool {
	cmp := func(x, y larder.Key) int {
		if x.Int64() != y.Int64() {
			return int(x.Int64() - y.Int64())
		}
		switch {
		case x.Str() < y.Str():
			return -1
		case x.Str() > y.Str():
			return 1
		}
		return 0
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

func TestKeys(t *testing.T) {
	bs := append([]backend(nil), backends...)
	if !testing.Short() {
		bs = append(bs, backend{"cluster", func(tb testing.TB) redis.UniversalClient {
			return redistest.StartCluster(tb, 3).Client()
		}})
	}
	for _, b := range bs {
		t.Run(b.name, func(t *testing.T) { testKeys(t, b.start(t)) })
	}
}

func testKeys(t *testing.T, client redis.UniversalClient) {
	p := testProject(t)
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		opts    store.Options
		rows    int64 // ids 1..rows in the first generation
		replace int64 // ids 1..replace in a second one, when > 0
	}{
		// About 100 rows per bucket: every bucket is one HSCAN call, and
		// the buckets take several pipelined windows.
		{name: "many buckets", rows: 9000},
		// One bucket of 3000 rows: a real hash table, scanned over several
		// HSCAN calls that may repeat fields.
		{name: "one big bucket", opts: store.Options{Buckets: 1}, rows: 3000},
		{name: "empty generation", rows: 0},
		// Only the live generation's keys, not the replaced one's.
		{name: "replaced", rows: 500, replace: 120},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := store.New(client, fmt.Sprintf("keys%d", i), tt.opts)
			v := p.View("wide")
			publish(t, s, v, tt.rows, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
			want := int64Keys(1, tt.rows)
			if tt.replace > 0 {
				publish(t, s, v, tt.replace, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
				want = int64Keys(1, tt.replace)
			}
			if got := listKeys(t, s, v); !sameKeys(got, want) {
				t.Fatalf("Keys gave %d keys, want %d (ids 1..%d)", len(got), len(want), len(want))
			}
		})
	}

	t.Run("string keys", func(t *testing.T) {
		s := store.New(client, "keysstr", store.Options{})
		v := p.View("items")
		w, err := s.BeginSized(ctx, v, 3)
		if err != nil {
			t.Fatal(err)
		}
		want := []larder.Key{larder.StringKey("a"), larder.StringKey("b:c"), larder.StringKey("é 1")}
		for _, k := range want {
			if err := w.Put(ctx, k, larder.Row{EventTime: at, Values: []larder.Value{larder.Float64Value(1)}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		if got := listKeys(t, s, v); !sameKeys(got, want) {
			t.Fatalf("Keys = %#v, want %#v", got, want)
		}
	})

	t.Run("never published", func(t *testing.T) {
		s := store.New(client, "keysnone", store.Options{})
		err := s.Keys(ctx, p.View("mixed"), 0, func([]larder.Key) error { return nil })
		if !errors.Is(err, larder.ErrNoGeneration) {
			t.Fatalf("Keys = %v, want ErrNoGeneration", err)
		}
	})

	t.Run("fn error stops", func(t *testing.T) {
		s := store.New(client, "keysstop", store.Options{})
		v := p.View("wide")
		publish(t, s, v, 1000, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
		stop := errors.New("stop")
		calls := 0
		err := s.Keys(ctx, v, 0, func([]larder.Key) error { calls++; return stop })
		if err != stop || calls != 1 {
			t.Fatalf("Keys = %v after %d calls, want fn's error as is after 1", err, calls)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		s := store.New(client, "keyscancel", store.Options{})
		v := p.View("wide")
		publish(t, s, v, 10, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Keys(cctx, v, 0, func([]larder.Key) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Fatalf("Keys = %v, want context.Canceled", err)
		}
	})
}

func TestGenerationModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		v := p.View("items")
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		tests := []struct {
			name, model string
		}{
			{name: "with a model", model: "sha256:0123456789ab"},
			{name: "without", model: ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := store.New(client, "model", store.Options{})
				w, err := s.BeginSized(ctx, v, 1)
				if err != nil {
					t.Fatal(err)
				}
				if tt.model != "" {
					w.SetModel(tt.model)
				}
				if err := w.Put(ctx, larder.StringKey("a"), larder.Row{EventTime: at, Values: []larder.Value{larder.Float64Value(1)}}); err != nil {
					t.Fatal(err)
				}
				gen, err := w.Publish(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if gen.Model != tt.model {
					t.Errorf("Publish: Generation.Model = %q, want %q", gen.Model, tt.model)
				}
				if g, err := s.Live(ctx, v); err != nil || g.Model != tt.model {
					t.Errorf("Live (cached) = %+v, %v; want model %q", g, err, tt.model)
				}
				// A new store reads it back from the metadata.
				g, err := store.New(client, "model", store.Options{}).Live(ctx, v)
				if err != nil || g.Model != tt.model || g.ID != gen.ID {
					t.Errorf("Live (new store) = %+v, %v; want generation %d, model %q", g, err, gen.ID, tt.model)
				}
			})
		}
	})
}
