package main

import (
	"runtime/debug"
	"testing"
)

// TestTuneServerGC checks that a serving process sets its garbage
// collector's target unless GOGC is set.
func TestTuneServerGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	t.Setenv("GOGC", "")
	tuneServerGC()
	if got := debug.SetGCPercent(100); got != serveGCPercent {
		t.Errorf("without GOGC: GC percent %d, want %d", got, serveGCPercent)
	}

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // as the runtime did at start-up
	tuneServerGC()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("with GOGC=150: GC percent %d, want it left at 150", got)
	}
}
