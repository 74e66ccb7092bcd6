package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

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

// TestAbortHonoursDeadline checks that Abort cleans up on a cancelled
// context, but returns by the deadline of its context when Redis stalls,
// leaving the generation to Cleanup.
func TestAbortHonoursDeadline(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	client := srv.Client()
	p := testProject(t)
	wide := p.View("wide")
	// A write lease far longer than the test: no renewal is in flight.
	s := store.New(client, p.Name, store.Options{BatchSize: 1000, WriteLease: time.Hour})
	begin := func() *store.Writer {
		t.Helper()
		w, err := s.BeginSized(ctx, wide, -1)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	put := func(w *store.Writer, n int64) {
		t.Helper()
		for id := int64(1); id <= n; id++ {
			if err := w.Put(ctx, larder.Int64Key(id), wideRow(id, w.ID(), compatT0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	left := func(w *store.Writer) []string {
		return append(keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", w.ID())),
			keysOf(t, client, fmt.Sprintf("larder:test:{wide}:g:%d", w.ID()))...)
	}

	// A cancelled context with a distant deadline: Abort still deletes.
	w := begin()
	put(w, 2500)
	dead, cancel := context.WithTimeout(ctx, time.Minute)
	cancel()
	if err := w.Abort(dead); err != nil {
		t.Fatalf("Abort on a cancelled context: %v", err)
	}
	if l := left(w); len(l) != 0 {
		t.Fatalf("aborted generation left %v", l)
	}

	// Redis stalls with a write in flight: Abort returns by its deadline.
	w = begin()
	srv.Pause()
	put(w, 1500) // the first 1,000 rows are sent, and wait for an answer
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := w.Abort(short)
	took := time.Since(start)
	srv.Resume()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Abort on a stalled Redis: %v, want an error wrapping context.DeadlineExceeded", err)
	}
	// Generous, for a busy machine: an Abort that ignored its deadline
	// would wait for the Resume below, that is for ever.
	if took > 20*time.Second {
		t.Errorf("Abort on a stalled Redis returned after %v, want about its deadline, 300ms", took)
	}

	// What it could not delete, Cleanup deletes once the lease lapses (and
	// the write that was in flight has landed).
	w.WaitFlushed()
	if err := client.Del(ctx, w.LeaseKey()).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cleanup(ctx, store.CleanupOptions{}); err != nil {
		t.Fatal(err)
	}
	if l := left(w); len(l) != 0 {
		t.Fatalf("cleanup left %v of the generation Abort left", l)
	}
}
