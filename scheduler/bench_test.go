package scheduler_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/scheduler"
	"github.com/larder-dev/larder/store"
)

// BenchmarkTickDelay runs two schedulers against one redis-server over a
// schedule of a tick a second, for b.N ticks, and reports the delay from
// each tick's instant to the start of its run: p50-ms and p99-ms. Each tick
// takes a second, so run it with a tick count:
//
//	go test ./scheduler -run '^$' -bench TickDelay -benchtime 60x
func BenchmarkTickDelay(b *testing.B) {
	client := redistest.Start(b).Client()
	p := project(b, "@every 1s")
	var mu sync.Mutex
	var delays []time.Duration
	enough := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, owner := range []string{"a", "b"} {
		st := store.New(client, p.Name, store.Options{Owner: owner})
		s, err := scheduler.New(p, scheduler.Options{Owner: owner, Log: st, LeaseTTL: time.Second,
			Run: func(_ context.Context, tk scheduler.Tick) error {
				d := time.Since(tk.At)
				mu.Lock()
				if tk.Trigger == larder.TriggerSchedule {
					delays = append(delays, d)
					if len(delays) == b.N {
						close(enough)
					}
				}
				mu.Unlock()
				return st.ReleaseLease(context.Background(), tk.Lease)
			}})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
	}
	<-enough
	cancel()
	wg.Wait()
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(delays)
	n := len(delays)
	b.ReportMetric(float64(delays[n/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(delays[min(n-1, n*99/100)].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(delays[n-1].Microseconds())/1000, "max-ms")
}
