package queue_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/queue"
	"github.com/larder-dev/larder/redistest"
	"github.com/redis/go-redis/v9"
)

// waitTimeout bounds every wait of the tests: generous, for a loaded CI
// machine; a passing test never waits that long.
const waitTimeout = 30 * time.Second

// fast are queue options with short intervals, for tests.
func fast() queue.Options {
	return queue.Options{
		Heartbeat:  100 * time.Millisecond,
		Lapse:      time.Second,
		Backoff:    50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	}
}

// newQueue starts a redis-server and returns a queue of project "p" on it.
func newQueue(tb testing.TB, opts queue.Options) (*queue.Queue, *redistest.Server) {
	tb.Helper()
	srv := redistest.Start(tb)
	if opts.Logger == nil {
		opts.Logger = testLogger(tb)
	}
	return queue.New(srv.Client(), "p", opts), srv
}

// testLogger logs to the test's log when the tests run with -v and
// QUEUE_TEST_LOG is set.
func testLogger(tb testing.TB) *slog.Logger {
	if os.Getenv("QUEUE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(b []byte) (int, error) {
	w.tb.Log(string(b))
	return len(b), nil
}

// work runs a worker of q until the returned stop is called (or the test
// ends), and fails the test when Work returns an error.
func work(tb testing.TB, q *queue.Queue, opts queue.WorkerOptions) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Work(ctx, opts) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("Work: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// waitJob polls job id until cond holds, and returns it.
func waitJob(tb testing.TB, q *queue.Queue, id, what string, cond func(larder.Job) bool) larder.Job {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		j, err := q.Job(context.Background(), id)
		if err != nil {
			tb.Fatalf("Job(%s): %v", id, err)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			tb.Fatalf("job %s: not %s within %s; it stands as %+v", id, what, waitTimeout, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState waits until job id is in state s.
func waitState(tb testing.TB, q *queue.Queue, id string, s larder.JobState) larder.Job {
	tb.Helper()
	return waitJob(tb, q, id, string(s), func(j larder.Job) bool { return j.State == s })
}

// waitFor polls cond until it holds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func submit(tb testing.TB, q *queue.Queue, spec larder.JobSpec) larder.Job {
	tb.Helper()
	j, err := q.Submit(context.Background(), spec)
	if err != nil {
		tb.Fatalf("Submit(%+v): %v", spec, err)
	}
	return j
}

// events counts Options.OnEvent calls.
type events struct {
	mu sync.Mutex
	n  map[queue.Event]int
}

func (e *events) on(_ larder.JobKind, ev queue.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = make(map[queue.Event]int)
	}
	e.n[ev]++
}

// wait waits until there were n events ev (they are reported just after
// the change they report is visible), and a little more to see that no
// further one comes.
func (e *events) wait(tb testing.TB, ev queue.Event, n int) {
	tb.Helper()
	waitFor(tb, fmt.Sprintf("%d %s events", n, ev), func() bool { return e.count(ev) >= n })
	time.Sleep(50 * time.Millisecond)
	if got := e.count(ev); got != n {
		tb.Errorf("%d %s events, want %d", got, ev, n)
	}
}

func (e *events) count(ev queue.Event) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[ev]
}

// counter counts calls by job id.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int)
	}
	c.n[id]++
	return c.n[id]
}

func (c *counter) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// streamLen returns the length of project p's job stream.
func streamLen(tb testing.TB, c *redis.Client) int64 {
	tb.Helper()
	n, err := c.XLen(context.Background(), "larder:p:{p:jobs}:stream").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		tb.Fatalf("XLEN: %v", err)
	}
	return n
}

// ok is a handler that succeeds at once with no result.
func ok(context.Context, *queue.Task) ([]byte, error) { return nil, nil }

// clock is a test clock that moves on by step at every reading.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recv receives from ch, or fails the test after waitTimeout.
func recv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		tb.Fatalf("%s: not within %s", what, waitTimeout)
		panic("unreachable")
	}
}
