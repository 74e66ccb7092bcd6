package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// holdTrips records the commands (name and key) of every pipeline, and
// holds those that hold says to, the i-th from 0, until release is
// closed; it says on entered when it holds one.
type holdTrips struct {
	hold    func(i int, cmds []redis.Cmder) bool
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	trips   [][]string
}

func newHoldTrips(hold func(i int, cmds []redis.Cmder) bool) *holdTrips {
	return &holdTrips{hold: hold, entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *holdTrips) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *holdTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *holdTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var trip []string
		for _, c := range cmds {
			key := c.Args()[1]
			if p, ok := key.(*string); ok {
				key = *p
			}
			trip = append(trip, fmt.Sprint(c.Args()[0], " ", key))
		}
		h.mu.Lock()
		i := len(h.trips)
		h.trips = append(h.trips, trip)
		h.mu.Unlock()
		if h.hold(i, cmds) {
			h.once.Do(func() { close(h.entered) })
			<-h.release
		}
		return next(ctx, cmds)
	}
}

// TestSmallReadBesideBig checks that a small Read (one key) never waits
// behind the round trip of a big one (2,000 keys) in flight: it takes the
// second round trip.
func TestSmallReadBesideBig(t *testing.T) {
	ctx := context.Background()
	client := redistest.Start(t).Client()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	wide := p.View("wide")
	publish(t, s, wide, 2000, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
	// The generation's metadata is read once, before the hook.
	if err := s.Read(ctx, []*larder.Lookup{{View: wide, Keys: []larder.Key{larder.Int64Key(1)}}}); err != nil {
		t.Fatal(err)
	}
	hook := newHoldTrips(func(_ int, cmds []redis.Cmder) bool { return len(cmds) >= 8 })
	client.AddHook(hook)
	defer func() {
		select {
		case <-hook.release:
		default:
			close(hook.release)
		}
	}()

	big := make([]larder.Key, 2000)
	for i := range big {
		big[i] = larder.Int64Key(int64(i + 1))
	}
	bigDone := make(chan error, 1)
	go func() { bigDone <- s.Read(ctx, []*larder.Lookup{{View: wide, Keys: big}}) }()
	<-hook.entered

	small := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(7)}}
	smallDone := make(chan error, 1)
	go func() { smallDone <- s.Read(ctx, []*larder.Lookup{small}) }()
	select {
	case err := <-smallDone:
		if err != nil || !small.Found[0] {
			t.Fatalf("the small Read: %v, found %v", err, small.Found)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the small Read waits behind the big Read's round trip")
	}
	close(hook.release)
	if err := <-bigDone; err != nil {
		t.Fatal(err)
	}
}

// TestSharedTripChecksOnce queues Reads of two views behind a round trip
// in flight: their shared round trip checks each generation's metadata
// once, after every row, and each Read gets its own rows; once the
// metadata is gone, every Read of that generation in a shared trip says
// the data is lost.
func TestSharedTripChecksOnce(t *testing.T) {
	ctx := context.Background()
	client := redistest.Start(t).Client()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	wide, items := p.View("wide"), p.View("items")
	publish(t, s, wide, 100, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
	wg, err := s.BeginSized(ctx, items, -1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := wg.Put(ctx, larder.StringKey(fmt.Sprint("item", i)), larder.Row{EventTime: at, Values: []larder.Value{larder.Float64Value(float64(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := wg.Publish(ctx); err != nil {
		t.Fatal(err)
	}

	// run holds a first Read's round trip, queues four Reads of wide and
	// two of items behind it, then lets them go, and returns the pipeline
	// of their shared trip and each queued Read's error.
	run := func(t *testing.T, hold func()) ([]string, []*larder.Lookup, []error) {
		t.Helper()
		hook := newHoldTrips(func(i int, _ []redis.Cmder) bool { return i == 0 })
		c := redis.NewClient(&redis.Options{Addr: client.Options().Addr})
		defer c.Close()
		rs := store.New(c, p.Name, store.Options{})
		// The generations are loaded before the hook, so that the Reads
		// below are round trips of rows and checks only.
		for _, l := range []*larder.Lookup{{View: wide, Keys: []larder.Key{larder.Int64Key(1)}}, {View: items, Keys: []larder.Key{larder.StringKey("item1")}}} {
			if err := rs.Read(ctx, []*larder.Lookup{l}); err != nil {
				t.Fatal(err)
			}
		}
		c.AddHook(hook)

		firstDone := make(chan error, 1)
		go func() {
			firstDone <- rs.Read(ctx, []*larder.Lookup{{View: wide, Keys: []larder.Key{larder.Int64Key(2)}}})
		}()
		<-hook.entered
		lookups := []*larder.Lookup{
			{View: wide, Keys: []larder.Key{larder.Int64Key(11)}},
			{View: wide, Keys: []larder.Key{larder.Int64Key(12)}},
			{View: items, Keys: []larder.Key{larder.StringKey("item3")}},
			{View: wide, Keys: []larder.Key{larder.Int64Key(13)}},
			{View: items, Keys: []larder.Key{larder.StringKey("item4")}},
			{View: wide, Keys: []larder.Key{larder.Int64Key(14)}},
		}
		errs := make([]error, len(lookups))
		var done sync.WaitGroup
		for i, l := range lookups {
			done.Add(1)
			go func() {
				defer done.Done()
				errs[i] = rs.Read(ctx, []*larder.Lookup{l})
			}()
		}
		for rs.QueuedReads() < len(lookups) {
			time.Sleep(time.Millisecond)
		}
		hold()
		close(hook.release)
		done.Wait()
		<-firstDone
		hook.mu.Lock()
		defer hook.mu.Unlock()
		if len(hook.trips) != 2 {
			t.Fatalf("round trips: %q, want the held one and one shared", hook.trips)
		}
		return hook.trips[1], lookups, errs
	}

	trip, lookups, errs := run(t, func() {})
	for i, l := range lookups {
		if errs[i] != nil || !l.Found[0] {
			t.Fatalf("Read %d: %v, found %v", i, errs[i], l.Found)
		}
	}
	for i, id := range []int64{11, 12, 13, 14} {
		l := lookups[[]int{0, 1, 3, 5}[i]]
		if got := l.Rows[0].Values[0].Float64(); got != float64(l.Generation)*1e6+float64(id) {
			t.Errorf("user %d: read %v", id, got)
		}
	}
	if got := lookups[2].Rows[0].Values[0].Float64(); got != 3 {
		t.Errorf("item3: read %v", got)
	}
	// Six reads of rows, then one check per generation.
	if len(trip) != 8 {
		t.Fatalf("the shared trip: %q, want 6 row reads and 2 checks", trip)
	}
	for i, cmd := range trip {
		isCheck := strings.HasPrefix(cmd, "hmget ") && strings.Contains(cmd, ":g:")
		if isCheck != (i >= 6) {
			t.Fatalf("the shared trip: %q, want the checks last", trip)
		}
	}
	if trip[6] == trip[7] {
		t.Fatalf("the shared trip checks %s twice", trip[6])
	}

	// The metadata of wide's generation is gone while the trip is held:
	// every Read of wide says so, those of items do not.
	_, lookups, errs = run(t, func() {
		keys, err := client.Keys(ctx, "*{wide}:g:*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("metadata keys: %q, %v", keys, err)
		}
		if err := client.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	})
	for i, l := range lookups {
		lost := errors.Is(errs[i], larder.ErrDataLost)
		if lost != (l.View == wide) {
			t.Errorf("Read %d of %s: %v", i, l.View.Name, errs[i])
		}
	}
}
