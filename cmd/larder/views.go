package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
)

func (a *app) viewsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "views",
		Short: "List the views with their live generation, rows, age and last run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			if err := needsRedis(p, "larder views"); err != nil {
				return err
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			now := a.now()
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VIEW\tKIND\tENTITY\tFEATURES\tGENERATION\tROWS\tPUBLISHED\tAGE\tMAX AGE\tSCHEDULE\tLAST RUN")
			for _, v := range p.Views {
				gen, rows, published, age := "-", "-", "-", "-"
				g, err := b.store.Live(ctx, v)
				switch {
				case err == nil:
					gen = fmt.Sprint(g.ID)
					rows = fmt.Sprint(g.Rows)
					published = g.PublishedAt.UTC().Format(time.RFC3339)
					age = formatAge(now.Sub(g.PublishedAt))
					if v.MaxAge > 0 && now.Sub(g.PublishedAt) > v.MaxAge {
						age += " (stale)"
					}
				case errors.Is(err, larder.ErrNoGeneration):
					gen = "none"
				default:
					return fmt.Errorf("view %s: %w", v.Name, err)
				}
				runs, err := b.store.Runs(ctx, v.Name, 1)
				if err != nil {
					return fmt.Errorf("view %s: %w", v.Name, err)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Kind, v.Entity, len(v.Features),
					gen, rows, published, age, orDash(formatAge(v.MaxAge), v.MaxAge > 0), orDash(v.Schedule, v.Schedule != ""),
					lastRun(runs, now))
			}
			return tw.Flush()
		},
	}
}

// formatAge prints a duration the way an operator reads it: 45s, 12m, 3h20m, 2d4h.
func formatAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) % 60; m != 0 {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	}
	days := int(d.Hours()) / 24
	if h := int(d.Hours()) % 24; h != 0 {
		return fmt.Sprintf("%dd%dh", days, h)
	}
	return fmt.Sprintf("%dd", days)
}

func orDash(s string, ok bool) string {
	if !ok {
		return "-"
	}
	return s
}
