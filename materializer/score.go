package materializer

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/larder-dev/larder"
)

// PhaseScoring is the phase of a scoring job (Score), as reported in
// Progress.Phase.
const PhaseScoring = "scoring"

// ScoreColumn is the column of the scores in the output of a ranker's
// scoring job.
const ScoreColumn = "score"

// scoreDepth is the number of batches a scoring job holds at once: one
// being decoded from the input, one waiting for the store, one being
// scored and written, and one spare, so that no stage waits for another's
// batch to come back.
const scoreDepth = 4

// ScoreReport describes a finished scoring job.
type ScoreReport struct {
	// Ranker or View names what scored the rows; the other is "".
	Ranker, View string
	// Input is the input path resolved against the project folder, and
	// Files the number of Parquet files it named; Output is the file written.
	Input  string
	Files  int
	Output string
	// Rows counts the input rows, each scored and written.
	Rows int64
	// AsOf is the instant staleness was judged at.
	AsOf          time.Time
	Duration      time.Duration
	RowsPerSecond float64
	// Model is the version of the model that scored the rows.
	Model string
	// Generations lists the generation of each view the features were read
	// from: the live one when the job started, read to the job's end even
	// when a new one is published meanwhile.
	Generations []larder.InputGeneration
}

// Result returns r as the result of a larder.JobScore job.
func (r ScoreReport) Result() larder.ScoreResult {
	return larder.ScoreResult{
		Output:      r.Output,
		Rows:        r.Rows,
		Model:       r.Model,
		Generations: slices.Clone(r.Generations),
	}
}

// Score scores the rows of a Parquet input (a file, a folder or a glob, as
// for a source; a relative path is resolved against the project folder)
// with the model of a ranker (args.Ranker) or of a prediction view
// (args.View), reading the view features the model needs from the live
// generations, and writes one output row per input row, in input order, to
// the Parquet file args.Output.
//
// For a ranker, an input row is a context key, a candidate key and request
// features. The key columns are named after the context and candidate
// entities' keys, unless args.ContextColumn and args.CandidateColumn name
// them (they must when both entities have the same key name). A request
// feature's column is named after the feature; when a file lacks it, every
// row of the file takes the feature's default, and a feature without a
// default must have its column. A null request value takes the feature's
// default; a null value of a feature without a default fails the job,
// naming the row. Each row's model input is then built exactly as the
// server's Rank builds a candidate's: in the ranker's input order, view
// values read as numbers (bools as 0 or 1), and a missing row, a null value
// or a row stale at args.AsOf giving the input's default. The output holds
// the context key column, the candidate key column and ScoreColumn, the
// float32 score, which is the score Rank gives the same candidate for the
// same context and request features at the same instant.
//
// For a prediction view, an input row is an entity key, in the column
// args.KeyColumn (by default the view entity's key name), and its model
// input is built as a run of the view builds it, with staleness judged at
// args.AsOf. The output holds the key column and one float32 column per
// feature of the view, named after it: the values a run of the view at
// args.AsOf would compute for the entity (the view's value rules, which
// decide what a run stores, do not apply: a NaN output is written as NaN).
//
// Column types map to key and feature types as for sources (see the
// package documentation). Output key columns keep the input's names and hold
// the entity's key type: INT64 for int64 keys, BYTE_ARRAY STRING for
// string keys. Every input row needs its keys: a null key fails the job,
// naming the row (errors number rows from 0 within each file). Rows are
// written in row groups of 64k rows.
//
// Rows are scored in batches of args.BatchSize (1024 when 0): each batch
// reads every view it needs in one store round trip, which overlaps with
// decoding the next batch and with scoring and writing the previous one;
// memory holds a few batches and one output row group, whatever the size
// of the input. Staleness is judged at
// args.AsOf, or at the clock's time when Score starts when it is zero.
// Progress is reported in PhaseScoring with RowsTotal known from the input
// files' footers.
//
// Before reading any row, Score checks the arguments, every input file's
// columns, the output folder, that the output is none of the files the job
// or a view reads (an input file, a file of a source, or a file the input's
// or a source's folder or glob would read once written), that every view the
// model reads is live with the schema of its definition, and the model
// against its spec. The output is written to a temporary file in the
// output's folder and renamed over args.Output (replacing a file there) once
// complete and synced to disk, so that a job that fails or whose ctx ends
// leaves no output and no partial file; an args.Output that is a symbolic
// link is written through, to the file it leads to (see resolveOutput).
//
// Score returns a *larder.InvalidError for invalid arguments (neither or
// both of Ranker and View, an unknown name, a view that is not a prediction
// view, a key column argument of the other kind, no input or output, an
// output that is one of the files read), a *ColumnError for an input column
// that is missing or of the wrong type, an error wrapping
// larder.ErrNoGeneration or larder.ErrSchemaChanged naming a view that
// cannot be read, the model loader's error, and the file's, the store's, the
// model's or ctx's error during the job.
func (m *Materializer) Score(ctx context.Context, args larder.ScoreArgs) (ScoreReport, error) {
	start := m.now()
	rep := ScoreReport{Ranker: args.Ranker, View: args.View, AsOf: args.AsOf}
	if rep.AsOf.IsZero() {
		rep.AsOf = start
	}
	plan, err := m.scorePlan(args)
	if err != nil {
		return rep, err
	}
	if m.models == nil || m.reader == nil {
		return rep, fmt.Errorf("%s: a scoring job needs a model loader and a store reader (materializer.Options.Models and Options.Reader)", plan.what)
	}
	batchSize := args.BatchSize
	if batchSize == 0 {
		batchSize = larder.DefaultPredictionBatch
	}
	rep.Input, rep.Output = m.project.Path(args.Input), m.project.Path(args.Output)
	file, err := resolveOutput(rep.Output)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", plan.what, err)
	}
	if err := checkOutput(file); err != nil {
		return rep, fmt.Errorf("%s: %w", plan.what, err)
	}

	ds, err := openFiles(rep.Input, "check the job's input path")
	if err != nil {
		return rep, fmt.Errorf("%s: input: %w", plan.what, err)
	}
	defer ds.Close()
	ds.input = true
	rep.Files = len(ds.files)
	if err := ds.bind(plan.specs); err != nil {
		return rep, fmt.Errorf("%s: %w", plan.what, err)
	}
	if err := m.checkNotAnInput(rep.Output, file, ds, rep.Input, "the input files", "the input's folder or glob", "the scores"); err != nil {
		return rep, fmt.Errorf("%s: %w", plan.what, err)
	}

	// Every view the model reads must be live, with the schema of its
	// definition, before the model is loaded or anything is written; the
	// job reads those generations to its end.
	live, err := m.liveGenerations(ctx, plan.views)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", plan.what, err)
	}
	plan.pins = make(map[*larder.View]int64, len(live))
	for _, v := range plan.views {
		g := live[v]
		plan.pins[v] = g.ID
		rep.Generations = append(rep.Generations, larder.InputGeneration{View: v.Name, Generation: g.ID, AsOf: inputAsOf(g)})
	}
	if err := m.reader.Read(ctx, plan.newBatch(0).lookups); err != nil {
		return rep, fmt.Errorf("%s: input views: %w", plan.what, err)
	}
	model, closeModel, err := m.loadModel(plan.model)
	if err != nil {
		return rep, fmt.Errorf("%s: load model: %w", plan.what, err)
	}
	defer closeModel()
	rep.Model = model.Version()

	out, err := createScoreOutput(file, plan)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", plan.what, err)
	}
	m.log.Info("scoring", "with", plan.what, "input", rep.Input, "files", len(ds.files), "rows", ds.rows,
		"output", rep.Output, "model", plan.model.Path, "model_version", rep.Model,
		"batch_size", batchSize, "as_of", rep.AsOf)

	prog := Progress{View: plan.name, Phase: PhaseScoring, RowsTotal: ds.rows}
	m.progress(prog)
	rows, err := m.score(ctx, plan, ds, model, out, scoreParams{batchSize: batchSize, asOf: rep.AsOf, prog: prog})
	rep.Rows = rows
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = out.commit()
	}
	if err != nil {
		out.discard()
		return rep, fmt.Errorf("%s: %w", plan.what, err)
	}
	rep.Duration = m.now().Sub(start)
	if s := rep.Duration.Seconds(); s > 0 {
		rep.RowsPerSecond = float64(rep.Rows) / s
	}
	m.log.Info("scored", "with", plan.what, "rows", rows, "output", rep.Output, "model_version", rep.Model,
		"duration", rep.Duration, "rows_per_second", int64(rep.RowsPerSecond))
	return rep, nil
}

// scorePlan is what a scoring job reads and how it builds the model input:
// the input columns, the views read, the model, and the builder of the
// model input of a ranker or of a prediction view.
type scorePlan struct {
	// what names the job in errors and logs ("score with ranker home_feed");
	// name is the ranker's or the view's name.
	what, name string
	// specs are the input columns: nkeys key columns, then one column per
	// request feature of a ranker, in the order of requests.
	specs    []columnSpec
	nkeys    int
	requests []requestInput
	// views are the distinct views the model input reads, and pins the
	// generation of each that the job reads from start to end.
	views []*larder.View
	pins  map[*larder.View]int64
	model larder.ModelSpec
	// outputs names the output columns of the model's values.
	outputs []string

	// Exactly one of rank and pred is set.
	rank *rankPlan
	pred *predictionPlan
}

// requestInput is a request feature of a ranker: the model input column it
// fills, and the number a row takes when its value is null or its file
// lacks the column.
type requestInput struct {
	col    int
	name   string
	def    float32
	hasDef bool
}

// scorePlan checks args and returns the plan of its job, or an
// *larder.InvalidError saying what is wrong with them.
func (m *Materializer) scorePlan(args larder.ScoreArgs) (*scorePlan, error) {
	switch {
	case args.Ranker != "" && args.View != "":
		return nil, larder.Invalidf("score: name a ranker or a prediction view, not both (ranker %q, view %q)", args.Ranker, args.View)
	case args.Ranker == "" && args.View == "":
		return nil, larder.Invalidf("score: name the ranker or the prediction view whose model scores the input")
	case args.Input == "":
		return nil, larder.Invalidf("score: no input: name the Parquet file, folder or glob to score")
	case args.Output == "":
		return nil, larder.Invalidf("score: no output: name the Parquet file to write the scores to")
	case args.BatchSize < 0:
		return nil, larder.Invalidf("score: the batch size must not be negative, got %d", args.BatchSize)
	}
	if args.Ranker != "" {
		return m.rankerScorePlan(args)
	}
	return m.viewScorePlan(args)
}

// ranker returns the project's ranker name, or an invalid-argument error of
// op naming the project's rankers.
func (m *Materializer) ranker(op, name string) (*larder.Ranker, error) {
	if r := m.project.Ranker(name); r != nil {
		return r, nil
	}
	names := make([]string, len(m.project.Rankers))
	for i, r := range m.project.Rankers {
		names[i] = r.Name
	}
	return nil, larder.Invalidf("%s: unknown ranker %q (rankers: %s)", op, name, strings.Join(names, ", "))
}

func (m *Materializer) rankerScorePlan(args larder.ScoreArgs) (*scorePlan, error) {
	r, err := m.ranker("score", args.Ranker)
	if err != nil {
		return nil, err
	}
	what := "score with ranker " + r.Name
	ce, de := r.ContextDef(), r.CandidateDef()
	if ce == nil || de == nil {
		return nil, fmt.Errorf("%s: the project was not validated: call Project.Validate first", what)
	}
	if args.KeyColumn != "" {
		return nil, larder.Invalidf("%s: key_column names the key column of a prediction view's input; a ranker's input has context_column and candidate_column", what)
	}
	ctxCol, candCol := cmpOr(args.ContextColumn, ce.Key), cmpOr(args.CandidateColumn, de.Key)
	if ctxCol == candCol {
		if args.ContextColumn == "" && args.CandidateColumn == "" {
			return nil, larder.Invalidf("%s: its context (%s) and candidate (%s) entities have the same key name, %q: name the input's two key columns with context_column and candidate_column",
				what, ce.Name, de.Name, ctxCol)
		}
		return nil, larder.Invalidf("%s: the context and candidate key columns are both %q: name two different columns", what, ctxCol)
	}
	p := &scorePlan{what: what, name: r.Name, nkeys: 2, rank: newRankPlan(r), outputs: []string{ScoreColumn}}
	p.specs = []columnSpec{
		{column: ctxCol, role: roleKey, name: ce.Name, typ: ce.KeyType},
		{column: candCol, role: roleKey, name: de.Name, typ: de.KeyType},
	}
	for j := range r.Inputs {
		in := &r.Inputs[j]
		if in.Side != larder.SideRequest {
			if !slices.Contains(p.views, in.View) {
				p.views = append(p.views, in.View)
			}
			continue
		}
		p.requests = append(p.requests, requestInput{col: j, name: in.Request, def: in.Default, hasDef: in.HasDefault})
		p.specs = append(p.specs, columnSpec{column: in.Request, role: roleRequest, name: in.Request, typ: in.RequestType(), optional: in.HasDefault})
	}
	if slices.Contains([]string{ctxCol, candCol}, ScoreColumn) {
		return nil, larder.Invalidf("%s: a key column is named %q, like the output's score column: rename it in the input and name it with context_column or candidate_column", what, ScoreColumn)
	}
	p.model = larder.ModelSpec{
		Path:     m.project.Path(r.Model),
		Input:    r.ModelInput,
		Output:   r.ModelOutput,
		Features: len(r.Inputs),
		Outputs:  1,
	}
	return p, nil
}

func (m *Materializer) viewScorePlan(args larder.ScoreArgs) (*scorePlan, error) {
	v := m.project.View(args.View)
	if v == nil {
		var names []string
		for _, v := range m.project.Views {
			if v.Kind == larder.KindPrediction {
				names = append(names, v.Name)
			}
		}
		known := "the project has no prediction view"
		if len(names) > 0 {
			known = "prediction views: " + strings.Join(names, ", ")
		}
		return nil, larder.Invalidf("score: unknown view %q (%s)", args.View, known)
	}
	what := "score with view " + v.Name
	if v.Kind != larder.KindPrediction {
		return nil, larder.Invalidf("%s: it is a %s view: only a prediction view has a model to score with", what, v.Kind)
	}
	if args.ContextColumn != "" || args.CandidateColumn != "" {
		return nil, larder.Invalidf("%s: context_column and candidate_column name the key columns of a ranker's input; a prediction view's input has key_column", what)
	}
	e := v.EntityDef()
	if v.Prediction == nil || e == nil || len(v.Features) == 0 {
		return nil, fmt.Errorf("%s: the project was not validated: call Project.Validate first", what)
	}
	keyCol := cmpOr(args.KeyColumn, e.Key)
	p := &scorePlan{what: what, name: v.Name, nkeys: 1, pred: newPredictionPlan(v.Prediction), model: m.predictionSpec(v)}
	p.specs = []columnSpec{{column: keyCol, role: roleKey, name: e.Name, typ: e.KeyType}}
	p.views = p.pred.views
	for _, f := range v.Features {
		if f.Name == keyCol {
			return nil, larder.Invalidf("%s: the key column %q has the name of a feature of the view, which names an output column: rename it in the input and name it with key_column", what, keyCol)
		}
		p.outputs = append(p.outputs, f.Name)
	}
	return p, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// scoreBatch is a batch of input rows on their way through a scoring job:
// their keys and request features, the views' rows read for them, the
// model input built from those, and the model's output.
type scoreBatch struct {
	// keys holds, per key column, the key of each row.
	keys [][]larder.Key
	// req holds, per row, the numbers of the plan's request features.
	req     []float32
	lookups []*larder.Lookup
	x, y    []float32
	// contexts holds the distinct context keys of a ranker's batch, which
	// its context lookups read, and ctxOf the index of each row's among them.
	contexts distinctKeys
	ctxOf    []int32
}

func (b *scoreBatch) len() int { return len(b.keys[0]) }

func (p *scorePlan) newBatch(size int) *scoreBatch {
	b := &scoreBatch{
		keys: make([][]larder.Key, p.nkeys),
		req:  make([]float32, 0, size*len(p.requests)),
		y:    make([]float32, size*len(p.outputs)),
	}
	for i := range b.keys {
		b.keys[i] = make([]larder.Key, 0, size)
	}
	if p.rank != nil {
		b.lookups = p.rank.newLookups()
	} else {
		b.lookups = make([]*larder.Lookup, len(p.pred.views))
		for i, v := range p.pred.views {
			b.lookups[i] = &larder.Lookup{View: v}
		}
	}
	for _, l := range b.lookups {
		l.Pin = p.pins[l.View]
	}
	return b
}

func (b *scoreBatch) reset() {
	for i := range b.keys {
		b.keys[i] = b.keys[i][:0]
	}
	b.req = b.req[:0]
}

// fill reads the views' rows for b's keys in one store round trip and
// builds b's model input, as of asOf.
func (p *scorePlan) fill(ctx context.Context, r larder.FeatureStore, b *scoreBatch, asOf time.Time) error {
	if p.rank != nil {
		return p.rank.fill(ctx, r, b, asOf)
	}
	// A prediction view's input, exactly as a run of the view builds it.
	pb := predictionBatch{keys: b.keys[0], lookups: b.lookups, x: b.x}
	err := p.pred.fill(ctx, r, &pb, asOf)
	b.x = pb.x
	return err
}

// rankPlan builds a ranker's model input for a batch of (context,
// candidate, request features) rows, each row exactly as the server's Rank
// builds a candidate's row: one lookup per distinct view of each side
// (context views first), the views' features decoded straight into numbers
// with the inputs' defaults for nulls and missing rows, the defaults again
// for a row stale at the request's instant, and the request features'
// numbers in their columns.
type rankPlan struct {
	f    int // the model's inputs
	nctx int // the context lookups, before the candidate lookups
	// per lookup: its view, the features it reads as numbers, their
	// defaults, and the model input column each fills
	views    []*larder.View
	features [][]int
	defaults [][]float32
	cols     [][]int
	// requests are the columns of the request features, in plan order.
	requests []int
}

func newRankPlan(r *larder.Ranker) *rankPlan {
	var ctxViews, candViews []*larder.View
	index := func(views *[]*larder.View, v *larder.View) int {
		if i := slices.Index(*views, v); i >= 0 {
			return i
		}
		*views = append(*views, v)
		return len(*views) - 1
	}
	lookup := make([]int, len(r.Inputs))
	for j, in := range r.Inputs {
		switch in.Side {
		case larder.SideContext:
			lookup[j] = index(&ctxViews, in.View)
		case larder.SideCandidate:
			lookup[j] = index(&candViews, in.View)
		}
	}
	p := &rankPlan{f: len(r.Inputs), nctx: len(ctxViews), views: append(ctxViews, candViews...)}
	n := len(p.views)
	p.features, p.defaults, p.cols = make([][]int, n), make([][]float32, n), make([][]int, n)
	for j, in := range r.Inputs {
		li := lookup[j]
		switch in.Side {
		case larder.SideContext:
		case larder.SideCandidate:
			li += p.nctx
		default:
			p.requests = append(p.requests, j)
			continue
		}
		p.features[li] = append(p.features[li], in.Feature)
		p.defaults[li] = append(p.defaults[li], in.Default)
		p.cols[li] = append(p.cols[li], j)
	}
	return p
}

// newLookups returns the lookups of one batch, each asking for the numbers
// of the inputs it feeds.
func (p *rankPlan) newLookups() []*larder.Lookup {
	ls := make([]*larder.Lookup, len(p.views))
	for i, v := range p.views {
		ls[i] = &larder.Lookup{View: v, Numbers: &larder.NumberRead{Features: p.features[i], Defaults: p.defaults[i]}}
	}
	return ls
}

func (p *rankPlan) fill(ctx context.Context, r larder.FeatureStore, b *scoreBatch, asOf time.Time) error {
	n := b.len()
	// A context is read once per batch, however many of its rows it has.
	b.contexts.reset()
	b.ctxOf = b.ctxOf[:0]
	for _, k := range b.keys[0] {
		b.ctxOf = append(b.ctxOf, b.contexts.add(k))
	}
	for i, l := range b.lookups {
		if i < p.nctx {
			l.Keys = b.contexts.keys
		} else {
			l.Keys = b.keys[1]
		}
	}
	if err := r.Read(ctx, b.lookups); err != nil {
		return fmt.Errorf("read the ranker's views: %w", err)
	}
	f, q := p.f, len(p.requests)
	b.x = slices.Grow(b.x[:0], n*f)[:n*f]
	for i := range n {
		row := b.x[i*f : (i+1)*f]
		for j, col := range p.requests {
			row[col] = b.req[i*q+j]
		}
	}
	for li, l := range b.lookups {
		nr, cols := l.Numbers, p.cols[li]
		k := len(cols)
		for i := range n {
			src := i
			if li < p.nctx {
				src = int(b.ctxOf[i])
			}
			vals := nr.Values[src*k : (src+1)*k]
			if l.Found[src] && l.View.Status(true, l.Rows[src].EventTime, asOf) != larder.StatusPresent {
				vals = nr.Defaults
			}
			row := b.x[i*f : (i+1)*f]
			for c, col := range cols {
				row[col] = vals[c]
			}
		}
	}
	return nil
}

// distinctKeys collects the distinct keys of a batch, in the order first
// seen.
type distinctKeys struct {
	keys  []larder.Key
	index map[larder.Key]int32
}

func (d *distinctKeys) reset() {
	d.keys = d.keys[:0]
	if d.index == nil {
		d.index = make(map[larder.Key]int32)
	}
	clear(d.index)
}

// add returns the index of k among the distinct keys, adding it when new.
func (d *distinctKeys) add(k larder.Key) int32 {
	// Rows of one context usually follow each other: skip the map then.
	if n := len(d.keys); n > 0 && d.keys[n-1] == k {
		return int32(n - 1)
	}
	if i, ok := d.index[k]; ok {
		return i
	}
	i := int32(len(d.keys))
	d.index[k] = i
	d.keys = append(d.keys, k)
	return i
}

type scoreParams struct {
	batchSize int
	asOf      time.Time
	prog      Progress
}

// score runs the pipeline of a scoring job in three stages, each on its
// own goroutine, so that each batch's store round trip overlaps with
// decoding the next batch and with scoring and writing the previous one:
// one goroutine decodes the input's rows into batches; a second reads each
// batch's views and builds its model input; the calling goroutine scores
// the batch and writes it. Batches pass from stage to stage in input order.
// It returns the rows written.
func (m *Materializer) score(ctx context.Context, plan *scorePlan, ds *dataset, model larder.Model, out *scoreOutput,
	sp scoreParams) (rows int64, err error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every channel holds every batch, so that no send blocks.
	free := make(chan *scoreBatch, scoreDepth)
	for range scoreDepth {
		free <- plan.newBatch(sp.batchSize)
	}
	decoded := make(chan *scoreBatch, scoreDepth)
	ready := make(chan *scoreBatch, scoreDepth)
	sr := &scoreReader{plan: plan, sp: sp, free: free, decoded: decoded}
	var readErr, fetchErr error
	go func() {
		defer close(decoded)
		readErr = sr.read(rctx, ds)
	}()
	go func() {
		defer close(ready)
		for b := range decoded {
			if fetchErr != nil {
				continue // drain, so that the decoder is not left blocked
			}
			if fetchErr = plan.fill(rctx, m.reader, b, sp.asOf); fetchErr != nil {
				cancel()
				continue
			}
			ready <- b
		}
	}()

	prog := sp.prog
	k := len(plan.outputs)
	for b := range ready {
		if err != nil {
			continue // drain, so that the other stages are not left blocked
		}
		n := b.len()
		if err = model.Score(ctx, b.x, n, b.y); err != nil {
			err = fmt.Errorf("score rows %d to %d: %w", rows, rows+int64(n)-1, err)
			cancel()
			continue
		}
		if err = out.write(b.keys, b.y[:n*k]); err != nil {
			cancel()
			continue
		}
		rows += int64(n)
		prog.RowsRead = rows
		if rows/progressEvery != (rows-int64(n))/progressEvery {
			m.progress(prog)
		}
		free <- b
	}
	// ready is closed once both other stages have stopped.
	for _, e := range []error{fetchErr, readErr} {
		if err == nil {
			err = e
		}
	}
	if err == nil {
		m.progress(prog)
	}
	return rows, err
}

// scoreReader decodes a scoring job's input into batches and sends each on
// decoded, taking empty batches from free.
type scoreReader struct {
	plan    *scorePlan
	sp      scoreParams
	free    <-chan *scoreBatch
	decoded chan<- *scoreBatch
	cur     *scoreBatch
}

func (sr *scoreReader) read(ctx context.Context, ds *dataset) error {
	for _, f := range ds.files {
		var base int64 // the file's rows before the row group
		for i, g := range f.pf.RowGroups() {
			if err := ctx.Err(); err != nil {
				return err
			}
			rg := &rowGroup{file: f, index: i, numRows: g.NumRows(), chunks: g.ColumnChunks()}
			if err := sr.group(ctx, rg, base); err != nil {
				return err
			}
			base += rg.numRows
		}
	}
	if sr.cur != nil && sr.cur.len() > 0 {
		sr.send()
	}
	return nil
}

// group adds the rows of one row group to batches, sending each batch that
// fills up. base is the number of rows of the file before rg, to name rows
// in errors.
func (sr *scoreReader) group(ctx context.Context, rg *rowGroup, base int64) (err error) {
	unreadable := func(err error) error {
		return fmt.Errorf("input file %s row group %d cannot be read: %w; replace or remove the file", rg.file.path, rg.index, err)
	}
	curs := make([]*cursor, len(sr.plan.specs))
	defer func() {
		for _, c := range curs {
			if c != nil {
				c.close()
			}
		}
		// A malformed page can make the Parquet library panic.
		if r := recover(); r != nil {
			err = unreadable(fmt.Errorf("malformed file: %v", r))
		}
	}()
	for i, bc := range rg.file.cols {
		if bc != nil {
			curs[i] = newCursor(bc, rg.chunks[bc.leaf])
		}
	}
	plan := sr.plan
	for r := range rg.numRows {
		if sr.cur == nil {
			select {
			case sr.cur = <-sr.free:
			case <-ctx.Done():
				return ctx.Err()
			}
			sr.cur.reset()
		}
		b := sr.cur
		for i := range plan.nkeys {
			c := curs[i]
			vi, err := c.next()
			if err != nil {
				return unreadable(err)
			}
			if vi < 0 {
				return fmt.Errorf("input file %s row %d: the %s (column %q) is null: every row needs its keys",
					rg.file.path, base+r, plan.specs[i].describe(), plan.specs[i].column)
			}
			b.keys[i] = append(b.keys[i], keyAt(&c.pv, c.bc, vi))
		}
		for j, rq := range plan.requests {
			c := curs[plan.nkeys+j]
			if c == nil {
				b.req = append(b.req, rq.def)
				continue
			}
			vi, err := c.next()
			if err != nil {
				return unreadable(err)
			}
			switch {
			case vi >= 0:
				b.req = append(b.req, requestNumber(&c.pv, c.bc.conv, vi))
			case rq.hasDef:
				b.req = append(b.req, rq.def)
			default:
				return fmt.Errorf("input file %s row %d: request feature %q (column %q) is null, and it has no default: fill it in, or give it a default in the ranker's inputs",
					rg.file.path, base+r, rq.name, plan.specs[plan.nkeys+j].column)
			}
		}
		if b.len() == sr.sp.batchSize {
			sr.send()
		}
	}
	for _, c := range curs {
		if c != nil {
			if err := c.finish(); err != nil {
				return unreadable(err)
			}
		}
	}
	return nil
}

// send hands the current batch to the next stage.
func (sr *scoreReader) send() {
	sr.decoded <- sr.cur
	sr.cur = nil
}

// keyAt returns value vi of pv, of key column bc, as a key.
func keyAt(pv *pageValues, bc *boundColumn, vi int) larder.Key {
	if bc.spec.typ == larder.TypeString {
		return larder.StringKey(string(pv.bytes(vi)))
	}
	return larder.Int64Key(int64(pv.num(bc.conv, vi)))
}

// requestNumber reads value vi of pv, of a request feature's column bound
// with conversion conv, as the number Rank makes of the same value sent in
// a request: an int64 as float32(float64(n)), a float64 rounded to float32,
// a bool as 0 or 1.
func requestNumber(pv *pageValues, conv conversion, vi int) float32 {
	u := pv.num(conv, vi)
	switch conv {
	case convInt64, convInt32, convUint32:
		return float32(float64(int64(u)))
	case convDouble, convFloatToDouble, convInt64ToDouble, convInt32ToDouble, convUint32ToDouble:
		return float32(math.Float64frombits(u))
	case convFloat, convInt32ToFloat, convDoubleToFloat, convInt64ToFloat:
		return math.Float32frombits(uint32(u))
	case convBool:
		return float32(u)
	}
	return 0
}
