package materializer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/larder-dev/larder"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// RunIncremental brings the live generation of a latest view up to date
// with the source rows newer than the view's watermark, instead of
// computing a new generation: it is the cheap run between full runs, for
// sources that grow by new files (or new row groups).
//
// The watermark is the newest event time written into the live generation
// by its full run and the incremental runs published since. A row group
// whose event-time statistics (in its file's footer) show no event time at
// or after the watermark is skipped without reading any of its data, and a
// file whose row groups are all skipped is not read at all; a row group
// without statistics is read. Of the rows read, those with an event time
// from the watermark to the run time count as for Run (the newest row of
// each entity, ties to the row read last); older rows are skipped
// (SkipBeforeWatermark), as are the rows Run skips. Each entity's row is
// then written into the live generation only when it is not older than the
// row stored for the entity (write-if-newer), and publishing moves the
// watermark forward. Rows at exactly the watermark are read again, which
// rewrites what the previous run wrote.
//
// A source row older than the watermark that arrives after it was set (a
// late event) is not used by incremental runs; the next full run uses it.
// Report.RowGroupsSkipped, FilesSkipped and OlderRows say what the run
// spared and left out.
//
// RunIncremental returns an error wrapping larder.ErrNotFound for an
// unknown view; an error for a view of another kind than latest, and for a
// store that is not a larder.IncrementalStore; an error wrapping
// larder.ErrNoGeneration when the view has never been published (a full
// run must come first), larder.ErrSchemaChanged when the live generation
// has another schema than the view; a *ColumnError, or the error of the
// file, the store or ctx otherwise. On any error the writer is aborted (best
// effort) and the watermark stays where it was; rows already flushed into
// the live generation stay too, each of them newer than the row it
// replaced.
func (m *Materializer) RunIncremental(ctx context.Context, viewName string) (Report, error) {
	rep := m.startReport(viewName)
	rep.Incremental = true
	start := rep.RunTime
	if m.shard != nil {
		return rep, fmt.Errorf("materialize %s: an incremental run writes into the live generation, and cannot write a shard", viewName)
	}
	v, err := m.view(viewName)
	if err != nil {
		return rep, err
	}
	if v.Kind != larder.KindLatest {
		return rep, fmt.Errorf("materialize %s: incremental runs are for latest views, and %s is of kind %s: run a full materialization (`larder materialize %s`)",
			v.Name, v.Name, v.Kind, v.Name)
	}
	is, ok := m.gs.(larder.IncrementalStore)
	if !ok {
		return rep, fmt.Errorf("materialize %s: incremental run: the store (%T) cannot write into a live generation: run a full materialization", v.Name, m.gs)
	}
	src, ent := v.SourceDef(), v.EntityDef()
	if src == nil || ent == nil {
		return rep, fmt.Errorf("materialize %s: the project was not validated: call Project.Validate first", v.Name)
	}

	wm, err := is.Watermark(ctx, v)
	if errors.Is(err, larder.ErrNoGeneration) {
		return rep, &advisedError{
			msg: fmt.Sprintf("materialize %s: incremental run: the view has no live generation to bring up to date: run a full `larder materialize %s` first", v.Name, v.Name),
			err: err,
		}
	}
	if err != nil {
		return rep, fmt.Errorf("materialize %s: incremental run: %w", v.Name, err)
	}
	rep.Watermark = wm

	ds, err := openDataset(m.project, src)
	if err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	defer ds.Close()

	comp := newLatest(v, ent, start)
	if !wm.IsZero() {
		comp.since = wm.UnixNano()
	}
	if err := ds.bind(comp.specs); err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	rows := ds.pruneBefore(comp.since)
	for _, f := range ds.files {
		n := f.skipped()
		rep.RowGroupsSkipped += n
		if n > 0 && n == len(f.skip) {
			rep.FilesSkipped++
		} else {
			rep.Files++
		}
	}
	m.log.Info("materializing incrementally", "view", v.Name, "kind", v.Kind, "source", src.Name,
		"watermark", wm, "files", rep.Files, "files_skipped", rep.FilesSkipped,
		"row_groups_skipped", rep.RowGroupsSkipped, "rows", rows, "run_time", start)

	prog := Progress{View: v.Name, Phase: PhaseReading, RowsTotal: rows}
	m.progress(prog)
	err = comp.read(ctx, ds, func(rg *rowGroup) {
		prog.RowsRead += rg.numRows
		m.progress(prog)
	})
	rep.RowsRead = prog.RowsRead
	rep.Skipped = comp.skippedReport()
	if err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}

	prog.Phase = PhaseWriting
	prog.EntitiesTotal = int64(comp.len())
	m.progress(prog)
	rules := newValueRules(v)
	gen, put, older, err := m.writeIncremental(ctx, is, v, comp, rules, prog)
	rep.EntitiesWritten, rep.OlderRows = put-older, older
	rep.Nulled = rules.report()
	if err != nil {
		return rep, fmt.Errorf("materialize %s: %w", v.Name, err)
	}
	rep.published(gen, m.now())
	rules.logNulled(m.log)
	m.log.Info("materialized incrementally", "view", v.Name, "generation", gen.ID, "rows", rep.RowsRead,
		"entities", rep.EntitiesWritten, "older_rows", older, "skipped", rep.Skipped, "nulled", rep.Nulled,
		"row_groups_skipped", rep.RowGroupsSkipped, "duration", rep.Duration)
	return rep, nil
}

// advisedError is an error whose message says it all, wrapping the error
// it replaces (for errors.Is) without repeating that error's own advice.
type advisedError struct {
	msg string
	err error
}

func (e *advisedError) Error() string { return e.msg }
func (e *advisedError) Unwrap() error { return e.err }

// olderCounter is a writer that reports the rows write-if-newer left out
// (the store's incremental writer does).
type olderCounter interface {
	OlderRows() int64
}

// writeIncremental puts every row of comp into the live generation of v,
// through rules, and publishes the change. It returns the generation, the
// number of rows put and the number of those the store left out as older
// than the stored ones. On any error, including ctx ending, it aborts the
// writer and returns the error.
func (m *Materializer) writeIncremental(ctx context.Context, is larder.IncrementalStore, v *larder.View, comp emitter, rules *valueRules, prog Progress) (gen larder.Generation, put, older int64, err error) {
	w, err := is.BeginIncremental(ctx, v)
	if err != nil {
		return larder.Generation{}, 0, 0, fmt.Errorf("begin incremental write: %w", err)
	}
	put, err = m.putAll(ctx, w, comp, rules, prog, "incremental write into generation")
	if err == nil {
		prog.EntitiesWritten = put
		m.progress(prog)
		if gen, err = w.Publish(ctx); err != nil {
			err = fmt.Errorf("publish incremental write into generation %d: %w", w.ID(), err)
		}
	}
	if oc, ok := w.(olderCounter); ok {
		older = oc.OlderRows()
	}
	if err != nil {
		m.abortIncremental(ctx, w, err)
		return larder.Generation{}, put, older, err
	}
	return gen, put, older, nil
}

// abortIncremental stops w after cause, on a context that outlives ctx's
// cancellation, and logs what it could not clean up.
func (m *Materializer) abortIncremental(ctx context.Context, w larder.GenerationWriter, cause error) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if err := w.Abort(actx); err != nil {
		m.log.Warn("could not abort the incremental write; the watermark stays", "generation", w.ID(), "cause", cause, "err", err)
		return
	}
	m.log.Info("aborted the incremental write; the watermark stays", "generation", w.ID(), "cause", cause)
}

// pruneBefore marks for skipping every row group whose event-time column
// (bound as specTime) holds no value at or after since, in Unix
// nanoseconds, by the statistics in the files' footers: no data is read. A
// row group without usable statistics is kept. It returns the number of
// rows of the row groups kept.
func (ds *dataset) pruneBefore(since int64) int64 {
	var rows int64
	for _, f := range ds.files {
		groups := f.pf.Metadata().RowGroups
		f.skip = make([]bool, len(f.pf.RowGroups()))
		for i, g := range f.pf.RowGroups() {
			if since != math.MinInt64 && i < len(groups) {
				newest, ok := maxEventTime(&groups[i], f.cols[specTime])
				f.skip[i] = ok && newest < since
			}
			if !f.skip[i] {
				rows += g.NumRows()
			}
		}
	}
	return rows
}

// skipped returns the number of row groups of f marked for skipping.
func (f *sourceFile) skipped() int {
	n := 0
	for _, s := range f.skip {
		if s {
			n++
		}
	}
	return n
}

// maxEventTime returns the newest event time of a row group, in Unix
// nanoseconds, from the statistics of its event-time column, and false when
// the row group records none (or none that can be decoded).
func maxEventTime(g *format.RowGroup, bc *boundColumn) (int64, bool) {
	if bc.leaf >= len(g.Columns) {
		return 0, false
	}
	st := &g.Columns[bc.leaf].MetaData.Statistics
	b := st.MaxValue
	if b == nil {
		// The deprecated field holds the maximum by signed comparison,
		// which is the order of timestamps and dates.
		b = st.Max
	}
	var v int64
	switch {
	case bc.kind == parquet.Int64 && len(b) == 8:
		v = int64(binary.LittleEndian.Uint64(b))
	case bc.kind == parquet.Int32 && len(b) == 4:
		v = int64(int32(binary.LittleEndian.Uint32(b)))
	default:
		return 0, false
	}
	return toNanos(v, bc.nanos), true
}
