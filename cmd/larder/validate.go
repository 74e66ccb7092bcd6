package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder/config"
)

func (a *app) validateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check the project file and report every problem in it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.loadConfig()
			var cerr *config.Error
			if errors.As(err, &cerr) {
				for _, pr := range cerr.Problems {
					fmt.Fprintln(a.stderr, pr.String())
				}
				fmt.Fprintf(a.stderr, "%d problem(s) in %s\n", len(cerr.Problems), a.configPath)
				return exitError{code: 1}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: ok (project %s: %d entities, %d sources, %d views, %d rankers)\n",
				a.configPath, p.Name, len(p.Entities), len(p.Sources), len(p.Views), len(p.Rankers))
			return nil
		},
	}
}
