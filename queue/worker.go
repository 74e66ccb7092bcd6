package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// Causes of a handler's context cancellation (context.Cause).
var (
	// ErrCancelled means the job's cancellation was requested (Cancel).
	ErrCancelled = errors.New("job cancelled by request")
	// ErrShutdown means the worker is shutting down and its ShutdownGrace
	// ended: the job goes back to the queue, the attempt not counted,
	// unless the handler returns nil anyway.
	ErrShutdown = errors.New("worker shutting down")
	// ErrLost means the worker no longer holds the job: another worker
	// took it over, or may, because this one could not prove it was alive
	// for Lapse. The handler's outcome is ignored.
	ErrLost = errors.New("job lost: this worker's heartbeat lapsed")
)

// Timings of the workers.
const (
	// readBlock is how long a read of the stream waits for an entry: the
	// longest a worker takes to notice its context ended while idle.
	readBlock = 500 * time.Millisecond
	// progressEvery is the least time between two progress writes of a job.
	progressEvery = time.Second
	// moveEvery bounds how often a worker moves due jobs from the delayed
	// set to the stream (more often when Heartbeat is shorter).
	moveEvery = 500 * time.Millisecond
	// cleanupEvery is how often a worker runs Cleanup.
	cleanupEvery = time.Minute
	// releaseDelay is how long a job waits in the delayed set after a
	// worker without a handler for its kind let it go.
	releaseDelay = time.Second
	// retryWrite is the pause between two tries of a failed outcome write.
	retryWrite = 200 * time.Millisecond
	// batch bounds the entries one move or reclaim script looks at.
	batch = 100
)

// Handler does the work of a job of one kind. It returns the job's result
// as JSON (nil for none), or an error: the attempt failed, and the job is
// retried unless the error is Permanent or it was the last attempt. It must
// return soon after ctx is cancelled; context.Cause(ctx) says why
// (ErrCancelled, ErrShutdown, ErrLost).
type Handler func(ctx context.Context, t *Task) (result []byte, err error)

// Hooks are optional calls about jobs of one kind, made on a worker that
// handles the kind. Failed and Cancelled are called at least once per job
// (again if the worker calling them dies first), so they should be
// idempotent, and return well within Lapse.
type Hooks struct {
	// Retrying is called when an attempt failed and the job will run again
	// after delay, such as to extend a lease the job holds. It is not
	// called for a job taken from a worker that stopped answering, which
	// runs again at once.
	Retrying func(ctx context.Context, job larder.Job, delay time.Duration)
	// Failed is called when the job failed for good: on its last attempt,
	// with a Permanent error, when its worker stopped answering on its last
	// attempt, or when a child failed.
	Failed func(ctx context.Context, job larder.Job)
	// Cancelled is called when the job was cancelled while queued,
	// retrying or waiting for its children. A running job sees its
	// handler's context cancelled instead.
	Cancelled func(ctx context.Context, job larder.Job)
}

// WorkerOptions configure one worker (Queue.Work).
type WorkerOptions struct {
	// Name names the worker in jobs (Job.Worker) and in the consumer group;
	// "" means "<host>:<pid>". Live workers must have distinct names.
	Name string
	// Concurrency is the most jobs the worker runs at once; 0 means 1.
	Concurrency int
	// Handlers do the work of each kind. A job of a kind without a handler
	// is left, for a second, to other workers.
	Handlers map[larder.JobKind]Handler
	// Hooks are optional calls per kind.
	Hooks map[larder.JobKind]Hooks
	// ShutdownGrace is how long running jobs may go on once Work's context
	// ended; then their handlers' contexts are cancelled with ErrShutdown
	// and their jobs go back to the queue, the attempt not counted. 0
	// means no grace.
	ShutdownGrace time.Duration
}

// permanentError marks a handler error that must not be retried.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err, a handler's error, as one that another attempt
// would not cure: the job fails at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Owner returns the name under which job id holds leases: the same on
// every attempt and every worker, so that an attempt, or a hook, recognises
// a lease that an earlier attempt of the job took.
func Owner(id string) string { return "job:" + id }

// Task is one attempt of a job, as its handler sees it.
type Task struct {
	q   *Queue
	job larder.Job

	mu       sync.Mutex
	progress larder.JobProgress
	set      bool // SetProgress was called
	dirty    bool // progress changed since it was last written
}

// Job returns the job as it stood when the attempt started: State running,
// Attempts the number of this attempt, Worker this worker.
func (t *Task) Job() larder.Job { return t.job }

// Owner returns Owner(t.Job().ID).
func (t *Task) Owner() string { return Owner(t.job.ID) }

// SetProgress records how far the job has come. It does not block: the
// worker writes the latest progress at most about once a second, and once
// more when the handler returns.
func (t *Task) SetProgress(p larder.JobProgress) {
	t.mu.Lock()
	t.progress, t.set, t.dirty = p, true, true
	t.mu.Unlock()
}

// takeProgress returns the progress to write, or "" when it has not
// changed since the last write.
func (t *Task) takeProgress() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.dirty {
		return ""
	}
	t.dirty = false
	return encodeProgress(t.progress)
}

// unwrite marks the progress as not written, after a failed write.
func (t *Task) unwrite() {
	t.mu.Lock()
	t.dirty = t.set
	t.mu.Unlock()
}

// finalProgress returns the progress to store with the attempt's outcome,
// or "" when the handler never set one.
func (t *Task) finalProgress() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.set {
		return ""
	}
	return encodeProgress(t.progress)
}

// Submit submits a job as Queue.Submit does, as a child of this job when
// spec.Parent is "". A job that returns nil after starting children waits
// for them (larder.JobWaiting) and finishes when the last does: succeeded
// when all did, else failed (naming the first child that failed) or
// cancelled. A handler may also name its own parent, to add a sibling that
// the parent waits for too (a continuation). Children outlive a failed
// attempt that is retried (the next attempt finds them in Job().Children);
// when the job fails for good, its active children are cancelled. Submit
// returns an *larder.InvalidError when this job is done or being
// cancelled.
func (t *Task) Submit(ctx context.Context, spec larder.JobSpec) (larder.Job, error) {
	if spec.Parent == "" {
		spec.Parent = t.job.ID
	}
	return t.q.Submit(ctx, spec)
}

// worker is one Work call.
type worker struct {
	q     *Queue
	opts  WorkerOptions
	name  string
	kinds []any // the handled kinds, as script arguments
	log   *slog.Logger

	// hard is the parent of handlers' and hooks' contexts: cancelled with
	// ErrShutdown when the shutdown grace ends.
	hard context.Context

	mu      sync.Mutex
	running map[string]*hold // by job id
}

// hold is a worker's hold on a stream entry: a job's attempt, or a hook.
type hold struct {
	id, eid string
	task    *Task // nil for a hook
	cancel  context.CancelCauseFunc

	mu     sync.Mutex
	lastOK time.Time // when the last heartbeat that got through was sent
}

func (h *hold) ok(t time.Time) {
	h.mu.Lock()
	h.lastOK = t
	h.mu.Unlock()
}

func (h *hold) sinceOK() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Since(h.lastOK)
}

// Work runs a worker: it takes jobs of the kinds in opts.Handlers from the
// queue and runs them, up to opts.Concurrency at once, until ctx ends. Then
// it stops taking jobs, lets running ones go on for opts.ShutdownGrace,
// cancels the rest with ErrShutdown and gives them back to the queue. It
// returns nil once every job it ran is done or given back, or at once an
// error when opts has no handler. Redis errors do not end it: it logs them
// and tries again.
func (q *Queue) Work(ctx context.Context, opts WorkerOptions) error {
	if len(opts.Handlers) == 0 {
		return errors.New("queue: a worker needs at least one handler")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Name == "" {
		host, _ := os.Hostname()
		opts.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	w := &worker{q: q, opts: opts, name: opts.Name, running: make(map[string]*hold)}
	w.log = q.log.With("worker", w.name)
	for k, h := range opts.Handlers {
		if h != nil {
			w.kinds = append(w.kinds, string(k))
		}
	}

	// Redis calls outlive ctx: a job's outcome is written after ctx ended.
	base := context.WithoutCancel(ctx)
	hard, stopHard := context.WithCancelCause(base)
	defer stopHard(nil)
	w.hard = hard
	loops, stopLoops := context.WithCancel(base)
	var loopsWG, tasks sync.WaitGroup

	w.ensureGroup(base)
	loopsWG.Add(2)
	go func() { defer loopsWG.Done(); w.listen(loops) }()
	go func() { defer loopsWG.Done(); w.maintain(loops) }()

	w.log.Info("worker started", "concurrency", opts.Concurrency, "kinds", w.kinds)
	w.read(ctx, base, &tasks)

	done := make(chan struct{})
	go func() { tasks.Wait(); close(done) }()
	if w.count() > 0 {
		w.log.Info("worker stopping: waiting for running jobs", "jobs", w.count(), "grace", opts.ShutdownGrace)
	}
	grace := time.NewTimer(opts.ShutdownGrace)
	select {
	case <-done:
		grace.Stop()
	case <-grace.C:
		w.log.Info("worker stopping: grace ended, giving running jobs back", "jobs", w.count())
		stopHard(ErrShutdown)
		<-done
	}
	stopLoops()
	loopsWG.Wait()
	w.log.Info("worker stopped")
	return nil
}

func (w *worker) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// ensureGroup creates the stream and its consumer group unless they exist.
// The group starts at the stream's beginning, so that jobs submitted before
// any worker ran are read.
func (w *worker) ensureGroup(ctx context.Context) {
	err := w.q.client.XGroupCreateMkStream(ctx, w.q.k.stream(), group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		w.log.Warn("create the consumer group", "err", err)
	}
}

// read takes entries from the stream while ctx lasts and starts a task for
// each, never more than Concurrency at once. Reads use base, not ctx, so
// that an entry the server delivered is never lost to an interrupted read.
func (w *worker) read(ctx, base context.Context, tasks *sync.WaitGroup) {
	slots := make(chan struct{}, w.opts.Concurrency)
	pause := time.Duration(0)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	more:
		for n < w.opts.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		// An entry's idle time on the server starts when it is delivered:
		// a worker's hold on it is measured from before the read.
		readAt := time.Now()
		streams, err := w.q.client.XReadGroup(base, &redis.XReadGroupArgs{
			Group:    group,
			Consumer: w.name,
			Streams:  []string{w.q.k.stream(), ">"},
			Count:    int64(n),
			Block:    readBlock,
		}).Result()
		var msgs []redis.XMessage
		for _, s := range streams {
			msgs = append(msgs, s.Messages...)
		}
		for range n - len(msgs) {
			<-slots
		}
		switch {
		case err == nil || errors.Is(err, redis.Nil):
			pause = 0
		case strings.HasPrefix(err.Error(), "NOGROUP"):
			w.ensureGroup(base)
			continue
		default:
			pause = min(max(2*pause, 100*time.Millisecond), 5*time.Second)
			w.log.Warn("read the job stream", "err", err, "retry_in", pause)
			sleep(ctx, pause)
			continue
		}
		for _, m := range msgs {
			tasks.Add(1)
			go func() {
				defer tasks.Done()
				defer func() { <-slots }()
				w.process(base, m, readAt)
			}()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// process handles entry m, delivered by a read sent at readAt.
func (w *worker) process(ctx context.Context, m redis.XMessage, readAt time.Time) {
	id, _ := m.Values["id"].(string)
	args := append([]any{id, m.ID, w.name, w.q.now().Add(releaseDelay).UnixMilli()}, w.kinds...)
	res, err := w.q.run(ctx, scriptClaim, args...)
	if err != nil {
		// The entry stays pending with this worker: another takes it
		// over after Lapse, the attempt not counted.
		w.log.Warn("claim a job", "job", id, "err", err)
		return
	}
	switch res.status {
	case "run":
		job, err := decodeRecord(res.record(2))
		if err != nil {
			w.log.Error("decode a job", "job", id, "err", err)
			return
		}
		w.attempt(ctx, job, m.ID, readAt)
	case "hook":
		job, err := decodeRecord(res.record(2))
		if err != nil {
			w.log.Error("decode a job", "job", id, "err", err)
			return
		}
		hctx, cancel := context.WithCancelCause(w.hard)
		defer cancel(nil)
		h := &hold{id: job.ID, eid: m.ID, cancel: cancel, lastOK: readAt}
		stop := w.keep(ctx, h)
		defer stop()
		w.hook(ctx, hctx, h, job, res.str(3))
	}
}

// attempt runs one attempt of job from entry eid, read at readAt, and
// records its outcome.
func (w *worker) attempt(ctx context.Context, job larder.Job, eid string, readAt time.Time) {
	log := w.log.With("job", job.ID, "kind", job.Kind, "attempt", job.Attempts)
	handler := w.opts.Handlers[job.Kind]
	task := &Task{q: w.q, job: job}
	hctx, cancel := context.WithCancelCause(w.hard)
	defer cancel(nil)
	h := &hold{id: job.ID, eid: eid, task: task, cancel: cancel, lastOK: readAt}

	w.mu.Lock()
	w.running[job.ID] = h
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.running, job.ID)
		w.mu.Unlock()
	}()
	stop := w.keep(ctx, h)
	defer stop()

	log.Info("job started")
	start := time.Now()
	result, herr := call(hctx, log, handler, task)
	if herr == nil && len(result) > 0 && !json.Valid(result) {
		herr = Permanent(errors.New("the handler's result is not valid JSON"))
	}
	cause := context.Cause(hctx)
	if errors.Is(cause, ErrLost) {
		log.Warn("job lost: its outcome is ignored; another worker takes it over", "took", time.Since(start), "err", herr)
		return
	}

	var (
		res reply
		err error
	)
	prog := task.finalProgress()
	switch {
	case herr != nil && errors.Is(cause, ErrShutdown):
		res, err = w.write(ctx, h, scriptRelease, job.ID, eid, prog)
	case herr == nil:
		res, err = w.write(ctx, h, scriptSucceed, job.ID, eid, string(result), prog)
	default:
		due := w.q.now().Add(w.backoff(job.Attempts))
		perm := "0"
		if isPermanent(herr) {
			perm = "1"
		}
		res, err = w.write(ctx, h, scriptFail, job.ID, eid, herr.Error(), perm, prog, due.UnixMilli(), due.UTC().Format(timeText))
	}
	if err != nil {
		log.Error("job outcome not recorded; another worker takes the job over", "err", err, "handler_err", herr)
		return
	}
	took := time.Since(start)
	switch res.status {
	case "hook":
		after, err := decodeRecord(res.record(2))
		if err != nil {
			log.Error("decode a job", "err", err)
			return
		}
		hook := res.str(3)
		if hook == "retrying" {
			log.Warn("job attempt failed; will retry", "took", took, "err", herr, "next_attempt_at", after.NextAttemptAt)
		} else {
			log.Warn("job "+string(after.State), "took", took, "err", after.LastError)
		}
		hctx, cancel := context.WithCancelCause(w.hard)
		defer cancel(nil)
		w.hook(ctx, hctx, h, after, hook)
	case "lost":
		log.Warn("job lost: its outcome is ignored; another worker takes it over", "took", took)
	default:
		log.Info("job "+res.status, "took", took)
	}
}

// call runs handler, turning a panic into an error (and its stack into a
// log line).
func call(ctx context.Context, log *slog.Logger, handler Handler, t *Task) (result []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("handler panicked", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return handler(ctx, t)
}

// backoff returns the delay before the retry of a job whose attempt
// failed: Backoff doubled per earlier attempt, capped, plus jitter.
func (w *worker) backoff(attempt int) time.Duration {
	d := w.q.opts.Backoff
	for i := 1; i < attempt && d < w.q.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.q.opts.MaxBackoff)
	return d + rand.N(d/10+1)
}

// write runs an outcome script, trying again on Redis errors while the
// hold's heartbeat has not lapsed (after that, another worker may have
// taken the job over, and the reclaim records the attempt).
func (w *worker) write(ctx context.Context, h *hold, s *redis.Script, args ...any) (reply, error) {
	for {
		res, err := w.q.run(ctx, s, args...)
		if err == nil {
			return res, nil
		}
		if h.sinceOK() >= w.q.opts.Lapse {
			return reply{}, err
		}
		w.log.Warn("record a job's outcome; trying again", "job", h.id, "err", err)
		sleep(ctx, retryWrite)
	}
}

// hook calls the hook owed for job, if the worker has one, with hctx, and
// records that it was called.
func (w *worker) hook(ctx, hctx context.Context, h *hold, job larder.Job, hook string) {
	hooks := w.opts.Hooks[job.Kind]
	func() {
		defer func() {
			if r := recover(); r != nil {
				w.log.Error("hook panicked", "job", job.ID, "hook", hook, "panic", r, "stack", string(debug.Stack()))
			}
		}()
		switch {
		case hook == "retrying" && job.State == larder.JobRetrying && hooks.Retrying != nil:
			hooks.Retrying(hctx, job, max(job.NextAttemptAt.Sub(w.q.now()), 0))
		case hook == "failed" && job.State == larder.JobFailed && hooks.Failed != nil:
			hooks.Failed(hctx, job)
		case hook == "cancelled" && job.State == larder.JobCancelled && hooks.Cancelled != nil:
			hooks.Cancelled(hctx, job)
		}
	}()
	if _, err := w.write(ctx, h, scriptHookDone, job.ID, h.eid, hook); err != nil {
		w.log.Warn("record a hook call; another worker calls it again", "job", job.ID, "hook", hook, "err", err)
	}
}

// keep holds h's entry until the returned stop is called: it beats every
// Heartbeat, writes the task's progress at most every progressEvery, and
// cancels h when its job's cancellation is requested (ErrCancelled), when
// the entry no longer stands for the job, or when no beat got through for
// Lapse (ErrLost).
func (w *worker) keep(ctx context.Context, h *hold) (stop func()) {
	every := min(w.q.opts.Heartbeat, progressEvery)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		lastBeat := h.lastOK
		var lastProgress time.Time
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			prog := ""
			if h.task != nil && time.Since(lastProgress) >= progressEvery {
				prog = h.task.takeProgress()
			}
			if prog == "" && time.Since(lastBeat) < w.q.opts.Heartbeat-every/2 {
				continue
			}
			sent := time.Now()
			st, err := w.touch(ctx, h, prog)
			if err != nil {
				if prog != "" {
					h.task.unwrite()
				}
				if h.sinceOK() >= w.q.opts.Lapse {
					w.log.Warn("heartbeat lapsed: letting the job go", "job", h.id, "err", err)
					h.cancel(ErrLost)
					return
				}
				continue
			}
			lastBeat = sent
			h.ok(sent)
			if prog != "" {
				lastProgress = sent
			}
			switch st {
			case -1:
				h.cancel(ErrLost)
				return
			case 1:
				h.cancel(ErrCancelled)
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

func (w *worker) touch(ctx context.Context, h *hold, prog string) (int64, error) {
	now := w.q.now()
	return scriptTouch.Run(ctx, w.q.client, []string{w.q.k.stream()},
		w.q.k.prefix, now.UTC().Format(timeText), now.UnixMilli(),
		h.id, h.eid, w.name, prog).Int64()
}

// listen cancels the running jobs whose cancellation is requested, as soon
// as the request is published. (Heartbeats catch a missed message.)
func (w *worker) listen(ctx context.Context) {
	sub := w.q.client.Subscribe(ctx, w.q.k.channel())
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			w.mu.Lock()
			h := w.running[m.Payload]
			w.mu.Unlock()
			if h != nil {
				h.cancel(ErrCancelled)
			}
		}
	}
}

// maintain runs the periodic work every worker shares: moving due retries
// to the stream, reclaiming the jobs of workers that stopped answering,
// and Cleanup.
func (w *worker) maintain(ctx context.Context) {
	every := min(w.q.opts.Heartbeat, moveEvery)
	t := time.NewTicker(every)
	defer t.Stop()
	var lastReclaim time.Time
	lastCleanup := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			res, err := w.q.run(ctx, scriptMove, batch)
			if err != nil {
				if ctx.Err() == nil {
					w.log.Warn("move due jobs", "err", err)
				}
				break
			}
			if res.n < batch {
				break
			}
		}
		if time.Since(lastReclaim) >= w.q.opts.Heartbeat-every/2 {
			lastReclaim = time.Now()
			res, err := w.q.run(ctx, scriptReclaim, w.q.opts.Lapse.Milliseconds(), w.q.opts.Lapse.String(), batch)
			switch {
			case err != nil && ctx.Err() == nil:
				w.log.Warn("reclaim jobs of silent workers", "err", err)
			case err == nil && res.n > 0:
				w.log.Warn("took over jobs of workers that stopped answering", "jobs", res.n)
			}
		}
		if time.Since(lastCleanup) >= cleanupEvery {
			lastCleanup = time.Now()
			n, err := w.q.cleanup(ctx, w.name)
			switch {
			case err != nil && ctx.Err() == nil:
				w.log.Warn("clean up the job queue", "err", err)
			case err == nil && n > 0:
				w.log.Info("deleted old jobs", "jobs", n)
			}
		}
	}
}
