package main

import (
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
)

// defaultRunsLimit is how many runs `larder runs` shows without --limit.
const defaultRunsLimit = 20

// resultWidth is the number of characters of an error the RESULT column
// shows without --full.
const resultWidth = 80

func (a *app) runsCommand() *cobra.Command {
	limit := defaultRunsLimit
	full := false
	cmd := &cobra.Command{
		Use:   "runs [VIEW]",
		Short: "Show the recent materialization runs, newest first, and how each ended",
		Long: `runs lists the materialization runs recorded in Redis, newest first: of one
view, or of every view. Each run shows the generation it published, when it
started and how long it took, the source rows it read, the entities it wrote,
the rows it skipped, the peak memory of the process and its result: ok, or
the error that ended it, shortened unless --full is given. The last 100 runs
of each view are kept.`,
		Example: `  larder runs
  larder runs user_profile --limit 5 --full`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("runs takes at most one view, such as `larder runs user_profile`; got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			view := ""
			if len(args) == 1 {
				view = args[0]
				if p.View(view) == nil {
					return fmt.Errorf("unknown view %q (see `larder views`)", view)
				}
			}
			if limit < 0 {
				return fmt.Errorf("--limit must be 0 (every run kept) or more")
			}
			if err := needsRedis(p, "larder runs"); err != nil {
				return err
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			runs, err := b.store.Runs(ctx, view, limit)
			if err != nil {
				return err
			}
			if len(runs) == 0 {
				what, hint := "any view", "larder materialize"
				if view != "" {
					what, hint = view, "larder materialize "+view
				}
				fmt.Fprintf(a.stderr, "no run of %s is recorded: `%s` records one\n", what, hint)
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VIEW\tKIND\tGENERATION\tSTARTED\tDURATION\tROWS\tENTITIES\tSKIPPED\tPEAK RSS\tRESULT")
			width := resultWidth
			if full {
				width = 0
			}
			for _, r := range runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n",
					r.View, r.Kind, runGeneration(r), r.StartedAt.UTC().Format(time.RFC3339), formatDuration(r.Duration),
					r.RowsRead, r.EntitiesWritten, skippedTotal(r.Skipped), formatBytes(r.PeakRSS), runResult(r, width))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", limit, "show at most this many runs, newest first (0: every run kept)")
	cmd.Flags().BoolVar(&full, "full", false, "print errors whole instead of shortened")
	return cmd
}

// peakRSS returns the peak resident memory of the process so far, in bytes,
// or 0 when the system does not say.
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss) // bytes there, KiB elsewhere
	}
	return int64(ru.Maxrss) * 1024
}

// lastRun describes the newest run of a view for `larder views`: "ok" or
// "failed" and how long ago it ended, "-" when there is none.
func lastRun(runs []larder.Run, now time.Time) string {
	if len(runs) == 0 {
		return "-"
	}
	r := runs[0]
	result := "ok"
	if r.Err != "" {
		result = "failed"
	}
	return result + " " + formatAge(now.Sub(r.StartedAt.Add(r.Duration))) + " ago"
}

// runGeneration prints the generation of a run: "-" when it had none, and
// marked "(incr)" when the run wrote into the live generation.
func runGeneration(r larder.Run) string {
	if r.Generation == 0 {
		return "-"
	}
	if r.Incremental {
		return fmt.Sprintf("%d (incr)", r.Generation)
	}
	return fmt.Sprint(r.Generation)
}

// runResult prints how a run ended: "ok", or its error on one line, without
// the "materialize VIEW: " every materializer error begins with, shortened
// to width characters unless width is 0.
func runResult(r larder.Run, width int) string {
	if r.Err == "" {
		return "ok"
	}
	msg := strings.Join(strings.Fields(r.Err), " ")
	msg = strings.TrimPrefix(msg, "materialize "+r.View+": ")
	if width > 0 && utf8.RuneCountInString(msg) > width {
		runes := []rune(msg)
		msg = strings.TrimRight(string(runes[:width-1]), " ") + "…"
	}
	return msg
}

func skippedTotal(skipped map[string]int64) int64 {
	var n int64
	for _, c := range skipped {
		n += c
	}
	return n
}

// formatDuration prints a run's duration: 0.42s, 12.50s, 3m4s, 1h2m3s.
func formatDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// formatBytes prints a size in binary units: 512 KiB, 48.2 MiB, 1.3 GiB; "-"
// when it is unknown (0).
func formatBytes(n int64) string {
	if n <= 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	suffix := []string{"KiB", "MiB", "GiB", "TiB"}[i]
	if v >= 100 {
		return fmt.Sprintf("%.0f %s", v, suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}
