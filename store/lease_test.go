package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

func TestRunLease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		s := store.New(client, "test", store.Options{})
		a, err := s.AcquireLease(ctx, "wide", "a", time.Minute)
		if err != nil || !a.Held() {
			t.Fatalf("AcquireLease = %+v, %v", a, err)
		}
		_, err = s.AcquireLease(ctx, "wide", "b", time.Minute)
		var held *larder.LeaseHeldError
		if !errors.As(err, &held) || !errors.Is(err, larder.ErrLeaseHeld) || held.Owner != "a" || held.Token != a.Token {
			t.Fatalf("second AcquireLease = %v, want a LeaseHeldError naming a", err)
		}
		if err := s.RenewLease(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseLease(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := s.RenewLease(ctx, a); !errors.Is(err, larder.ErrLeaseLost) {
			t.Fatalf("RenewLease after release = %v, want ErrLeaseLost", err)
		}
		b, err := s.AcquireLease(ctx, "wide", "b", time.Minute)
		if err != nil || b.Token <= a.Token {
			t.Fatalf("AcquireLease after release = %+v, %v: want a larger token than %d", b, err, a.Token)
		}
		// Releasing a lease that was lost leaves the new holder alone.
		if err := s.ReleaseLease(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := s.RenewLease(ctx, b); err != nil {
			t.Fatalf("b lost its lease to a's release: %v", err)
		}
	})
}

// TestLeaseLapses checks, on a real redis-server and its clock, that a
// lease nobody renews lapses, and that another run may then take it.
func TestLeaseLapses(t *testing.T) {
	ctx := context.Background()
	s := store.New(redistest.Start(t).Client(), "test", store.Options{})
	a, err := s.AcquireLease(ctx, "wide", "a", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := s.AcquireLease(ctx, "wide", "b", time.Minute)
		if err == nil {
			if b.Token <= a.Token {
				t.Fatalf("token %d after %d", b.Token, a.Token)
			}
			break
		}
		if !errors.Is(err, larder.ErrLeaseHeld) || time.Now().After(deadline) {
			t.Fatalf("the lease did not lapse: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.RenewLease(ctx, a); !errors.Is(err, larder.ErrLeaseLost) {
		t.Fatalf("RenewLease of a lapsed lease = %v, want ErrLeaseLost", err)
	}
}

// TestFencing checks that a run that lost its run lease cannot publish over
// the run that took it, whether that run published first or not.
func TestFencing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		wide := p.View("wide")
		s := store.New(client, p.Name, store.Options{})
		at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		begin := func(owner string) (*store.Writer, larder.Lease) {
			t.Helper()
			l, err := s.AcquireLease(ctx, "wide", owner, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			w, err := s.BeginWith(ctx, wide, larder.BeginOptions{ExpectedRows: 10, Run: larder.RunInfo{Lease: l, Owner: owner}})
			if err != nil {
				t.Fatal(err)
			}
			for id := int64(1); id <= 10; id++ {
				if err := w.Put(ctx, larder.Int64Key(id), wideRow(id, w.ID(), at)); err != nil {
					t.Fatal(err)
				}
			}
			return w, l
		}
		steal := func(l larder.Lease) {
			t.Helper()
			// The holder stalled past its lease, which lapsed.
			if err := s.ReleaseLease(ctx, l); err != nil {
				t.Fatal(err)
			}
		}

		// The stalled run wakes up before the new one publishes.
		old, l := begin("old")
		steal(l)
		fresh, l2 := begin("fresh")
		if _, err := old.Publish(ctx); !errors.Is(err, larder.ErrLeaseLost) {
			t.Fatalf("stale publish = %v, want ErrLeaseLost", err)
		}
		if err := old.Abort(ctx); err != nil {
			t.Fatal(err)
		}
		g, err := fresh.Publish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseLease(ctx, l2); err != nil {
			t.Fatal(err)
		}

		// The stalled run wakes up after the new one published.
		old, l = begin("old")
		steal(l)
		fresh, l2 = begin("fresh")
		g2, err := fresh.Publish(ctx)
		if err != nil || g2.ID <= g.ID {
			t.Fatalf("publish = %+v, %v", g2, err)
		}
		if _, err := old.Publish(ctx); !errors.Is(err, larder.ErrLeaseLost) {
			t.Fatalf("stale publish = %v, want ErrLeaseLost", err)
		}
		_ = old.Abort(ctx)
		live, err := store.New(client, p.Name, store.Options{}).Live(ctx, wide)
		if err != nil || live.ID != g2.ID {
			t.Fatalf("live = %+v, %v, want generation %d", live, err, g2.ID)
		}
		_ = s.ReleaseLease(ctx, l2)

		// A run whose lease is gone cannot even begin.
		l, err = s.AcquireLease(ctx, "wide", "late", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		steal(l)
		if _, err := s.BeginWith(ctx, wide, larder.BeginOptions{Run: larder.RunInfo{Lease: l}}); !errors.Is(err, larder.ErrLeaseLost) {
			t.Fatalf("Begin with a lost lease = %v, want ErrLeaseLost", err)
		}
	})
}

// TestWriteLeaseLapses checks, on a real redis-server, that a generation
// whose writer was killed is found by its lapsed lease, deleted by one of
// several concurrent cleanups, and recorded once as an abandoned run; and
// that the killed writer, should it wake up, cannot publish.
func TestWriteLeaseLapses(t *testing.T) {
	ctx := context.Background()
	client := redistest.Start(t).Client()
	p := testProject(t)
	wide := p.View("wide")
	// A lease long enough that a renewal, every third of it, is not late
	// on a loaded machine, short enough for the test.
	const lease = 2 * time.Second
	s := store.New(client, p.Name, store.Options{WriteLease: lease})
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	live := publish(t, s, wide, 20, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
	before := client.DBSize(ctx).Val()

	w, err := s.BeginWith(ctx, wide, larder.BeginOptions{Run: larder.RunInfo{Trigger: larder.TriggerSchedule, Owner: "doomed:1", AsOf: at}})
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 500; id++ {
		if err := w.Put(ctx, larder.Int64Key(id), wideRow(id, w.ID(), at)); err != nil {
			t.Fatal(err)
		}
	}
	// More than a lease passes while the writer lives: nothing is taken.
	time.Sleep(lease + lease/2)
	if rep, err := s.Cleanup(ctx, store.CleanupOptions{}); err != nil || len(rep.Cleaned) != 0 {
		t.Fatalf("cleanup of a live writer's generation: %+v, %v", rep, err)
	}
	w.Kill()

	var (
		mu        sync.Mutex
		abandoned int
	)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep, err := store.New(client, p.Name, store.Options{}).Cleanup(ctx, store.CleanupOptions{})
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				abandoned += rep.Count(store.CleanedAbandoned)
				mu.Unlock()
			}()
		}
		wg.Wait()
		if abandoned > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := client.DBSize(ctx).Val(); got != before+1 { // + the run record list
		t.Errorf("DBSIZE after cleanup = %d, want %d (the baseline and one run record)", got, before+1)
	}
	runs, err := s.Runs(ctx, "wide", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].State != larder.RunAbandoned || runs[0].Generation != w.ID() ||
		runs[0].Trigger != larder.TriggerSchedule || runs[0].Owner != "doomed:1" || !runs[0].AsOf.Equal(at) {
		t.Errorf("runs = %+v, want one abandoned run of generation %d", runs, w.ID())
	}
	if _, err := w.Publish(ctx); !errors.Is(err, larder.ErrLeaseLost) {
		t.Errorf("publish by the killed writer = %v, want ErrLeaseLost", err)
	}
	if g, err := store.New(client, p.Name, store.Options{}).Live(ctx, wide); err != nil || g.ID != live.ID {
		t.Errorf("live = %+v, %v, want %d", g, err, live.ID)
	}
}

func TestProvenance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		wide := p.View("wide")
		s := store.New(client, p.Name, store.Options{})
		asOf := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
		tick := asOf
		inputs := []larder.InputGeneration{{View: "items", Generation: 4, AsOf: asOf}, {View: "mixed", Generation: 9, AsOf: asOf.Add(-time.Hour)}}
		w, err := s.BeginWith(ctx, wide, larder.BeginOptions{Run: larder.RunInfo{
			AsOf: asOf, Trigger: larder.TriggerSchedule, Tick: tick, Job: "j1", Owner: "host:1",
		}})
		if err != nil {
			t.Fatal(err)
		}
		w.SetInputs(inputs)
		if err := w.Put(ctx, larder.Int64Key(1), wideRow(1, w.ID(), asOf)); err != nil {
			t.Fatal(err)
		}
		g, err := w.Publish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := store.New(client, p.Name, store.Options{}).Live(ctx, wide)
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range []larder.Generation{g, fresh} {
			if !got.AsOf.Equal(asOf) || got.Trigger != larder.TriggerSchedule || got.Job != "j1" ||
				fmt.Sprint(got.Inputs) != fmt.Sprint(inputs) {
				t.Errorf("generation = %+v, want as-of %v, trigger schedule, job j1, inputs %v", got, asOf, inputs)
			}
		}
		// Without an as-of, the generation is computed as of its start.
		g2 := publish(t, s, wide, 1, func(id, gen int64) larder.Row { return wideRow(id, gen, asOf) })
		if g2.AsOf.IsZero() || !g2.AsOf.Equal(g2.StartedAt) {
			t.Errorf("as-of %v, want the start %v", g2.AsOf, g2.StartedAt)
		}
	})
}

func TestPinnedRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		wide := p.View("wide")
		clock := newFakeClock()
		s := store.New(client, p.Name, store.Options{Now: clock.Now})
		at := clock.Now()
		g1 := publish(t, s, wide, 5, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
		g2 := publish(t, s, wide, 5, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
		read := func(pin int64) (int64, error) {
			l := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(3)}, Pin: pin}
			if err := s.Read(ctx, []*larder.Lookup{l}); err != nil {
				return 0, err
			}
			if !l.Found[0] || l.Generation != pin {
				t.Fatalf("pinned read of %d: found %v, generation %d", pin, l.Found[0], l.Generation)
			}
			return int64(l.Rows[0].Values[0].Float64() / 1e6), nil
		}
		for _, pin := range []int64{g1.ID, g2.ID} {
			if got, err := read(pin); err != nil || got != pin {
				t.Errorf("pinned read of generation %d read generation %d, %v", pin, got, err)
			}
		}
		var n int
		if err := s.Keys(ctx, wide, g1.ID, func(k []larder.Key) error { n += len(k); return nil }); err != nil || n != 5 {
			t.Errorf("Keys of pinned generation: %d keys, %v", n, err)
		}
		clock.Advance(s.Options().GracePeriod + s.Options().RefreshInterval + time.Minute)
		if _, err := s.Cleanup(ctx, store.CleanupOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := read(g1.ID); !errors.Is(err, larder.ErrNotFound) {
			t.Errorf("pinned read of a deleted generation = %v, want ErrNotFound", err)
		}
	})
}

func TestShardedGeneration(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		wide := p.View("wide")
		s := store.New(client, p.Name, store.Options{})
		at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		const shards, n = 3, 300
		lease, err := s.AcquireLease(ctx, "wide", "coordinator", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		run := larder.RunInfo{Lease: lease, AsOf: at, Trigger: larder.TriggerJob}
		gen, err := s.BeginSharded(ctx, wide, larder.BeginOptions{ExpectedRows: n, Run: run}, shards)
		if err != nil {
			t.Fatal(err)
		}
		writeShard := func(i int, limit int) *store.Writer {
			t.Helper()
			w, err := s.BeginWith(ctx, wide, larder.BeginOptions{Run: run, Shard: &larder.ShardRef{Generation: gen, Index: i, Count: shards}})
			if err != nil {
				t.Fatal(err)
			}
			put := 0
			for id := int64(1); id <= n && put < limit; id++ {
				k := larder.Int64Key(id)
				if larder.ShardOf(k.AppendCanonical(nil), shards) != i {
					continue
				}
				if err := w.Put(ctx, k, wideRow(id, gen, at)); err != nil {
					t.Fatal(err)
				}
				put++
			}
			return w
		}
		// Shard 1 dies half-way; its retry writes everything again.
		dying := writeShard(1, 20)
		dying.Kill()
		for _, i := range []int{0, 1} {
			w := writeShard(i, n)
			g, err := w.Publish(ctx)
			if err != nil || !g.PublishedAt.IsZero() {
				t.Fatalf("shard %d: %+v, %v: want a pending generation", i, g, err)
			}
		}
		if _, err := store.New(client, p.Name, store.Options{}).Live(ctx, wide); !errors.Is(err, larder.ErrNoGeneration) {
			t.Fatalf("a sharded generation is live before its last shard: %v", err)
		}
		g, err := writeShard(2, n).Publish(ctx)
		if err != nil || g.PublishedAt.IsZero() || g.ID != gen || g.Rows != n {
			t.Fatalf("last shard: %+v, %v: want generation %d published with %d rows", g, err, gen, n)
		}
		// A late attempt of a shard finds it published.
		if _, err := s.BeginWith(ctx, wide, larder.BeginOptions{Run: run, Shard: &larder.ShardRef{Generation: gen, Index: 2, Count: shards}}); !errors.Is(err, larder.ErrPublished) {
			t.Fatalf("late shard: %v, want ErrPublished", err)
		}
		live, err := store.New(client, p.Name, store.Options{}).Live(ctx, wide)
		if err != nil || live.ID != gen || live.Rows != n || !live.AsOf.Equal(at) {
			t.Fatalf("live = %+v, %v", live, err)
		}

		// A sharded run that finally fails leaves nothing behind.
		before := client.DBSize(ctx).Val()
		gen2, err := s.BeginSharded(ctx, wide, larder.BeginOptions{ExpectedRows: n, Run: run}, shards)
		if err != nil {
			t.Fatal(err)
		}
		gen = gen2
		if _, err := writeShard(0, n).Publish(ctx); err != nil {
			t.Fatal(err)
		}
		writeShard(1, 30).Kill()
		if deleted, err := s.AbortGeneration(ctx, wide, gen2); err != nil || !deleted {
			t.Fatalf("AbortGeneration = %v, %v", deleted, err)
		}
		if deleted, err := s.AbortGeneration(ctx, wide, gen2); err != nil || deleted {
			t.Fatalf("second AbortGeneration = %v, %v, want nothing deleted", deleted, err)
		}
		if left := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", gen2)); len(left) != 0 {
			t.Fatalf("rows of the aborted generation are left: %v", left)
		}
		// A shard still running writes for a moment after the abort: its
		// rows go once the aborted generation's grace period ends.
		if err := client.HSet(ctx, fmt.Sprintf("larder:test:wide:%d:0", gen2), "late", "row").Err(); err != nil {
			t.Fatal(err)
		}
		later := store.New(client, p.Name, store.Options{Now: func() time.Time { return time.Now().Add(time.Hour) }})
		if _, err := later.Cleanup(ctx, store.CleanupOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := client.DBSize(ctx).Val(); got != before {
			t.Fatalf("DBSIZE after AbortGeneration and its grace period = %d, want %d; keys: %v", got, before, keysOf(t, client, "*"))
		}
		if _, err := s.BeginWith(ctx, wide, larder.BeginOptions{Run: run, Shard: &larder.ShardRef{Generation: gen2, Index: 2, Count: shards}}); !errors.Is(err, larder.ErrNotFound) {
			t.Fatalf("a shard of an aborted generation began: %v", err)
		}
	})
}

func TestClaimTick(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		s := store.New(client, "test", store.Options{})
		t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
		c, err := s.ClaimTick(ctx, "wide", t0, larder.ClaimOptions{Owner: "a", LeaseTTL: time.Minute})
		if err != nil || c.Outcome != larder.TickStarted || !c.Lease.Held() {
			t.Fatalf("first claim = %+v, %v", c, err)
		}
		if c2, err := s.ClaimTick(ctx, "wide", t0, larder.ClaimOptions{Owner: "b", LeaseTTL: time.Minute}); err != nil || c2.Outcome != larder.TickTaken {
			t.Fatalf("second claim of the tick = %+v, %v, want taken", c2, err)
		}
		t1 := t0.Add(2 * time.Second)
		if c2, err := s.ClaimTick(ctx, "wide", t1, larder.ClaimOptions{Owner: "b", LeaseTTL: time.Minute}); err != nil || c2.Outcome != larder.TickBusy || c2.Holder != "a" {
			t.Fatalf("claim while the run goes on = %+v, %v, want busy (a)", c2, err)
		}
		if c2, err := s.ClaimTick(ctx, "wide", t1, larder.ClaimOptions{Owner: "b", LeaseTTL: time.Minute, Skip: true}); err != nil || c2.Outcome != larder.TickSkipped {
			t.Fatalf("skipping claim = %+v, %v, want skipped", c2, err)
		}
		if c2, err := s.ClaimTick(ctx, "wide", t1, larder.ClaimOptions{Owner: "a", LeaseTTL: time.Minute, Skip: true}); err != nil || c2.Outcome != larder.TickTaken {
			t.Fatalf("second skip = %+v, %v, want taken", c2, err)
		}
		st, err := s.ScheduleState(ctx, "wide")
		if err != nil || !st.LastTick.Equal(t1) || st.Outcome != larder.TickSkipped || st.Owner != "b" {
			t.Fatalf("state = %+v, %v", st, err)
		}
		if err := s.ReleaseLease(ctx, c.Lease); err != nil {
			t.Fatal(err)
		}
		// A tick for a worker: no lease; busy while its job is known to run.
		t2 := t1.Add(2 * time.Second)
		if c2, err := s.ClaimTick(ctx, "wide", t2, larder.ClaimOptions{Owner: "a"}); err != nil || c2.Outcome != larder.TickStarted || c2.Lease.Held() {
			t.Fatalf("claim without lease = %+v, %v", c2, err)
		}
		if err := s.SetTickJob(ctx, "wide", t2, "job-7"); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.ScheduleState(ctx, "wide"); st.Job != "job-7" {
			t.Fatalf("job = %q", st.Job)
		}
		if c2, err := s.ClaimTick(ctx, "wide", t2.Add(time.Second), larder.ClaimOptions{Owner: "a", Busy: true}); err != nil || c2.Outcome != larder.TickBusy {
			t.Fatalf("claim while the job runs = %+v, %v, want busy", c2, err)
		}
		// A tick skipped while the job runs keeps the job recorded, so
		// that the tick after it sees the job too.
		if c2, err := s.ClaimTick(ctx, "wide", t2.Add(time.Second), larder.ClaimOptions{Owner: "a", Busy: true, Skip: true}); err != nil || c2.Outcome != larder.TickSkipped {
			t.Fatalf("skip while the job runs = %+v, %v", c2, err)
		}
		if st, _ := s.ScheduleState(ctx, "wide"); st.Job != "job-7" || st.Outcome != larder.TickSkipped {
			t.Fatalf("after a skip: %+v, want job-7 still recorded", st)
		}
	})
}

func TestCleanupDryRun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		wide := p.View("wide")
		clock := newFakeClock()
		s := store.New(client, p.Name, store.Options{Now: clock.Now})
		at := clock.Now()
		g1 := publish(t, s, wide, 5, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
		publish(t, s, wide, 5, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
		clock.Advance(s.Options().GracePeriod + time.Minute)
		before := client.DBSize(ctx).Val()
		rep, err := s.Cleanup(ctx, store.CleanupOptions{DryRun: true})
		if err != nil || len(rep.Cleaned) != 1 || rep.Cleaned[0].Generation != g1.ID || rep.Cleaned[0].Reason != store.CleanedExpired {
			t.Fatalf("dry run = %+v, %v", rep, err)
		}
		if got := client.DBSize(ctx).Val(); got != before {
			t.Fatalf("a dry run deleted keys: %d -> %d", before, got)
		}
		if rep, err := s.Cleanup(ctx, store.CleanupOptions{}); err != nil || rep.Count(store.CleanedExpired) != 1 {
			t.Fatalf("cleanup = %+v, %v", rep, err)
		}
		if got := client.DBSize(ctx).Val(); got >= before {
			t.Fatalf("cleanup deleted nothing: %d -> %d", before, got)
		}
	})
}

// TestRunsInProgress notes runs as they start: one that ends clears its
// note; one whose lease lapses before it began a generation is recorded as
// abandoned by one of several cleanups.
func TestRunsInProgress(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		s := store.New(client, "test", store.Options{})
		started := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
		for _, owner := range []string{"ends", "dies"} {
			l, err := s.AcquireLease(ctx, "wide", owner, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.StartRun(ctx, larder.Run{View: "wide", Kind: larder.KindLatest, Owner: owner, Token: l.Token,
				Trigger: larder.TriggerSchedule, AsOf: started, StartedAt: started}); err != nil {
				t.Fatal(err)
			}
			if owner == "ends" {
				if err := s.RecordRun(ctx, larder.Run{View: "wide", State: larder.RunOK, Owner: owner, Token: l.Token, StartedAt: started}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.ReleaseLease(ctx, l); err != nil { // the dead one's lapses
				t.Fatal(err)
			}
		}
		var found int
		for range 3 {
			rep, err := s.Cleanup(ctx, store.CleanupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			found += len(rep.AbandonedRuns)
		}
		runs, err := s.Runs(ctx, "wide", 0)
		if err != nil {
			t.Fatal(err)
		}
		if found != 1 || len(runs) != 2 || runs[0].State != larder.RunAbandoned || runs[0].Owner != "dies" ||
			runs[0].Trigger != larder.TriggerSchedule || !runs[0].AsOf.Equal(started) {
			t.Fatalf("found %d abandoned, runs %+v; want the dead run recorded once", found, runs)
		}
		if n := client.Exists(ctx, "larder:test:{wide}:active").Val(); n != 0 {
			t.Errorf("notes of runs in progress are left")
		}
	})
}

// TestCleanupMissingMetadata deletes the metadata of a retired generation
// and of one being written, as an operator's DEL or a partial loss would:
// Cleanup finds their buckets by SCAN and deletes them, without an error,
// then forgets the generations, and later publishes and cleanups work.
func TestCleanupMissingMetadata(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		wide := p.View("wide")
		at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		s := store.New(client, p.Name, store.Options{Buckets: 8})
		row := func(id, gen int64) larder.Row { return wideRow(id, gen, at) }
		g1 := publish(t, s, wide, 100, row)
		g2 := publish(t, s, wide, 100, row)
		w, err := s.BeginSized(ctx, wide, 100)
		if err != nil {
			t.Fatal(err)
		}
		for id := int64(0); id < 100; id++ {
			if err := w.Put(ctx, larder.Int64Key(id), row(id, 3)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		g3 := w.ID()
		for _, gen := range []int64{g1.ID, g3} {
			if n := len(keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", gen))); n == 0 {
				t.Fatalf("generation %d has no bucket", gen)
			}
			if err := client.Del(ctx, fmt.Sprintf("larder:test:{wide}:g:%d", gen)).Err(); err != nil {
				t.Fatal(err)
			}
		}
		rep, err := s.Cleanup(ctx, store.CleanupOptions{})
		if err != nil || rep.Count(store.CleanedNoMetadata) != 2 {
			t.Fatalf("cleanup = %+v, %v; want 2 generations without metadata deleted", rep, err)
		}
		for _, gen := range []int64{g1.ID, g3} {
			if left := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", gen)); len(left) != 0 {
				t.Errorf("generation %d kept buckets: %v", gen, left)
			}
		}
		if _, err := s.Cleanup(ctx, store.CleanupOptions{}); err != nil {
			t.Fatal(err)
		}
		gens, err := s.Generations(ctx, "wide")
		if err != nil || len(gens) != 1 || gens[0].ID != g2.ID {
			t.Fatalf("Generations = %+v, %v; want only %d", gens, err, g2.ID)
		}
		if n := client.ZCard(ctx, "larder:test:{wide}:gens").Val(); n != 1 {
			t.Errorf("the gens set holds %d entries, want 1", n)
		}
		if _, err := w.Publish(ctx); err == nil {
			t.Error("the generation whose metadata was deleted was published")
		}
		if err := w.Abort(ctx); err != nil {
			t.Error(err)
		}
		publish(t, s, wide, 100, row)
		if _, err := s.Cleanup(ctx, store.CleanupOptions{}); err != nil {
			t.Fatalf("cleanup after a new publish: %v", err)
		}
	})
}
