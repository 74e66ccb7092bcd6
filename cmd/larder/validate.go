package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/models"
)

func (a *app) validateCommand() *cobra.Command {
	var offline bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the project file, its data and its models, and report every problem",
		Long: `validate checks larder.yaml and reports every problem in it, each at its line
and field. Then, unless --offline, it checks what the file points at, without
writing anything: it opens the footer of every source's Parquet files (the
path or glob matches files, each view's columns exist and their types can
feed its features) and every model file (rankers and prediction views: the
model loads, and its input and output names and shapes fit). A model is
only checked to exist when the ONNX Runtime library is not installed (run
make setup); validate never downloads it. Stream mappings are checked with
the file.`,
		Args: cobra.NoArgs,
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
			summary := fmt.Sprintf("project %s: %d entities, %d sources, %d views, %d rankers, %d streams",
				p.Name, len(p.Entities), len(p.Sources), len(p.Views), len(p.Rankers), len(p.Streams))
			if offline {
				fmt.Fprintf(a.stdout, "%s: ok (%s; data and models not checked: --offline)\n", a.configPath, summary)
				return nil
			}
			var problems []string
			for _, sp := range materializer.CheckSources(p) {
				problems = append(problems, sp.Error())
			}
			modelProblems, note := a.checkModels(p)
			problems = append(problems, modelProblems...)
			if len(problems) > 0 {
				for _, pr := range problems {
					fmt.Fprintln(a.stderr, pr)
				}
				fmt.Fprintf(a.stderr, "%d problem(s) in the data and models of %s\n", len(problems), a.configPath)
				return exitError{code: 1}
			}
			fmt.Fprintf(a.stdout, "%s: ok (%s; sources and models checked%s)\n", a.configPath, summary, note)
			return nil
		},
	}
	cmd.Flags().BoolVar(&offline, "offline", false, "check the project file only, not the data and models it points at")
	return cmd
}

// checkModels checks the model file of every ranker and prediction view:
// that it loads and fits, with ONNX Runtime when its library is installed,
// or only that it exists otherwise (note then says so).
func (a *app) checkModels(p *larder.Project) (problems []string, note string) {
	type check struct {
		what, path string
		spec       models.Spec
	}
	var checks []check
	for _, r := range p.Rankers {
		checks = append(checks, check{"ranker " + r.Name, p.Path(r.Model), models.Spec{Input: r.ModelInput, Output: r.ModelOutput, Features: len(r.Inputs)}})
	}
	for _, v := range p.Views {
		if pr := v.Prediction; v.Kind == larder.KindPrediction && pr != nil {
			checks = append(checks, check{"view " + v.Name, p.Path(pr.Model),
				models.Spec{Input: pr.ModelInput, Output: pr.ModelOutput, Features: len(pr.Inputs), Outputs: len(v.Features)}})
		}
	}
	if len(checks) == 0 {
		return nil, ""
	}
	var rt *models.Runtime
	if lib, err := models.LibraryPath(); err == nil {
		rt, _ = models.NewRuntime(lib)
	}
	if rt == nil {
		note = "; model files only checked to exist: the ONNX Runtime library is not installed (make setup)"
	} else {
		defer rt.Close()
	}
	for _, c := range checks {
		if rt == nil {
			if _, err := os.Stat(c.path); err != nil {
				problems = append(problems, fmt.Sprintf("%s: model %s: %v", c.what, c.path, err))
			}
			continue
		}
		m, err := rt.Load(c.path, c.spec)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", c.what, err))
			continue
		}
		_ = m.Close()
	}
	return problems, note
}
