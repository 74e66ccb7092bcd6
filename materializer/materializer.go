package materializer

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/larder-dev/larder"
)

// The reasons a source row is skipped, as counted in Report.Skipped.
const (
	SkipNullKey       = "null key"
	SkipNullEventTime = "null event time"
	SkipAfterRunTime  = "after run time"
	// SkipAfterCutoff counts, for a streaming aggregate view, the rows
	// after its run's cutoff: the stream counts those events, the batch
	// does not (see Materializer.cutoff).
	SkipAfterCutoff = "left to the stream"
	// SkipBeforeWatermark counts the rows an incremental run read (their
	// row group holds newer ones) with an event time before the view's
	// watermark: a full run uses them.
	SkipBeforeWatermark = "before watermark"
)

// The phases of a run, as reported in Progress.Phase.
const (
	PhaseReading = "reading"
	PhaseWriting = "writing"
)

// Options holds the dependencies of a Materializer. The zero Options is valid:
// logs are discarded, the clock is time.Now and no progress is reported.
type Options struct {
	Logger *slog.Logger
	// Now is the clock. Durations are measured with it, and, when AsOf is
	// zero, its value when a run starts is the run time.
	Now func() time.Time
	// AsOf is the run time of every run: the instant views are computed as
	// of. Rows after it are left out, windows end at it, and a prediction
	// view judges its inputs' staleness at it. The zero time means the
	// clock's time when each run starts. Two runs with the same AsOf over
	// the same source files write the same values.
	AsOf time.Time
	// Run describes the runs to the store (trigger, tick, job, owner, and
	// the run lease they hold); its AsOf is set from the run time.
	Run larder.RunInfo
	// Shard, when set, makes every run write only the entities of one
	// shard of a sharded generation (see larder.ShardRef): it reads the
	// whole source, and puts the rows of the entities whose key hash
	// falls in the shard into the generation, which the store publishes
	// when its last shard is done.
	Shard *larder.ShardRef
	// Cutoff, when not zero, is the cutoff of the runs of streaming
	// aggregate views, instead of the one each run's source decides: the
	// shards of one generation compute their parts as of the cutoff the
	// generation records.
	Cutoff time.Time
	// Progress, when set, is called from time to time during a run (after
	// every row group read and every few thousand entities written or rows
	// scored, never per row), from the goroutine that called Run or Score.
	Progress func(Progress)
	// Models loads the model of a prediction view; Reader reads the live
	// generations of its input views (and of the views a candidates view
	// with a from_view reads), and must also be a larder.KeyLister to list
	// the entities it scores or ranks. Models is needed only by prediction
	// views and scoring jobs (Score), Reader by those and by candidates
	// views with a from_view; their runs fail with an error saying so when
	// one is nil.
	Models larder.ModelLoader
	Reader larder.FeatureStore
}

// Progress is a snapshot of a run, for progress bars.
type Progress struct {
	// View is the view run; for a scoring job, the ranker or the
	// prediction view it scores with.
	View string
	// Phase is PhaseReading or PhaseWriting; PhaseScoring for a scoring
	// job.
	Phase string
	// RowsRead counts the source rows read so far (for a scoring job, the
	// input rows scored and written), out of RowsTotal, which is known from
	// the files' footers before any data is read.
	RowsRead, RowsTotal int64
	// EntitiesWritten counts the rows put into the new generation so far, out
	// of EntitiesTotal, which is known once reading is done.
	EntitiesWritten, EntitiesTotal int64
}

// Report describes a finished run.
type Report struct {
	View string
	// Generation is the id of the published generation (for an incremental
	// run, of the live generation it wrote into).
	Generation int64
	// Files is the number of source files read (for an incremental run,
	// those with at least one row group read).
	Files int
	// RowsRead counts every source row read, skipped or not.
	RowsRead int64
	// EntitiesWritten counts the entities in the published generation; for
	// an incremental run, the entities whose row it wrote (those it put
	// less OlderRows).
	EntitiesWritten int64
	// Skipped counts the rows that could not be used, by reason (SkipNullKey,
	// SkipNullEventTime, SkipAfterRunTime, and SkipBeforeWatermark for
	// incremental runs). Reasons that did not occur are absent.
	Skipped map[string]int64
	// Nulled counts the values stored as null by the view's value rules
	// rather than as computed, by reason (NullNonFinite, NullOversize);
	// nil when there were none. For a shard, it counts the values of the
	// shard's entities only.
	Nulled map[string]int64
	// RunTime is the instant the view was computed as of (its as-of).
	RunTime time.Time
	// Cutoff is, for a streaming aggregate view, the run's cutoff (its
	// RunTime): the batch counts the source's events up to it, and the
	// stream those after it. Zero for other views.
	Cutoff   time.Time
	Duration time.Duration
	// Inputs are the generations of other views the run read, one per
	// view it read, each pinned for the whole run.
	Inputs []larder.InputGeneration
	// Published reports whether the run published its generation; false
	// for a shard that was not the last of its generation to finish, and
	// for an incremental run (which writes into the live generation).
	Published bool
	// RowsPerSecond is RowsRead over Duration, or 0 when Duration is 0.
	RowsPerSecond float64

	// Incremental reports a run of RunIncremental; the fields below are
	// set by such runs only.
	Incremental bool
	// Watermark is the watermark the run started from: it used the source
	// rows with event times from it to RunTime. The zero time means the
	// live generation recorded none, and every row was used.
	Watermark time.Time
	// FilesSkipped and RowGroupsSkipped count the source files and row
	// groups left unread because the statistics of their event-time column
	// show no row at or after the watermark. RowGroupsSkipped includes the
	// row groups of the files skipped.
	FilesSkipped, RowGroupsSkipped int
	// OlderRows counts the rows the run put that the store left out because
	// the entity's stored row was newer (write-if-newer); 0 when the store
	// does not report it.
	OlderRows int64

	// StartedAt is the clock's time when the run started (RunTime is its
	// as-of, which may be long before).
	StartedAt time.Time
}

// Materializer runs views of one project into a generation store. It holds no
// state between runs and is safe for concurrent use; concurrent runs of the
// same view are left to the store to order.
type Materializer struct {
	project  *larder.Project
	gs       larder.GenerationStore
	log      *slog.Logger
	now      func() time.Time
	progress func(Progress)
	models   larder.ModelLoader
	reader   larder.FeatureStore
	asOf     time.Time
	cut      time.Time
	run      larder.RunInfo
	shard    *larder.ShardRef
}

// New returns a Materializer for project, which must have been validated, that
// writes generations into gs.
func New(project *larder.Project, gs larder.GenerationStore, opts Options) *Materializer {
	m := &Materializer{project: project, gs: gs, log: opts.Logger, now: opts.Now, progress: opts.Progress}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.progress == nil {
		m.progress = func(Progress) {}
	}
	m.models, m.reader = opts.Models, opts.Reader
	m.asOf, m.cut, m.run, m.shard = opts.AsOf, opts.Cutoff, opts.Run, opts.Shard
	return m
}

// startReport returns the report of a run of viewName starting now: its
// run time is the Materializer's as-of, or now.
func (m *Materializer) startReport(viewName string) Report {
	now := m.now()
	rep := Report{View: viewName, RunTime: now, StartedAt: now}
	if !m.asOf.IsZero() {
		rep.RunTime = m.asOf
	}
	return rep
}

// inShard reports whether the entity with key k belongs to the shard the
// runs write (every entity does when they write no shard). buf is scratch
// space for the key's canonical form, returned for reuse.
func (m *Materializer) inShard(k larder.Key, buf []byte) (bool, []byte) {
	if m.shard == nil {
		return true, buf
	}
	buf = k.AppendCanonical(buf[:0])
	return larder.ShardOf(buf, m.shard.Count) == m.shard.Index, buf
}

// Run computes the named view from its source and publishes the result as a
// new generation.
//
// For a latest view the row of an entity is the source row with the newest
// event time at or before the run time (Options.AsOf, or Options.Now when
// Run starts); rows
// with a later event time are skipped. When several rows of an entity share
// the newest event time, the row read last wins: files are read in sorted
// path order and rows in file order. A row replaces the previous best row as
// a whole, so a null feature in the newest row is stored as null. Rows with a
// null key or a null event time are skipped. Report.Skipped counts every
// skipped row by reason.
//
// Every file's schema is checked before any data is read. A latest view
// begins its generation once the key and event time of every row have been
// read, then writes rows while it reads their feature values; other kinds
// write nothing before every row has been read. Run returns an error
// wrapping larder.ErrNotFound for an unknown view, a *ColumnError when a
// column is missing or of a type that cannot feed its feature, the error of
// the file, the store or ctx otherwise. On any error the new generation is
// aborted (best effort) and the live generation keeps serving.
func (m *Materializer) Run(ctx context.Context, viewName string) (Report, error) {
	rep := m.startReport(viewName)
	v, err := m.view(viewName)
	if err != nil {
		return rep, err
	}
	switch v.Kind {
	case larder.KindLatest:
		return m.runLatest(ctx, v, rep)
	case larder.KindAggregate:
		return m.runAggregate(ctx, v, rep)
	case larder.KindPrediction:
		return m.runPrediction(ctx, v, rep)
	case larder.KindCandidates:
		return m.runCandidates(ctx, v, rep)
	}
	return rep, fmt.Errorf("materialize %s: views of kind %q cannot be materialized", v.Name, v.Kind)
}

// view returns the view named name, or an error wrapping larder.ErrNotFound
// that lists the known views.
func (m *Materializer) view(name string) (*larder.View, error) {
	if v := m.project.View(name); v != nil {
		return v, nil
	}
	names := make([]string, len(m.project.Views))
	for i, v := range m.project.Views {
		names[i] = v.Name
	}
	return nil, fmt.Errorf("materialize: view %q (known: %s): %w", name, strings.Join(names, ", "), larder.ErrNotFound)
}

// runLatest materializes a latest view (see Run).
func (m *Materializer) runLatest(ctx context.Context, v *larder.View, rep Report) (Report, error) {
	src, ent := v.SourceDef(), v.EntityDef()
	if src == nil || ent == nil {
		return rep, fmt.Errorf("materialize %s: the project was not validated: call Project.Validate first", v.Name)
	}
	return m.runFromSource(ctx, v, rep, newLatest(v, ent, rep.RunTime))
}

// ColumnError is a source column that cannot feed a view: it is missing, or
// its Parquet type does not map to the type the view expects.
type ColumnError struct {
	// File is the path of the Parquet file.
	File string
	// Column is the column name; Role says what the view uses it for, such as
	// `float64 feature "clicks"`, `int64 key of entity "user"` or "event time".
	Column, Role string
	// Found is the Parquet type found, "" when the column is missing.
	Found string
	// Want lists the Parquet types that would do.
	Want string
	// Columns lists the file's top-level columns when Column is missing.
	Columns []string
	// Input is set when the file is a scoring job's input (Score) rather
	// than a view's source.
	Input bool
	// Cast is set when the column would feed the feature with `cast: true`
	// (a DOUBLE or INT64 column for a float32 feature).
	Cast bool

	// config is the project file the fix is made in; "" names larder.yaml.
	config string
	// field is the field of the project file that names the column, or
	// its type when the column has another (see columnSpec.field).
	field string
}

func (e *ColumnError) Error() string {
	config := cmp.Or(e.config, "larder.yaml")
	var hint string
	if s := larder.Suggest(e.Column, e.Columns); s != "" {
		hint = fmt.Sprintf(" did you mean %q?", s)
	}
	if e.Input {
		if e.Found == "" {
			fix := "fix the input"
			if strings.Contains(e.Role, "key of entity") {
				// A key column may be named otherwise; a request feature's is
				// named after the feature.
				fix += ", or name its key column (larder score's --context-column, --candidate-column or --key-column; a job's context_column, candidate_column or key_column)"
			}
			return fmt.Sprintf("input file %s has no column %q (the %s);%s its columns are %s: %s",
				e.File, e.Column, e.Role, hint, strings.Join(e.Columns, ", "), fix)
		}
		return fmt.Sprintf("input file %s: column %q (the %s) is %s, want %s: fix the input",
			e.File, e.Column, e.Role, e.Found, e.Want)
	}
	if e.Found == "" {
		return fmt.Sprintf("source file %s has no column %q (the %s);%s its columns are %s: fix the source or the column name in %s",
			e.File, e.Column, e.Role, hint, strings.Join(e.Columns, ", "), config)
	}
	if e.Cast {
		return fmt.Sprintf("source file %s: column %q (the %s) is %s, want %s: add `cast: true` to the feature in %s to round its values to float32, make the feature float64, or fix the source",
			e.File, e.Column, e.Role, e.Found, e.Want, config)
	}
	return fmt.Sprintf("source file %s: column %q (the %s) is %s, want %s: fix the source or the type in %s",
		e.File, e.Column, e.Role, e.Found, e.Want, config)
}

// skipCounts counts skipped rows by reason.
type skipCounts struct {
	nullKey, nullTime, afterRun, beforeSince int64
}

func (s skipCounts) report() map[string]int64 {
	m := make(map[string]int64, 4)
	for reason, n := range map[string]int64{SkipNullKey: s.nullKey, SkipNullEventTime: s.nullTime, SkipAfterRunTime: s.afterRun,
		SkipBeforeWatermark: s.beforeSince} {
		if n > 0 {
			m[reason] = n
		}
	}
	return m
}

// published records the end of a run that published (or, incrementally,
// wrote into; or, for a shard, finished its part of) generation gen at now:
// its id, the duration and the rate of rows read.
func (r *Report) published(gen larder.Generation, now time.Time) {
	elapsed := now.Sub(r.StartedAt)
	r.Generation, r.Duration = gen.ID, elapsed
	r.Published = !gen.PublishedAt.IsZero() && !r.Incremental
	if s := elapsed.Seconds(); s > 0 {
		r.RowsPerSecond = float64(r.RowsRead) / s
	}
}

// NulledTotal returns the number of values stored as null for any reason.
func (r Report) NulledTotal() int64 {
	var n int64
	for _, c := range r.Nulled {
		n += c
	}
	return n
}

// SkippedTotal returns the number of rows skipped for any reason.
func (r Report) SkippedTotal() int64 {
	var n int64
	for _, c := range r.Skipped {
		n += c
	}
	return n
}
