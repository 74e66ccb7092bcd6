package materializer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/larder-dev/larder"
)

// predictionDepth is the number of batches a prediction run holds at once:
// one being read, one waiting, one being scored and written. It bounds the
// run's memory to a few batches whatever the number of entities.
const predictionDepth = 3

// predictionPlan is how a prediction view's model input is gathered: one
// lookup per distinct input view, and for each input column the lookup and
// feature it reads.
type predictionPlan struct {
	views  []*larder.View // the distinct input views, in input order
	pins   []int64        // the generation read of each view; 0: the live one
	inputs []planInput
}

// pin makes the plan read the generations in pinned.
func (p *predictionPlan) pin(pinned map[*larder.View]larder.Generation) {
	p.pins = make([]int64, len(p.views))
	for i, v := range p.views {
		p.pins[i] = pinned[v].ID
	}
}

type planInput struct {
	lookup  int // index into views
	feature int
	def     float32
}

func newPredictionPlan(pr *larder.Prediction) *predictionPlan {
	p := &predictionPlan{inputs: make([]planInput, len(pr.Inputs))}
	for i, in := range pr.Inputs {
		li := -1
		for j, v := range p.views {
			if v == in.View {
				li = j
			}
		}
		if li < 0 {
			li = len(p.views)
			p.views = append(p.views, in.View)
		}
		p.inputs[i] = planInput{lookup: li, feature: in.Feature, def: in.Default}
	}
	return p
}

// predictionBatch is one batch of entities on its way through a run: their
// keys, the rows of the input views read for them, the model input built
// from those rows, and the model's output.
type predictionBatch struct {
	keys    []larder.Key
	lookups []*larder.Lookup
	x, y    []float32
}

func (p *predictionPlan) newBatch(size, outputs int) *predictionBatch {
	b := &predictionBatch{
		keys:    make([]larder.Key, 0, size),
		lookups: make([]*larder.Lookup, len(p.views)),
		x:       make([]float32, 0, size*len(p.inputs)),
		y:       make([]float32, size*outputs),
	}
	for i, v := range p.views {
		b.lookups[i] = &larder.Lookup{View: v}
		if p.pins != nil {
			b.lookups[i].Pin = p.pins[i]
		}
	}
	return b
}

// fill reads the input views' rows for b's keys in one store round trip and
// builds the model input: one row of len(inputs) values per key, each the
// stored number, or the input's default when the entity has no row, the
// row is stale at now, or the value is null.
func (p *predictionPlan) fill(ctx context.Context, r larder.FeatureStore, b *predictionBatch, now time.Time) error {
	for _, l := range b.lookups {
		l.Keys = b.keys
	}
	if err := r.Read(ctx, b.lookups); err != nil {
		return fmt.Errorf("read input views: %w", err)
	}
	b.x = b.x[:0]
	for i := range b.keys {
		for _, in := range p.inputs {
			l := b.lookups[in.lookup]
			var x float32
			if l.Found[i] {
				x, _ = l.View.InputNumber(true, l.Rows[i].EventTime, now, l.Rows[i].Values[in.feature], in.def)
			} else {
				x = in.def
			}
			b.x = append(b.x, x)
		}
	}
	return nil
}

// runPrediction materializes a prediction view: it lists the entities of the
// live generation of the view's entities view, reads their input features
// from the input views' live generations (one store read per batch of
// Prediction.BatchSize entities), scores each batch with the view's model
// and writes every entity's K outputs as its row, with the run time as its
// event time, into a new generation that records the model's version.
// Reading the next batch overlaps with scoring and writing the current one.
//
// An input is the stored number (bools as 0 or 1) or, when the entity has no
// row in the input view, its row is stale at the run time or the value is
// null, the input's default.
//
// Before anything is written it checks that every input view has a live
// generation written with its current schema and that the model matches its
// spec (float32 [N, inputs] in, [N, features] out); it returns an error
// wrapping larder.ErrNoGeneration or larder.ErrSchemaChanged naming the input
// view, or the model loader's error, and writes nothing. It returns an error
// when Options.Models or Options.Reader is missing or the reader cannot list
// keys (larder.KeyLister), and the store's, the model's or ctx's error during
// the run, after aborting the new generation.
func (m *Materializer) runPrediction(ctx context.Context, v *larder.View, rep Report) (Report, error) {
	start := rep.RunTime
	pr := v.Prediction
	if pr == nil || pr.EntitiesView() == nil || len(v.Features) == 0 {
		return rep, fmt.Errorf("materialize %s: the project was not validated: call Project.Validate first", v.Name)
	}
	if m.models == nil || m.reader == nil {
		return rep, fmt.Errorf("materialize %s: a prediction view needs a model loader and a store reader (materializer.Options.Models and Options.Reader)", v.Name)
	}
	lister, ok := m.reader.(larder.KeyLister)
	if !ok {
		return rep, fmt.Errorf("materialize %s: the store reader %T cannot list a view's entities (larder.KeyLister)", v.Name, m.reader)
	}
	ev := pr.EntitiesView()
	plan := newPredictionPlan(pr)

	// Every view the run reads must be live, with the schema of its
	// definition, before the model is loaded or anything is written; the
	// run reads those generations to its end.
	pinned, err := m.pinInputs(ctx, v, &rep)
	if err != nil {
		return rep, err
	}
	entities, ok := pinned[ev]
	if !ok { // not a dependency: cannot happen for a validated project
		return rep, fmt.Errorf("materialize %s: entities view %q is not among its inputs", v.Name, ev.Name)
	}
	plan.pin(pinned)
	check := plan.newBatch(0, 0)
	if err := m.reader.Read(ctx, check.lookups); err != nil {
		return rep, fmt.Errorf("materialize %s: input views: %w", v.Name, err)
	}

	outputs := len(v.Features)
	spec := m.predictionSpec(v)
	model, closeModel, err := m.loadModel(spec)
	if err != nil {
		return rep, fmt.Errorf("materialize %s: load model: %w", v.Name, err)
	}
	defer closeModel()
	version := model.Version()
	batchSize := pr.BatchSize
	if batchSize <= 0 {
		batchSize = larder.DefaultPredictionBatch
	}
	m.log.Info("materializing", "view", v.Name, "kind", v.Kind, "model", spec.Path, "model_version", version,
		"entities_from", ev.Name, "entities_generation", entities.ID, "entities", entities.Rows,
		"batch_size", batchSize, "run_time", start)

	w, err := m.begin(ctx, v, entities.Rows, &rep)
	if err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	rec, ok := w.(larder.ModelRecorder)
	if !ok {
		err := fmt.Errorf("materialize %s: the generation writer %T cannot record the model version (larder.ModelRecorder)", v.Name, w)
		m.abort(ctx, w, err)
		return rep, err
	}
	rec.SetModel(version)

	prog := Progress{View: v.Name, Phase: PhaseWriting, RowsTotal: entities.Rows, EntitiesTotal: entities.Rows}
	m.progress(prog)
	rules := newValueRules(v)
	read, written, err := m.predict(ctx, lister, plan, ev, model, w, predictParams{
		batchSize: batchSize, outputs: outputs, runTime: start, prog: prog, entitiesGen: entities.ID, rules: rules,
	})
	rep.RowsRead, rep.EntitiesWritten, rep.Nulled = read, written, rules.report()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		err = fmt.Errorf("materialize %s: %w", v.Name, err)
		m.abort(ctx, w, err)
		return rep, err
	}
	if written == 0 {
		m.log.Warn("the entities view has no entity: publishing an empty generation", "view", v.Name, "entities_from", ev.Name)
	}
	gen, err := w.Publish(ctx)
	if err != nil {
		err = fmt.Errorf("materialize %s: publish generation %d: %w", v.Name, w.ID(), err)
		m.abort(ctx, w, err)
		return rep, err
	}
	rep.published(gen, m.now())
	rules.logNulled(m.log)
	m.log.Info("materialized", "view", v.Name, "generation", gen.ID, "model_version", version,
		"entities", written, "nulled", rep.Nulled, "duration", rep.Duration, "entities_per_second", int64(rep.RowsPerSecond))
	return rep, nil
}

// predictionSpec returns what the model of prediction view v must be: the
// inputs of its Prediction in, one output per feature of v out.
func (m *Materializer) predictionSpec(v *larder.View) larder.ModelSpec {
	pr := v.Prediction
	return larder.ModelSpec{
		Path:     m.project.Path(pr.Model),
		Input:    pr.ModelInput,
		Output:   pr.ModelOutput,
		Features: len(pr.Inputs),
		Outputs:  len(v.Features),
	}
}

// loadModel loads the model spec names with Options.Models. It returns the
// model and a function that closes it when it is an io.Closer (logging a
// failure), or the loader's error.
func (m *Materializer) loadModel(spec larder.ModelSpec) (larder.Model, func(), error) {
	model, err := m.models(spec)
	if err != nil {
		return nil, nil, err
	}
	closeModel := func() {
		if c, ok := model.(io.Closer); ok {
			if err := c.Close(); err != nil {
				m.log.Warn("closing the model failed", "model", spec.Path, "err", err)
			}
		}
	}
	return model, closeModel, nil
}

// liveGenerations returns the live generation of each of views, which a run
// or a job reads. It returns an error naming the first view that has none
// (wrapping larder.ErrNoGeneration and saying how to make one) or that
// cannot be read.
func (m *Materializer) liveGenerations(ctx context.Context, views []*larder.View) (map[*larder.View]larder.Generation, error) {
	live := make(map[*larder.View]larder.Generation, len(views))
	for _, d := range views {
		g, err := liveNow(ctx, m.reader, d)
		if err != nil {
			if errors.Is(err, larder.ErrNoGeneration) {
				return nil, fmt.Errorf("input view %q has no live generation: materialize it first (larder materialize %s): %w", d.Name, d.Name, err)
			}
			return nil, fmt.Errorf("input view %q: %w", d.Name, err)
		}
		live[d] = g
	}
	return live, nil
}

type predictParams struct {
	batchSize, outputs int
	runTime            time.Time
	prog               Progress
	// entitiesGen is the generation of the entities view listed.
	entitiesGen int64
	// rules are the view's value rules, which every row goes through.
	rules *valueRules
}

// predict runs the pipeline of a prediction run: a goroutine lists the
// entities and reads each batch's inputs while the calling goroutine scores
// the previous batch and puts its rows. It returns the entities read and
// the rows put.
func (m *Materializer) predict(ctx context.Context, lister larder.KeyLister, plan *predictionPlan, ev *larder.View,
	model larder.Model, w larder.GenerationWriter, pp predictParams) (read, written int64, err error) {
	// The reader runs on its own context, ended when scoring or writing
	// fails, so that it stops reading batches no one will score.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()

	free := make(chan *predictionBatch, predictionDepth)
	for range predictionDepth {
		free <- plan.newBatch(pp.batchSize, pp.outputs)
	}
	ready := make(chan *predictionBatch, predictionDepth)
	var readErr error
	go func() {
		defer close(ready)
		readErr = m.readBatches(rctx, lister, plan, ev, pp, free, ready)
	}()

	values := make([]larder.Value, pp.outputs)
	prog := pp.prog
	for b := range ready {
		if err != nil {
			continue // drain, so that the reader is not left blocked
		}
		n := len(b.keys)
		read += int64(n)
		if err = model.Score(ctx, b.x, n, b.y); err != nil {
			err = fmt.Errorf("score %d entities: %w", n, err)
			cancel()
			continue
		}
		for i, k := range b.keys {
			for o := range values {
				values[o] = larder.Float32Value(b.y[i*pp.outputs+o])
			}
			var row larder.Row
			if row, err = pp.rules.apply(k, larder.Row{EventTime: pp.runTime, Values: values}); err != nil {
				cancel()
				break
			}
			if err = w.Put(ctx, k, row); err != nil {
				err = fmt.Errorf("write generation %d: %w", w.ID(), err)
				cancel()
				break
			}
			written++
		}
		prog.RowsRead, prog.EntitiesWritten = read, written
		if written/progressEvery != (written-int64(n))/progressEvery {
			m.progress(prog)
		}
		free <- b
	}
	if err == nil {
		err = readErr
	}
	if err == nil {
		m.progress(prog)
	}
	return read, written, err
}

// readBatches lists the entities of ev, cuts them into batches, reads each
// batch's inputs and sends it on ready, taking empty batches from free.
func (m *Materializer) readBatches(ctx context.Context, lister larder.KeyLister, plan *predictionPlan, ev *larder.View,
	pp predictParams, free <-chan *predictionBatch, ready chan<- *predictionBatch) error {
	var cur *predictionBatch
	var sendErr error // an error of send, returned by Keys as is
	send := func() error {
		if err := plan.fill(ctx, m.reader, cur, pp.runTime); err != nil {
			sendErr = err
			return err
		}
		select {
		case ready <- cur:
		case <-ctx.Done():
			sendErr = ctx.Err()
			return sendErr
		}
		cur = nil
		return nil
	}
	var buf []byte
	err := lister.Keys(ctx, ev, pp.entitiesGen, func(keys []larder.Key) error {
		if m.shard != nil {
			// Only the entities of the run's shard are scored.
			kept := keys[:0]
			for _, k := range keys {
				var in bool
				if in, buf = m.inShard(k, buf); in {
					kept = append(kept, k)
				}
			}
			keys = kept
		}
		for len(keys) > 0 {
			if cur == nil {
				select {
				case cur = <-free:
				case <-ctx.Done():
					return ctx.Err()
				}
				cur.keys = cur.keys[:0]
			}
			take := min(len(keys), pp.batchSize-len(cur.keys))
			cur.keys = append(cur.keys, keys[:take]...)
			keys = keys[take:]
			if len(cur.keys) == pp.batchSize {
				if err := send(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	switch {
	case sendErr != nil:
		return sendErr
	case err != nil:
		return fmt.Errorf("list the entities of %s: %w", ev.Name, err)
	}
	if cur != nil && len(cur.keys) > 0 {
		return send()
	}
	return nil
}
