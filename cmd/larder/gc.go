package main

import (
	"os"
	"runtime/debug"
)

// serveGCPercent is the garbage collector's target of a process that only
// serves (serve without an embedded store, --workers, --schedule or
// --ingest, and the server process of bench), unless GOGC says otherwise: the
// heap may grow to five times what is live before a collection, instead of
// Go's default of twice. A server's live heap is small (tens of MB: the
// project, caches of live generations, buffers of requests in flight) and
// almost all it allocates dies with its request, so collecting less often
// costs tens of MB and saves much of the CPU the collector and the stack
// shrinking and regrowth after each collection took: about 30% more
// GetFeatures per second at concurrency 64 on 2 cores (docs/benchmarks.md).
const serveGCPercent = 400

// tuneServerGC sets serveGCPercent, unless the environment sets GOGC.
func tuneServerGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
}
