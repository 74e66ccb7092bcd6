package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// exportFlags are the flags of `larder export`.
type exportFlags struct {
	spine, output   string
	timestamp       string
	features        []string
	ranker          string
	keys            []string
	contextColumn   string
	candidateColumn string
	chunkRows       int
	compression     string
}

func (a *app) exportCommand() *cobra.Command {
	var f exportFlags
	cmd := &cobra.Command{
		Use:   "export --spine PATH --timestamp COLUMN (--features VIEW:FEATURE,... | --ranker NAME) --output PATH",
		Short: "Write a training set: features as of each row of a spine, computed from the sources",
		Long: `export writes a training set. It reads a spine, a Parquet file, folder or glob
of rows with entity keys, a timestamp and any other columns (labels, ids),
and writes a Parquet file with, for every spine row, its columns followed by
the features asked for as of the row's timestamp t, computed from the views'
sources by the code that materializes them:

  latest      the newest source row at or before t; null when there is none
              or when it is older than the view's max_age at t, as the
              column VIEW:status says (present, stale, missing)
  aggregate   the windows (t - w, t]
  prediction  the view's model scored on its inputs as of t
  candidates  the top_k list a run at t would store

Each feature is a column of its type; float32 vectors and the lists of a
candidates view are Parquet LISTs.

--features takes view:feature and view:* references. Each view is joined on
the spine column of its entity's key (the entity's key name, or --key
ENTITY=COLUMN). With --ranker, one float32 column per input of the ranker is
added, named RANKER:INPUT (home_feed:user_profile:age), holding the model input Rank builds for the
spine row's context and candidate at t: defaults for missing, null and stale
values, and request features read from spine columns named after them (a
null or absent one takes its default). A model trained on these columns sees
what Rank will feed it.

A spine row whose timestamp is a run's as-of gets the values that run stores.
The spine is joined in chunks of --chunk-rows rows, each reading the sources
once: memory holds a chunk, whatever the spine's size. A chunk is made of
whole row groups of the spine, so a row group larger than --chunk-rows is a
chunk of its own. No store is needed.

The columns the export adds are compressed with --compression: snappy (the
default, as pandas, Spark and DuckDB write: about half the size of
uncompressed columns, for more CPU), zstd (smaller still, slower to write)
or none (the cheapest to write, the largest). The spine's columns keep the
codec they have in the spine.
See docs/training.md.`,
		Example: `  larder export --spine impressions.parquet --timestamp shown_at --ranker home_feed --output train.parquet
  larder export --spine labels/ --timestamp at --features user_profile:*,user_activity:spend_sum_7d --output train.parquet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.checkCompression(); err != nil {
				return err
			}
			p, err := a.loadProjectWithoutStore()
			if err != nil {
				return err
			}
			args, err := f.exportArgs(p)
			if err != nil {
				return err
			}
			return a.export(cmd.Context(), p, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.spine, "spine", "", "the Parquet file, folder or glob of the rows to export")
	fl.StringVar(&f.output, "output", "", "the Parquet file to write (replaced if it exists; a symbolic link is written through, to the file it leads to)")
	fl.StringVar(&f.timestamp, "timestamp", "", "the spine column holding each row's time")
	fl.StringSliceVar(&f.features, "features", nil, "features to export: view:feature or view:*, comma-separated or repeated")
	fl.StringVar(&f.ranker, "ranker", "", "add this ranker's model input, as Rank builds it")
	fl.StringSliceVar(&f.keys, "key", nil, "ENTITY=COLUMN: the spine column of an entity's keys (default: the entity's key name)")
	fl.StringVar(&f.contextColumn, "context-column", "", "with --ranker, the spine column of the context keys")
	fl.StringVar(&f.candidateColumn, "candidate-column", "", "with --ranker, the spine column of the candidate keys")
	fl.IntVar(&f.chunkRows, "chunk-rows", 0, "spine rows joined at once, in whole row groups of the spine, which bounds memory (default 1048576)")
	fl.StringVar(&f.compression, "compression", materializer.DefaultExportCompression,
		"the codec of the columns the export adds: snappy, zstd or none; the spine's columns keep their own")
	return cmd
}

// checkCompression checks --compression, before anything is read.
func (f *exportFlags) checkCompression() error {
	if !slices.Contains(materializer.ExportCompressions(), f.compression) {
		return fmt.Errorf("--compression %q: want one of %s", f.compression, strings.Join(materializer.ExportCompressions(), ", "))
	}
	return nil
}

// exportArgs checks the flags against the project and returns the
// export's arguments, with absolute paths.
func (f *exportFlags) exportArgs(p *larder.Project) (materializer.ExportArgs, error) {
	switch {
	case f.spine == "":
		return materializer.ExportArgs{}, fmt.Errorf("--spine: name the Parquet file, folder or glob of the rows to export")
	case f.output == "":
		return materializer.ExportArgs{}, fmt.Errorf("--output: name the Parquet file to write")
	case f.timestamp == "":
		return materializer.ExportArgs{}, fmt.Errorf("--timestamp: name the spine column holding each row's time")
	case len(f.features) == 0 && f.ranker == "":
		return materializer.ExportArgs{}, fmt.Errorf("nothing to export: name --features view:feature,... or --ranker NAME%s", knownRankers(p))
	case f.chunkRows < 0:
		return materializer.ExportArgs{}, fmt.Errorf("--chunk-rows must be 0 (the default) or more")
	}
	for _, c := range []struct{ flag, value, what string }{
		{"--context-column", f.contextColumn, "context"},
		{"--candidate-column", f.candidateColumn, "candidate"},
	} {
		if c.value != "" && f.ranker == "" {
			return materializer.ExportArgs{}, fmt.Errorf("%s names the %s keys of --ranker, and no --ranker is given: name the spine column of an entity's keys for --features with --key ENTITY=COLUMN", c.flag, c.what)
		}
	}
	if f.ranker != "" && p.Ranker(f.ranker) == nil {
		return materializer.ExportArgs{}, fmt.Errorf("--ranker: unknown ranker %q%s", f.ranker, knownRankers(p))
	}
	keys := map[string]string{}
	given := map[string]string{} // the --key that named each entity's keys
	for _, kv := range f.keys {
		ent, col, ok := strings.Cut(kv, "=")
		if !ok || ent == "" || col == "" {
			return materializer.ExportArgs{}, fmt.Errorf("--key %q: want ENTITY=COLUMN, such as user=viewer_id", kv)
		}
		if p.Entity(ent) == nil {
			names := make([]string, len(p.Entities))
			for i, e := range p.Entities {
				names[i] = e.Name
			}
			return materializer.ExportArgs{}, fmt.Errorf("--key %q: unknown entity %q (entities: %s)", kv, ent, strings.Join(names, ", "))
		}
		if g, ok := given[ent]; ok {
			return materializer.ExportArgs{}, fmt.Errorf("--key %q: the keys of entity %s are named already, by --key %q: name them once", kv, ent, g)
		}
		keys[ent], given[ent] = col, kv
	}
	// The materializer reads relative paths from the project's folder, as
	// in larder.yaml; on the command line they are the current directory's.
	spine, err := filepath.Abs(f.spine)
	if err != nil {
		return materializer.ExportArgs{}, fmt.Errorf("--spine: %w", err)
	}
	output, err := filepath.Abs(f.output)
	if err != nil {
		return materializer.ExportArgs{}, fmt.Errorf("--output: %w", err)
	}
	if spine == output {
		return materializer.ExportArgs{}, fmt.Errorf("--output %s is the spine too: write the training set to another file", output)
	}
	return materializer.ExportArgs{
		Spine: spine, Output: output, Timestamp: f.timestamp, Features: f.features, Ranker: f.ranker,
		KeyColumns: keys, ContextColumn: f.contextColumn, CandidateColumn: f.candidateColumn, ChunkRows: f.chunkRows,
		Compression: f.compression,
	}, nil
}

// export runs an export in this process, drawing its progress, and prints
// its summary.
func (a *app) export(ctx context.Context, p *larder.Project, args materializer.ExportArgs) error {
	loader := &lazyModels{ctx: ctx, a: a}
	defer loader.close()
	prog := newProgress(a.stderr, "export")
	m := materializer.New(p, nil, materializer.Options{Logger: a.logger, Now: a.now, Models: loader.load, Progress: prog.update})
	rep, err := m.Export(ctx, args)
	prog.done()
	if err != nil {
		return spineError(err, args)
	}
	printExportReport(a.stdout, args.Output, rep)
	return nil
}

// spineError returns err in export's words when it is about the columns of
// the spine (one *materializer.ColumnError or several joined): the spine
// file, the role of the column, and the flag that names it. Other errors
// are returned as they are.
func spineError(err error, args materializer.ExportArgs) error {
	var ces []*materializer.ColumnError
	var walk func(error) bool
	walk = func(err error) bool {
		switch e := err.(type) {
		case *materializer.ColumnError:
			ces = append(ces, e)
			return e.Input
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				if !walk(x) {
					return false
				}
			}
			return true
		}
		return false
	}
	if !walk(errors.Unwrap(err)) || len(ces) == 0 {
		return err
	}
	msgs := make([]string, len(ces))
	for i, ce := range ces {
		msgs[i] = spineColumnProblem(ce, args)
	}
	return errors.New("export: " + strings.Join(msgs, "\n"))
}

// spineColumnProblem says what is wrong with a column of the spine, and
// which flag names another.
func spineColumnProblem(ce *materializer.ColumnError, args materializer.ExportArgs) string {
	// The column's role, and the flag that names another column for it
	// ("" for a request feature, read from the column named after it).
	role, what, flag := "the "+ce.Role, "", ""
	entity, isKey := strings.CutPrefix(ce.Role[strings.Index(ce.Role, " ")+1:], "key of entity ")
	if name, err := strconv.Unquote(entity); err == nil {
		entity = name
	}
	switch {
	case ce.Column == args.Timestamp && ce.Role == "event time":
		role, what, flag = "the spine's time column, --timestamp", "the spine's time column", "--timestamp COLUMN"
	case isKey && ce.Column == args.ContextColumn:
		what, flag = "the spine column of the context keys", "--context-column COLUMN"
	case isKey && ce.Column == args.CandidateColumn:
		what, flag = "the spine column of the candidate keys", "--candidate-column COLUMN"
	case isKey:
		what, flag = "the spine column of entity "+entity+"'s keys", "--key "+entity+"=COLUMN"
	}
	if ce.Found != "" {
		fix := "fix the spine"
		if flag != "" {
			fix = fmt.Sprintf("name another column as %s with %s, or fix the spine", what, flag)
		}
		return fmt.Sprintf("spine file %s: column %q (%s) is %s, want %s: %s",
			ce.File, ce.Column, role, ce.Found, ce.Want, fix)
	}
	fix := "add the column to the spine"
	if flag != "" {
		fix = fmt.Sprintf("name %s with %s", what, flag)
	}
	var hint string
	if s := larder.Suggest(ce.Column, ce.Columns); s != "" {
		hint = fmt.Sprintf(" did you mean %q?", s)
	}
	return fmt.Sprintf("spine file %s has no column %q (%s);%s its columns are %s: %s",
		ce.File, ce.Column, role, hint, strings.Join(ce.Columns, ", "), fix)
}

// printExportReport prints the summary of an export: its rate, then the
// columns with nulls (or defaulted inputs) and why.
func printExportReport(w io.Writer, output string, r materializer.ExportReport) {
	fmt.Fprintf(w, "export: %d spine rows written to %s with %d column(s) added, %d source rows read in %d chunk(s), %.2fs, %.0f rows/s\n",
		r.SpineRows, output, len(r.Columns), r.SourceRows, r.Chunks, r.Duration.Seconds(), r.RowsPerSecond)
	for _, c := range r.Columns {
		why := r.Nulls[c]
		if len(why) == 0 {
			continue
		}
		reasons := make([]string, 0, len(why))
		for reason := range why {
			reasons = append(reasons, reason)
		}
		slices.Sort(reasons)
		parts := make([]string, len(reasons))
		var total int64
		for i, reason := range reasons {
			parts[i] = fmt.Sprintf("%d %s", why[reason], reason)
			total += why[reason]
		}
		what := "null"
		if slices.Contains(r.InputColumns, c) {
			what = "defaulted"
		}
		fmt.Fprintf(w, "  %-48s %d %s (%s)\n", c, total, what, strings.Join(parts, ", "))
	}
}
