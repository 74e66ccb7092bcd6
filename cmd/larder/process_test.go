package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/store"
)

// processEnv, set in a test binary's environment, makes the binary run the
// larder command (main) instead of the tests: the tests start it as a real
// process, to stop it with a signal as an operator or a crash would.
const processEnv = "LARDER_TEST_PROCESS"

// The server process that larder bench starts is this test binary again,
// running as larder.
func init() { benchServerEnv = []string{processEnv + "=1"} }

func TestMain(m *testing.M) {
	if os.Getenv(processEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// proc is a larder command running as a process of its own.
type proc struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLarder starts the larder command line args as a process; its output
// (both streams) is kept for the test's log. The process is killed when the
// test ends, if it still runs.
func startLarder(tb testing.TB, args ...string) *proc {
	tb.Helper()
	p := &proc{cmd: exec.Command(os.Args[0], args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), processEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if tb.Failed() {
			tb.Logf("larder %s:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// signal sends sig to the process, without waiting for anything.
func (p *proc) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		tb.Fatal(err)
	}
}

// stop sends sig and waits for the process to end, for at most 60 seconds.
func (p *proc) stop(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		tb.Fatalf("larder did not stop within 60s of %v:\n%s", sig, p.out.String())
	}
}

// eventRow is a row of the events source of the scheduling projects.
type eventRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(microsecond)"`
	X      float64   `parquet:"x"`
	N      int64     `parquet:"n"`
}

// eventRows returns n events of users 0..users-1, one a second before end.
func eventRows(n, users int, end time.Time) []eventRow {
	rows := make([]eventRow, n)
	for i := range rows {
		rows[i] = eventRow{
			UserID: int64((i * 7919) % users),
			TS:     end.Add(-time.Duration(n-i) * time.Second),
			X:      float64(i%1000) / 7,
			N:      int64(i),
		}
	}
	return rows
}

// schedProject is a project for the scheduling tests: one events source
// and views over it, on a redis-server the test started.
type schedProject struct {
	dir, config, redis string
	p                  *larder.Project
}

// newSchedProject writes larder.yaml (header settings, then the views in
// views, YAML) and an events file of n rows of users users.
func newSchedProject(tb testing.TB, redisAddr, header, views string, n, users int) *schedProject {
	return newSchedProjectGrace(tb, redisAddr, "10m", header, views, n, users)
}

// newSchedProjectGrace is newSchedProject with redis.grace_period set.
func newSchedProjectGrace(tb testing.TB, redisAddr, grace, header, views string, n, users int) *schedProject {
	tb.Helper()
	dir := tb.TempDir()
	yaml := fmt.Sprintf(`project: sched
redis:
  addresses: ["%s"]
  grace_period: %s
%s
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: events, path: data/events.parquet, event_time: ts}
views:
%s`, redisAddr, grace, header, views)
	cfg := filepath.Join(dir, "larder.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		tb.Fatal(err)
	}
	writeParquet(tb, filepath.Join(dir, "data", "events.parquet"), eventRows(n, users, time.Now().Add(-time.Minute)))
	p, err := config.Load(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &schedProject{dir: dir, config: cfg, redis: redisAddr, p: p}
}

// store opens the project's store, for the test's own reads.
func (sp *schedProject) store(tb testing.TB) *store.Store {
	tb.Helper()
	c, err := store.Connect(sp.p.Redis)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return store.New(c, sp.p.Name, store.Options{})
}

// larder runs the command in-process against the project, on the wall
// clock.
func (sp *schedProject) larder(tb testing.TB, args ...string) result {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: time.Now}
	code := a.run(tb.Context(), append([]string{"-c", sp.config}, args...))
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// start starts the larder command against the project as a process.
func (sp *schedProject) start(tb testing.TB, args ...string) *proc {
	tb.Helper()
	return startLarder(tb, append([]string{"-c", sp.config, "--log-level", "info"}, args...)...)
}

// rows reads every entity of generation gen of v, as encoded rows by key.
func rowsOf(tb testing.TB, st *store.Store, v *larder.View, gen int64) map[string]larder.Row {
	tb.Helper()
	ctx := context.Background()
	out := map[string]larder.Row{}
	err := st.Keys(ctx, v, gen, func(keys []larder.Key) error {
		l := &larder.Lookup{View: v, Keys: keys, Pin: gen}
		if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
			return err
		}
		for i, k := range keys {
			if !l.Found[i] {
				return fmt.Errorf("key %s listed but not found", k)
			}
			row := l.Rows[i]
			out[k.String()] = larder.Row{EventTime: row.EventTime, Values: append([]larder.Value(nil), row.Values...)}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// sameRows reports the first difference between two generations' rows.
func sameRows(a, b map[string]larder.Row) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d entities, and %d", len(a), len(b))
	}
	for k, ra := range a {
		rb, ok := b[k]
		if !ok {
			return fmt.Errorf("entity %s missing", k)
		}
		if !ra.EventTime.Equal(rb.EventTime) || fmt.Sprint(ra.Values) != fmt.Sprint(rb.Values) {
			return fmt.Errorf("entity %s: %v at %v, and %v at %v", k, ra.Values, ra.EventTime, rb.Values, rb.EventTime)
		}
	}
	return nil
}
