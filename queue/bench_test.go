package queue_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/queue"
	"github.com/larder-dev/larder/redistest"
	"github.com/redis/go-redis/v9"
)

// benchBatch is the number of jobs a throughput operation submits at once.
const benchBatch = 1000

// benchClients is the number of goroutines that submit a throughput
// operation's jobs, and the concurrency of its worker.
const benchClients = 4

// BenchmarkJob measures the job queue with a handler that does nothing, on
// a real redis-server, the worker in this process:
//
//	roundtrip         submit one job and wait until it succeeded, one at a
//	                  time, with a worker of concurrency 1 (ns/op per job)
//	floor             the same pattern in raw Redis commands through
//	                  go-redis: XADD; XREADGROUP; HSET of a status field,
//	                  XACK and XDEL in one pipeline
//	throughput        submit benchBatch jobs from benchClients goroutines and
//	                  wait until all succeeded, with a worker of concurrency
//	                  benchClients (jobs/s)
//	throughput-floor  the same pattern in the raw commands of floor, with
//	                  benchClients consumers
//
// Each reports jobs/s, and the CPU time per job of this process (client
// and worker) and of redis-server, which other work on a shared machine
// skews less than elapsed time.
//
// A job counts as succeeded when the worker has recorded it so: the wait
// follows Options.OnEvent rather than polling Job, so that no polling
// interval is measured. A client that polls (larder jobs --wait) adds its
// interval to the round trip.
func BenchmarkJob(b *testing.B) {
	srv := redistest.Start(b)
	client := srv.Client()

	b.Run("roundtrip", func(b *testing.B) {
		q, done := benchQueue(b, client, "roundtrip", 1)
		ctx := context.Background()
		var last larder.Job
		cpu := startCPU(b, client)
		for b.Loop() {
			j, err := q.Submit(ctx, larder.JobSpec{Kind: "noop"})
			if err != nil {
				b.Fatal(err)
			}
			done.wait(b, 1)
			last = j
		}
		cpu.report(b, 1)
		checkSucceeded(b, q, last.ID)
	})

	b.Run("floor", func(b *testing.B) {
		f := startFloor(b, client, "floor", 1)
		ctx := context.Background()
		cpu := startCPU(b, client)
		for b.Loop() {
			if err := f.add(ctx); err != nil {
				b.Fatal(err)
			}
			f.wait(b, 1)
		}
		cpu.report(b, 1)
	})

	b.Run("throughput", func(b *testing.B) {
		q, done := benchQueue(b, client, "throughput", benchClients)
		ctx := context.Background()
		var last larder.Job
		cpu := startCPU(b, client)
		for b.Loop() {
			last = fanOut(b, func() (larder.Job, error) { return q.Submit(ctx, larder.JobSpec{Kind: "noop"}) })
			done.wait(b, benchBatch)
		}
		cpu.report(b, benchBatch)
		checkSucceeded(b, q, last.ID)
	})

	b.Run("throughput-floor", func(b *testing.B) {
		f := startFloor(b, client, "throughput-floor", benchClients)
		ctx := context.Background()
		cpu := startCPU(b, client)
		for b.Loop() {
			fanOut(b, func() (larder.Job, error) { return larder.Job{}, f.add(ctx) })
			f.wait(b, benchBatch)
		}
		cpu.report(b, benchBatch)
	})
}

// benchQueue returns a queue of project on client with a worker of
// concurrency running a no-op handler of kind "noop" until b ends, and
// the count of the jobs that succeeded.
func benchQueue(b *testing.B, client *redis.Client, project string, concurrency int) (*queue.Queue, *signal) {
	b.Helper()
	done := newSignal()
	q := queue.New(client, project, queue.Options{OnEvent: func(_ larder.JobKind, ev queue.Event) {
		switch ev {
		case queue.EventSucceeded:
			done.add(nil)
		case queue.EventFailed, queue.EventCancelled, queue.EventRetried, queue.EventReclaimed:
			done.add(errors.New("a no-op job was " + string(ev)))
		}
	}})
	work(b, q, queue.WorkerOptions{
		Name:        project,
		Concurrency: concurrency,
		Handlers:    map[larder.JobKind]queue.Handler{"noop": ok},
	})
	return q, done
}

// checkSucceeded checks, once the timing is over, that job id stands as
// succeeded for a client that reads it.
func checkSucceeded(b *testing.B, q *queue.Queue, id string) {
	b.Helper()
	j, err := q.Job(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	if j.State != larder.JobSucceeded {
		b.Fatalf("job %s is %s, want succeeded", id, j.State)
	}
}

// fanOut calls submit benchBatch times from benchClients goroutines and
// returns one of the jobs it returned.
func fanOut(b *testing.B, submit func() (larder.Job, error)) larder.Job {
	b.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		last  larder.Job
	)
	for c := range benchClients {
		n := benchBatch / benchClients
		if c < benchBatch%benchClients {
			n++
		}
		wg.Go(func() {
			for range n {
				j, err := submit()
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				last = j
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
	return last
}

// signal counts finished jobs, and the first error seen.
type signal struct {
	mu   sync.Mutex
	cond *sync.Cond
	n    int
	err  error
}

func newSignal() *signal {
	s := &signal{}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *signal) add(err error) {
	s.mu.Lock()
	s.n++
	if err != nil && s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// wait waits until n more jobs finished, and fails b when one went wrong
// or they take longer than waitTimeout.
func (s *signal) wait(b *testing.B, n int) {
	b.Helper()
	timer := time.AfterFunc(waitTimeout, func() {
		s.add(errors.New("jobs not finished within " + waitTimeout.String()))
	})
	defer timer.Stop()
	s.mu.Lock()
	for s.n < n && s.err == nil {
		s.cond.Wait()
	}
	s.n -= n
	err := s.err
	s.mu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
}

// floor is the raw Redis work of a job queue without its bookkeeping: a
// producer adds an entry to a stream (XADD); consumers in one consumer
// group read it (XREADGROUP) and, in one pipeline, set the job's status
// field (HSET), acknowledge the entry (XACK) and delete it (XDEL).
type floor struct {
	client *redis.Client
	stream string
	prefix string
	seq    int64
	mu     sync.Mutex
	done   *signal
}

const floorGroup = "g"

// startFloor creates the stream of name with its consumer group and starts
// consumers that run until b ends.
func startFloor(b *testing.B, client *redis.Client, name string, consumers int) *floor {
	b.Helper()
	// Keys of their own for each call, as the benchmark runs again with
	// -count on the same redis-server.
	base := "floor:" + name + ":" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	f := &floor{client: client, stream: base + "stream", prefix: base + "job:", done: newSignal()}
	ctx, cancel := context.WithCancel(context.Background())
	if err := client.XGroupCreateMkStream(ctx, f.stream, floorGroup, "0").Err(); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for c := range consumers {
		wg.Go(func() { f.consume(ctx, "c"+strconv.Itoa(c)) })
	}
	b.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return f
}

// add adds a job's entry to the stream.
func (f *floor) add(ctx context.Context) error {
	f.mu.Lock()
	f.seq++
	id := strconv.FormatInt(f.seq, 10)
	f.mu.Unlock()
	return f.client.XAdd(ctx, &redis.XAddArgs{Stream: f.stream, Values: []any{"id", id}}).Err()
}

// wait waits until n more jobs were done.
func (f *floor) wait(b *testing.B, n int) {
	b.Helper()
	f.done.wait(b, n)
}

// consume reads entries one at a time until ctx ends.
func (f *floor) consume(ctx context.Context, name string) {
	for ctx.Err() == nil {
		streams, err := f.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: floorGroup, Consumer: name, Streams: []string{f.stream, ">"}, Count: 1, Block: 100 * time.Millisecond,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				f.done.add(err)
			}
			return
		}
		for _, s := range streams {
			for _, m := range s.Messages {
				id, _ := m.Values["id"].(string)
				pipe := f.client.Pipeline()
				pipe.HSet(ctx, f.prefix+id, "state", "succeeded")
				pipe.XAck(ctx, f.stream, floorGroup, m.ID)
				pipe.XDel(ctx, f.stream, m.ID)
				_, err := pipe.Exec(ctx)
				f.done.add(err)
			}
		}
	}
}

// cpuMeter measures the CPU time of this process and of a redis-server
// over a benchmark.
type cpuMeter struct {
	client *redis.Client
	self   time.Duration
	redis  float64
}

func startCPU(b *testing.B, client *redis.Client) *cpuMeter {
	b.Helper()
	return &cpuMeter{client: client, self: processCPU(b), redis: redisCPU(b, client)}
}

// report reports jobs/s, and the CPU microseconds per job of this process
// and of redis-server, for operations of jobs jobs each.
func (m *cpuMeter) report(b *testing.B, jobs int) {
	b.Helper()
	elapsed := b.Elapsed()
	self, red := processCPU(b)-m.self, redisCPU(b, m.client)-m.redis
	n := float64(jobs * b.N)
	b.ReportMetric(n/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(float64(self.Microseconds())/n, "client-cpu-µs/job")
	b.ReportMetric(red*1e6/n, "redis-cpu-µs/job")
}

// processCPU returns the user and system CPU time of the process so far.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU returns the CPU seconds redis-server has used so far (INFO cpu).
func redisCPU(tb testing.TB, client *redis.Client) float64 {
	tb.Helper()
	info, err := client.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for line := range strings.Lines(info) {
		for _, field := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), field); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					tb.Fatalf("INFO cpu %s: %v", field, err)
				}
				total += f
			}
		}
	}
	return total
}
