package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/ingest"
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
model loads, and its input and output names and shapes fit). When the
ONNX Runtime library is not installed (larder setup installs it), the
names, types and shapes a model file declares are read from the file and
compared, without loading it; validate never downloads anything. Each
problem of the data and
models is reported as those of the file are, at the field to change (a
source's path, a feature's column or type, a model). Stream mappings are
checked with the file; the TLS files of each Kafka stream (ca_file,
cert_file and key_file) are read, and a client certificate must match
its key. Brokers are not contacted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// With the places of the fields, which the problems of the
			// data and models are put at.
			p, places, err := a.loadConfigPlaces()
			var cerr *config.Error
			if errors.As(err, &cerr) {
				a.printProblems(cerr.Problems, fmt.Sprintf("%d problem(s) in %s", len(cerr.Problems), a.configPath))
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
			var problems []config.Problem
			for _, sp := range materializer.CheckSources(p) {
				problems = append(problems, places.Problem(sp.Field, sp.Error()))
			}
			modelProblems, note := checkModels(p, places)
			problems = append(problems, modelProblems...)
			problems = append(problems, checkKafka(p, places)...)
			if len(problems) > 0 {
				a.printProblems(problems, fmt.Sprintf("%d problem(s) in the data and models of %s", len(problems), a.configPath))
				return exitError{code: 1}
			}
			fmt.Fprintf(a.stdout, "%s: ok (%s; sources and models checked%s)\n", a.configPath, summary, note)
			return nil
		},
	}
	cmd.Flags().BoolVar(&offline, "offline", false, "check the project file only, not the data and models it points at")
	return cmd
}

// checkKafka reads the TLS files of every Kafka stream of p, as ingest
// does when it starts; each problem is placed at the setting at fault.
func checkKafka(p *larder.Project, places *config.Places) (problems []config.Problem) {
	for i, s := range p.Streams {
		if s.Kafka == nil {
			continue
		}
		_, err := ingest.KafkaOptions(s)
		var se *ingest.KafkaSettingError
		if errors.As(err, &se) {
			problems = append(problems, places.Problem(fmt.Sprintf("streams[%d].%s", i, se.Field), "stream "+s.Name+": "+se.Err.Error()))
		} else if err != nil {
			problems = append(problems, places.Problem(fmt.Sprintf("streams[%d]", i), err.Error()))
		}
	}
	return problems
}

// checkModels checks the model file of every prediction view and ranker:
// that it loads and fits, with ONNX Runtime when its library is installed,
// or that the inputs and outputs it declares fit otherwise (note then says
// so). Each problem is placed at the model field of the view or ranker.
func checkModels(p *larder.Project, places *config.Places) (problems []config.Problem, note string) {
	type check struct {
		what, field, path string
		spec              models.Spec
	}
	var checks []check
	for i, v := range p.Views {
		if pr := v.Prediction; v.Kind == larder.KindPrediction && pr != nil {
			checks = append(checks, check{"view " + v.Name, fmt.Sprintf("views[%d]", i), p.Path(pr.Model),
				models.Spec{Input: pr.ModelInput, Output: pr.ModelOutput, Features: len(pr.Inputs), Outputs: len(v.Features)}})
		}
	}
	for i, r := range p.Rankers {
		checks = append(checks, check{"ranker " + r.Name, fmt.Sprintf("rankers[%d]", i), p.Path(r.Model),
			models.Spec{Input: r.ModelInput, Output: r.ModelOutput, Features: len(r.Inputs)}})
	}
	if len(checks) == 0 {
		return nil, ""
	}
	rt, err := models.OpenInstalled()
	switch {
	case rt != nil:
		defer rt.Close()
	case !models.Supported:
		note = "; models checked against their declared inputs and outputs only: this larder was built without cgo, so it cannot load ONNX Runtime"
	case errors.Is(err, models.ErrLibraryNotFound):
		note = "; models checked against their declared inputs and outputs only: ONNX Runtime is not installed (" + models.SetupCommand + " installs it)"
	default:
		// A library that is there but does not load: serve will rank
		// degraded, so say why.
		note = fmt.Sprintf("; models checked against their declared inputs and outputs only: ONNX Runtime cannot be loaded: %v", err)
	}
	for _, c := range checks {
		add := func(format string, args ...any) {
			problems = append(problems, places.Problem(c.field+".model", c.what+": "+fmt.Sprintf(format, args...)))
		}
		if _, err := os.Stat(c.path); errors.Is(err, fs.ErrNotExist) {
			add("model file %s does not exist: fix the path in %s, or put the model there", c.path, p.FileName())
			continue
		} else if err != nil {
			add("model file %s: %v", c.path, err)
			continue
		}
		// Without ONNX Runtime, the file's declared inputs and outputs are
		// read and compared; with it, the model is loaded as serving would.
		var m *models.Model
		var err error
		if rt == nil {
			err = models.CheckFile(c.path, c.spec)
		} else {
			m, err = rt.Load(c.path, c.spec)
		}
		var serr *models.SpecError
		switch {
		case errors.As(err, &serr):
			add("%v: export a model that fits, or fix model, model_input, model_output or inputs in %s", err, p.FileName())
		case err != nil:
			add("%v", err)
		case m != nil:
			_ = m.Close()
		}
	}
	return problems, note
}

// printProblems prints each problem on a line of its own, then total; under
// --log-format json, each problem is a record at ERROR.
func (a *app) printProblems(problems []config.Problem, total string) {
	for _, pr := range problems {
		a.printError("", pr.String())
	}
	fmt.Fprintln(a.stderr, total)
}
