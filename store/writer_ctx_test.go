package store_test

import (
	"context"
	"testing"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// TestFlushesOutlivePut checks that a writer's flushes run on the writer's
// own context: the context of a Put bounds only the Put, and the rows it
// handed over are written even when that context ends right after it.
func TestFlushesOutlivePut(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	client := srv.Client()
	p := testProject(t)
	wide := p.View("wide")
	// One flusher, windows of 3,000 rows sent as three pipelines: the
	// pipelines of a window wait in the queue while the one before is sent.
	s := store.New(client, p.Name, store.Options{Buckets: 100, BatchSize: 3000, WriteConnections: 1})
	w, err := s.BeginSized(ctx, wide, -1)
	if err != nil {
		t.Fatal(err)
	}

	// Redis stalls: the first window (sent early, at 1,000 rows) is stuck
	// in the flusher, and the next one's three pipelines wait in the queue
	// when the Puts' context ends.
	srv.Pause()
	putCtx, cancel := context.WithCancel(ctx)
	const n = 4000
	for id := int64(1); id <= n; id++ {
		if err := w.Put(putCtx, larder.Int64Key(id), wideRow(id, w.ID(), compatT0)); err != nil {
			srv.Resume()
			t.Fatalf("Put %d: %v", id, err)
		}
	}
	cancel()
	srv.Resume()

	g, err := w.Publish(ctx)
	if err != nil {
		t.Fatalf("Publish after the Puts' context ended: %v", err)
	}
	if g.Rows != n {
		t.Fatalf("published %d rows, want %d", g.Rows, n)
	}
	keys := make([]larder.Key, 0, n)
	for id := int64(1); id <= n; id++ {
		keys = append(keys, larder.Int64Key(id))
	}
	l := &larder.Lookup{View: wide, Keys: keys}
	if err := store.New(client, p.Name, store.Options{}).Read(ctx, []*larder.Lookup{l}); err != nil {
		t.Fatal(err)
	}
	for i, found := range l.Found {
		if !found {
			t.Fatalf("key %d was not written", i+1)
		}
	}
}
