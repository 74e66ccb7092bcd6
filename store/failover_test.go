package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// Bounds of the failover tests: generous, for a loaded test machine. The
// figures they measure are logged.
const (
	// failoverBound bounds a failover, from the kill until the readers read
	// again.
	failoverBound = 30 * time.Second
	// failoverMargin is how long after the readers' first success errors
	// may still end reads that began before it.
	failoverMargin = time.Second
	// failoverReadTimeout is each read's deadline.
	failoverReadTimeout = 500 * time.Millisecond
)

// topology is a Redis deployment that fails over by itself, as a project's
// redis settings name it.
type topology struct {
	redis larder.Redis
	// replicate waits until the replicas hold every write made so far.
	replicate func(tb testing.TB)
	// kill kills a master; failover then waits until a replica has taken
	// its place.
	kill     func(tb testing.TB)
	failover func(tb testing.TB)
}

// TestFailoverCluster kills a master of a Redis Cluster with replicas while
// readers read, once the master of the view's control keys (its live
// pointer and generation metadata) and once a master of only some of its
// rows.
func TestFailoverCluster(t *testing.T) {
	for _, victim := range []string{"control", "rows"} {
		t.Run(victim, func(t *testing.T) {
			checkLeaks(t)
			c := redistest.StartClusterWithReplicas(t, 3, 1)
			// The live pointer, in the {wide} hash tag, shares its slot with
			// every control key of the view.
			control := "larder:test:{wide}:live"
			var killed *redistest.Server
			failoverUnderLoad(t, topology{
				redis:     larder.Redis{Addrs: c.Addrs},
				replicate: c.WaitReplicated,
				kill: func(tb testing.TB) {
					target := control
					if victim == "rows" {
						target = rowsOnlyKey(tb, c, control)
					}
					killed = c.KillMasterOf(tb, target)
					tb.Logf("killed the master %s of %s", killed.Addr, target)
				},
				failover: func(tb testing.TB) {
					c.WaitHealthy(tb, failoverBound)
					if m := c.MasterOf(tb, control); m == killed {
						tb.Fatalf("the control keys are still on the killed %s", killed.Addr)
					}
				},
			})
		})
	}
}

// rowsOnlyKey returns a bucket key of the wide view's first generation
// that a master other than that of control serves.
func rowsOnlyKey(tb testing.TB, c *redistest.Cluster, control string) string {
	tb.Helper()
	m := c.MasterOf(tb, control)
	for b := range store.DefaultFirstBuckets {
		key := fmt.Sprintf("larder:test:wide:1:%d", b)
		if c.MasterOf(tb, key) != m {
			return key
		}
	}
	tb.Fatalf("every bucket of the view is on the master of its control keys")
	return ""
}

// TestFailoverSentinel kills the master of a Sentinel deployment while
// readers read.
func TestFailoverSentinel(t *testing.T) {
	checkLeaks(t)
	d := redistest.StartSentinel(t)
	var killed *redistest.Server
	failoverUnderLoad(t, topology{
		redis:     larder.Redis{Addrs: d.Addrs, MasterName: d.MasterName},
		replicate: d.WaitReplicated,
		kill:      func(tb testing.TB) { killed = d.KillMaster(tb) },
		failover:  func(tb testing.TB) { d.WaitFailover(tb, killed, failoverBound) },
	})
}

// readResult is one reader's Read.
type readResult struct {
	start, end time.Time
	err        error
	gen        int64  // the generation read, when err is nil
	wrong      string // what was wrong with the rows of a read with no error
}

// failoverUnderLoad publishes a generation of the wide view on topo, reads
// it from a few goroutines while a master is killed and a replica takes
// over, publishes a second generation once the readers read again, and
// checks that:
//   - reads fail only within the failover, with larder.ErrUnavailable or a
//     deadline, never another error;
//   - every read that succeeds returns every key's row of exactly the
//     generation it reports, one of those published;
//   - after the failover, a new publish works and the readers see it.
//
// It logs the failover as the readers saw it: from their first failure to
// their first success after the last failure, and the failed reads.
func failoverUnderLoad(t *testing.T, topo topology) {
	p := testProject(t)
	v := p.View("wide")
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	const rows = 2000

	// The writer and the readers are different processes in production:
	// each has its own client.
	connect := func() redis.UniversalClient {
		c, err := store.Connect(topo.redis)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	writer := store.New(connect(), p.Name, store.Options{})
	row := func(id, gen int64) larder.Row { return wideRow(id, gen, at) }
	g1 := publish(t, writer, v, rows, row)
	topo.replicate(t)

	reader := store.New(connect(), p.Name, store.Options{RefreshInterval: 500 * time.Millisecond})
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- reader.Watch(watchCtx) }()
	defer func() {
		stopWatch()
		if err := <-watched; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	}()

	var (
		mu      sync.Mutex
		results []readResult
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	const readers = 4
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			l := &larder.Lookup{View: v, Keys: make([]larder.Key, 40)}
			for !stop.Load() {
				for i := range l.Keys {
					l.Keys[i] = larder.Int64Key(1 + rng.Int64N(rows))
				}
				ctx, cancel := context.WithTimeout(context.Background(), failoverReadTimeout)
				res := readResult{start: time.Now()}
				res.err = reader.Read(ctx, []*larder.Lookup{l})
				res.end = time.Now()
				cancel()
				if res.err == nil {
					res.gen = l.Generation
					res.wrong = checkRead(l, at)
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	// waitRead waits until a read that began after since has succeeded (and
	// read gen, when not 0), and returns when it ended.
	waitRead := func(what string, since time.Time, gen int64) time.Time {
		t.Helper()
		deadline := time.Now().Add(failoverBound)
		for time.Now().Before(deadline) {
			mu.Lock()
			for _, r := range results {
				if r.err == nil && r.start.After(since) && (gen == 0 || r.gen == gen) {
					mu.Unlock()
					return r.end
				}
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
		stop.Store(true)
		wg.Wait()
		t.Fatalf("%s: no successful read within %s; the last ones: %s", what, failoverBound, lastResults(results, 5))
		return time.Time{}
	}

	waitRead("before the kill", time.Now(), 0)
	time.Sleep(500 * time.Millisecond)
	killedAt := time.Now()
	topo.kill(t)
	topo.failover(t)
	elected := time.Now()
	firstOK := waitRead("after the failover", elected, 0)

	// The readers keep reading through a publish after the failover.
	time.Sleep(time.Second)
	published2 := time.Now()
	g2 := publishRetrying(t, store.New(connect(), p.Name, store.Options{}), v, rows, row)
	seen := waitRead("the publish after the failover", published2, g2.ID)
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	// The figures. Reads may fail from the kill until shortly after the
	// readers read again; outside that window, only a read that ran out of
	// time may fail, as one may on a loaded machine.
	windowEnd := firstOK.Add(failoverMargin)
	var inWindow, unavailable, timedOut, slow, wrong int
	var firstFail, lastFail time.Time
	for _, r := range results {
		switch {
		case r.err != nil:
		case r.gen != g1.ID && r.gen != g2.ID:
			r.wrong = fmt.Sprintf("generation %d, neither of the published %d and %d", r.gen, g1.ID, g2.ID)
		case r.gen == g2.ID && r.end.Before(published2):
			r.wrong = fmt.Sprintf("generation %d before its publish began", r.gen)
		}
		if r.wrong != "" {
			wrong++
			if wrong <= 5 {
				t.Errorf("a read at %s after the kill returned wrong rows: %s", r.start.Sub(killedAt), r.wrong)
			}
		}
		if r.err == nil {
			continue
		}
		timeout := isTimeout(r.err)
		if !timeout && !errors.Is(r.err, larder.ErrUnavailable) {
			t.Errorf("a read at %s after the kill failed with %v, want larder.ErrUnavailable or a deadline", r.start.Sub(killedAt), r.err)
		}
		if r.start.Before(killedAt) || r.start.After(windowEnd) {
			if !timeout {
				t.Errorf("a read at %s after the kill, outside the failover (which the readers ended %s after the kill), failed: %v",
					r.start.Sub(killedAt), firstOK.Sub(killedAt), r.err)
			}
			slow++
			continue
		}
		inWindow++
		if timeout {
			timedOut++
		} else {
			unavailable++
		}
		if firstFail.IsZero() || r.start.Before(firstFail) {
			firstFail = r.start
		}
		if r.start.After(lastFail) {
			lastFail = r.start
		}
	}
	// The outage as the readers saw it: from their first failure to the end
	// of the first read that began after their last failure and succeeded.
	var outage time.Duration
	if inWindow > 0 {
		recovered := seen
		for _, r := range results {
			if r.err == nil && r.start.After(lastFail) && r.end.Before(recovered) {
				recovered = r.end
			}
		}
		outage = recovered.Sub(firstFail)
	}
	t.Logf("failover: replica elected %s after the kill; the readers failed from %s to %s after it, an outage of %s as they saw it; "+
		"%d of %d reads failed within it (%d unavailable, %d out of time), %d outside it ran out of time; %d returned wrong rows; "+
		"generation %d, published after the failover, was read %s after its publish began",
		elected.Sub(killedAt).Round(time.Millisecond), sinceOrNone(firstFail, killedAt), sinceOrNone(lastFail, killedAt), outage.Round(time.Millisecond),
		inWindow, len(results), unavailable, timedOut, slow, wrong, g2.ID, seen.Sub(published2).Round(time.Millisecond))
}

// checkRead returns what is wrong with a lookup of the wide view that Read
// filled: "" when every key was found and every row is of the generation
// the lookup reports.
func checkRead(l *larder.Lookup, at time.Time) string {
	for i, k := range l.Keys {
		if !l.Found[i] {
			return fmt.Sprintf("generation %d: key %s not found", l.Generation, k)
		}
		want := wideRow(k.Int64(), l.Generation, at)
		got := l.Rows[i]
		if !got.EventTime.Equal(want.EventTime) || len(got.Values) != len(want.Values) {
			return fmt.Sprintf("generation %d key %s: row %v, want %v", l.Generation, k, got, want)
		}
		for j := range want.Values {
			if !got.Values[j].Equal(want.Values[j]) {
				return fmt.Sprintf("generation %d key %s: value %d is %v, want %v (from another generation?)", l.Generation, k, j, got.Values[j], want.Values[j])
			}
		}
	}
	return ""
}

// publishRetrying publishes a new generation as publish does, but tries
// again (up to failoverBound) when a step fails because Redis is
// unavailable, as a scheduler would run a failed job again.
func publishRetrying(tb testing.TB, s *store.Store, v *larder.View, n int64, rowFn func(id, gen int64) larder.Row) larder.Generation {
	tb.Helper()
	deadline := time.Now().Add(failoverBound)
	for attempt := 1; ; attempt++ {
		g, err := tryPublish(s, v, n, rowFn)
		if err == nil {
			if attempt > 1 {
				tb.Logf("the publish after the failover took %d attempts", attempt)
			}
			return g
		}
		if !errors.Is(err, larder.ErrUnavailable) || time.Now().After(deadline) {
			tb.Fatalf("publish after the failover, attempt %d: %v", attempt, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tryPublish(s *store.Store, v *larder.View, n int64, rowFn func(id, gen int64) larder.Row) (larder.Generation, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := s.BeginSized(ctx, v, -1)
	if err != nil {
		return larder.Generation{}, err
	}
	for id := int64(1); id <= n; id++ {
		if err := w.Put(ctx, larder.Int64Key(id), rowFn(id, w.ID())); err != nil {
			_ = w.Abort(ctx)
			return larder.Generation{}, err
		}
	}
	g, err := w.Publish(ctx)
	if err != nil {
		_ = w.Abort(ctx)
	}
	return g, err
}

// isTimeout reports whether err says that a read ran out of time: its
// deadline passed, or its connection's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func sinceOrNone(t, from time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(from).Round(time.Millisecond).String()
}

// lastResults describes the last n reads, for a failure message.
func lastResults(results []readResult, n int) string {
	var b strings.Builder
	for _, r := range results[max(0, len(results)-n):] {
		fmt.Fprintf(&b, "\n  %s: gen %d err %v", r.start.Format("15:04:05.000"), r.gen, r.err)
	}
	return b.String()
}

// TestStall pauses a standalone Redis (SIGSTOP) under a reader: a stalled
// Redis answers nothing, yet each read returns once its deadline passes,
// with the deadline's error, and reads succeed again once Redis resumes.
func TestStall(t *testing.T) {
	checkLeaks(t)
	rs := redistest.Start(t)
	client, err := store.Connect(larder.Redis{Addrs: []string{rs.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	p := testProject(t)
	v := p.View("wide")
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	s := store.New(client, p.Name, store.Options{})
	g := publish(t, s, v, 100, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })

	read := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		l := &larder.Lookup{View: v, Keys: []larder.Key{larder.Int64Key(1), larder.Int64Key(50), larder.Int64Key(100)}}
		start := time.Now()
		err := s.Read(ctx, []*larder.Lookup{l})
		if err == nil {
			if wrong := checkRead(l, at); wrong != "" || l.Generation != g.ID {
				t.Errorf("read generation %d: %s", l.Generation, wrong)
			}
		}
		return time.Since(start), err
	}
	if _, err := read(); err != nil {
		t.Fatal(err)
	}
	rs.Pause()
	for range 3 {
		took, err := read()
		if !isTimeout(err) {
			t.Fatalf("read from a stalled Redis: %v, want its deadline's error", err)
		}
		// Generous: the point is that a stall does not hold a caller
		// past its deadline for long.
		if took > 5*time.Second {
			t.Fatalf("read from a stalled Redis returned after %s, its deadline was 300ms", took)
		}
	}
	rs.Resume()
	deadline := time.Now().Add(failoverBound)
	for {
		_, err := read()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reads still fail %s after Redis resumed: %v", failoverBound, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
