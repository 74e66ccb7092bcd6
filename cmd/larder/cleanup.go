package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder/store"
)

func (a *app) cleanupCommand() *cobra.Command {
	var (
		dryRun bool
		view   string
	)
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Delete expired and abandoned generations now, as the periodic sweep does",
		Long: `cleanup deletes by hand what the periodic sweep of ` + "`larder schedule`" + `,
` + "`larder worker`" + ` and ` + "`larder serve`" + ` deletes every scheduler.sweep_interval:

  expired    a generation replaced by a newer one, whose grace period
             (redis.grace_period) has ended;
  abandoned  a generation being written by a run that was killed or lost
             Redis: its lease lapsed. Its run is recorded as abandoned
             (see ` + "`larder runs`" + `).

It never deletes a live generation, nor one still being written by a run
that renews its lease. It prints one line per generation deleted, then how
many. With --dry-run it prints what it would delete, and deletes and records
nothing.`,
		Example: `  larder cleanup --dry-run
  larder cleanup
  larder cleanup --view user_profile`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			if view != "" && p.View(view) == nil {
				return fmt.Errorf("--view: unknown view %q (see `larder views`)", view)
			}
			if err := needsRedis(p, "larder cleanup"); err != nil {
				return err
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			rep, err := b.store.Cleanup(ctx, store.CleanupOptions{DryRun: dryRun, View: view})
			// What was cleaned before an error is printed too: it is gone.
			if perr := printCleanup(a.stdout, rep, dryRun); perr != nil {
				return perr
			}
			if err != nil {
				return fmt.Errorf("%w (the generations listed were cleaned; run cleanup again once Redis answers)", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be deleted, without deleting or recording anything")
	cmd.Flags().StringVar(&view, "view", "", "clean only this view's generations")
	return cmd
}

// printCleanup prints a table of the generations rep cleaned, by view and
// generation, and a summary line.
func printCleanup(w io.Writer, rep store.CleanupReport, dryRun bool) error {
	for _, r := range rep.AbandonedRuns {
		verb := "recorded as abandoned"
		if dryRun {
			verb = "would be recorded as abandoned"
		}
		if _, err := fmt.Fprintf(w, "%s: the run started %s by %s died before it began a generation: %s\n",
			r.View, r.StartedAt.UTC().Format(time.RFC3339), r.Owner, verb); err != nil {
			return err
		}
	}
	if len(rep.Cleaned) == 0 {
		_, err := fmt.Fprintln(w, "nothing to delete")
		return err
	}
	cleaned := slices.Clone(rep.Cleaned)
	slices.SortStableFunc(cleaned, func(x, y store.Cleaned) int {
		return cmp.Or(strings.Compare(x.View, y.View), cmp.Compare(x.Generation, y.Generation))
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIEW\tGENERATION\tREASON\tSTATE\tSTARTED\tBUCKETS")
	for _, c := range cleaned {
		started := "-"
		if !c.StartedAt.IsZero() {
			started = c.StartedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\n", c.View, c.Generation, c.Reason, c.State, started, c.Buckets)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, cleanupSummary(rep, dryRun))
	return err
}

// cleanupSummary says how many generations rep cleaned, and for which
// reasons: "3 generations deleted: 2 expired, 1 abandoned".
func cleanupSummary(rep store.CleanupReport, dryRun bool) string {
	n := len(rep.Cleaned)
	noun := "generations"
	if n == 1 {
		noun = "generation"
	}
	var reasons []string
	for _, r := range store.CleanedReasons {
		if c := rep.Count(r); c > 0 {
			reasons = append(reasons, fmt.Sprintf("%d %s", c, r))
		}
	}
	if dryRun {
		return fmt.Sprintf("dry run: %d %s would be deleted: %s (nothing was deleted)", n, noun, strings.Join(reasons, ", "))
	}
	return fmt.Sprintf("%d %s deleted: %s", n, noun, strings.Join(reasons, ", "))
}
