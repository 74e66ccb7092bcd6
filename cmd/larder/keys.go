package main

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder/store"
)

func (a *app) keysCommand() *cobra.Command {
	var opts store.ScanOptions
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Scan the stored rows and show the view, generation and entity key of each",
		Long: `keys walks the project's keys with SCAN (never KEYS, so it is safe on a busy
server) and prints, for each stored row, its view, generation, whether that
generation is live, its entity key, its encoded size and the Redis hash
holding it.`,
		Example: `  larder keys --view user_profile --limit 20
  larder keys --match '42*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			if opts.View != "" && p.View(opts.View) == nil {
				return fmt.Errorf("unknown view %q (see `larder views`)", opts.View)
			}
			if opts.Limit < 0 {
				return fmt.Errorf("--limit must be 0 (no limit) or more")
			}
			if err := needsRedis(p, "larder keys"); err != nil {
				return err
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			// The limit is applied here rather than by Scan, which may visit
			// a row twice: one row past the limit tells whether rows were left
			// out.
			errEnough := errors.New("enough rows")
			scan := opts
			scan.Limit = 0
			var found []store.KeyInfo
			seen := map[string]bool{}
			err = b.store.Scan(ctx, scan, func(k store.KeyInfo) error {
				// SCAN may return a key twice; show each row once.
				id := k.RedisKey + "\x00" + k.EntityKey
				if !seen[id] {
					seen[id] = true
					found = append(found, k)
				}
				if opts.Limit > 0 && len(found) > opts.Limit {
					return errEnough
				}
				return nil
			})
			more := errors.Is(err, errEnough)
			if err != nil && !more {
				return err
			}
			slices.SortFunc(found, func(x, y store.KeyInfo) int {
				return cmp.Or(cmp.Compare(x.View, y.View), cmp.Compare(x.Generation, y.Generation),
					cmp.Compare(len(x.EntityKey), len(y.EntityKey)), cmp.Compare(x.EntityKey, y.EntityKey))
			})
			if more {
				found = found[:opts.Limit]
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VIEW\tGENERATION\tLIVE\tENTITY KEY\tBYTES\tREDIS KEY")
			for _, k := range found {
				live := "no"
				if k.Live {
					live = "yes"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\n", k.View, k.Generation, live, k.EntityKey, k.Size, k.RedisKey)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if more {
				fmt.Fprintf(a.stderr, "(more rows match: stopped at --limit %d)\n", opts.Limit)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.View, "view", "", "only this view")
	f.StringVar(&opts.Match, "match", "", "only entity keys matching this glob pattern, such as '42*'")
	f.IntVar(&opts.Limit, "limit", 100, "stop after this many rows (0: no limit)")
	return cmd
}
