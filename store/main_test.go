package store_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when goroutines that they started
// still run once they have all ended: a writer's flushers, a Watch, a
// client that was not closed.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := findLeaks(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// leakGrace is how long goroutines may take to end once a test's cleanups
// have run.
const leakGrace = 5 * time.Second

// findLeaks returns goleak's report of the goroutines that still run after
// leakGrace, but for those opts ignore. A closed go-redis pool's redial
// loop ends only after its current one-second sleep, hence the grace.
func findLeaks(opts ...goleak.Option) error {
	deadline := time.Now().Add(leakGrace)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkLeaks fails tb when goroutines that were not running when it was
// called still run once tb's cleanups have run (its clients closed, its
// servers stopped). It is called first, so that its cleanup runs last; tb
// must not run in parallel with other tests.
func checkLeaks(tb testing.TB) {
	tb.Helper()
	running := goleak.IgnoreCurrent()
	tb.Cleanup(func() {
		if err := findLeaks(running); err != nil {
			tb.Errorf("goroutines leaked: %v", err)
		}
	})
}
