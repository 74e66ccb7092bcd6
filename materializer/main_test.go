package materializer_test

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"
)

// heavyPrepare makes the test binary generate the heavy benchmark's
// sources, unless they are cached already, and exit: `make bench` runs it
// before the benchmarks, so that the generation shows its progress and is
// not counted in any benchmark.
var heavyPrepare = flag.Bool("heavy.prepare", false, "generate the heavy benchmark's sources (cached in the user's cache folder) and exit")

func TestMain(m *testing.M) {
	flag.Parse()
	if *heavyPrepare {
		start := time.Now()
		for _, rows := range heavySizes {
			dir, err := ensureHeavySource(rows, os.Stderr)
			if err != nil {
				fmt.Fprintln(os.Stderr, "heavy benchmark:", err)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "heavy benchmark: %d events in %s\n", rows, dir)
		}
		fmt.Fprintf(os.Stderr, "heavy benchmark: sources ready in %s\n", time.Since(start).Round(time.Second))
		os.Exit(0)
	}
	os.Exit(m.Run())
}
