package queue_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/queue"
)

func TestJobSucceeds(t *testing.T) {
	t.Parallel()
	var ev events
	opts := fast()
	opts.OnEvent = ev.on
	q, srv := newQueue(t, opts)
	halfway := make(chan struct{})
	var seen larder.Job
	var owner string
	work(t, q, queue.WorkerOptions{Name: "w1", Handlers: map[larder.JobKind]queue.Handler{
		"a": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
			seen, owner = tk.Job(), tk.Owner()
			tk.SetProgress(larder.JobProgress{Phase: "rows", Done: 5, Total: 10, Unit: "rows"})
			select {
			case <-halfway:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			tk.SetProgress(larder.JobProgress{Phase: "rows", Done: 10, Total: 10, Unit: "rows"})
			return []byte(`{"rows":10}`), nil
		},
	}})
	j := submit(t, q, larder.JobSpec{Kind: "a", Description: "count rows"})
	waitJob(t, q, j.ID, "running at 5 of 10 rows", func(j larder.Job) bool {
		return j.State == larder.JobRunning && j.Progress.Done == 5
	})
	close(halfway)
	j = waitState(t, q, j.ID, larder.JobSucceeded)

	if seen.ID != j.ID || seen.State != larder.JobRunning || seen.Attempts != 1 || seen.Worker != "w1" {
		t.Errorf("Task.Job() = %+v, want the running job at attempt 1 on w1", seen)
	}
	if owner != queue.Owner(j.ID) || owner == "" {
		t.Errorf("Task.Owner() = %q, want %q", owner, queue.Owner(j.ID))
	}
	want := larder.JobProgress{Phase: "rows", Done: 10, Total: 10, Unit: "rows"}
	if j.Progress != want || string(j.Result) != `{"rows":10}` || j.Attempts != 1 || j.Worker != "w1" ||
		j.LastError != "" || j.StartedAt.IsZero() || j.FinishedAt.Before(j.StartedAt) {
		t.Errorf("job = %+v; want succeeded at attempt 1 with result and final progress", j)
	}
	for e, n := range map[queue.Event]int{queue.EventSubmitted: 1, queue.EventStarted: 1, queue.EventSucceeded: 1, queue.EventRetried: 0} {
		ev.wait(t, e, n)
	}
	waitFor(t, "the stream to be empty", func() bool { return streamLen(t, srv.Client()) == 0 })
}

func TestFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		maxAttempts int
		// fail returns the handler's error for an attempt.
		fail         func(attempt int) error
		wantState    larder.JobState
		wantAttempts int
		wantError    string
		wantRetrying int
		wantFailed   int
	}{
		{
			name: "retried then succeeds",
			fail: func(a int) error {
				if a < 3 {
					return fmt.Errorf("boom %d", a)
				}
				return nil
			},
			wantState: larder.JobSucceeded, wantAttempts: 3, wantError: "boom 2", wantRetrying: 2,
		},
		{
			name: "attempts exhausted", maxAttempts: 2,
			fail:      func(a int) error { return fmt.Errorf("boom %d", a) },
			wantState: larder.JobFailed, wantAttempts: 2, wantError: "boom 2", wantRetrying: 1, wantFailed: 1,
		},
		{
			name:      "permanent",
			fail:      func(int) error { return queue.Permanent(errors.New("bad input")) },
			wantState: larder.JobFailed, wantAttempts: 1, wantError: "bad input", wantFailed: 1,
		},
		{
			name: "panic", maxAttempts: 1,
			fail:      func(int) error { panic("oops") },
			wantState: larder.JobFailed, wantAttempts: 1, wantError: "handler panicked: oops", wantFailed: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ev events
			opts := fast()
			opts.OnEvent = ev.on
			q, srv := newQueue(t, opts)
			var mu sync.Mutex
			var retrying, failed []larder.Job
			var delays []time.Duration
			work(t, q, queue.WorkerOptions{
				Name: "w",
				Handlers: map[larder.JobKind]queue.Handler{"a": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					return nil, tt.fail(tk.Job().Attempts)
				}},
				Hooks: map[larder.JobKind]queue.Hooks{"a": {
					Retrying: func(_ context.Context, j larder.Job, d time.Duration) {
						mu.Lock()
						retrying, delays = append(retrying, j), append(delays, d)
						mu.Unlock()
					},
					Failed: func(_ context.Context, j larder.Job) {
						mu.Lock()
						failed = append(failed, j)
						mu.Unlock()
					},
				}},
			})
			j := submit(t, q, larder.JobSpec{Kind: "a", MaxAttempts: tt.maxAttempts})
			j = waitState(t, q, j.ID, tt.wantState)
			waitFor(t, "the hooks to be called", func() bool { return streamLen(t, srv.Client()) == 0 })

			if j.Attempts != tt.wantAttempts || !strings.HasPrefix(j.LastError, tt.wantError) || j.FinishedAt.IsZero() {
				t.Errorf("job = %+v; want %d attempts, last error %q", j, tt.wantAttempts, tt.wantError)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(retrying) != tt.wantRetrying || len(failed) != tt.wantFailed {
				t.Errorf("hooks: %d Retrying, %d Failed; want %d, %d", len(retrying), len(failed), tt.wantRetrying, tt.wantFailed)
			}
			for i, r := range retrying {
				if r.State != larder.JobRetrying || r.NextAttemptAt.IsZero() || delays[i] > time.Second {
					t.Errorf("Retrying hook got %+v, delay %s", r, delays[i])
				}
			}
			for _, f := range failed {
				if f.State != larder.JobFailed || f.LastError != j.LastError {
					t.Errorf("Failed hook got %+v", f)
				}
			}
			ev.wait(t, queue.EventRetried, tt.wantRetrying)
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("queued", func(t *testing.T) {
		t.Parallel()
		q, srv := newQueue(t, fast())
		j := submit(t, q, larder.JobSpec{Kind: "a"})
		got, err := q.Cancel(ctx, j.ID)
		if err != nil || got.State != larder.JobCancelled || got.FinishedAt.IsZero() || got.LastError != "cancelled by request" {
			t.Fatalf("Cancel = %+v, %v; want it cancelled", got, err)
		}
		if again, err := q.Cancel(ctx, j.ID); err != nil || !again.FinishedAt.Equal(got.FinishedAt) || again.State != larder.JobCancelled {
			t.Errorf("Cancel of a cancelled job = %+v, %v; want it unchanged", again, err)
		}
		var runs, hooks counter
		work(t, q, queue.WorkerOptions{
			Handlers: map[larder.JobKind]queue.Handler{"a": func(_ context.Context, tk *queue.Task) ([]byte, error) {
				runs.add(tk.Job().ID)
				return nil, nil
			}},
			Hooks: map[larder.JobKind]queue.Hooks{"a": {Cancelled: func(_ context.Context, j larder.Job) { hooks.add(j.ID) }}},
		})
		waitFor(t, "the Cancelled hook", func() bool { return streamLen(t, srv.Client()) == 0 && hooks.get(j.ID) > 0 })
		if runs.get(j.ID) != 0 || hooks.get(j.ID) != 1 {
			t.Errorf("the cancelled job ran %d times and its hook %d times; want 0 and 1", runs.get(j.ID), hooks.get(j.ID))
		}
	})

	t.Run("retrying", func(t *testing.T) {
		t.Parallel()
		opts := fast()
		opts.Backoff = time.Hour
		q, _ := newQueue(t, opts)
		var runs, hooks counter
		work(t, q, queue.WorkerOptions{
			Handlers: map[larder.JobKind]queue.Handler{"a": func(_ context.Context, tk *queue.Task) ([]byte, error) {
				runs.add(tk.Job().ID)
				return nil, errors.New("boom")
			}},
			Hooks: map[larder.JobKind]queue.Hooks{"a": {Cancelled: func(_ context.Context, j larder.Job) { hooks.add(j.ID) }}},
		})
		j := submit(t, q, larder.JobSpec{Kind: "a"})
		waitState(t, q, j.ID, larder.JobRetrying)
		if got, err := q.Cancel(ctx, j.ID); err != nil || got.State != larder.JobCancelled || !got.NextAttemptAt.IsZero() {
			t.Fatalf("Cancel = %+v, %v; want it cancelled", got, err)
		}
		waitFor(t, "the Cancelled hook", func() bool { return hooks.get(j.ID) > 0 })
		if runs.get(j.ID) != 1 {
			t.Errorf("the job ran %d times, want 1", runs.get(j.ID))
		}
	})

	t.Run("running", func(t *testing.T) {
		t.Parallel()
		var ev events
		opts := fast()
		opts.OnEvent = ev.on
		q, _ := newQueue(t, opts)
		causes := make(chan error, 1)
		var hooks counter
		work(t, q, queue.WorkerOptions{
			Handlers: map[larder.JobKind]queue.Handler{"a": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return nil, ctx.Err()
			}},
			Hooks: map[larder.JobKind]queue.Hooks{"a": {Cancelled: func(_ context.Context, j larder.Job) { hooks.add(j.ID) }}},
		})
		j := submit(t, q, larder.JobSpec{Kind: "a"})
		waitState(t, q, j.ID, larder.JobRunning)
		got, err := q.Cancel(ctx, j.ID)
		if err != nil || got.State != larder.JobRunning || got.LastError != "cancelled by request" {
			t.Fatalf("Cancel = %+v, %v; want it running, with the request noted", got, err)
		}
		j = waitState(t, q, j.ID, larder.JobCancelled)
		if cause := recv(t, causes, "the handler to end"); !errors.Is(cause, queue.ErrCancelled) {
			t.Errorf("the handler's context ended with %v, want ErrCancelled", cause)
		}
		ev.wait(t, queue.EventCancelled, 1)
		if j.Attempts != 1 || j.FinishedAt.IsZero() || hooks.get(j.ID) != 0 {
			t.Errorf("job = %+v, %d Cancelled hooks; want 1 attempt, no hook", j, hooks.get(j.ID))
		}
	})

	t.Run("waiting parent", func(t *testing.T) {
		t.Parallel()
		q, srv := newQueue(t, fast())
		var runs, hooks counter
		grandchild := make(chan string, 1)
		blockOnCtx := func(ctx context.Context, tk *queue.Task) ([]byte, error) {
			runs.add(tk.Job().ID)
			if tk.Job().Description == "first" {
				// Once the parent waits, both children are in the stream
				// before the grandchild, which finds both slots busy.
				for {
					p, err := q.Job(ctx, tk.Job().Parent)
					if err != nil {
						return nil, err
					}
					if p.State == larder.JobWaiting {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				g, err := tk.Submit(ctx, larder.JobSpec{Kind: "child", Description: "grandchild"})
				if err != nil {
					return nil, err
				}
				grandchild <- g.ID
			}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		hook := queue.Hooks{Cancelled: func(_ context.Context, j larder.Job) { hooks.add(j.ID) }}
		work(t, q, queue.WorkerOptions{
			Concurrency: 2,
			Handlers: map[larder.JobKind]queue.Handler{
				"parent": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					for _, d := range []string{"first", "second"} {
						if _, err := tk.Submit(ctx, larder.JobSpec{Kind: "child", Description: d}); err != nil {
							return nil, err
						}
					}
					return nil, nil
				},
				"child": blockOnCtx,
			},
			Hooks: map[larder.JobKind]queue.Hooks{"parent": hook, "child": hook},
		})
		p := submit(t, q, larder.JobSpec{Kind: "parent"})
		p = waitState(t, q, p.ID, larder.JobWaiting)
		var g string
		select {
		case g = <-grandchild:
		case <-time.After(waitTimeout):
			t.Fatal("the first child submitted no grandchild")
		}
		c1, c2 := p.Children[0], p.Children[1]
		waitState(t, q, c1, larder.JobRunning)
		waitState(t, q, c2, larder.JobRunning)
		if j, _ := q.Job(ctx, g); j.State != larder.JobQueued {
			t.Fatalf("grandchild = %+v, want it queued (both slots busy)", j)
		}

		got, err := q.Cancel(ctx, p.ID)
		if err != nil || got.State != larder.JobCancelled {
			t.Fatalf("Cancel(parent) = %+v, %v; want it cancelled at once", got, err)
		}
		for _, id := range []string{c1, c2, g} {
			j := waitState(t, q, id, larder.JobCancelled)
			if !strings.HasPrefix(j.LastError, "parent job ") {
				t.Errorf("job %s: last error %q, want one naming its parent", id, j.LastError)
			}
		}
		waitFor(t, "the Cancelled hooks", func() bool { return streamLen(t, srv.Client()) == 0 })
		if runs.get(g) != 0 {
			t.Error("the queued grandchild ran after its grandparent was cancelled")
		}
		for id, want := range map[string]int{p.ID: 1, g: 1, c1: 0, c2: 0} {
			if hooks.get(id) != want {
				t.Errorf("job %s: %d Cancelled hooks, want %d", id, hooks.get(id), want)
			}
		}
		if p, _ = q.Job(ctx, p.ID); p.State != larder.JobCancelled || p.LastError != "cancelled by request" {
			t.Errorf("parent = %+v", p)
		}
	})
}

func TestChildren(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("continuation and grandchild", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t, fast())
		gate := make(chan struct{})
		work(t, q, queue.WorkerOptions{
			Concurrency: 4,
			Handlers: map[larder.JobKind]queue.Handler{
				"parent": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					for _, d := range []string{"first", "second"} {
						if _, err := tk.Submit(ctx, larder.JobSpec{Kind: "child", Description: d}); err != nil {
							return nil, err
						}
					}
					return []byte(`"parent done"`), nil
				},
				"child": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					<-gate
					switch tk.Job().Description {
					case "first": // a continuation: a sibling the parent waits for too
						_, err := tk.Submit(ctx, larder.JobSpec{Kind: "child", Description: "then", Parent: tk.Job().Parent})
						return nil, err
					case "then":
						_, err := tk.Submit(ctx, larder.JobSpec{Kind: "child", Description: "grandchild"})
						return nil, err
					}
					return nil, nil
				},
			},
		})
		p := submit(t, q, larder.JobSpec{Kind: "parent"})
		w := waitState(t, q, p.ID, larder.JobWaiting)
		want := larder.JobProgress{Phase: "waiting for children", Done: 0, Total: 2, Unit: "jobs"}
		if w.Progress != want || string(w.Result) != `"parent done"` {
			t.Errorf("waiting parent = %+v; want progress %+v and its result", w, want)
		}
		close(gate)
		p = waitState(t, q, p.ID, larder.JobSucceeded)
		if len(p.Children) != 3 {
			t.Fatalf("parent's children = %v, want 3 (two and a continuation)", p.Children)
		}
		then, err := q.Job(ctx, p.Children[2])
		if err != nil || then.Description != "then" || then.State != larder.JobSucceeded || len(then.Children) != 1 {
			t.Fatalf("continuation = %+v, %v", then, err)
		}
		for _, id := range append(slices.Clone(p.Children), then.Children...) {
			if j, _ := q.Job(ctx, id); j.State != larder.JobSucceeded {
				t.Errorf("job %s (%s) = %s, want succeeded", id, j.Description, j.State)
			}
		}
		if !p.FinishedAt.After(then.FinishedAt) && !p.FinishedAt.Equal(then.FinishedAt) {
			t.Errorf("parent finished at %s, before its last child (%s)", p.FinishedAt, then.FinishedAt)
		}
	})

	// A parent finishes no earlier than its last child, even when the
	// child was finished by a worker whose clock is ahead of the one that
	// finishes the parent.
	t.Run("clocks apart", func(t *testing.T) {
		t.Parallel()
		var ahead atomic.Int64 // how far the queue's clock is ahead, in ns
		opts := fast()
		opts.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
		q, _ := newQueue(t, opts)
		lateDone := make(chan struct{})
		var late atomic.Value
		work(t, q, queue.WorkerOptions{
			Concurrency: 4,
			Handlers: map[larder.JobKind]queue.Handler{
				"parent": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					for _, d := range []string{"ahead", "behind"} {
						if _, err := tk.Submit(ctx, larder.JobSpec{Kind: "child", Description: d}); err != nil {
							return nil, err
						}
					}
					return nil, nil
				},
				"child": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					if tk.Job().Description == "ahead" {
						ahead.Store(int64(time.Hour)) // its end is stamped an hour ahead
						late.Store(tk.Job().ID)
						return nil, nil
					}
					<-lateDone
					ahead.Store(0) // the parent's end is stamped now
					return nil, nil
				},
			},
		})
		p := submit(t, q, larder.JobSpec{Kind: "parent"})
		waitFor(t, "the child ahead", func() bool { return late.Load() != nil })
		lateJob := waitState(t, q, late.Load().(string), larder.JobSucceeded)
		close(lateDone)
		p = waitState(t, q, p.ID, larder.JobSucceeded)
		if p.FinishedAt.Before(lateJob.FinishedAt) {
			t.Errorf("parent finished at %s, before its child (%s)", p.FinishedAt, lateJob.FinishedAt)
		}
	})

	t.Run("grandchild fails", func(t *testing.T) {
		t.Parallel()
		q, srv := newQueue(t, fast())
		var failed counter
		hook := queue.Hooks{Failed: func(_ context.Context, j larder.Job) { failed.add(j.ID) }}
		work(t, q, queue.WorkerOptions{
			Concurrency: 2,
			Handlers: map[larder.JobKind]queue.Handler{
				"parent": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					for _, d := range []string{"ok", "nested"} {
						if _, err := tk.Submit(ctx, larder.JobSpec{Kind: "child", Description: d}); err != nil {
							return nil, err
						}
					}
					return nil, nil
				},
				"child": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					switch tk.Job().Description {
					case "nested":
						_, err := tk.Submit(ctx, larder.JobSpec{Kind: "child", Description: "broken"})
						return nil, err
					case "broken":
						return nil, queue.Permanent(errors.New("broken shard"))
					}
					return nil, nil
				},
			},
			Hooks: map[larder.JobKind]queue.Hooks{"parent": hook, "child": hook},
		})
		p := submit(t, q, larder.JobSpec{Kind: "parent"})
		p = waitState(t, q, p.ID, larder.JobFailed)
		nested, _ := q.Job(ctx, p.Children[1])
		if nested.State != larder.JobFailed || len(nested.Children) != 1 {
			t.Fatalf("nested child = %+v", nested)
		}
		broken := nested.Children[0]
		wantNested := "child job " + broken + " failed: broken shard"
		if nested.LastError != wantNested {
			t.Errorf("nested child's last error = %q, want %q", nested.LastError, wantNested)
		}
		if want := "child job " + nested.ID + " failed: " + wantNested; p.LastError != want {
			t.Errorf("parent's last error = %q, want %q", p.LastError, want)
		}
		if j, _ := q.Job(ctx, p.Children[0]); j.State != larder.JobSucceeded {
			t.Errorf("the sound child = %s, want succeeded", j.State)
		}
		waitFor(t, "the Failed hooks", func() bool { return streamLen(t, srv.Client()) == 0 })
		for _, id := range []string{p.ID, nested.ID, broken} {
			if failed.get(id) != 1 {
				t.Errorf("job %s: %d Failed hooks, want 1", id, failed.get(id))
			}
		}
	})

	t.Run("children done before the parent returns", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t, fast())
		work(t, q, queue.WorkerOptions{
			Concurrency: 2,
			Handlers: map[larder.JobKind]queue.Handler{
				"parent": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
					c, err := tk.Submit(ctx, larder.JobSpec{Kind: "child"})
					if err != nil {
						return nil, err
					}
					for {
						j, err := q.Job(ctx, c.ID)
						if err != nil || j.State.Done() {
							return nil, err
						}
						time.Sleep(10 * time.Millisecond)
					}
				},
				"child": ok,
			},
		})
		p := submit(t, q, larder.JobSpec{Kind: "parent"})
		p = waitJob(t, q, p.ID, "done", func(j larder.Job) bool { return j.State.Done() })
		if p.State != larder.JobSucceeded || len(p.Children) != 1 {
			t.Errorf("parent = %+v, want succeeded with one child", p)
		}
	})
}

func TestEveryJobRunsOnce(t *testing.T) {
	t.Parallel()
	opts := fast()
	opts.Lapse = 10 * time.Second // no takeover of a live worker on a slow machine
	q, _ := newQueue(t, opts)
	var runs counter
	handler := func(ctx context.Context, tk *queue.Task) ([]byte, error) {
		runs.add(tk.Job().ID)
		time.Sleep(time.Duration(rand.IntN(10)) * time.Millisecond)
		return nil, nil
	}
	for _, name := range []string{"w1", "w2"} {
		work(t, q, queue.WorkerOptions{Name: name, Concurrency: 2, Handlers: map[larder.JobKind]queue.Handler{"a": handler}})
	}
	var jobs []larder.Job
	for range 50 {
		jobs = append(jobs, submit(t, q, larder.JobSpec{Kind: "a"}))
	}
	workers := map[string]int{}
	for _, j := range jobs {
		j = waitState(t, q, j.ID, larder.JobSucceeded)
		workers[j.Worker]++
		if n := runs.get(j.ID); n != 1 || j.Attempts != 1 {
			t.Errorf("job %s ran %d times, %d attempts; want 1", j.ID, n, j.Attempts)
		}
	}
	t.Logf("jobs per worker: %v", workers)
}

func TestStalledWorkerLosesItsJob(t *testing.T) {
	t.Parallel()
	// The stalled worker beats every second; the other takes a job over
	// after 300ms without a beat, as it would from a worker that stalled.
	slow := fast()
	slow.Heartbeat, slow.Lapse = time.Second, time.Minute
	quick := fast()
	quick.Lapse = 300 * time.Millisecond
	quick.MaxAttempts = 5
	qs, srv := newQueue(t, slow)
	qq := queue.New(srv.Client(), "p", quick)

	causes := make(chan error, 1)
	var successes counter
	handler := func(ctx context.Context, tk *queue.Task) ([]byte, error) {
		if tk.Job().Attempts == 1 {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return nil, ctx.Err()
		}
		successes.add(tk.Job().ID)
		return nil, nil
	}
	work(t, qs, queue.WorkerOptions{Name: "stalled", Handlers: map[larder.JobKind]queue.Handler{"a": handler}})
	j := submit(t, qs, larder.JobSpec{Kind: "a"})
	waitState(t, qs, j.ID, larder.JobRunning)
	work(t, qq, queue.WorkerOptions{Name: "quick", Handlers: map[larder.JobKind]queue.Handler{"a": handler}})

	if cause := recv(t, causes, "the stalled worker's handler to end"); !errors.Is(cause, queue.ErrLost) {
		t.Errorf("the stalled worker's handler ended with %v, want ErrLost", cause)
	}
	j = waitState(t, qs, j.ID, larder.JobSucceeded)
	if j.Attempts < 2 || successes.get(j.ID) != 1 || !strings.Contains(j.LastError, "stopped answering") {
		t.Errorf("job = %+v, %d successes; want a takeover and one success", j, successes.get(j.ID))
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t, fast())
	gate := make(chan struct{})
	causes := make(chan error, 1)
	stop := work(t, q, queue.WorkerOptions{
		Name: "first", Concurrency: 2, ShutdownGrace: time.Second,
		Handlers: map[larder.JobKind]queue.Handler{
			"short": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
				<-gate
				return nil, nil
			},
			"long": func(ctx context.Context, tk *queue.Task) ([]byte, error) {
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return nil, ctx.Err()
			},
		},
	})
	short := submit(t, q, larder.JobSpec{Kind: "short"})
	long := submit(t, q, larder.JobSpec{Kind: "long"})
	waitState(t, q, short.ID, larder.JobRunning)
	waitState(t, q, long.ID, larder.JobRunning)

	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(50 * time.Millisecond) // let the shutdown begin; not needed for correctness
	close(gate)
	<-stopped

	if j, _ := q.Job(context.Background(), short.ID); j.State != larder.JobSucceeded || j.Worker != "first" {
		t.Errorf("short job = %+v, want it finished by the stopping worker", j)
	}
	if cause := recv(t, causes, "the long job's handler to end"); !errors.Is(cause, queue.ErrShutdown) {
		t.Errorf("the long job's context ended with %v, want ErrShutdown", cause)
	}
	j, _ := q.Job(context.Background(), long.ID)
	if j.State != larder.JobQueued || j.Attempts != 0 {
		t.Errorf("long job after shutdown = %+v, want it queued with the attempt not counted", j)
	}

	work(t, q, queue.WorkerOptions{Name: "second", Handlers: map[larder.JobKind]queue.Handler{"long": ok}})
	j = waitState(t, q, long.ID, larder.JobSucceeded)
	if j.Worker != "second" || j.Attempts != 1 {
		t.Errorf("long job = %+v, want it finished by the second worker at attempt 1", j)
	}
}

func TestKindWithoutHandler(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t, fast())
	work(t, q, queue.WorkerOptions{Name: "only-a", Handlers: map[larder.JobKind]queue.Handler{"a": ok}})
	a := submit(t, q, larder.JobSpec{Kind: "a"})
	b := submit(t, q, larder.JobSpec{Kind: "b"})
	waitState(t, q, a.ID, larder.JobSucceeded)
	if j, _ := q.Job(context.Background(), b.ID); j.State != larder.JobQueued || j.Attempts != 0 {
		t.Fatalf("job of a kind without handler = %+v, want it queued", j)
	}
	work(t, q, queue.WorkerOptions{Name: "only-b", Handlers: map[larder.JobKind]queue.Handler{"b": ok}})
	if j := waitState(t, q, b.ID, larder.JobSucceeded); j.Worker != "only-b" || j.Attempts != 1 {
		t.Errorf("job b = %+v, want it run once by only-b", j)
	}
}
