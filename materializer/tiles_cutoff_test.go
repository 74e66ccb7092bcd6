package materializer_test

import (
	"context"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// TestStreamingCutoffNeverGoesBack: the live generation's cutoff is later
// than the newest event of the source the next run reads (here the first
// run saw an empty source; the same holds for a generation published by a
// release whose cutoff was its as-of). The stream was refused the events
// up to the live cutoff, so the next run's cutoff stays there and the
// batch counts them, instead of going back to the source's newest tile,
// which would count them on neither side.
func TestStreamingCutoffNeverGoesBack(t *testing.T) {
	w := newStreamingWorld(t)
	w.land()
	w.now = tileT0.Add(30 * time.Second)
	if rep := w.run(); !rep.RunTime.Equal(tileT0) {
		t.Fatalf("first run: cutoff %s", rep.RunTime)
	}
	// The stream delivers three clicks, all at or before the live cutoff.
	got := w.stream(5, tileT0.Add(-10*time.Minute), tileT0.Add(-5*time.Minute), tileT0.Add(-150*time.Second))
	t.Logf("stream outcomes while the cutoff is %s: %v", tileT0, got)
	// The files catch up with the same three clicks.
	w.land(click{5, tileT0.Add(-10 * time.Minute)}, click{5, tileT0.Add(-5 * time.Minute)}, click{5, tileT0.Add(-150 * time.Second)})
	w.now = tileT0.Add(5 * time.Minute)
	rep := w.run()
	t.Logf("second run: cutoff %s (live cutoff was %s)", rep.RunTime, tileT0)
	h, d, _ := w.counts(5)
	if h != 3 || d != 3 {
		t.Errorf("user 5 counts %d clicks over 1h and %d over 1d; the source holds 3 clicks of the last 15 minutes", h, d)
	}
}

// TestStreamingJobDeliveredAgain: a materialize job that is delivered
// again (its worker died after the view was published) skips the views it
// has published already, a streaming view too, whose generation is as of
// its cutoff, not the job's as-of.
func TestStreamingJobDeliveredAgain(t *testing.T) {
	w := newStreamingWorld(t)
	ctx := context.Background()
	w.land(click{5, tileT0.Add(-50 * time.Minute)}, click{6, tileT0.Add(-20*time.Minute - 30*time.Second)})
	r := materializer.NewRunner(w.p, w.st, materializer.RunnerOptions{Now: func() time.Time { return w.now }})
	job := &fakeJob{id: "job-1"}
	res1, err := r.RunJob(ctx, larder.MaterializeArgs{Views: []string{"user_clicks"}, AsOf: tileT0}, job)
	if err != nil {
		t.Fatal(err)
	}
	res2, err := r.RunJob(ctx, larder.MaterializeArgs{Views: []string{"user_clicks"}, AsOf: tileT0}, job)
	if err != nil {
		t.Fatal(err)
	}
	if res1.Generations[0].Generation != res2.Generations[0].Generation {
		t.Errorf("the job delivered again published generation %d after %d, instead of finding it published", res2.Generations[0].Generation, res1.Generations[0].Generation)
	}
}
