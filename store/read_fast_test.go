package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

func TestReadNumbers(t *testing.T) { forEachBackend(t, testReadNumbers) }

// testReadNumbers checks that a lookup with Numbers reads each chosen
// feature as Value.Number would, with the defaults for nulls, values that
// are not numbers and missing keys, and that it agrees with a whole-row
// read of the same keys.
func testReadNumbers(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})
	at := time.Date(2026, 2, 3, 4, 5, 6, 7000, time.UTC)
	mixed := p.View("mixed")
	publish(t, s, mixed, 40, func(id, _ int64) larder.Row {
		if id%5 == 0 { // every value null
			return larder.Row{EventTime: at, Values: make([]larder.Value, 7)}
		}
		vals := []larder.Value{
			larder.Int64Value(-id * 1_000_003), larder.Float64Value(float64(id) / 7), larder.Float32Value(float32(id) / 3),
			larder.BoolValue(id%2 == 0), larder.StringValue(fmt.Sprintf("user-%d", id)),
			larder.BytesValue([]byte{byte(id)}), larder.Float32VectorValue([]float32{float32(id), 2}),
		}
		if id%3 == 0 {
			vals[1] = larder.Null
		}
		return larder.Row{EventTime: at.Add(time.Duration(id) * time.Second), Values: vals}
	})

	// Repeated keys, keys sharing a bucket, missing keys, and features that
	// repeat or are not numbers.
	keys := []larder.Key{larder.Int64Key(1), larder.Int64Key(3), larder.Int64Key(5), larder.Int64Key(999), larder.Int64Key(1)}
	for id := int64(6); id <= 40; id++ {
		keys = append(keys, larder.Int64Key(id))
	}
	features := []int{0, 1, 2, 3, 4, 6, 1}
	defaults := []float32{-1, -2, -3, -4, -5, -6, -7}
	nums := &larder.Lookup{View: mixed, Keys: keys, Numbers: &larder.NumberRead{Features: features, Defaults: defaults}}
	rows := &larder.Lookup{View: mixed, Keys: keys}
	if err := s.Read(ctx, []*larder.Lookup{nums, rows}); err != nil {
		t.Fatal(err)
	}
	got := nums.Numbers.Values
	if len(got) != len(keys)*len(features) {
		t.Fatalf("%d numbers, want %d", len(got), len(keys)*len(features))
	}
	for i, k := range keys {
		if nums.Found[i] != rows.Found[i] {
			t.Errorf("key %s: found %v, whole-row read found %v", k, nums.Found[i], rows.Found[i])
		}
		if !nums.Rows[i].EventTime.Equal(rows.Rows[i].EventTime) || len(nums.Rows[i].Values) != 0 {
			t.Errorf("key %s: row %v, want the event time %s and no values", k, nums.Rows[i], rows.Rows[i].EventTime)
		}
		for j, f := range features {
			want := defaults[j]
			if rows.Found[i] {
				if n, ok := rows.Rows[i].Values[f].Number(); ok {
					want = float32(n)
				}
			}
			if g := got[i*len(features)+j]; g != want {
				t.Errorf("key %s feature %d: %v, want %v", k, f, g, want)
			}
		}
	}
	if nums.Found[3] || got[3*len(features)] != -1 {
		t.Errorf("the missing key: found %v, first number %v; want not found and its default", nums.Found[3], got[3*len(features)])
	}

	// Defaults must match the features.
	bad := &larder.Lookup{View: mixed, Keys: keys[:1], Numbers: &larder.NumberRead{Features: features, Defaults: defaults[:2]}}
	var invalid *larder.InvalidError
	if err := s.Read(ctx, []*larder.Lookup{bad}); !errors.As(err, &invalid) {
		t.Errorf("numbers with too few defaults: %v, want an InvalidError", err)
	}

	// A corrupt row is refused as by a whole-row read.
	if err := client.HSet(ctx, "larder:test:mixed:1:"+bucketOfKeyIn(t, client, "mixed", 7), "7", "\x01garbage").Err(); err != nil {
		t.Fatal(err)
	}
	one := &larder.Lookup{View: mixed, Keys: []larder.Key{larder.Int64Key(7)}, Numbers: &larder.NumberRead{Features: features, Defaults: defaults}}
	if err := s.Read(ctx, []*larder.Lookup{one}); !errors.Is(err, store.ErrCorruptRow) {
		t.Errorf("numbers of a corrupt row: %v, want ErrCorruptRow", err)
	}
}

// bucketOfKeyIn returns the bucket of view's generation 1 that holds id.
func bucketOfKeyIn(tb testing.TB, client redis.UniversalClient, view string, id int64) string {
	tb.Helper()
	prefix := "larder:test:" + view + ":1:"
	for _, k := range keysOf(tb, client, prefix+"*") {
		if ok, _ := client.HExists(context.Background(), k, fmt.Sprint(id)).Result(); ok {
			return k[len(prefix):]
		}
	}
	tb.Fatalf("no bucket of %s holds %d", view, id)
	return ""
}

func TestReadConcurrent(t *testing.T) { forEachBackend(t, testReadConcurrent) }

// testReadConcurrent checks that concurrent Reads, which share round trips,
// each get their own rows, and that a Read whose context ends returns
// ctx.Err() without disturbing the others.
func testReadConcurrent(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	wide := p.View("wide")
	g := publish(t, s, wide, 300, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			l := &larder.Lookup{View: wide}
			for range 40 {
				l.Keys = l.Keys[:0]
				for range 1 + rng.IntN(8) {
					l.Keys = append(l.Keys, larder.Int64Key(1+rng.Int64N(320))) // some missing
				}
				if rng.IntN(4) == 0 { // a caller that gives up at once
					cctx, cancel := context.WithCancel(ctx)
					cancel()
					if err := s.Read(cctx, []*larder.Lookup{l}); !errors.Is(err, context.Canceled) {
						errs <- fmt.Errorf("read with an ended context: %v, want context.Canceled", err)
					}
					continue
				}
				if err := s.Read(ctx, []*larder.Lookup{l}); err != nil {
					errs <- err
					return
				}
				for i, k := range l.Keys {
					id := k.Int64()
					if l.Found[i] != (id <= 300) {
						errs <- fmt.Errorf("key %d: found %v", id, l.Found[i])
						return
					}
					if !l.Found[i] {
						continue
					}
					want := wideRow(id, g.ID, at)
					for j, v := range l.Rows[i].Values {
						if !v.Equal(want.Values[j]) {
							errs <- fmt.Errorf("key %d feature %d: %v, want %v", id, j, v, want.Values[j])
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
