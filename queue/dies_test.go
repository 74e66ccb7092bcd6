package queue_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/queue"
	"github.com/redis/go-redis/v9"
)

// workerEnv, when set to a Redis address, makes TestWorkerDies run as the
// worker that dies: a subprocess that the test kills.
const workerEnv = "QUEUE_TEST_WORKER"

// runsKey counts the attempts the dying worker started.
const runsKey = "test:doomed-runs"

func dyingOptions() queue.Options {
	opts := fast()
	opts.Heartbeat, opts.Lapse = 100*time.Millisecond, time.Second
	return opts
}

func TestWorkerDies(t *testing.T) {
	if addr := os.Getenv(workerEnv); addr != "" {
		runDoomedWorker(t, addr)
		return
	}
	t.Parallel()
	var ev events
	opts := dyingOptions()
	opts.OnEvent = ev.on
	q, srv := newQueue(t, opts)
	c := srv.Client()
	j := submit(t, q, larder.JobSpec{Kind: "slow"})

	cmd := exec.Command(os.Args[0], "-test.run=^TestWorkerDies$", "-test.count=1")
	cmd.Env = append(os.Environ(), workerEnv+"="+srv.Addr)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	waitJob(t, q, j.ID, "running on the doomed worker", func(j larder.Job) bool {
		return j.State == larder.JobRunning && j.Worker == "doomed"
	})
	waitFor(t, "the doomed worker's handler to start", func() bool { return c.Get(context.Background(), runsKey).Val() == "1" })

	var runs counter
	work(t, q, queue.WorkerOptions{Name: "heir", Handlers: map[larder.JobKind]queue.Handler{
		"slow": func(_ context.Context, tk *queue.Task) ([]byte, error) {
			runs.add(tk.Job().ID)
			return []byte(`"done"`), nil
		},
	}})
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no chance to let go
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true

	j = waitState(t, q, j.ID, larder.JobSucceeded)
	wantErr := "worker doomed stopped answering (no heartbeat for 1s)"
	if j.Attempts != 2 || j.Worker != "heir" || j.LastError != wantErr || string(j.Result) != `"done"` {
		t.Errorf("job = %+v; want it finished by heir at attempt 2, with last error %q", j, wantErr)
	}
	if n := runs.get(j.ID); n != 1 {
		t.Errorf("the heir ran the job %d times, want 1", n)
	}
	if n := c.Get(context.Background(), runsKey).Val(); n != "1" {
		t.Errorf("the doomed worker ran the job %s times, want 1", n)
	}
	ev.wait(t, queue.EventReclaimed, 1)
	if t.Failed() {
		t.Logf("the doomed worker's output:\n%s", out.String())
	}
}

// runDoomedWorker runs a worker named "doomed" whose handler counts its
// runs and then blocks, until the process is killed.
func runDoomedWorker(t *testing.T, addr string) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	q := queue.New(c, "p", dyingOptions())
	err := q.Work(context.Background(), queue.WorkerOptions{Name: "doomed", Handlers: map[larder.JobKind]queue.Handler{
		"slow": func(ctx context.Context, _ *queue.Task) ([]byte, error) {
			if err := c.Incr(ctx, runsKey).Err(); err != nil {
				return nil, err
			}
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}})
	t.Fatalf("the doomed worker's Work returned %v; it should run until killed", err)
}
