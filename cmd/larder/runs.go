package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
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

// runStates are the states `larder runs --state` takes, in the order a run
// may end up in them.
var runStates = []larder.RunState{larder.RunOK, larder.RunFailed, larder.RunAbandoned, larder.RunCancelled, larder.RunSkipped}

func (a *app) runsCommand() *cobra.Command {
	limit := defaultRunsLimit
	full, wide := false, false
	state := ""
	cmd := &cobra.Command{
		Use:   "runs [VIEW]",
		Short: "Show the recent materialization runs, newest first, and how each ended",
		Long: `runs lists the materialization runs recorded in Redis, newest first: of one
view, or of every view. Each run shows the generation it published, how it
ended (STATE: ok, failed, abandoned when its process died or lost its lease,
cancelled, or skipped when a schedule tick found the previous run still
going), when it started and how long it took, the instant it computed its
view as of, what started it (TRIGGER: manual, schedule, catch-up,
dependency, job or startup; "-" for records of an older larder), the
generations of other views it read (INPUTS, view@generation), the source
rows it read, the entities it wrote, the rows it skipped, the peak memory of
the process and, for a run that did not succeed, why (RESULT), shortened
unless --full is given. NULLED appears when a run stored values as null by
its view's value rules (non_finite, oversize: see larder.yaml); SHARDS
appears when a run was split into shards;
--wide adds the job that ran each run and the process that ran it. The last
100 runs of each view are kept.`,
		Example: `  larder runs
  larder runs user_profile --limit 5 --full
  larder runs --state failed`,
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
			if state != "" && !slices.Contains(runStates, larder.RunState(state)) {
				return fmt.Errorf("--state %q: want one of %s", state, joinRunStates())
			}
			if err := needsRedis(p, "larder runs"); err != nil {
				return err
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			read := limit
			if state != "" {
				read = 0 // filter every run kept, then keep --limit of them
			}
			runs, err := b.store.Runs(ctx, view, read)
			if err != nil {
				return err
			}
			if state != "" {
				runs = slices.DeleteFunc(runs, func(r larder.Run) bool { return r.Result() != larder.RunState(state) })
				if limit > 0 && len(runs) > limit {
					runs = runs[:limit]
				}
			}
			if len(runs) == 0 {
				what, hint := "any view", "larder materialize"
				if view != "" {
					what, hint = view, "larder materialize "+view
				}
				if state != "" {
					fmt.Fprintf(a.stderr, "no %s run of %s is recorded\n", state, what)
					return nil
				}
				fmt.Fprintf(a.stderr, "no run of %s is recorded: `%s` records one\n", what, hint)
				return nil
			}
			width := resultWidth
			if full {
				width = 0
			}
			return printRuns(a.stdout, runs, width, wide)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", limit, "show at most this many runs, newest first (0: every run kept)")
	cmd.Flags().BoolVar(&full, "full", false, "print errors whole instead of shortened")
	cmd.Flags().BoolVar(&wide, "wide", false, "add the job and the process that ran each run")
	cmd.Flags().StringVar(&state, "state", "", "show only the runs that ended in this state: "+joinRunStates())
	return cmd
}

// printRuns prints the table of runs, errors shortened to width characters
// (0: whole); wide adds the job and the owner of each run.
func printRuns(w io.Writer, runs []larder.Run, width int, wide bool) error {
	sharded := slices.ContainsFunc(runs, func(r larder.Run) bool { return r.Shards > 0 })
	nulled := slices.ContainsFunc(runs, func(r larder.Run) bool { return countTotal(r.Nulled) > 0 })
	cols := []string{"VIEW", "KIND", "GENERATION", "STATE", "STARTED", "DURATION", "AS OF", "TRIGGER"}
	if sharded {
		cols = append(cols, "SHARDS")
	}
	cols = append(cols, "ROWS", "ENTITIES", "SKIPPED")
	if nulled {
		cols = append(cols, "NULLED")
	}
	cols = append(cols, "PEAK RSS", "INPUTS")
	if wide {
		cols = append(cols, "JOB", "OWNER")
	}
	cols = append(cols, "RESULT")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range runs {
		asOf := "-"
		if !r.AsOf.IsZero() {
			asOf = r.AsOf.UTC().Format(time.RFC3339)
		}
		row := []string{r.View, string(r.Kind), runGeneration(r), string(r.Result()),
			r.StartedAt.UTC().Format(time.RFC3339), formatDuration(r.Duration), asOf, orDash(string(r.Trigger), r.Trigger != "")}
		if sharded {
			row = append(row, orDash(fmt.Sprint(r.Shards), r.Shards > 0))
		}
		row = append(row, fmt.Sprint(r.RowsRead), fmt.Sprint(r.EntitiesWritten), fmt.Sprint(countTotal(r.Skipped)))
		if nulled {
			row = append(row, fmt.Sprint(countTotal(r.Nulled)))
		}
		row = append(row, formatBytes(r.PeakRSS), formatInputs(r.Inputs))
		if wide {
			row = append(row, orDash(r.Job, r.Job != ""), orDash(r.Owner, r.Owner != ""))
		}
		row = append(row, orDash(runError(r, width), r.Err != ""))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func joinRunStates() string {
	names := make([]string, len(runStates))
	for i, s := range runStates {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
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

// runError prints the error of a run on one line, without the
// "materialize VIEW: " every materializer error begins with, nor the
// "skipped: " or "abandoned: " that repeats the run's state, shortened to
// width characters unless width is 0; "" for a run without one.
func runError(r larder.Run, width int) string {
	msg := strings.Join(strings.Fields(r.Err), " ")
	msg = strings.TrimPrefix(msg, "materialize "+r.View+": ")
	msg = strings.TrimPrefix(msg, string(r.Result())+": ")
	if width > 0 && utf8.RuneCountInString(msg) > width {
		runes := []rune(msg)
		msg = strings.TrimRight(string(runes[:width-1]), " ") + "…"
	}
	return msg
}

// countTotal returns the sum of counts by reason, such as a run's skipped
// rows or nulled values.
func countTotal(counts map[string]int64) int64 {
	var n int64
	for _, c := range counts {
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
