package scheduler_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/scheduler"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// project returns a validated project with one view scheduled by spec.
func project(tb testing.TB, spec string) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name:     "sched",
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views: []*larder.View{{Name: "v", Kind: larder.KindLatest, Entity: "user", Source: "events", Schedule: spec,
			Features: []larder.Feature{{Name: "x", Type: larder.TypeInt64}}}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// runLog counts the runs the schedulers start, and checks that two never
// overlap.
type runLog struct {
	mu      sync.Mutex
	ticks   map[time.Time]int
	running atomic.Int32
	overlap atomic.Int32
	skipped atomic.Int32
}

func newRunLog() *runLog { return &runLog{ticks: map[time.Time]int{}} }

// run is a scheduler's Run: it holds the run for d, renews nothing, and
// releases the lease at the end, as the materializer's runner does.
func (l *runLog) run(st *store.Store, d time.Duration) func(ctx context.Context, t scheduler.Tick) error {
	return func(ctx context.Context, t scheduler.Tick) error {
		if l.running.Add(1) > 1 {
			l.overlap.Add(1)
		}
		l.mu.Lock()
		l.ticks[t.At]++
		l.mu.Unlock()
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		l.running.Add(-1)
		return st.ReleaseLease(context.Background(), t.Lease)
	}
}

func (l *runLog) counts() map[time.Time]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[time.Time]int, len(l.ticks))
	for k, v := range l.ticks {
		out[k] = v
	}
	return out
}

// TestTwoSchedulers runs two schedulers against one redis-server over a
// schedule of one tick a second: every tick starts exactly one run, and two
// runs of the view never overlap. Then one scheduler stops dead, and the
// other carries on with no tick missed.
func TestTwoSchedulers(t *testing.T) {
	client := redistest.Start(t).Client()
	p := project(t, "@every 1s")
	log := newRunLog()
	start := func(owner string) (context.CancelFunc, chan struct{}) {
		st := store.New(client, p.Name, store.Options{Owner: owner})
		s, err := scheduler.New(p, scheduler.Options{
			Owner: owner, Log: st, LeaseTTL: 400 * time.Millisecond,
			Run: log.run(st, 200*time.Millisecond),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = s.Run(ctx)
		}()
		return cancel, done
	}
	stopA, doneA := start("a")
	stopB, doneB := start("b")
	first := time.Now().Truncate(time.Second).Add(2 * time.Second)
	time.Sleep(time.Until(first.Add(4500 * time.Millisecond)))
	stopA() // a scheduler killed between ticks
	<-doneA
	time.Sleep(time.Until(first.Add(8500 * time.Millisecond)))
	stopB()
	<-doneB

	counts := log.counts()
	for at := first; at.Before(first.Add(8 * time.Second)); at = at.Add(time.Second) {
		if n := counts[at]; n != 1 {
			t.Errorf("tick %s started %d runs, want 1 (all: %v)", at.Format("15:04:05"), n, counts)
		}
	}
	if n := log.overlap.Load(); n != 0 {
		t.Errorf("%d runs of the view overlapped", n)
	}
}

// TestBusyTickSkipped runs a view whose runs last longer than its period:
// the ticks that come while a run goes on are skipped, each recorded once.
func TestBusyTickSkipped(t *testing.T) {
	client := redistest.Start(t).Client()
	p := project(t, "@every 1s")
	log := newRunLog()
	var skippedAt sync.Map
	var stops []context.CancelFunc
	var dones []chan struct{}
	for _, owner := range []string{"a", "b"} {
		st := store.New(client, p.Name, store.Options{Owner: owner})
		s, err := scheduler.New(p, scheduler.Options{
			Owner: owner, Log: st, LeaseTTL: 5 * time.Second,
			Run: log.run(st, 2300*time.Millisecond),
			Skipped: func(_ context.Context, tk scheduler.Tick, holder string) {
				if _, dup := skippedAt.LoadOrStore(tk.At, holder); dup {
					t.Errorf("tick %s recorded as skipped twice", tk.At)
				}
				log.skipped.Add(1)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(ctx) }()
		stops, dones = append(stops, cancel), append(dones, done)
	}
	time.Sleep(5 * time.Second)
	for i := range stops {
		stops[i]()
		<-dones[i]
	}
	if log.skipped.Load() == 0 {
		t.Error("no tick was skipped")
	}
	if n := log.overlap.Load(); n != 0 {
		t.Errorf("%d runs overlapped", n)
	}
	skippedAt.Range(func(at, holder any) bool {
		if log.counts()[at.(time.Time)] != 0 {
			t.Errorf("tick %v was both skipped and run", at)
		}
		if holder == "" {
			t.Errorf("tick %v skipped without naming the run that held the view", at)
		}
		return true
	})
}

// TestCatchUp starts two schedulers after downtime: the latest missed tick
// runs once, as a catch-up, and the ones before it not at all.
func TestCatchUp(t *testing.T) {
	client := redistest.Start(t).Client()
	p := project(t, "*/10 * * * *")
	ctx := context.Background()
	st := store.New(client, p.Name, store.Options{})
	sched, err := scheduler.ViewSchedule(p, p.View("v"))
	if err != nil {
		t.Fatal(err)
	}
	// The schedulers run for 5s of wall time: a tick of the schedule in
	// that time would be a run of its own, and one just before they start
	// would make it the tick to catch up. Start clear of both.
	now := time.Now()
	if next := sched.Next(now); next.Sub(now) < 7*time.Second {
		time.Sleep(time.Until(next) + 500*time.Millisecond)
		now = time.Now()
	}
	prev := sched.Prev(now)
	// The last tick claimed was an hour of ticks ago.
	if _, err := st.ClaimTick(ctx, "v", prev.Add(-time.Hour), larder.ClaimOptions{Owner: "old"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []scheduler.Tick
	var wg sync.WaitGroup
	for _, owner := range []string{"a", "b"} {
		st := store.New(client, p.Name, store.Options{Owner: owner})
		s, err := scheduler.New(p, scheduler.Options{Owner: owner, Log: st, LeaseTTL: time.Second,
			Run: func(_ context.Context, tk scheduler.Tick) error {
				mu.Lock()
				got = append(got, tk)
				mu.Unlock()
				return st.ReleaseLease(context.Background(), tk.Lease)
			}})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(cctx) }()
	}
	wg.Wait()
	if len(got) != 1 || !got[0].At.Equal(prev) || got[0].Trigger != larder.TriggerCatchUp || !got[0].Lease.Held() {
		t.Fatalf("catch-up runs %+v, want one catch-up of %v", got, prev)
	}
}

// TestShutdownGrace stops a scheduler while a run goes on: a run that ends
// within the grace time finishes; one that does not has its context
// cancelled.
func TestShutdownGrace(t *testing.T) {
	client := redistest.Start(t).Client()
	for _, tc := range []struct {
		name      string
		runFor    time.Duration
		cancelled bool
	}{
		{"finishes", 300 * time.Millisecond, false},
		{"cut off", time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := project(t, "@every 1s")
			p.Name = "grace" + tc.name[:1]
			st := store.New(client, p.Name, store.Options{})
			started := make(chan struct{}, 10)
			var cancelled, finished atomic.Bool
			s, err := scheduler.New(p, scheduler.Options{Log: st, LeaseTTL: 5 * time.Second, ShutdownGrace: time.Second,
				Run: func(ctx context.Context, tk scheduler.Tick) error {
					started <- struct{}{}
					select {
					case <-time.After(tc.runFor):
						finished.Store(true)
					case <-ctx.Done():
						cancelled.Store(true)
					}
					return st.ReleaseLease(context.Background(), tk.Lease)
				}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- s.Run(ctx) }()
			<-started
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the scheduler did not stop")
			}
			if cancelled.Load() != tc.cancelled || finished.Load() == tc.cancelled {
				t.Errorf("cancelled %v, finished %v; want cancelled %v", cancelled.Load(), finished.Load(), tc.cancelled)
			}
		})
	}
}

// TestQueuedTicks has the scheduler queue its ticks: each tick queues one
// job, and a tick that comes while the previous job is active is skipped.
func TestQueuedTicks(t *testing.T) {
	client := redistest.Start(t).Client()
	p := project(t, "@every 1s")
	st := store.New(client, p.Name, store.Options{})
	var queued, skipped atomic.Int32
	var active atomic.Bool
	s, err := scheduler.New(p, scheduler.Options{Log: st, LeaseTTL: time.Second,
		Enqueue: func(_ context.Context, tk scheduler.Tick) (string, error) {
			if tk.Lease.Held() {
				t.Error("a queued tick took the run lease: the worker takes it")
			}
			queued.Add(1)
			return "job-" + tk.At.Format("150405"), nil
		},
		JobActive: func(context.Context, string) (bool, error) { return active.Load(), nil },
		Skipped:   func(context.Context, scheduler.Tick, string) { skipped.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(2500 * time.Millisecond)))
	active.Store(true) // the job of the last tick runs on
	time.Sleep(2 * time.Second)
	cancel()
	<-done
	if queued.Load() < 2 || skipped.Load() < 1 {
		t.Errorf("%d ticks queued, %d skipped; want some of each", queued.Load(), skipped.Load())
	}
	stt, err := st.ScheduleState(context.Background(), "v")
	if err != nil || stt.LastTick.IsZero() {
		t.Fatalf("schedule state %+v, %v", stt, err)
	}
	_ = redis.Nil
}
