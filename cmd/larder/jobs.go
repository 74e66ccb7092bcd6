package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
)

func (a *app) jobsCommand() *cobra.Command {
	var (
		state, kind string
		limit       int
		wait        bool
	)
	cmd := &cobra.Command{
		Use:   "jobs [ID]",
		Short: "List the jobs of the job queue, or show one; cancel one",
		Long: `jobs lists the jobs that ` + "`larder worker`" + ` processes, newest first: materialization
runs submitted with ` + "`larder materialize --async`" + ` or queued by a scheduler, the
shards of sharded runs, and batch scoring jobs (` + "`larder score --async`" + `). Each
shows its state (queued, running, retrying, waiting for the jobs it started,
succeeded, failed, cancelled), its progress, its attempts and its last error.

With an ID, it shows that job in full: its arguments, timings, progress,
attempts, last error, result, and the jobs it started. With --wait, it
follows the job until it ends.`,
		Example: `  larder jobs
  larder jobs --state failed
  larder jobs 20261202T053000.123Z-1a2b3c4d --wait
  larder jobs cancel 20261202T053000.123Z-1a2b3c4d`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			if err := needsRedis(p, "larder jobs"); err != nil {
				return err
			}
			f := larder.JobFilter{State: larder.JobState(state), Kind: larder.JobKind(kind), Limit: limit}
			if f.State != "" && !f.State.Valid() {
				return fmt.Errorf("--state %q: want one of %s", state, joinStates())
			}
			if limit < 0 {
				return fmt.Errorf("--limit must be 0 (the default, 20) or more")
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			q := a.newQueue(p, b, nil)
			if len(args) == 1 {
				if wait {
					return a.followJob(ctx, q, args[0])
				}
				j, err := q.Job(ctx, args[0])
				if err != nil {
					return err
				}
				return a.printJob(ctx, q, j)
			}
			if wait {
				return fmt.Errorf("--wait follows one job: name it, as in `larder jobs ID --wait`")
			}
			if f.Limit == 0 {
				f.Limit = 20
			}
			jobs, err := q.Jobs(ctx, f)
			if err != nil {
				return err
			}
			if len(jobs) == 0 {
				fmt.Fprintln(a.stderr, "no job: `larder materialize --async VIEW` or `larder score --async` submits one")
				return nil
			}
			return a.printJobs(jobs)
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "list only the jobs in this state: "+joinStates())
	cmd.Flags().StringVar(&kind, "kind", "", "list only the jobs of this kind: materialize, materialize-shard or score")
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most this many jobs (default 20)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the job named until it ends; fail when it fails")
	cmd.AddCommand(a.jobsCancelCommand())
	return cmd
}

func (a *app) jobsCancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job and the jobs it started",
		Long: `cancel stops a job that has not ended: a queued or retrying job never runs, a
running one stops and discards the generation it was writing (the live one
keeps serving), and the jobs it started are cancelled too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			if err := needsRedis(p, "larder jobs cancel"); err != nil {
				return err
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			j, err := a.newQueue(p, b, nil).Cancel(ctx, args[0])
			if err != nil {
				return err
			}
			switch j.State {
			case larder.JobCancelled:
				fmt.Fprintf(a.stdout, "job %s cancelled\n", j.ID)
			case larder.JobRunning:
				fmt.Fprintf(a.stdout, "job %s: cancel requested; its worker stops it (see `larder jobs %s`)\n", j.ID, j.ID)
			default:
				fmt.Fprintf(a.stdout, "job %s had ended already: %s\n", j.ID, j.State)
			}
			return nil
		},
	}
}

func joinStates() string {
	names := make([]string, 0, len(larder.JobStates()))
	for _, s := range larder.JobStates() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// submitMaterialize submits a job that materializes views at asOf (when
// zero, now: fixed at submission, so that every attempt and shard computes
// the same instant), prints its id, and follows it when wait is set.
func (a *app) submitMaterialize(ctx context.Context, p *larder.Project, b *backend, views []*larder.View, asOf time.Time, wait bool) error {
	if asOf.IsZero() {
		asOf = a.now().UTC().Truncate(time.Microsecond)
	}
	names := make([]string, len(views))
	for i, v := range views {
		names[i] = v.Name
	}
	body, err := json.Marshal(larder.MaterializeArgs{Views: names, AsOf: asOf, Trigger: larder.TriggerJob})
	if err != nil {
		return err
	}
	q := a.newQueue(p, b, nil)
	j, err := q.Submit(ctx, larder.JobSpec{
		Kind: larder.JobMaterialize, Args: body,
		Description: fmt.Sprintf("materialize %s as of %s", strings.Join(names, ", "), asOf.Format(time.RFC3339)),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "job %s submitted: %s\n", j.ID, j.Description)
	if !wait {
		fmt.Fprintf(a.stderr, "follow it with: larder jobs %s --wait (a `larder worker` runs it)\n", j.ID)
		return nil
	}
	return a.followJob(ctx, q, j.ID)
}

// jobWatchInterval is how often followJob reads the job.
const jobWatchInterval = 500 * time.Millisecond

// jobQueuedHint is how long a job followed may stay queued before followJob
// says that no worker has taken it.
const jobQueuedHint = 5 * time.Second

// followJob prints the progress of a job until it ends, then its outcome.
// It returns an error when the job failed or was cancelled, or ctx ended.
func (a *app) followJob(ctx context.Context, q larder.JobQueue, id string) error {
	last, lastState := "", larder.JobState("")
	lastLine := time.Time{}
	hinted := false
	for {
		j, err := q.Job(ctx, id)
		if err != nil {
			return err
		}
		// A job that no worker takes waits for one without end: say so once,
		// rather than "queued" and then nothing.
		if queued := a.now().Sub(j.CreatedAt); j.State == larder.JobQueued && !j.CreatedAt.IsZero() && queued >= jobQueuedHint && !hinted {
			fmt.Fprintf(a.stderr, "job %s: still queued after %s: no worker has taken it; is a `larder worker` (or `larder serve --workers N`) running against this Redis, with a free slot? (still following; Ctrl-C stops following, and the job stays queued)\n",
				j.ID, formatAge(queued))
			hinted = true
		}
		line := fmt.Sprintf("job %s: %s", j.ID, j.State)
		if p := formatProgress(j.Progress); p != "" && !j.State.Done() {
			line += ", " + p
		}
		if j.State == larder.JobRetrying {
			line += fmt.Sprintf(" (attempt %d of %d failed: %s)", j.Attempts, j.MaxAttempts, oneLine(j.LastError, 100))
		}
		// A line at each change of state, and at most one a second while
		// the progress moves.
		if line != last && (j.State != lastState || time.Since(lastLine) >= time.Second) {
			fmt.Fprintln(a.stderr, line)
			last, lastState, lastLine = line, j.State, time.Now()
		}
		if j.State.Done() {
			if j.State != larder.JobSucceeded {
				return fmt.Errorf("job %s %s: %s", j.ID, j.State, j.LastError)
			}
			a.printResult(a.stdout, j)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped following job %s, which goes on: %w", id, ctx.Err())
		case <-time.After(jobWatchInterval):
		}
	}
}

// printJobs prints a table of jobs.
func (a *app) printJobs(jobs []larder.Job) error {
	now := a.now()
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSTATE\tPROGRESS\tATTEMPTS\tCREATED\tTOOK\tDESCRIPTION")
	for _, j := range jobs {
		took := "-"
		switch {
		case !j.StartedAt.IsZero() && !j.FinishedAt.IsZero():
			took = formatDuration(j.FinishedAt.Sub(j.StartedAt))
		case !j.StartedAt.IsZero():
			took = formatDuration(now.Sub(j.StartedAt)) + "…"
		}
		state := string(j.State)
		if j.State == larder.JobFailed || j.State == larder.JobRetrying {
			state += ": " + oneLine(j.LastError, 60)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", j.ID, j.Kind, state, orDash(formatProgress(j.Progress), j.Progress.Total > 0 || j.Progress.Done > 0),
			j.Attempts, j.MaxAttempts, formatAge(now.Sub(j.CreatedAt))+" ago", took, j.Description)
	}
	return tw.Flush()
}

// printJob prints one job in full, with the jobs it started.
func (a *app) printJob(ctx context.Context, q larder.JobQueue, j larder.Job) error {
	w := a.stdout
	fmt.Fprintf(w, "job:          %s\n", j.ID)
	fmt.Fprintf(w, "kind:         %s\n", j.Kind)
	fmt.Fprintf(w, "description:  %s\n", j.Description)
	fmt.Fprintf(w, "state:        %s\n", j.State)
	if p := formatProgress(j.Progress); p != "" {
		fmt.Fprintf(w, "progress:     %s\n", p)
	}
	fmt.Fprintf(w, "attempts:     %d of %d\n", j.Attempts, j.MaxAttempts)
	if j.Worker != "" {
		fmt.Fprintf(w, "worker:       %s\n", j.Worker)
	}
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"created", j.CreatedAt}, {"started", j.StartedAt}, {"finished", j.FinishedAt}, {"next attempt", j.NextAttemptAt}} {
		if !t.at.IsZero() {
			fmt.Fprintf(w, "%-13s %s\n", t.name+":", t.at.UTC().Format(time.RFC3339Nano))
		}
	}
	if !j.StartedAt.IsZero() && !j.FinishedAt.IsZero() {
		fmt.Fprintf(w, "took:         %s\n", formatDuration(j.FinishedAt.Sub(j.StartedAt)))
	}
	if j.Parent != "" {
		fmt.Fprintf(w, "parent:       %s\n", j.Parent)
	}
	if len(j.Args) > 0 {
		fmt.Fprintf(w, "arguments:    %s\n", j.Args)
	}
	if j.LastError != "" {
		fmt.Fprintf(w, "last error:   %s\n", j.LastError)
	}
	a.printResult(w, j)
	if len(j.Children) == 0 {
		return nil
	}
	fmt.Fprintf(w, "started %d job(s):\n", len(j.Children))
	var children []larder.Job
	for _, id := range j.Children {
		c, err := q.Job(ctx, id)
		if errors.Is(err, larder.ErrNotFound) {
			continue // expired
		}
		if err != nil {
			return err
		}
		children = append(children, c)
	}
	slices.SortStableFunc(children, func(x, y larder.Job) int { return strings.Compare(x.ID, y.ID) })
	return a.printJobs(children)
}

// printResult prints what a succeeded job produced.
func (a *app) printResult(w io.Writer, j larder.Job) {
	if j.State != larder.JobSucceeded || len(j.Result) == 0 {
		return
	}
	switch j.Kind {
	case larder.JobMaterialize, larder.JobShard:
		var r larder.MaterializeResult
		if json.Unmarshal(j.Result, &r) == nil {
			for _, g := range r.Generations {
				fmt.Fprintf(w, "published:    %s generation %d as of %s\n", g.View, g.Generation, g.AsOf.UTC().Format(time.RFC3339))
			}
			return
		}
	case larder.JobScore:
		var r larder.ScoreResult
		if json.Unmarshal(j.Result, &r) == nil {
			fmt.Fprintf(w, "scored:       %d rows into %s, model %s\n", r.Rows, r.Output, r.Model)
			for _, g := range r.Generations {
				fmt.Fprintf(w, "read:         %s generation %d as of %s\n", g.View, g.Generation, g.AsOf.UTC().Format(time.RFC3339))
			}
			return
		}
	}
	fmt.Fprintf(w, "result:       %s\n", j.Result)
}

// formatProgress prints a job's progress: "user_activity writing 4096 of
// 10000 entities (40%)"; "" when there is none.
func formatProgress(p larder.JobProgress) string {
	if p.Total <= 0 && p.Done <= 0 {
		return p.Phase
	}
	s := strings.TrimSpace(p.Phase + " " + fmt.Sprintf("%d", p.Done))
	if p.Total > 0 {
		s += fmt.Sprintf(" of %d", p.Total)
	}
	if p.Unit != "" {
		s += " " + p.Unit
	}
	if p.Total > 0 {
		s += fmt.Sprintf(" (%d%%)", min(100, p.Done*100/p.Total))
	}
	return s
}

// oneLine returns s on one line, shortened to width runes.
func oneLine(s string, width int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > width {
		return strings.TrimRight(string(r[:width-1]), " ") + "…"
	}
	return s
}
