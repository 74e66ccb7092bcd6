package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// randomWideRow returns a row of 20 float64 features with full-precision
// values, as real features have.
func randomWideRow(rng *rand.Rand, at time.Time) larder.Row {
	vals := make([]larder.Value, 20)
	for i := range vals {
		vals[i] = larder.Float64Value(rng.NormFloat64() * 100)
	}
	return larder.Row{EventTime: at, Values: vals}
}

// writeWide publishes a generation of the wide view with n random rows.
func writeWide(tb testing.TB, s *store.Store, v *larder.View, n int) larder.Generation {
	tb.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	w, err := s.BeginSized(ctx, v, int64(n))
	if err != nil {
		tb.Fatal(err)
	}
	at := time.Now()
	for id := 1; id <= n; id++ {
		if err := w.Put(ctx, larder.Int64Key(int64(id)), randomWideRow(rng, at)); err != nil {
			tb.Fatal(err)
		}
	}
	g, err := w.Publish(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// TestMemoryUsage measures the bytes per entity of a view of 20 float64
// features over 10k entities, against a naive layout: one hash per entity,
// one field per feature, the value as text.
func TestMemoryUsage(t *testing.T) {
	const n = 10_000
	ctx := context.Background()
	p := testProject(t)
	wide := p.View("wide")

	srv := redistest.Start(t)
	client := srv.Client()
	s := store.New(client, p.Name, store.Options{})
	if _, _, err := s.MemoryUsage(ctx, "wide"); !errors.Is(err, larder.ErrNoGeneration) {
		t.Fatalf("MemoryUsage before publish: %v, want ErrNoGeneration", err)
	}
	writeWide(t, s, wide, n)
	bytes, rows, err := s.MemoryUsage(ctx, "wide")
	if err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Fatalf("rows = %d, want %d", rows, n)
	}
	ours := float64(bytes) / float64(rows)

	naive := naiveLayoutBytes(t, client, n)
	t.Logf("bytes per entity, 20 float64 features, %d entities: larder %.0f (buckets of %d rows), naive hash-per-entity %.0f (%.1fx)",
		n, ours, n/int(wideBuckets(t, s)), naive, naive/ours)
	if ours >= naive {
		t.Errorf("larder layout takes %.0f bytes per entity, no less than the naive %.0f", ours, naive)
	}

	// Where the bytes go: the encoded value (the floats, plus the version
	// byte, the event time and the null bitmap), and what a field of a
	// hash costs Redis around it.
	types := make([]larder.Type, len(wide.Features))
	for i, f := range wide.Features {
		types[i] = f.Type
	}
	enc, err := store.AppendRow(nil, types, randomWideRow(rand.New(rand.NewPCG(1, 2)), time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("breakdown: %d B of float64 values, %d B encoded value, %.0f B of hash field, key and allocation overhead",
		8*len(types), len(enc), ours-float64(len(enc)))

	// The same view with float32 features (read from DOUBLE columns with
	// `cast: true`).
	narrow := memoryProject(t, larder.TypeFloat32)
	s32 := store.New(client, narrow.Name, store.Options{})
	writeWideTyped(t, s32, narrow.View("wide"), n, larder.TypeFloat32)
	b32, _, err := s32.MemoryUsage(ctx, "wide")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the same view of float32 features: larder %.0f bytes per entity (%.0f%% of float64)",
		float64(b32)/n, 100*float64(b32)/float64(bytes))
	if b32 >= bytes {
		t.Errorf("float32 features take %d bytes, no less than float64's %d", b32, bytes)
	}

	// What the same data takes when the server keeps buckets of rows this
	// size in the listpack encoding (a server setting, not ours to change
	// in production; measured here on the test's own server).
	if err := client.ConfigSet(ctx, "hash-max-listpack-value", "256").Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.ConfigSet(ctx, "hash-max-listpack-entries", "256").Err(); err != nil {
		t.Fatal(err)
	}
	writeWide(t, s, wide, n)
	lpBytes, _, err := s.MemoryUsage(ctx, "wide")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with hash-max-listpack-value 256 and hash-max-listpack-entries 256: larder %.0f bytes per entity",
		float64(lpBytes)/n)
}

// memoryProject returns a project ("narrow") with a view "wide" of 20
// features of type typ.
func memoryProject(tb testing.TB, typ larder.Type) *larder.Project {
	tb.Helper()
	features := make([]larder.Feature, 20)
	for i := range features {
		features[i] = larder.Feature{Name: fmt.Sprintf("f%02d", i), Type: typ, Cast: typ == larder.TypeFloat32}
	}
	p := &larder.Project{
		Name:     "narrow",
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views:    []*larder.View{{Name: "wide", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: features}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// writeWideTyped publishes a generation of n random rows of 20 features of
// type typ (float64 or float32) into v.
func writeWideTyped(tb testing.TB, s *store.Store, v *larder.View, n int, typ larder.Type) {
	tb.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	w, err := s.BeginSized(ctx, v, int64(n))
	if err != nil {
		tb.Fatal(err)
	}
	at := time.Now()
	for id := 1; id <= n; id++ {
		row := randomWideRow(rng, at)
		if typ == larder.TypeFloat32 {
			for i, x := range row.Values {
				row.Values[i] = larder.Float32Value(float32(x.Float64()))
			}
		}
		if err := w.Put(ctx, larder.Int64Key(int64(id)), row); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := w.Publish(ctx); err != nil {
		tb.Fatal(err)
	}
}

func wideBuckets(tb testing.TB, s *store.Store) int64 {
	tb.Helper()
	gens, err := s.Generations(context.Background(), "wide")
	if err != nil || len(gens) == 0 {
		tb.Fatal(err)
	}
	return int64(gens[len(gens)-1].Buckets)
}

// naiveLayoutBytes writes n entities as one hash each with 20 text fields
// and returns their mean MEMORY USAGE.
func naiveLayoutBytes(tb testing.TB, client redis.UniversalClient, n int) float64 {
	tb.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	pipe := client.Pipeline()
	for id := 1; id <= n; id++ {
		row := randomWideRow(rng, time.Now())
		args := make([]any, 0, 40)
		for i, v := range row.Values {
			args = append(args, fmt.Sprintf("f%02d", i), strconv.FormatFloat(v.Float64(), 'g', -1, 64))
		}
		pipe.HSet(ctx, "naive:wide:"+strconv.Itoa(id), args...)
		if pipe.Len() == 1000 {
			if _, err := pipe.Exec(ctx); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		tb.Fatal(err)
	}
	var total int64
	cmds := make([]*redis.IntCmd, 0, n)
	for id := 1; id <= n; id++ {
		cmds = append(cmds, pipe.MemoryUsage(ctx, "naive:wide:"+strconv.Itoa(id), 0))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		tb.Fatal(err)
	}
	for _, c := range cmds {
		total += c.Val()
	}
	return float64(total) / float64(n)
}

func TestMemoryUsageMiniredis(t *testing.T) {
	ctx := context.Background()
	p := testProject(t)
	s := store.New(startMiniredis(t), p.Name, store.Options{})
	writeWide(t, s, p.View("wide"), 500)
	bytes, rows, err := s.MemoryUsage(ctx, "wide")
	if err != nil || rows != 500 || bytes <= 0 {
		t.Fatalf("MemoryUsage = %d bytes, %d rows, %v", bytes, rows, err)
	}
}
