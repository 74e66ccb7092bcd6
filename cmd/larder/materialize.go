package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

func (a *app) materializeCommand() *cobra.Command {
	var (
		incremental bool
		asOfText    string
		async       bool
		wait        bool
	)
	cmd := &cobra.Command{
		Use:   "materialize [VIEW...]",
		Short: "Compute views from their sources and publish new generations",
		Long: `materialize computes each named view (every view when none is named) from its
Parquet source and publishes it as a new generation, atomically. A run that
fails leaves the live generation serving. Views that read other views (a
prediction view, a candidates view with from_view) run after them.

Every view of one call is computed as of one instant: --as-of, or now. Rows
with a later event time are left out and windows end at it, so a run as of a
past instant gives what a run at that instant would have given from the same
files (a backfill), and two runs with the same --as-of over the same files
write the same values. Each view runs under its run lease: while another run
of a view is in progress (a schedule's, a worker's), materialize refuses to
run it.

With --async, the views are submitted as a job for ` + "`larder worker`" + ` instead, and
the job's id is printed (see ` + "`larder jobs ID`" + `); --wait then follows the job to its
end. A view with shards runs as that many jobs on the workers.

With --incremental, it brings the live generation of each named latest view
(every latest view when none is named) up to date instead: it reads only the
source files and row groups that hold rows at or after the view's watermark
(the newest event time written so far), writes each entity's newest row into
the live generation unless the stored row is newer, and moves the watermark
forward when the run succeeds. A full run must come first; rows that arrive
late, with event times before the watermark, wait for the next full run.`,
		Example: `  larder materialize
  larder materialize user_profile item_profile
  larder materialize --as-of 2026-11-30T00:00:00Z user_activity
  larder materialize --async --wait user_profile
  larder materialize --incremental user_profile`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			asOf, err := parseAsOf(asOfText, a.now())
			if err != nil {
				return err
			}
			var views []*larder.View
			switch {
			case incremental && (async || !asOf.IsZero()):
				return fmt.Errorf("--incremental brings the live generation up to date now: it takes neither --as-of nor --async")
			case incremental:
				views, err = selectLatestViews(p, args)
			default:
				views, err = selectViews(p, args)
			}
			if err != nil {
				return err
			}
			if wait && !async {
				return fmt.Errorf("--wait follows a job: use it with --async")
			}
			switch {
			case incremental || async:
				what := "larder materialize --incremental"
				if async {
					what = "larder materialize --async"
				}
				if err := needsRedis(p, what); err != nil {
					return err
				}
			case p.Redis.Embedded():
				fmt.Fprintln(a.stderr, "note: the project uses the embedded store, which ends with this process; set redis.addresses or pass --redis to keep the result")
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			if err := a.checkEviction(ctx, p, b); err != nil {
				return err
			}
			if async {
				return a.submitMaterialize(ctx, p, b, views, asOf, wait)
			}
			_, err = a.runViews(ctx, p, b, runRequest{views: views, asOf: asOf, incremental: incremental, trigger: larder.TriggerManual})
			return err
		},
	}
	cmd.Flags().BoolVar(&incremental, "incremental", false,
		"bring the live generations of latest views up to date with the source rows newer than their watermark, instead of computing new ones")
	cmd.Flags().StringVar(&asOfText, "as-of", "", "compute every view as of this instant, RFC 3339 such as 2026-11-30T00:00:00Z (default: now)")
	cmd.Flags().BoolVar(&async, "async", false, "submit the run as a job for \"larder worker\" and print its id, instead of running it here")
	cmd.Flags().BoolVar(&wait, "wait", false, "with --async, follow the job until it ends, and fail when it fails")
	return cmd
}

// parseAsOf parses an --as-of flag: RFC 3339, with or without fractional
// seconds; "" gives the zero time (now, at run time). An instant more than a
// minute after now is refused: no source row can be newer than now.
func parseAsOf(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--as-of %q: want an RFC 3339 instant such as 2026-11-30T00:00:00Z or 2026-11-30T01:00:00+01:00", s)
	}
	if t.After(now.Add(time.Minute)) {
		return time.Time{}, fmt.Errorf("--as-of %s is in the future (now is %s): a run computes views as of now or an instant before", s, now.UTC().Format(time.RFC3339))
	}
	return t.UTC(), nil
}

// selectViews returns the named views, or all of them when names is empty.
func selectViews(p *larder.Project, names []string) ([]*larder.View, error) {
	return selectNamed(p.Views, names, "view", func(v *larder.View) string { return v.Name })
}

// selectNamed returns the items of all named by names, each once, in the
// order named, or all of them when names is empty; an unknown name is an
// error listing the known ones, as what (view, stream) says.
func selectNamed[T comparable](all []T, names []string, what string, name func(T) string) ([]T, error) {
	if len(names) == 0 {
		return all, nil
	}
	var out []T
	for _, n := range names {
		i := slices.IndexFunc(all, func(x T) bool { return name(x) == n })
		if i < 0 {
			known := make([]string, len(all))
			for j, x := range all {
				known[j] = name(x)
			}
			return nil, fmt.Errorf("unknown %s %q (%ss: %s)", what, n, what, strings.Join(known, ", "))
		}
		if !slices.Contains(out, all[i]) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// selectLatestViews returns the named views, or every latest view when names
// is empty, for an incremental run: a view of another kind is an error.
func selectLatestViews(p *larder.Project, names []string) ([]*larder.View, error) {
	if len(names) == 0 {
		var views []*larder.View
		for _, v := range p.Views {
			if v.Kind == larder.KindLatest {
				views = append(views, v)
			}
		}
		if len(views) == 0 {
			return nil, fmt.Errorf("the project has no latest views, and --incremental runs only latest views: run `larder materialize` without it")
		}
		return views, nil
	}
	views, err := selectViews(p, names)
	if err != nil {
		return nil, err
	}
	for _, v := range views {
		if v.Kind != larder.KindLatest {
			return nil, fmt.Errorf("view %q is of kind %s, and --incremental runs only latest views: run `larder materialize %s` without --incremental",
				v.Name, v.Kind, v.Name)
		}
	}
	return views, nil
}

// runRequest is a request to run views from the command line.
type runRequest struct {
	views       []*larder.View
	asOf        time.Time
	incremental bool
	trigger     larder.Trigger
}

// materialize runs full materializations of the views as of now, for a
// command that fills a store (see runViews).
func (a *app) materialize(ctx context.Context, p *larder.Project, b *backend, views []*larder.View, trigger larder.Trigger) ([]materializer.Report, error) {
	return a.runViews(ctx, p, b, runRequest{views: views, trigger: trigger})
}

// runViews runs the views one after the other at one as-of, fully or
// incrementally, each under its run lease, drawing progress and printing a
// summary of each, and records each run, successful or not, for `larder
// runs`. It stops at the first failure: the failed view keeps its live
// generation (and, for an incremental run, its watermark).
func (a *app) runViews(ctx context.Context, p *larder.Project, b *backend, req runRequest) ([]materializer.Report, error) {
	runner, release := a.newRunner(ctx, p, b, runnerOptions{bars: true})
	defer release()
	reports, err := runner.Run(ctx, materializer.RunRequest{
		Views: req.views, AsOf: req.asOf, Trigger: req.trigger, Incremental: req.incremental,
	})
	if err != nil {
		// The materializer's errors begin with "materialize VIEW:".
		if req.incremental {
			return reports, fmt.Errorf("%w (the live generation, if any, still serves, and its watermark is unchanged)", err)
		}
		return reports, fmt.Errorf("%w (the live generation, if any, still serves)", err)
	}
	return reports, nil
}

func printReport(w io.Writer, r materializer.Report) {
	var cutoff string
	if !r.Cutoff.IsZero() {
		cutoff = fmt.Sprintf(", cutoff %s (the stream fills in after it)", r.Cutoff.UTC().Format(time.RFC3339))
	}
	// A view that reads other views' generations and no file (a prediction
	// view, a candidates view from_view) names the generations it read.
	from := fmt.Sprintf("%d file(s)", r.Files)
	if r.Files == 0 && len(r.Inputs) > 0 {
		from = formatInputs(r.Inputs)
	}
	fmt.Fprintf(w, "%s: generation %d published: %d rows read from %s, %d entities written, %s skipped%s, %.2fs, %.0f rows/s%s\n",
		r.View, r.Generation, r.RowsRead, from, r.EntitiesWritten, skippedSummary(r), nulledSummary(r.Nulled), r.Duration.Seconds(), r.RowsPerSecond, cutoff)
}

// printIncrementalReport prints the summary of an incremental run: what it
// read and what it spared, against the watermark it started from.
func printIncrementalReport(w io.Writer, r materializer.Report) {
	wm := "none"
	if !r.Watermark.IsZero() {
		wm = r.Watermark.UTC().Format(time.RFC3339Nano)
	}
	fmt.Fprintf(w, "%s: generation %d updated incrementally: %d rows read from %d file(s), %d row group(s) skipped (%d whole file(s)) as older than the watermark %s, %d entities written, %d row(s) older than the stored ones left out, %s skipped%s, %.2fs, %.0f rows/s\n",
		r.View, r.Generation, r.RowsRead, r.Files, r.RowGroupsSkipped, r.FilesSkipped, wm, r.EntitiesWritten, r.OlderRows,
		skippedSummary(r), nulledSummary(r.Nulled), r.Duration.Seconds(), r.RowsPerSecond)
}

// nulledSummary prints, after a comma, the values a run stored as null by
// its view's value rules: their total and the count of each reason; "" when
// there were none, so that the summary of a run without any reads as it
// always did.
func nulledSummary(nulled map[string]int64) string {
	total := countTotal(nulled)
	if total == 0 {
		return ""
	}
	var parts []string
	for reason, n := range nulled {
		parts = append(parts, fmt.Sprintf("%d %s", n, reason))
	}
	slices.Sort(parts)
	return fmt.Sprintf(", %d value(s) stored as null (%s)", total, strings.Join(parts, ", "))
}

// skippedSummary prints the skipped rows of r: their total, and the count of
// each reason.
func skippedSummary(r materializer.Report) string {
	if r.SkippedTotal() == 0 {
		return "0"
	}
	var parts []string
	for reason, n := range r.Skipped {
		parts = append(parts, fmt.Sprintf("%d %s", n, reason))
	}
	slices.Sort(parts)
	return fmt.Sprintf("%d (%s)", r.SkippedTotal(), strings.Join(parts, ", "))
}

// minRateTime is how long a phase runs before its bar shows a rate and the
// time left: a rate over the first milliseconds of a phase (a first batch
// done as the bar appears) can be off by orders of magnitude.
const minRateTime = time.Second

// progress draws a bar on a terminal, and a line per tenth of the work
// otherwise (logs, CI). now is its clock.
type progress struct {
	w        io.Writer
	view     string
	terminal bool
	now      func() time.Time
	bar      *progressbar.ProgressBar
	phase    string
	lastStep int64
	start    time.Time
	lastLine time.Time
	// phaseStart is when the phase's first report came, with phaseDone
	// done: its rate counts from there.
	phaseStart time.Time
	phaseDone  int64
}

func newProgress(w io.Writer, view string) *progress {
	now := time.Now()
	return &progress{w: w, view: view, terminal: isTerminal(w), now: time.Now, start: now, lastLine: now, lastStep: -1}
}

func (p *progress) update(pr materializer.Progress) {
	done, total := pr.RowsRead, pr.RowsTotal
	unit := "rows"
	if pr.Phase == materializer.PhaseWriting {
		done, total, unit = pr.EntitiesWritten, pr.EntitiesTotal, "entities"
	}
	if pr.Phase != p.phase {
		if p.bar != nil {
			_ = p.bar.Finish()
			p.bar = nil
		}
		p.phase, p.lastStep = pr.Phase, -1
		p.phaseStart, p.phaseDone = p.now(), done
		if p.terminal && total > 0 {
			// The bar's own rate and time left would count from its
			// first milliseconds: describe says them once they mean
			// something.
			p.bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(p.describe(done, total, unit)),
				progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(false),
				progressbar.OptionSetElapsedTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
		}
	}
	if p.bar != nil {
		p.bar.Describe(p.describe(done, total, unit))
		_ = p.bar.Set64(done)
		return
	}
	if total <= 0 {
		return
	}
	// Plain lines: at most one a second, at each tenth of the work, so short
	// runs print only their summary.
	if step := done * 10 / total; step != p.lastStep && p.now().Sub(p.lastLine) >= time.Second {
		p.lastStep, p.lastLine = step, p.now()
		fmt.Fprintf(p.w, "%s: %s %d/%d %s (%d%%) %.1fs\n", p.view, pr.Phase, done, total, unit, done*100/total, p.now().Sub(p.start).Seconds())
	}
}

// describe returns the bar's description: the view and the phase, then,
// once the phase has run minRateTime and done something, its rate since it
// began and the time left at that rate ("export: exporting, 351234 rows/s,
// 2s left").
func (p *progress) describe(done, total int64, unit string) string {
	s := strings.TrimSuffix(p.view+": "+p.phase, ": ")
	elapsed := p.now().Sub(p.phaseStart)
	if elapsed < minRateTime || done <= p.phaseDone {
		return s
	}
	rate := float64(done-p.phaseDone) / elapsed.Seconds()
	left := time.Duration(float64(max(total-done, 0)) / rate * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("%s, %.0f %s/s, %s left", s, rate, unit, left)
}

func (p *progress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// materializerProgress adapts a plain done/total count to the progress drawer.
func materializerProgress(done, total int64) materializer.Progress {
	return materializer.Progress{Phase: "", RowsRead: done, RowsTotal: total}
}
