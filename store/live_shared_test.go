package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// commandCalls returns how many times the server ran each command, from
// INFO commandstats ("cmdstat_get:calls=3,..." gives "get": 3).
func commandCalls(tb testing.TB, client *redis.Client) map[string]int64 {
	tb.Helper()
	info, err := client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	calls := make(map[string]int64)
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if n, ok := strings.CutPrefix(kv, "calls="); ok {
				calls[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.ParseInt(n, 10, 64)
			}
		}
	}
	return calls
}

// TestLiveLoadShared checks that concurrent Reads on a cold cache share one
// load of the live generation: one GET of the live pointer and one HGETALL
// of its metadata, whatever the number of Reads.
func TestLiveLoadShared(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	client := srv.Client()
	p := testProject(t)
	wide := p.View("wide")
	publish(t, store.New(client, p.Name, store.Options{}), wide, 50, func(id, gen int64) larder.Row { return wideRow(id, gen, compatT0) })

	for round := range 3 {
		reader := store.New(client, p.Name, store.Options{}) // a cold cache
		before := commandCalls(t, client)
		const readers = 32
		start := make(chan struct{})
		errs := make(chan error, readers)
		var wg sync.WaitGroup
		for i := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				l := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(int64(i%50 + 1))}}
				err := reader.Read(ctx, []*larder.Lookup{l})
				if err == nil && !l.Found[0] {
					err = errors.New("key not found")
				}
				errs <- err
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: Read: %v", round, err)
			}
		}
		after := commandCalls(t, client)
		if n := after["get"] - before["get"]; n != 1 {
			t.Errorf("round %d: %d concurrent Reads on a cold cache sent %d GETs of the live pointer, want 1", round, readers, n)
		}
		if n := after["hgetall"] - before["hgetall"]; n != 1 {
			t.Errorf("round %d: %d concurrent Reads on a cold cache sent %d HGETALLs of the metadata, want 1", round, readers, n)
		}
	}
}

// TestLiveLoadSharedCallerGone checks that a load shared by several Reads
// does not fail the others when the Read that started it gives up: they
// load again on their own contexts.
func TestLiveLoadSharedCallerGone(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	client := srv.Client()
	p := testProject(t)
	wide := p.View("wide")
	publish(t, store.New(client, p.Name, store.Options{}), wide, 5, func(id, gen int64) larder.Row { return wideRow(id, gen, compatT0) })
	reader := store.New(client, p.Name, store.Options{})
	read := func(ctx context.Context) error {
		l := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(1)}}
		if err := reader.Read(ctx, []*larder.Lookup{l}); err != nil {
			return err
		}
		if !l.Found[0] {
			return errors.New("key not found")
		}
		return nil
	}

	// Redis stalls while a Read with a short deadline loads the live
	// generation, and others with time to spare wait for that load.
	srv.Pause()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	shortErr := make(chan error, 1)
	go func() { shortErr <- read(short) }()
	time.Sleep(50 * time.Millisecond)
	long, cancelLong := context.WithTimeout(ctx, 10*time.Second)
	defer cancelLong()
	const readers = 8
	errs := make(chan error, readers)
	for range readers {
		go func() { errs <- read(long) }()
	}
	if err := <-shortErr; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the short Read: %v, want an error wrapping context.DeadlineExceeded", err)
	}
	srv.Resume()
	for range readers {
		if err := <-errs; err != nil {
			t.Errorf("a Read that waited for the abandoned load: %v, want its own load to succeed", err)
		}
	}
}
