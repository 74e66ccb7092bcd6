package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/larder-dev/larder"
)

// ErrBatcherClosed is returned by Batcher.Score once the batcher is closed,
// to the requests still waiting and to later ones. It wraps
// larder.ErrUnavailable: the model is gone, so Rank serves in degraded mode.
var ErrBatcherClosed = fmt.Errorf("server: ranker model batcher closed: %w", larder.ErrUnavailable)

// errNoTime is the error of a call refused because its deadline is nearer
// than the longest it may wait for its run.
var errNoTime = fmt.Errorf("no time left to wait for a batched model run: %w", context.DeadlineExceeded)

// refused reports whether err is a Batcher refusing a call before it ran:
// the queue was full, or the call's deadline left no time to wait. Rank
// answers such a call with the error, not in degraded mode: the model did
// not fail, the server is busy or the caller is late.
func refused(err error) bool {
	return errors.Is(err, larder.ErrOverloaded) || errors.Is(err, errNoTime)
}

// Batcher is a Model that joins concurrent Score calls into one run of an
// inner Model. A run takes the waiting calls in the order they came, as
// many as fit in MaxRows rows (a call's rows are never split; a call of more
// than MaxRows rows runs alone). When no run is in flight (the model is
// idle), a run starts at once: a lone call does not wait. While a run is in
// flight, the calls that arrive wait, and a run of them starts when its rows
// are full, when the first of them has waited MaxDelay, or when the runs in
// flight have all ended, whichever is first. At most one run per CPU
// (GOMAXPROCS) is in flight; while they all are, the calls that arrive wait,
// and the next runs are the fuller for it.
//
// A call is refused at once with larder.ErrOverloaded when MaxQueue calls
// are already waiting, and, when it cannot run at once, with an error
// wrapping context.DeadlineExceeded when its context's deadline is earlier
// than MaxDelay from now. A call whose context ends while it waits leaves
// the queue and returns ctx.Err().
//
// There is no goroutine of its own: the calls, a timer, and one goroutine
// per run in flight do the work. Close it to refuse further calls and close
// the inner model. A Batcher is safe for concurrent use.
type Batcher struct {
	inner    Model
	features int
	cfg      larder.Batching
	maxRuns  int
	// now is the clock of the waits; time.Now outside tests.
	now func() time.Time

	mu      sync.Mutex
	queue   []*batchCall // the calls waiting, oldest first
	running int          // runs in flight
	timer   *time.Timer  // fires when the oldest waiting call is due
	armed   time.Time    // when timer fires; zero when stopped
	closed  bool
	runs    sync.WaitGroup // runs in flight, for Close

	calls sync.Pool // *batchCall
	bufs  sync.Pool // *batchBuf
}

var _ Model = (*Batcher)(nil)
var _ io.Closer = (*Batcher)(nil)

// batchCall is one Score call while it waits or runs.
type batchCall struct {
	ctx  context.Context
	x    []float32
	n    int
	out  []float32
	at   time.Time // when it was queued
	err  error
	done chan struct{} // receives once, when the call's run is over
}

// batchBuf holds one run's concatenated input and output, reused across
// runs.
type batchBuf struct {
	calls []*batchCall
	x     []float32
	out   []float32
}

// NewBatcher returns a Batcher over inner, whose calls have features values
// per row. Zero fields of cfg take the larder.DefaultBatch* defaults; a
// negative one is an error.
func NewBatcher(inner Model, features int, cfg larder.Batching) (*Batcher, error) {
	switch {
	case inner == nil:
		return nil, errors.New("server: batcher: no model")
	case features <= 0:
		return nil, fmt.Errorf("server: batcher: %d features per row, want at least 1", features)
	case cfg.MaxDelay < 0 || cfg.MaxRows < 0 || cfg.MaxQueue < 0:
		return nil, fmt.Errorf("server: batcher: max_delay %s, max_rows %d, max_queue %d: none may be negative", cfg.MaxDelay, cfg.MaxRows, cfg.MaxQueue)
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = larder.DefaultBatchMaxDelay
	}
	if cfg.MaxRows == 0 {
		cfg.MaxRows = larder.DefaultBatchMaxRows
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = larder.DefaultBatchMaxQueue
	}
	b := &Batcher{inner: inner, features: features, cfg: cfg, maxRuns: runtime.GOMAXPROCS(0), now: time.Now}
	b.timer = time.AfterFunc(time.Hour, b.due)
	b.timer.Stop()
	b.calls.New = func() any { return &batchCall{done: make(chan struct{}, 1)} }
	b.bufs.New = func() any { return &batchBuf{} }
	return b, nil
}

// Version returns the inner model's version: every run of b scores with it.
func (b *Batcher) Version() string { return b.inner.Version() }

// Waiting returns how many calls wait for a run.
func (b *Batcher) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// Inner returns the model b runs.
func (b *Batcher) Inner() Model { return b.inner }

// Score queues the n rows of x, waits for the run that scores them, and
// writes their n scores into out. It returns the inner model's error when
// the run failed, larder.ErrOverloaded when the queue is full, an error
// wrapping context.DeadlineExceeded when the call has to wait and ctx's
// deadline leaves no time to, ctx.Err() when ctx ends while the call waits,
// and ErrBatcherClosed once b is closed.
func (b *Batcher) Score(ctx context.Context, x []float32, n int, out []float32) error {
	switch {
	case n < 0:
		return fmt.Errorf("server: batcher: negative row count %d", n)
	case len(x) != n*b.features:
		return fmt.Errorf("server: batcher: x has %d values, want n × features = %d × %d", len(x), n, b.features)
	case len(out) < n:
		return fmt.Errorf("server: batcher: out has room for %d scores, want %d", len(out), n)
	case n == 0:
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := b.now()
	c := b.calls.Get().(*batchCall)
	c.ctx, c.x, c.n, c.out, c.at, c.err = ctx, x, n, out, now, nil
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		b.putCall(c)
		return ErrBatcherClosed
	case len(b.queue) >= b.cfg.MaxQueue:
		b.mu.Unlock()
		b.putCall(c)
		return fmt.Errorf("server: batcher: %d requests already wait for the model (batching.max_queue): %w", b.cfg.MaxQueue, larder.ErrOverloaded)
	}
	b.queue = append(b.queue, c)
	b.dispatchLocked(now)
	if last := len(b.queue) - 1; last >= 0 && b.queue[last] == c {
		// It has to wait, for company or for a free run: refuse it now if
		// its deadline may pass first.
		if d, ok := ctx.Deadline(); ok && d.Before(now.Add(b.cfg.MaxDelay)) {
			b.queue = b.queue[:last]
			b.mu.Unlock()
			b.putCall(c)
			return fmt.Errorf("server: batcher: the model is busy, and the request's deadline is %s away, less than batching.max_delay %s: %w",
				d.Sub(now).Round(time.Microsecond), b.cfg.MaxDelay, errNoTime)
		}
	}
	b.mu.Unlock()

	select {
	case <-c.done:
	case <-ctx.Done():
		b.mu.Lock()
		if i := slices.Index(b.queue, c); i >= 0 {
			// Still waiting: leave the queue, so that the call takes no
			// room in a run.
			b.queue = slices.Delete(b.queue, i, i+1)
			b.dispatchLocked(b.now())
			b.mu.Unlock()
			b.putCall(c)
			return ctx.Err()
		}
		b.mu.Unlock()
		// Its run has started and writes into out: wait for it to end.
		<-c.done
	}
	err := c.err
	b.putCall(c)
	return err
}

func (b *Batcher) putCall(c *batchCall) {
	c.ctx, c.x, c.out, c.err = nil, nil, nil, nil
	b.calls.Put(c)
}

// due runs when the timer fires: the oldest waiting call may be due.
func (b *Batcher) due() {
	b.mu.Lock()
	b.armed = time.Time{}
	b.dispatchLocked(b.now())
	b.mu.Unlock()
}

// dispatchLocked starts the runs that are due, while runs are free: a run
// of the oldest calls is due when no run is in flight, when its rows are
// full, or when the oldest call has waited MaxDelay. Otherwise it sets the
// timer for when it will be.
// b.mu must be held.
func (b *Batcher) dispatchLocked(now time.Time) {
	for len(b.queue) > 0 && b.running < b.maxRuns && !b.closed {
		rows, k := b.queue[0].n, 1
		for k < len(b.queue) && rows+b.queue[k].n <= b.cfg.MaxRows {
			rows += b.queue[k].n
			k++
		}
		full := k < len(b.queue) || rows >= b.cfg.MaxRows
		// An idle model runs the waiting calls at once: there is no run
		// to wait behind, so waiting for company would only add latency.
		idle := b.running == 0
		if at := b.queue[0].at.Add(b.cfg.MaxDelay); !idle && !full && now.Before(at) {
			if !b.armed.Equal(at) {
				b.armed = at
				b.timer.Reset(at.Sub(now))
			}
			return
		}
		buf := b.bufs.Get().(*batchBuf)
		buf.calls = append(buf.calls[:0], b.queue[:k]...)
		b.queue = slices.Delete(b.queue, 0, k)
		b.running++
		b.runs.Add(1)
		go b.run(buf)
	}
}

// run scores the calls of buf in one run of the inner model, gives each its
// scores (or the run's error), and starts the next runs that are due.
func (b *Batcher) run(buf *batchBuf) {
	defer b.runs.Done()
	x := buf.x[:0]
	rows := 0
	live := buf.calls[:0]
	for _, c := range buf.calls {
		if err := c.ctx.Err(); err != nil {
			// Its deadline passed, or its caller left, before its turn.
			c.err = err
			c.done <- struct{}{}
			continue
		}
		x = append(x, c.x...)
		rows += c.n
		live = append(live, c)
	}
	buf.x = x
	if cap(buf.out) < rows {
		buf.out = make([]float32, rows)
	}
	out := buf.out[:rows]
	var err error
	if rows > 0 {
		ctx, cancel := runContext(live)
		err = b.inner.Score(ctx, x, rows, out)
		cancel()
	}
	off := 0
	for _, c := range live {
		if err != nil {
			c.err = err
		} else {
			copy(c.out[:c.n], out[off:off+c.n])
		}
		off += c.n
		c.done <- struct{}{}
	}
	clear(buf.calls)
	buf.calls = buf.calls[:0]
	b.bufs.Put(buf)

	b.mu.Lock()
	b.running--
	b.dispatchLocked(b.now())
	b.mu.Unlock()
}

// runContext returns the context of a run shared by calls, and its cancel
// function: no one caller may stop the run, but once every caller's deadline
// has passed its result helps no one, so it ends at the latest of them, or
// never when a caller has none.
func runContext(calls []*batchCall) (context.Context, context.CancelFunc) {
	var last time.Time
	for _, c := range calls {
		d, ok := c.ctx.Deadline()
		if !ok {
			return context.Background(), func() {}
		}
		if d.After(last) {
			last = d
		}
	}
	return context.WithDeadline(context.Background(), last)
}

// batchModel returns the model a ranker scores with: m itself, or, when the
// ranker sets batching, a Batcher over m.
func batchModel(r *larder.Ranker, m Model) (Model, error) {
	if r.Batching == nil {
		return m, nil
	}
	return NewBatcher(m, len(r.Inputs), *r.Batching)
}

// Close refuses further calls, fails the calls still waiting with
// ErrBatcherClosed, waits for the runs in flight, and closes the inner
// model when it is an io.Closer, returning its error. Calling Close again
// returns nil.
func (b *Batcher) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.timer.Stop()
	waiting := b.queue
	b.queue = nil
	b.mu.Unlock()
	for _, c := range waiting {
		c.err = ErrBatcherClosed
		c.done <- struct{}{}
	}
	b.runs.Wait()
	if c, ok := b.inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
