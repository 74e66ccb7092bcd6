package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// scoreFlags are the flags of `larder score`.
type scoreFlags struct {
	ranker, view    string
	input, output   string
	asOf            string
	batchSize       int
	contextColumn   string
	candidateColumn string
	keyColumn       string
	async, wait     bool
}

func (a *app) scoreCommand() *cobra.Command {
	var f scoreFlags
	cmd := &cobra.Command{
		Use:   "score (--ranker NAME | --view PREDICTION_VIEW) --input PATH --output PATH",
		Short: "Score a Parquet file with a ranker's or a prediction view's model, in batch",
		Long: `score scores every row of a Parquet input (a file, a folder or a glob) with
the model of a ranker or of a prediction view, reading the features the model
needs from the live generations of its views, and writes one row per input
row, in input order, to the Parquet file --output. The output is written
whole or not at all.

With --ranker, an input row is a context key, a candidate key and the
ranker's request features, in columns named after the entities' keys and the
features (--context-column and --candidate-column name the key columns
otherwise); the output holds the two key columns and "score", the score Rank
gives the candidate for that context and those request features. With --view,
an input row is an entity key (--key-column names its column), and the output
holds the key column and one column per feature of the view: what a run of
the view would store for the entity.

A value older than its view's max_age counts as missing, as in Rank: staleness
is judged as of --as-of, or now.

Relative paths are read from the current directory. Without --async, the rows
are scored in this process, with a progress bar, and a summary is printed.
With --async, a job is submitted for ` + "`larder worker`" + ` instead, with the paths
made absolute and --as-of fixed to now when not given, and its id is printed
(see ` + "`larder jobs ID`" + `); --wait follows it to its end. The worker reads the input
and writes the output itself: it must see them at the same paths (a shared
volume).`,
		Example: `  larder score --ranker home_feed --input impressions.parquet --output scores.parquet
  larder score --view item_click_prior --input items/ --output p_click.parquet --key-column id
  larder score --ranker home_feed --input /data/in.parquet --output /data/out.parquet --async --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if f.wait && !f.async {
				return fmt.Errorf("--wait follows a job: use it with --async")
			}
			p, err := a.loadProject()
			if err != nil {
				return err
			}
			args, what, err := f.scoreArgs(p, a.now())
			if err != nil {
				return err
			}
			if err := needsRedis(p, "larder score"); err != nil {
				return err
			}
			b, err := a.openStore(ctx, p)
			if err != nil {
				return err
			}
			defer b.Close()
			if f.async {
				return a.submitScore(ctx, p, b, args, what, f.wait)
			}
			return a.score(ctx, p, b, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.ranker, "ranker", "", "score with this ranker's model")
	fl.StringVar(&f.view, "view", "", "score with this prediction view's model")
	fl.StringVar(&f.input, "input", "", "the Parquet file, folder or glob to score")
	fl.StringVar(&f.output, "output", "", "the Parquet file to write (replaced if it exists; a symbolic link is written through, to the file it leads to)")
	fl.StringVar(&f.asOf, "as-of", "", "judge staleness as of this instant, RFC 3339 such as 2026-11-30T00:00:00Z (default: now)")
	fl.IntVar(&f.batchSize, "batch-size", 0, "rows per model run and per store round trip (default 1024)")
	fl.StringVar(&f.contextColumn, "context-column", "", "with --ranker, the input column of the context keys (default: the context entity's key name)")
	fl.StringVar(&f.candidateColumn, "candidate-column", "", "with --ranker, the input column of the candidate keys (default: the candidate entity's key name)")
	fl.StringVar(&f.keyColumn, "key-column", "", "with --view, the input column of the entity keys (default: the view entity's key name)")
	fl.BoolVar(&f.async, "async", false, "submit a job for larder worker and print its id, instead of scoring here")
	fl.BoolVar(&f.wait, "wait", false, "with --async, follow the job until it ends, and fail when it fails")
	return cmd
}

// scoreArgs checks the flags against the project and returns the job's
// arguments, with absolute paths, and what scores ("ranker home_feed").
func (f *scoreFlags) scoreArgs(p *larder.Project, now time.Time) (larder.ScoreArgs, string, error) {
	var what string
	switch {
	case f.ranker == "" && f.view == "":
		return larder.ScoreArgs{}, "", fmt.Errorf("name the model to score with: --ranker NAME%s or --view PREDICTION_VIEW%s", knownRankers(p), knownPredictionViews(p))
	case f.ranker != "" && f.view != "":
		return larder.ScoreArgs{}, "", fmt.Errorf("--ranker %s and --view %s: score with one model, a ranker's or a prediction view's", f.ranker, f.view)
	case f.ranker != "":
		if p.Ranker(f.ranker) == nil {
			return larder.ScoreArgs{}, "", fmt.Errorf("--ranker: unknown ranker %q%s", f.ranker, knownRankers(p))
		}
		if f.keyColumn != "" {
			return larder.ScoreArgs{}, "", fmt.Errorf("--key-column names the key column of a prediction view's input; a ranker's input has --context-column and --candidate-column")
		}
		what = "ranker " + f.ranker
	default:
		v := p.View(f.view)
		if v == nil {
			return larder.ScoreArgs{}, "", fmt.Errorf("--view: unknown view %q%s", f.view, knownPredictionViews(p))
		}
		if v.Kind != larder.KindPrediction {
			return larder.ScoreArgs{}, "", fmt.Errorf("--view: %s is a %s view, which has no model: name a prediction view%s, or score with --ranker", v.Name, v.Kind, knownPredictionViews(p))
		}
		if f.contextColumn != "" || f.candidateColumn != "" {
			return larder.ScoreArgs{}, "", fmt.Errorf("--context-column and --candidate-column name the key columns of a ranker's input; a prediction view's input has --key-column")
		}
		what = "view " + v.Name
	}
	switch {
	case f.input == "":
		return larder.ScoreArgs{}, "", fmt.Errorf("--input: name the Parquet file, folder or glob to score")
	case f.output == "":
		return larder.ScoreArgs{}, "", fmt.Errorf("--output: name the Parquet file to write the scores to")
	case f.batchSize < 0:
		return larder.ScoreArgs{}, "", fmt.Errorf("--batch-size must be 0 (the default, 1024) or more")
	}
	asOf, err := parseAsOf(f.asOf, now)
	if err != nil {
		return larder.ScoreArgs{}, "", err
	}
	// The materializer reads relative paths from the project's folder, as
	// in larder.yaml; on the command line they are the current directory's.
	input, err := filepath.Abs(f.input)
	if err != nil {
		return larder.ScoreArgs{}, "", fmt.Errorf("--input: %w", err)
	}
	output, err := filepath.Abs(f.output)
	if err != nil {
		return larder.ScoreArgs{}, "", fmt.Errorf("--output: %w", err)
	}
	if input == output {
		return larder.ScoreArgs{}, "", fmt.Errorf("--output %s is the input too: write the scores to another file", output)
	}
	return larder.ScoreArgs{
		Ranker:          f.ranker,
		View:            f.view,
		Input:           input,
		Output:          output,
		AsOf:            asOf,
		ContextColumn:   f.contextColumn,
		CandidateColumn: f.candidateColumn,
		KeyColumn:       f.keyColumn,
		BatchSize:       f.batchSize,
	}, what, nil
}

// score runs a scoring job in this process, drawing its progress, and
// prints its summary.
func (a *app) score(ctx context.Context, p *larder.Project, b *backend, args larder.ScoreArgs) error {
	loader := &lazyModels{ctx: ctx, a: a}
	defer loader.close()
	prog := newProgress(a.stderr, cmp.Or(args.Ranker, args.View))
	m := materializer.New(p, b.store, materializer.Options{
		Logger: a.logger, Now: a.now, Models: loader.load, Reader: b.store, Progress: prog.update,
	})
	rep, err := m.Score(ctx, args)
	prog.done()
	if err != nil {
		// The materializer's errors begin with "score with ranker NAME:".
		return err
	}
	printScoreReport(a.stdout, rep)
	return nil
}

// printScoreReport prints the summary of a scoring job.
func printScoreReport(w io.Writer, r materializer.ScoreReport) {
	what := "ranker " + r.Ranker
	if r.View != "" {
		what = "view " + r.View
	}
	gens := make([]string, len(r.Generations))
	for i, g := range r.Generations {
		gens[i] = fmt.Sprintf("%s@%d", g.View, g.Generation)
	}
	fmt.Fprintf(w, "score with %s: %d rows scored from %d file(s) into %s, %.2fs, %.0f rows/s, model %s, generations %s, as of %s\n",
		what, r.Rows, r.Files, r.Output, r.Duration.Seconds(), r.RowsPerSecond, r.Model, strings.Join(gens, ", "),
		r.AsOf.UTC().Format(time.RFC3339))
}

// submitScore submits a scoring job with args (its as-of, when zero, fixed
// now, so that every attempt judges staleness at the same instant), prints
// its id, and follows it when wait is set.
func (a *app) submitScore(ctx context.Context, p *larder.Project, b *backend, args larder.ScoreArgs, what string, wait bool) error {
	if args.AsOf.IsZero() {
		args.AsOf = a.now().UTC().Truncate(time.Microsecond)
	}
	body, err := json.Marshal(args)
	if err != nil {
		return err
	}
	q := a.newQueue(p, b, nil)
	j, err := q.Submit(ctx, larder.JobSpec{
		Kind: larder.JobScore, Args: body,
		Description: fmt.Sprintf("score %s with %s into %s as of %s", args.Input, what, args.Output, args.AsOf.Format(time.RFC3339)),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "job %s submitted: %s\n", j.ID, j.Description)
	if !wait {
		fmt.Fprintf(a.stderr, "follow it with: larder jobs %s --wait (a `larder worker` that sees the same paths runs it)\n", j.ID)
		return nil
	}
	return a.followJob(ctx, q, j.ID)
}

// knownRankers lists the project's rankers for an error message.
func knownRankers(p *larder.Project) string {
	if len(p.Rankers) == 0 {
		return " (the project has no ranker)"
	}
	names := make([]string, len(p.Rankers))
	for i, r := range p.Rankers {
		names[i] = r.Name
	}
	return " (rankers: " + strings.Join(names, ", ") + ")"
}

// knownPredictionViews lists the project's prediction views for an error
// message.
func knownPredictionViews(p *larder.Project) string {
	names := p.ViewNames(larder.KindPrediction)
	if len(names) == 0 {
		return " (the project has no prediction view)"
	}
	return " (prediction views: " + strings.Join(names, ", ") + ")"
}
