package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// backend is a Redis server the store tests run against.
type backend struct {
	name  string
	start func(tb testing.TB) redis.UniversalClient
}

// backends are the servers every conformance test runs on: a real
// redis-server, and the embedded miniredis the demo uses.
var backends = []backend{
	{"redis", func(tb testing.TB) redis.UniversalClient { return redistest.Start(tb).Client() }},
	{"miniredis", startMiniredis},
}

func startMiniredis(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	m := miniredis.RunT(tb)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	tb.Cleanup(func() { c.Close() })
	return c
}

// forEachBackend runs test once per backend as a subtest.
func forEachBackend(t *testing.T, test func(t *testing.T, client redis.UniversalClient)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			test(t, b.start(t))
		})
	}
}

// testProject returns a validated project with an int64-keyed view of 20
// float64 features ("wide"), a view of every type ("mixed") and a
// string-keyed view ("items").
func testProject(tb testing.TB) *larder.Project {
	tb.Helper()
	wide := make([]larder.Feature, 20)
	for i := range wide {
		wide[i] = larder.Feature{Name: fmt.Sprintf("f%02d", i), Type: larder.TypeFloat64}
	}
	p := &larder.Project{
		Name: "test",
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "item_id", KeyType: larder.TypeString},
		},
		Sources: []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "wide", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: wide},
			{Name: "mixed", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: []larder.Feature{
				{Name: "n", Type: larder.TypeInt64}, {Name: "x", Type: larder.TypeFloat64},
				{Name: "f", Type: larder.TypeFloat32}, {Name: "b", Type: larder.TypeBool},
				{Name: "s", Type: larder.TypeString}, {Name: "raw", Type: larder.TypeBytes},
				{Name: "emb", Type: larder.TypeFloat32Vector},
			}},
			{Name: "items", Kind: larder.KindLatest, Entity: "item", Source: "events", Features: []larder.Feature{
				{Name: "price", Type: larder.TypeFloat64},
			}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// wideRow returns the row of user id in the wide view of generation gen:
// every value encodes both, so a reader can tell which generation it read.
func wideRow(id, gen int64, at time.Time) larder.Row {
	vals := make([]larder.Value, 20)
	for i := range vals {
		vals[i] = larder.Float64Value(float64(gen)*1e6 + float64(id) + float64(i)/100)
	}
	return larder.Row{EventTime: at, Values: vals}
}

// publish writes rows for ids 1..n into a new generation of v made by rowFn,
// publishes it and returns it.
func publish(tb testing.TB, s *store.Store, v *larder.View, n int64, rowFn func(id, gen int64) larder.Row) larder.Generation {
	tb.Helper()
	ctx := context.Background()
	w, err := s.BeginSized(ctx, v, -1)
	if err != nil {
		tb.Fatal(err)
	}
	for id := int64(1); id <= n; id++ {
		if err := w.Put(ctx, larder.Int64Key(id), rowFn(id, w.ID())); err != nil {
			tb.Fatal(err)
		}
	}
	g, err := w.Publish(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// fakeClock is a settable clock for grace-period tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// keysOf returns the keys matching pattern on client, on every node of a
// cluster.
func keysOf(tb testing.TB, client redis.UniversalClient, pattern string) []string {
	tb.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var out []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, client)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// conformance is the suite every backend passes; TestCluster runs it on a
// Redis Cluster, the Test functions on a standalone server and miniredis.
var conformance = []struct {
	name string
	test func(t *testing.T, client redis.UniversalClient)
}{
	{"WritePublishRead", testWritePublishRead},
	{"ReadErrors", testReadErrors},
	{"AtomicPublish", testAtomicPublish},
	{"GracePeriod", testGracePeriod},
	{"AbortAndAbandon", testAbortAndAbandon},
	{"Superseded", testSuperseded},
	{"Watch", testWatch},
	{"Scan", testScan},
	{"ReadNumbers", testReadNumbers},
	{"ReadConcurrent", testReadConcurrent},
	{"Push", testPush},
	{"PushSurvivesFullRun", testPushSurvivesFullRun},
	{"PushUnderPublishes", testPushUnderPublishes},
	{"Tiles", testTiles},
	{"TilesConcurrent", testTilesConcurrent},
}

// TestCluster runs the conformance suite on a Redis Cluster of three
// masters, which starts once (a new cluster takes about two seconds to
// accept writes) and is flushed between tests.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	cluster := redistest.StartCluster(t, 3)
	client := cluster.Client()
	for _, c := range conformance {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			err := client.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
				return n.FlushAll(ctx).Err()
			})
			if err != nil {
				t.Fatal(err)
			}
			c.test(t, client)
		})
	}
}
