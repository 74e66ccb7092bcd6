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
	return &cobra.Command{
		Use:   "materialize [VIEW...]",
		Short: "Compute views from their sources and publish new generations",
		Long: `materialize computes each named view (every view when none is named) from its
Parquet source as of now, writes it as a new generation and publishes it
atomically. A run that fails leaves the live generation serving.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			views, err := selectViews(p, args)
			if err != nil {
				return err
			}
			if p.Redis.Embedded() {
				fmt.Fprintln(a.stderr, "note: the project uses the embedded store, which ends with this process; set redis.addresses or pass --redis to keep the result")
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			_, err = a.materialize(ctx, p, b, views)
			return err
		},
	}
}

// selectViews returns the named views, or all of them when names is empty.
func selectViews(p *larder.Project, names []string) ([]*larder.View, error) {
	if len(names) == 0 {
		return p.Views, nil
	}
	var views []*larder.View
	for _, n := range names {
		v := p.View(n)
		if v == nil {
			all := make([]string, len(p.Views))
			for i, v := range p.Views {
				all[i] = v.Name
			}
			return nil, fmt.Errorf("unknown view %q (views: %s)", n, strings.Join(all, ", "))
		}
		if !slices.Contains(views, v) {
			views = append(views, v)
		}
	}
	return views, nil
}

// materialize runs the views one after the other, drawing progress and
// printing a summary of each, and records each run, successful or not, for
// `larder runs`. It stops at the first failure: the failed view keeps its
// live generation.
func (a *app) materialize(ctx context.Context, p *larder.Project, b *backend, views []*larder.View) ([]materializer.Report, error) {
	var reports []materializer.Report
	loader := &lazyModels{ctx: ctx, a: a}
	defer loader.close()
	// Views that read other views run after them.
	for _, v := range larder.Order(views) {
		prog := newProgress(a.stderr, v.Name)
		m := materializer.New(p, b.store, materializer.Options{
			Logger: a.logger, Now: a.now, Progress: prog.update,
			Models: loader.load, Reader: b.store,
		})
		started := a.now()
		rep, err := m.Run(ctx, v.Name)
		prog.done()
		a.recordRun(ctx, b.store, v, started, rep, err)
		if err != nil {
			// The materializer's errors begin with "materialize VIEW:".
			return reports, fmt.Errorf("%w (the live generation, if any, still serves)", err)
		}
		printReport(a.stdout, rep)
		reports = append(reports, rep)
	}
	return reports, nil
}

func printReport(w io.Writer, r materializer.Report) {
	skipped := "0"
	if r.SkippedTotal() > 0 {
		var parts []string
		for reason, n := range r.Skipped {
			parts = append(parts, fmt.Sprintf("%d %s", n, reason))
		}
		slices.Sort(parts)
		skipped = fmt.Sprintf("%d (%s)", r.SkippedTotal(), strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "%s: generation %d published: %d rows read from %d file(s), %d entities written, %s skipped, %.2fs, %.0f rows/s\n",
		r.View, r.Generation, r.RowsRead, r.Files, r.EntitiesWritten, skipped, r.Duration.Seconds(), r.RowsPerSecond)
}

// progress draws a bar on a terminal, and a line per tenth of the work
// otherwise (logs, CI).
type progress struct {
	w        io.Writer
	view     string
	bar      *progressbar.ProgressBar
	phase    string
	lastStep int64
	start    time.Time
	lastLine time.Time
}

func newProgress(w io.Writer, view string) *progress {
	now := time.Now()
	return &progress{w: w, view: view, start: now, lastLine: now, lastStep: -1}
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
		if isTerminal(p.w) && total > 0 {
			p.bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(strings.TrimSuffix(p.view+": "+pr.Phase, ": ")),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString(unit),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
		}
	}
	if p.bar != nil {
		_ = p.bar.Set64(done)
		return
	}
	if total <= 0 {
		return
	}
	// Plain lines: at most one a second, at each tenth of the work, so short
	// runs print only their summary.
	if step := done * 10 / total; step != p.lastStep && time.Since(p.lastLine) >= time.Second {
		p.lastStep, p.lastLine = step, time.Now()
		fmt.Fprintf(p.w, "%s: %s %d/%d %s (%d%%) %.1fs\n", p.view, pr.Phase, done, total, unit, done*100/total, time.Since(p.start).Seconds())
	}
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
