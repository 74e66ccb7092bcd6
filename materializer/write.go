package materializer

import (
	"context"
	"fmt"
	"time"

	"github.com/larder-dev/larder"
)

// progressEvery is how many entities are written between progress reports
// and context checks.
const progressEvery = 4096

// abortTimeout bounds the best-effort Abort after a failure, which runs even
// when the run's context has ended.
const abortTimeout = 10 * time.Second

// emitter is a computation whose result is ready to be written.
type emitter interface {
	emit(put func(larder.Key, larder.Row) error) error
}

// putAll puts every row of comp into w, through the view's value rules,
// reporting progress, and returns the number of rows put. It stops at the
// first error (a *ValueError for a value the rules reject), or when ctx
// ends; what names the write in error messages.
func (m *Materializer) putAll(ctx context.Context, w larder.GenerationWriter, comp emitter, rules *valueRules, prog Progress, what string) (int64, error) {
	var n int64
	var buf []byte
	err := comp.emit(func(k larder.Key, row larder.Row) error {
		var in bool
		if in, buf = m.inShard(k, buf); !in {
			return nil
		}
		row, err := rules.apply(k, row)
		if err != nil {
			return err
		}
		if err := w.Put(ctx, k, row); err != nil {
			return fmt.Errorf("%s %d: %w", what, w.ID(), err)
		}
		n++
		if n%progressEvery == 0 {
			prog.EntitiesWritten = n
			m.progress(prog)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = ctx.Err()
	}
	return n, err
}

// begin starts the generation of a run of v that will hold about expected
// rows (or, for a shard, the writer of its shard): it records the run's
// as-of and, when the run read other views, their generations.
func (m *Materializer) begin(ctx context.Context, v *larder.View, expected int64, rep *Report) (larder.GenerationWriter, error) {
	run := m.run
	run.AsOf = rep.RunTime
	w, err := m.gs.Begin(ctx, v, larder.BeginOptions{ExpectedRows: expected, Run: run, Shard: m.shard})
	if err != nil {
		return nil, fmt.Errorf("begin generation: %w", err)
	}
	if len(rep.Inputs) > 0 {
		rec, ok := w.(larder.InputRecorder)
		if !ok {
			err := fmt.Errorf("the generation writer %T cannot record the generations it is computed from (larder.InputRecorder)", w)
			m.abort(ctx, w, err)
			return nil, err
		}
		rec.SetInputs(rep.Inputs)
	}
	return w, nil
}

// write puts every row of comp into a new generation of v, through v's
// value rules, and publishes it. It returns the published generation and
// the number of rows put, and counts the values nulled in rep.Nulled. On
// any error, including ctx ending, it aborts the generation and returns the
// error.
func (m *Materializer) write(ctx context.Context, v *larder.View, comp emitter, prog Progress, rep *Report) (larder.Generation, int64, error) {
	w, err := m.begin(ctx, v, prog.EntitiesTotal, rep)
	if err != nil {
		return larder.Generation{}, 0, err
	}
	rules := newValueRules(v)
	n, err := m.putAll(ctx, w, comp, rules, prog, "write generation")
	rep.Nulled = rules.report()
	if err != nil {
		m.abort(ctx, w, err)
		return larder.Generation{}, n, err
	}
	prog.EntitiesWritten = n
	m.progress(prog)
	if a, ok := comp.(*aggregate); ok && a.tiles != nil {
		if err := m.putTiles(ctx, v, w.ID(), a); err != nil {
			err = fmt.Errorf("write the tiles of generation %d: %w", w.ID(), err)
			m.abort(ctx, w, err)
			return larder.Generation{}, n, err
		}
	}
	gen, err := w.Publish(ctx)
	if err != nil {
		err = fmt.Errorf("publish generation %d: %w", w.ID(), err)
		m.abort(ctx, w, err)
		return larder.Generation{}, n, err
	}
	rules.logNulled(m.log)
	return gen, n, nil
}

// abort discards w after cause, on a context that outlives ctx's
// cancellation, and logs what it could not clean up.
func (m *Materializer) abort(ctx context.Context, w larder.GenerationWriter, cause error) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if err := w.Abort(actx); err != nil {
		m.log.Warn("could not abort generation; it stays invisible and expires",
			"generation", w.ID(), "cause", cause, "err", err)
		return
	}
	m.log.Info("aborted generation", "generation", w.ID(), "cause", cause)
}

// emitFunc is an emitter that is a function.
type emitFunc func(put func(larder.Key, larder.Row) error) error

func (f emitFunc) emit(put func(larder.Key, larder.Row) error) error { return f(put) }

// streamer is a source computation that writes while it reads: its first
// pass (prepare) tells the entities, then its second (stream) reads the
// rest and hands each row over as soon as it is complete. A generation is
// begun between the two, so that what the second pass reads goes to the
// store while the rest is read. A source file that fails only the second
// pass thus fails a run that has begun a generation, which the run aborts.
type streamer interface {
	prepare(ctx context.Context, ds *dataset, done func(*rowGroup)) error
	stream(ctx context.Context, put func(larder.Key, larder.Row) error) error
}

// sourceComputation is the computation of a view fed from its source
// (latest, aggregate and candidates views): it names the columns it needs,
// reads the source's row groups, and emits one row per entity.
type sourceComputation interface {
	emitter
	columns() []columnSpec
	read(ctx context.Context, ds *dataset, done func(*rowGroup)) error
	skippedReport() map[string]int64
	len() int
}

// runFromSource runs comp over the view's source: it checks every file's
// columns before reading any data, reads the row groups with progress, then
// writes and publishes a new generation. A streamer begins the generation
// after its first pass, and writes during its second.
func (m *Materializer) runFromSource(ctx context.Context, v *larder.View, rep Report, comp sourceComputation) (Report, error) {
	start, src := rep.RunTime, v.SourceDef()
	ds, err := openDataset(m.project, src)
	if err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	defer ds.Close()
	rep.Files = len(ds.files)
	if err := ds.bind(comp.columns()); err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	if a, ok := comp.(*aggregate); ok && a.tiles != nil {
		// A streaming view is computed as of its cutoff: the batch covers
		// the events up to it, and the stream those after it.
		c, err := m.cutoff(ctx, v, ds, rep.RunTime)
		if err != nil {
			return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
		}
		if c.Add(v.TileHorizon()).Before(rep.RunTime) {
			m.log.Warn("the source's newest event is older than the view's horizon: reads answer the values as of the cutoff, stale past max_age, until the source catches up; make max_age longer than the source lags behind the stream",
				"view", v.Name, "cutoff", c, "as_of", rep.RunTime, "horizon", v.TileHorizon())
		}
		rep.RunTime, rep.Cutoff, start = c, c, c
		a.at(v, c)
	}
	m.log.Info("materializing", "view", v.Name, "kind", v.Kind, "source", src.Name,
		"files", len(ds.files), "rows", ds.rows, "features", len(v.Features), "run_time", start)

	prog := Progress{View: v.Name, Phase: PhaseReading, RowsTotal: ds.rows}
	m.progress(prog)
	done := func(rg *rowGroup) {
		prog.RowsRead += rg.numRows
		m.progress(prog)
	}
	var rest emitter = comp
	if s, ok := comp.(streamer); ok {
		err = s.prepare(ctx, ds, done)
		rest = emitFunc(func(put func(larder.Key, larder.Row) error) error { return s.stream(ctx, put) })
	} else {
		err = comp.read(ctx, ds, done)
	}
	rep.RowsRead = prog.RowsRead
	rep.Skipped = comp.skippedReport()
	if err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}

	if comp.len() == 0 {
		m.log.Warn("no source row is usable: publishing an empty generation", "view", v.Name, "rows", rep.RowsRead, "skipped", rep.Skipped)
	}
	prog.Phase = PhaseWriting
	prog.EntitiesTotal = int64(comp.len())
	m.progress(prog)
	gen, written, err := m.write(ctx, v, rest, prog, &rep)
	rep.EntitiesWritten = written
	if err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	rep.published(gen, m.now())
	m.log.Info("materialized", "view", v.Name, "generation", gen.ID, "rows", rep.RowsRead,
		"entities", written, "skipped", rep.Skipped, "nulled", rep.Nulled, "duration", rep.Duration,
		"rows_per_second", int64(rep.RowsPerSecond))
	return rep, nil
}

func (l *latest) columns() []columnSpec     { return l.specs }
func (a *aggregate) columns() []columnSpec  { return a.specs }
func (c *candidates) columns() []columnSpec { return c.specs }
