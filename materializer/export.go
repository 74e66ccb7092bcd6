package materializer

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/larder-dev/larder"
	"github.com/parquet-go/parquet-go"
)

// PhaseExporting is the phase of a training-set export (Export), as
// reported in Progress.Phase.
const PhaseExporting = "exporting"

// DefaultExportChunkRows is the number of spine rows an export joins at
// once, when ExportArgs.ChunkRows is 0.
const DefaultExportChunkRows = 1 << 20

// The reasons an exported value is null (or, for a ranker's input, its
// default), as counted in ExportReport.Nulls.
const (
	NullNoKey   = "no key"    // the spine row's key is null
	NullMissing = "missing"   // no row of the view as of the spine row's time
	NullStale   = "stale"     // the row is older than the view's max age
	NullValue   = "null"      // the row holds a null
	NullRules   = "rules"     // the view's value rules null it
	NullRequest = "defaulted" // a request feature is null or its column absent
)

// ExportArgs says what Export reads and writes.
type ExportArgs struct {
	// Spine is the Parquet file, folder or glob of the rows to export (a
	// relative path is resolved against the project folder). Every file
	// has the same columns.
	Spine string
	// Output is the Parquet file written; it is replaced once complete.
	Output string
	// Timestamp names the spine's time column: each row's features are
	// those as of it.
	Timestamp string
	// Features are "view:feature" and "view:*" references to the features
	// exported, of latest, aggregate and prediction views.
	Features []string
	// Ranker, when set, adds the ranker's model input, as Rank builds it:
	// one float32 column per input, named by InputColumn.
	Ranker string
	// KeyColumns maps an entity's name to the spine column holding its
	// key; by default the entity's key name.
	KeyColumns map[string]string
	// ContextColumn and CandidateColumn name the key columns of a ranker's
	// context and candidate entities, by default their KeyColumns.
	ContextColumn, CandidateColumn string
	// ChunkRows bounds the spine rows joined at once, and so the memory an
	// export holds (DefaultExportChunkRows when 0). Each chunk of the spine
	// reads the sources once.
	ChunkRows int
}

// ExportReport describes a finished export.
type ExportReport struct {
	// SpineRows is the number of rows read from the spine and written.
	SpineRows int64
	// SourceRows counts the source rows read, over every chunk; Chunks is
	// the number of chunks the spine was joined in.
	SourceRows int64
	Chunks     int
	// Columns are the columns added to the spine's, in order; InputColumns
	// are those of them that hold a ranker's model input.
	Columns, InputColumns []string
	// Nulls counts, by added column, the rows whose value is null (for a
	// ranker's input, its default) and why (NullNoKey, NullMissing,
	// NullStale, NullValue, NullRules, NullRequest). Columns without any
	// are absent.
	Nulls    map[string]map[string]int64
	Duration time.Duration
	// RowsPerSecond is SpineRows over Duration.
	RowsPerSecond float64
}

// exportPlan is what an export reads and writes.
type exportPlan struct {
	// specs are the spine columns read: the timestamp, the key columns,
	// then the ranker's request features.
	specs []columnSpec
	// keyCols are the spine key columns, by index into specs minus one.
	keyCols []string
	joins   []*exportJoin
	// feats are the exported features, in column order.
	feats []exportFeature
	// status are the joins with a status column, in column order after
	// the features.
	status []*exportJoin
	ranker *larder.Ranker
	// per ranker input: its join (nil for a request feature) and, for a
	// request feature, its index among the request specs.
	rankJoins []*exportJoin
	rankReq   []int
	nreq      int
	columns   []string
}

// exportFeature is one exported feature: feature f of join j.
type exportFeature struct {
	j *exportJoin
	f int
}

// exportJoin is a view joined on a spine key column: per spine row of the
// current chunk, whether the view has a row as of the spine row's time,
// that row's event time and where its values are.
type exportJoin struct {
	view   *larder.View
	keyCol int
	// id numbers the join among the plan's; exported is set when some of
	// its features are exported (not only read as a ranker's inputs).
	id       int
	exported bool
	// inputs are the joins a prediction view's model reads, by input view;
	// entities is the join of the view whose entities it scores.
	inputs   map[*larder.View]*exportJoin
	entities *exportJoin

	found []bool
	times []int64
	// the values: latest (winner index into lat.feats), aggregate (slot of
	// agg), prediction (row index into pred)
	pos  []int32
	lat  *latest
	agg  *aggShard
	aggf []aggFeature
	pred []featureValues
	// rules are the view's value rules, and the row handed to them.
	rules *valueRules
	vals  []larder.Value
}

// Export writes a training set: for every row of a spine (entity keys, a
// timestamp and any other columns, such as labels), the spine row's columns
// followed by the features asked for, each as of the row's timestamp t,
// computed from the views' sources by the same code a run uses:
//
//   - a latest view's features are those of the source row with the newest
//     event time at or before t (of equal times, the row read last), null
//     when there is none or when that row is older than the view's max age
//     at t; a "view:status" column says which (present, stale, missing);
//   - an aggregate view's windows hold the events in (t − w, t];
//   - a prediction view's outputs are its model's scores of its inputs as
//     of t (each input's default when missing, null or stale at t), for the
//     entities its entities view has as of t;
//   - with a ranker, its model input is built as Rank builds a candidate's
//     row at t: in the ranker's input order, the context's and the
//     candidate's values as of t, the inputs' defaults for missing, null or
//     stale values, and the spine's request feature columns, whose nulls
//     (or absent columns) take the features' defaults.
//
// Each view is joined on the spine column of its entity's key (see
// ExportArgs.KeyColumns); a spine row with a null key gets no values.
// The values for a spine row whose timestamp equals a run's as-of are those
// the run stores (value rules included). A null timestamp fails the export,
// naming the row.
//
// The spine is joined in chunks of ChunkRows rows: each chunk reads the
// views' sources once, their row groups decoded in parallel, and memory
// holds one chunk's keys and values and the sources' batches in flight,
// whatever the number of rows. The output is written to a temporary file
// and renamed over args.Output when complete.
func (m *Materializer) Export(ctx context.Context, args ExportArgs) (ExportReport, error) {
	start := m.now()
	var rep ExportReport
	plan, err := m.exportPlan(args)
	if err != nil {
		return rep, err
	}
	rep.Columns = plan.columns
	if plan.ranker != nil {
		rep.InputColumns = plan.columns[len(plan.feats)+len(plan.status):]
	}
	spine, err := openFiles(m.project.Path(args.Spine), "check the spine path")
	if err != nil {
		return rep, fmt.Errorf("export: spine: %w", err)
	}
	defer spine.Close()
	spine.input = true
	if err := spine.bind(plan.specs); err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	schema := spine.files[0].pf.Schema()
	for _, f := range spine.files[1:] {
		if !parquet.EqualNodes(schema, f.pf.Schema()) {
			return rep, larder.Invalidf("export: spine file %s has other columns than %s: every spine file must have the same columns", f.path, spine.files[0].path)
		}
	}
	if err := checkOutput(args.Output); err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	out, err := createExportOutput(args.Output, schema, plan)
	if err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	defer out.discard()

	chunkRows := int64(cmp.Or(args.ChunkRows, DefaultExportChunkRows))
	rgs := spine.rowGroups()
	nulls := make([]map[string]int64, len(plan.columns))
	for i := range nulls {
		nulls[i] = make(map[string]int64)
	}
	for lo := 0; lo < len(rgs); {
		hi, rows := lo, int64(0)
		for hi < len(rgs) && (hi == lo || rows+rgs[hi].numRows <= chunkRows) {
			rows += rgs[hi].numRows
			hi++
		}
		ch, err := readSpine(ctx, rgs[lo:hi], plan)
		if err != nil {
			return rep, err
		}
		ch.base = rep.SpineRows
		for _, j := range plan.joins {
			n, err := m.join(ctx, j, ch)
			if err != nil {
				return rep, fmt.Errorf("export: view %s: %w", j.view.Name, err)
			}
			rep.SourceRows += n
		}
		written := func(r int) {
			m.progress(Progress{View: "export", Phase: PhaseExporting, RowsRead: rep.SpineRows + int64(r), RowsTotal: spine.rows})
		}
		if err := out.write(ctx, ch, plan, nulls, written); err != nil {
			return rep, fmt.Errorf("export: %w", err)
		}
		rep.SpineRows += int64(ch.n)
		rep.Chunks++
		lo = hi
	}
	if err := out.commit(); err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	rep.Nulls = make(map[string]map[string]int64)
	for i, c := range plan.columns {
		if len(nulls[i]) > 0 {
			rep.Nulls[c] = nulls[i]
		}
	}
	rep.Duration = m.now().Sub(start)
	if s := rep.Duration.Seconds(); s > 0 {
		rep.RowsPerSecond = float64(rep.SpineRows) / s
	}
	return rep, nil
}

// exportPlan checks args and returns the plan of the export, or a
// *larder.InvalidError saying what is wrong with them.
func (m *Materializer) exportPlan(args ExportArgs) (*exportPlan, error) {
	switch {
	case args.Spine == "":
		return nil, larder.Invalidf("export: no spine: name the Parquet file, folder or glob of the rows to export")
	case args.Output == "":
		return nil, larder.Invalidf("export: no output: name the Parquet file to write")
	case args.Timestamp == "":
		return nil, larder.Invalidf("export: no timestamp column: name the spine column holding each row's time")
	case len(args.Features) == 0 && args.Ranker == "":
		return nil, larder.Invalidf("export: nothing to export: name features (view:feature or view:*) or a ranker")
	case args.ChunkRows < 0:
		return nil, larder.Invalidf("export: the chunk size must not be negative, got %d", args.ChunkRows)
	}
	p := &exportPlan{specs: []columnSpec{{column: args.Timestamp, role: roleEventTime}}}
	keyTypes := map[string]larder.Type{}
	keyCol := func(e *larder.Entity, col string) (int, error) {
		if col == "" {
			col = cmp.Or(args.KeyColumns[e.Name], e.Key)
		}
		if col == args.Timestamp {
			return 0, larder.Invalidf("export: the key column of entity %s, %q, is the timestamp column", e.Name, col)
		}
		if t, ok := keyTypes[col]; ok {
			if t != e.KeyType {
				return 0, larder.Invalidf("export: spine column %q holds the keys of entities of different key types (%s is %s): name the key columns with --key entity=column", col, e.Name, e.KeyType)
			}
			return slices.Index(p.keyCols, col), nil
		}
		keyTypes[col] = e.KeyType
		p.keyCols = append(p.keyCols, col)
		p.specs = append(p.specs, columnSpec{column: col, role: roleKey, name: e.Name, typ: e.KeyType})
		return len(p.keyCols) - 1, nil
	}
	joins := map[[2]any]*exportJoin{}
	var join func(v *larder.View, kc int) (*exportJoin, error)
	join = func(v *larder.View, kc int) (*exportJoin, error) {
		if j := joins[[2]any{v, kc}]; j != nil {
			return j, nil
		}
		j := &exportJoin{view: v, keyCol: kc, rules: newValueRules(v), id: len(p.joins)}
		switch v.Kind {
		case larder.KindLatest, larder.KindAggregate:
			if v.SourceDef() == nil || v.EntityDef() == nil {
				return nil, fmt.Errorf("export: view %s: the project was not validated: call Project.Validate first", v.Name)
			}
		case larder.KindPrediction:
			if v.Prediction == nil || v.Prediction.EntitiesView() == nil {
				return nil, fmt.Errorf("export: view %s: the project was not validated: call Project.Validate first", v.Name)
			}
			if m.models == nil {
				return nil, fmt.Errorf("export: view %s: a prediction view needs a model loader (materializer.Options.Models)", v.Name)
			}
			j.inputs = map[*larder.View]*exportJoin{}
			for _, in := range v.Prediction.Inputs {
				ij, err := join(in.View, kc)
				if err != nil {
					return nil, err
				}
				j.inputs[in.View] = ij
			}
			ej, err := join(v.Prediction.EntitiesView(), kc)
			if err != nil {
				return nil, err
			}
			j.entities = ej
		default:
			return nil, larder.Invalidf("export: view %s is a %s view: only latest, aggregate and prediction views can be exported", v.Name, v.Kind)
		}
		joins[[2]any{v, kc}] = j
		p.joins = append(p.joins, j)
		return j, nil
	}
	statusOf := map[*exportJoin]bool{}
	for _, ref := range args.Features {
		name, feat, ok := strings.Cut(ref, ":")
		if !ok || name == "" || feat == "" {
			return nil, larder.Invalidf("export: feature %q: want view:feature or view:*", ref)
		}
		v := m.project.View(name)
		if v == nil {
			return nil, larder.Invalidf("export: feature %q: no view %q", ref, name)
		}
		e := v.EntityDef()
		if e == nil {
			return nil, fmt.Errorf("export: view %s: the project was not validated: call Project.Validate first", v.Name)
		}
		kc, err := keyCol(e, "")
		if err != nil {
			return nil, err
		}
		j, err := join(v, kc)
		if err != nil {
			return nil, err
		}
		var fs []int
		if feat == "*" {
			for i, f := range v.Features {
				if exportable(f.Type) {
					fs = append(fs, i)
				}
			}
		} else {
			i := v.FeatureIndex(feat)
			if i < 0 {
				return nil, larder.Invalidf("export: feature %q: view %s has no feature %q", ref, name, feat)
			}
			if !exportable(v.Features[i].Type) {
				return nil, larder.Invalidf("export: feature %q is a %s: only numbers, bools, strings and bytes can be exported", ref, v.Features[i].Type)
			}
			fs = []int{i}
		}
		j.exported = true
		for _, f := range fs {
			p.feats = append(p.feats, exportFeature{j: j, f: f})
			p.columns = append(p.columns, v.Name+":"+v.Features[f].Name)
		}
		if !statusOf[j] {
			statusOf[j] = true
			p.status = append(p.status, j)
		}
	}
	for _, j := range p.status {
		p.columns = append(p.columns, j.view.Name+":status")
	}
	if args.Ranker != "" {
		r := m.project.Ranker(args.Ranker)
		if r == nil {
			names := make([]string, len(m.project.Rankers))
			for i, r := range m.project.Rankers {
				names[i] = r.Name
			}
			return nil, larder.Invalidf("export: unknown ranker %q (rankers: %s)", args.Ranker, strings.Join(names, ", "))
		}
		ce, de := r.ContextDef(), r.CandidateDef()
		if ce == nil || de == nil {
			return nil, fmt.Errorf("export: ranker %s: the project was not validated: call Project.Validate first", r.Name)
		}
		ckc, err := keyCol(ce, args.ContextColumn)
		if err != nil {
			return nil, err
		}
		dkc, err := keyCol(de, args.CandidateColumn)
		if err != nil {
			return nil, err
		}
		if ckc == dkc {
			return nil, larder.Invalidf("export: ranker %s: the context and candidate keys are both in column %q: name them with --context-column and --candidate-column", r.Name, p.keyCols[ckc])
		}
		p.ranker = r
		for i := range r.Inputs {
			in := &r.Inputs[i]
			switch in.Side {
			case larder.SideContext, larder.SideCandidate:
				kc := ckc
				if in.Side == larder.SideCandidate {
					kc = dkc
				}
				j, err := join(in.View, kc)
				if err != nil {
					return nil, err
				}
				p.rankJoins = append(p.rankJoins, j)
				p.rankReq = append(p.rankReq, -1)
			default:
				p.rankJoins = append(p.rankJoins, nil)
				p.rankReq = append(p.rankReq, p.nreq)
				p.nreq++
				p.specs = append(p.specs, columnSpec{column: in.Request, role: roleRequest, name: in.Request, typ: in.RequestType(), optional: in.HasDefault})
			}
			p.columns = append(p.columns, InputColumn(r.Name, in.Ref))
		}
	}
	seen := map[string]bool{}
	for _, c := range p.columns {
		if seen[c] {
			return nil, larder.Invalidf("export: the output would have two columns named %q: name each feature once", c)
		}
		seen[c] = true
	}
	return p, nil
}

// InputColumn returns the name of the column of an export that holds the
// input ref of ranker: "ranker:ref", such as "home_feed:user_profile:age".
func InputColumn(ranker, ref string) string { return ranker + ":" + ref }

// exportable reports whether features of type t can be exported.
func exportable(t larder.Type) bool {
	switch t {
	case larder.TypeInt64, larder.TypeFloat64, larder.TypeFloat32, larder.TypeBool, larder.TypeString, larder.TypeBytes:
		return true
	}
	return false
}

// spineChunk is a chunk of the spine's rows: their times, keys and request
// features, and, by key column, the index that finds a key's rows.
type spineChunk struct {
	// base is the number of spine rows before the chunk's.
	base   int64
	groups []*rowGroup
	n      int
	times  []int64
	keys   [][]larder.Key
	hasKey [][]bool
	req    [][]float32 // by request feature
	hasReq [][]bool
	index  []*spineIndex
	maxT   int64
}

// readSpine reads the timestamps, keys and request features of the rows of
// rgs, and indexes each key column.
func readSpine(ctx context.Context, rgs []*rowGroup, plan *exportPlan) (*spineChunk, error) {
	nk := len(plan.keyCols)
	ch := &spineChunk{groups: rgs, keys: make([][]larder.Key, nk), hasKey: make([][]bool, nk), maxT: math.MinInt64,
		req: make([][]float32, plan.nreq), hasReq: make([][]bool, plan.nreq)}
	for _, rg := range rgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := recoverRead(func() error { return ch.readGroup(rg, plan) })
		if err != nil {
			return nil, fmt.Errorf("export: spine %s row group %d cannot be read: %w", rg.file.path, rg.index, err)
		}
	}
	ch.index = make([]*spineIndex, nk)
	for c := range nk {
		ch.index[c] = newSpineIndex(ch.keys[c], ch.hasKey[c], ch.times)
	}
	return ch, nil
}

func (ch *spineChunk) readGroup(rg *rowGroup, plan *exportPlan) error {
	curs := make([]*cursor, len(plan.specs))
	for i := range plan.specs {
		if rg.file.cols[i] == nil {
			continue // an optional request feature the file lacks
		}
		bc, chunk := rg.chunk(i)
		curs[i] = newCursor(bc, chunk)
		defer curs[i].close()
	}
	nk := len(plan.keyCols)
	for r := range int(rg.numRows) {
		tvi, err := curs[0].next()
		if err != nil {
			return err
		}
		if tvi < 0 {
			return larder.Invalidf("row %d has a null timestamp (column %q): every spine row needs its time", r, plan.specs[0].column)
		}
		t := curs[0].pv.eventTime(curs[0].bc, tvi)
		ch.times = append(ch.times, t)
		ch.maxT = max(ch.maxT, t)
		for c := range nk {
			cur := curs[1+c]
			vi, err := cur.next()
			if err != nil {
				return err
			}
			if vi < 0 {
				ch.keys[c] = append(ch.keys[c], larder.Key{})
				ch.hasKey[c] = append(ch.hasKey[c], false)
				continue
			}
			ch.keys[c] = append(ch.keys[c], keyAt(&cur.pv, cur.bc, vi))
			ch.hasKey[c] = append(ch.hasKey[c], true)
		}
		for q := range plan.nreq {
			cur := curs[1+nk+q]
			vi := -1
			if cur != nil {
				if vi, err = cur.next(); err != nil {
					return err
				}
			}
			if vi < 0 {
				ch.req[q] = append(ch.req[q], 0)
				ch.hasReq[q] = append(ch.hasReq[q], false)
				continue
			}
			ch.req[q] = append(ch.req[q], requestNumber(&cur.pv, cur.bc.conv, vi))
			ch.hasReq[q] = append(ch.hasReq[q], true)
		}
	}
	for _, c := range curs {
		if c != nil {
			if err := c.finish(); err != nil {
				return err
			}
		}
	}
	ch.n += int(rg.numRows)
	return nil
}

// spineIndex finds the spine rows of a key: the rows with a key, sorted by
// key then time then position, in runs of one key each.
type spineIndex struct {
	order []int32 // spine rows
	times []int64 // their times, in the same order
	start []int32 // by run, its first index in order; one more at the end
	ints  map[int64]int32
	strs  map[string]int32
}

func newSpineIndex(keys []larder.Key, has []bool, times []int64) *spineIndex {
	x := &spineIndex{}
	for i := range keys {
		if has[i] {
			x.order = append(x.order, int32(i))
		}
	}
	str := len(x.order) > 0 && keys[x.order[0]].Type() == larder.TypeString
	if str {
		slices.SortFunc(x.order, func(a, b int32) int {
			if c := strings.Compare(keys[a].Str(), keys[b].Str()); c != 0 {
				return c
			}
			return cmp.Or(cmp.Compare(times[a], times[b]), cmp.Compare(a, b))
		})
	} else {
		ints := make([]int64, len(keys))
		for i := range keys {
			ints[i] = keys[i].Int64()
		}
		slices.SortFunc(x.order, func(a, b int32) int {
			return cmp.Or(cmp.Compare(ints[a], ints[b]), cmp.Compare(times[a], times[b]), cmp.Compare(a, b))
		})
	}
	x.times = make([]int64, len(x.order))
	if str {
		x.strs = make(map[string]int32)
	} else {
		x.ints = make(map[int64]int32)
	}
	for i, r := range x.order {
		x.times[i] = times[r]
		if i > 0 && keys[x.order[i-1]] == keys[r] {
			continue
		}
		run := int32(len(x.start))
		x.start = append(x.start, int32(i))
		if str {
			x.strs[keys[r].Str()] = run
		} else {
			x.ints[keys[r].Int64()] = run
		}
	}
	x.start = append(x.start, int32(len(x.order)))
	return x
}

// runOfInt and runOfBytes return the run of a key, and false when the
// chunk has no row of it.
func (x *spineIndex) runOfInt(k int64) (int32, bool) {
	r, ok := x.ints[k]
	return r, ok
}

func (x *spineIndex) runOfBytes(b []byte) (int32, bool) {
	r, ok := x.strs[string(b)]
	return r, ok
}

// firstAtOrAfter returns the first index of run whose time is at or after
// t, the run's end when none is.
func (x *spineIndex) firstAtOrAfter(run int32, t int64) int {
	lo, hi := int(x.start[run]), int(x.start[run+1])
	return lo + sort.Search(hi-lo, func(i int) bool { return x.times[lo+i] >= t })
}

// join computes j for the rows of ch, and returns the source rows it read.
func (m *Materializer) join(ctx context.Context, j *exportJoin, ch *spineChunk) (int64, error) {
	j.found = grow(j.found[:0], ch.n, false)
	j.times = grow(j.times[:0], ch.n, 0)
	j.pos = grow(j.pos[:0], ch.n, -1)
	switch j.view.Kind {
	case larder.KindLatest:
		return m.joinLatest(ctx, j, ch)
	case larder.KindAggregate:
		return m.joinAggregate(ctx, j, ch)
	}
	return 0, m.joinPrediction(ctx, j, ch)
}

// sourceProgress returns the function that reports the progress of an
// export reading the source of v, ds, after each row group.
func (m *Materializer) sourceProgress(v *larder.View, ds *dataset) func(*rowGroup) {
	var read int64
	return func(rg *rowGroup) {
		read += rg.numRows
		m.progress(Progress{View: "export", Phase: "reading " + v.Name, RowsRead: read, RowsTotal: ds.rows})
	}
}

// openSource opens and binds the source of v for specs.
func (m *Materializer) openSource(v *larder.View, specs []columnSpec) (*dataset, error) {
	src := v.SourceDef()
	ds, err := openDataset(m.project.Path(src.Path), src.Name)
	if err != nil {
		return nil, err
	}
	if err := ds.bind(specs); err != nil {
		ds.Close()
		return nil, err
	}
	return ds, nil
}

// joinLatest finds, for every spine row, the newest source row at or
// before its time. Each source row is folded into the first spine row of
// its key at or after its event time; the best rows then carry forward
// along each key's rows in time order. Ties on event time go to the row
// read last, as in a run.
func (m *Materializer) joinLatest(ctx context.Context, j *exportJoin, ch *spineChunk) (int64, error) {
	v, ix := j.view, ch.index[j.keyCol]
	l := newLatest(v, v.EntityDef(), time.Unix(0, ch.maxT))
	ds, err := m.openSource(v, l.specs)
	if err != nil {
		return 0, err
	}
	defer ds.Close()
	l.groups = newGroupList(ds)
	if int64(len(l.groups.files)) > math.MaxUint32 {
		return 0, fmt.Errorf("the source has %d row groups, more than %d", len(l.groups.files), uint64(math.MaxUint32))
	}
	l.parts = partitioner{n: 1}
	best := make([]bestRow, len(ix.order))
	for i := range best {
		best[i].t = noBest
	}
	str := l.keyType == larder.TypeString
	fold := func(_ int, buf *keyBuf) {
		for k := range buf.len() {
			var run int32
			var ok bool
			if str {
				run, ok = ix.runOfBytes(buf.skeys.at(k))
			} else {
				run, ok = ix.runOfInt(buf.ikeys[k])
			}
			if !ok {
				continue
			}
			t := buf.times[k]
			p := ix.firstAtOrAfter(run, t)
			if p == int(ix.start[run+1]) {
				continue
			}
			if b := &best[p]; t > b.t || (t == b.t && buf.refs[k] > b.ref) {
				b.t, b.ref = t, buf.refs[k]
			}
		}
		buf.reset()
	}
	fan := startFanOut(1, func() *keyBuf { return &keyBuf{} }, fold)
	decode := func(ctx context.Context, rg *rowGroup, emit func(*keyBatch) error) error {
		sink := &keySink{l: l, group: l.groups.number(rg), fan: fan, emit: emit}
		sink.b = &keyBatch{parts: fan.parts()}
		return scanRows(ctx, rg, specKey, specTime, nil, l.filter(), batchRows, sink)
	}
	err = scanParallel(ctx, ds, readWorkers(), decode, func(b *keyBatch) error { return fan.send(ctx, b.parts) }, m.sourceProgress(v, ds))
	fan.stop()
	if err != nil {
		return 0, err
	}
	// Carry the best rows forward, and number the distinct ones.
	distinct := make(map[rowRef]int32)
	shard := &latestShard{keyType: larder.TypeInt64}
	slot := make([]int32, len(best))
	for run := range len(ix.start) - 1 {
		for p := int(ix.start[run]); p < int(ix.start[run+1]); p++ {
			if p > int(ix.start[run]) {
				if prev := best[p-1]; prev.t > best[p].t || (prev.t == best[p].t && prev.ref > best[p].ref) {
					best[p] = prev
				}
			}
			slot[p] = -1
			if best[p].t == noBest {
				continue
			}
			d, ok := distinct[best[p].ref]
			if !ok {
				d = int32(len(shard.best))
				distinct[best[p].ref] = d
				shard.intKeys = append(shard.intKeys, int64(d))
				shard.best = append(shard.best, best[p])
			}
			slot[p] = d
		}
	}
	l.shards = []*latestShard{shard}
	if err := l.fill(ctx, nil); err != nil {
		return 0, err
	}
	winner := make([]int32, len(l.winners))
	for i, w := range l.winners {
		winner[w.key.Int64()] = int32(i)
	}
	for p, r := range ix.order {
		if slot[p] < 0 {
			continue
		}
		j.found[r], j.times[r], j.pos[r] = true, best[p].t, winner[slot[p]]
	}
	j.lat = l
	return ds.rows, nil
}

// joinAggregate computes the windows of every spine row: each source row
// is folded, in read order, into the spine rows of its key whose windows
// hold it, with the aggregation math of a run, on times relative to the
// spine row's.
func (m *Materializer) joinAggregate(ctx context.Context, j *exportJoin, ch *spineChunk) (int64, error) {
	v, ix := j.view, ch.index[j.keyCol]
	a := newAggregate(v, v.EntityDef(), time.Unix(0, ch.maxT))
	// Windows end at 0: a row at t folds into a spine row at T as t − T.
	rel := newAggregate(v, v.EntityDef(), time.Unix(0, 0))
	ds, err := m.openSource(v, a.specs)
	if err != nil {
		return 0, err
	}
	defer ds.Close()
	a.parts = partitioner{n: 1}
	s := &aggShard{agg: rel, stride: rel.stride, state: make([]aggState, len(rel.aggs))}
	for p := range ix.order {
		s.grow(p)
	}
	// span is the longest window: a row older than it before a spine row
	// is in none of its windows.
	span := int64(0)
	for _, ag := range rel.aggs {
		if ag.loMin == math.MinInt64 {
			span = math.MaxInt64
		} else {
			span = max(span, -ag.loMin)
		}
	}
	// first is the oldest event time of each run's key: a spine row has a
	// row when it is at or after it.
	first := make([]int64, len(ix.start)-1)
	for i := range first {
		first[i] = math.MaxInt64
	}
	str := a.keyType == larder.TypeString
	fold := func(_ int, buf *rowBuf) {
		for k := range buf.len() {
			var run int32
			var ok bool
			if str {
				run, ok = ix.runOfBytes(buf.skeys.at(k))
			} else {
				run, ok = ix.runOfInt(buf.ikeys[k])
			}
			if !ok {
				continue
			}
			t := buf.times[k]
			first[run] = min(first[run], t)
			end := int(ix.start[run+1])
			for p := ix.firstAtOrAfter(run, t); p < end; p++ {
				d := ix.times[p] - t
				if d >= span {
					break
				}
				acc := s.words(p)
				for i := range rel.aggs {
					ag := &rel.aggs[i]
					cb := &buf.cols[ag.col]
					if !cb.valid[k] {
						continue
					}
					if cb.bytes {
						foldString(ag, acc[ag.off:], &s.state[i], p, -d, cb.str.at(k))
					} else {
						foldNumber(ag, acc[ag.off:], &s.state[i], p, -d, cb.num[k])
					}
				}
			}
		}
		buf.reset()
	}
	fan := startFanOut(1, func() *rowBuf { return newRowBuf(a.specs[specFeatures:]) }, fold)
	decode := func(ctx context.Context, rg *rowGroup, emit func(*aggBatch) error) error {
		sink := &aggSink{a: a, fan: fan, emit: emit}
		sink.b = &aggBatch{parts: fan.parts()}
		return scanRows(ctx, rg, specKey, specTime, a.valueColumns(), rowFilter{runTime: a.runTime, since: math.MinInt64}, batchRows, sink)
	}
	err = scanParallel(ctx, ds, readWorkers(), decode, func(b *aggBatch) error { return fan.send(ctx, b.parts) }, m.sourceProgress(v, ds))
	fan.stop()
	if err != nil {
		return 0, err
	}
	for run := range len(ix.start) - 1 {
		for p := int(ix.start[run]); p < int(ix.start[run+1]); p++ {
			if r := ix.order[p]; first[run] <= ix.times[p] {
				j.found[r], j.times[r], j.pos[r] = true, ix.times[p], int32(p)
			}
		}
	}
	j.agg, j.aggf = s, rel.features
	return ds.rows, nil
}

// joinPrediction scores, for every spine row whose entity the view's
// entities view has as of its time, the view's model on its inputs as of
// that time, in batches of the view's batch size.
func (m *Materializer) joinPrediction(ctx context.Context, j *exportJoin, ch *spineChunk) error {
	v := j.view
	pr := v.Prediction
	model, err := m.models(m.predictionSpec(v))
	if err != nil {
		return err
	}
	if c, ok := model.(io.Closer); ok {
		defer c.Close()
	}
	nf := len(v.Features)
	j.pred = make([]featureValues, nf)
	for f := range j.pred {
		j.pred[f] = featureValues{typ: larder.TypeFloat32}
		j.pred[f].resize(ch.n)
	}
	size := cmp.Or(pr.BatchSize, larder.DefaultPredictionBatch)
	x := make([]float32, 0, size*len(pr.Inputs))
	y := make([]float32, size*nf)
	rows := make([]int, 0, size)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		if err := model.Score(ctx, x, len(rows), y[:len(rows)*nf]); err != nil {
			return fmt.Errorf("model: %w", err)
		}
		for i, r := range rows {
			for f := range nf {
				j.pred[f].num[r] = uint64(math.Float32bits(y[i*nf+f]))
				j.pred[f].null[r] = false
			}
		}
		x, rows = x[:0], rows[:0]
		return nil
	}
	for r := range ch.n {
		if !j.entities.found[r] {
			continue
		}
		at := time.Unix(0, ch.times[r])
		for _, in := range pr.Inputs {
			ij := j.inputs[in.View]
			n, _ := ij.inputNumber(r, in.Feature, at, in.Default)
			x = append(x, n)
		}
		rows = append(rows, r)
		j.found[r], j.times[r], j.pos[r] = true, ch.times[r], int32(r)
		if len(rows) == size {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// value returns feature f of the view's row for spine row r, which must
// have one, as computed (before the value rules).
func (j *exportJoin) value(r, f int) larder.Value {
	p := int(j.pos[r])
	switch {
	case j.lat != nil:
		return j.lat.feats[f].value(p)
	case j.agg != nil:
		return j.agg.value(&j.aggf[f], p)
	}
	return j.pred[f].value(p)
}

// row returns the values of the view's row for spine row r, which must
// have one, after the view's value rules, valid until the next call.
func (j *exportJoin) row(k larder.Key, r int) ([]larder.Value, error) {
	if j.vals == nil {
		j.vals = make([]larder.Value, len(j.view.Features))
	}
	for f := range j.vals {
		j.vals[f] = j.value(r, f)
	}
	row, err := j.rules.apply(k, larder.Row{EventTime: time.Unix(0, j.times[r]).UTC(), Values: j.vals})
	return row.Values, err
}

// inputNumber returns the number a model sees for feature f of the view's
// row for spine row r at instant at, with default def (see
// larder.View.InputNumber).
func (j *exportJoin) inputNumber(r, f int, at time.Time, def float32) (float32, larder.InputStatus) {
	if !j.found[r] {
		return j.view.InputNumber(false, time.Time{}, at, larder.Null, def)
	}
	return j.view.InputNumber(true, time.Unix(0, j.times[r]), at, j.value(r, f), def)
}

// exportOutput is the Parquet file an export writes: a temporary file next
// to the output, renamed over it by commit.
type exportOutput struct {
	path   string
	f      *os.File
	w      *parquet.Writer
	leaves int // the spine's leaf columns
	types  []larder.Type
}

// createExportOutput creates the temporary file of the output at path:
// the spine's columns, then the columns of plan, each optional.
func createExportOutput(path string, spine *parquet.Schema, plan *exportPlan) (*exportOutput, error) {
	o := &exportOutput{path: path, leaves: len(spine.Columns())}
	var cols columnsNode
	seen := map[string]bool{}
	for _, f := range spine.Fields() {
		cols = append(cols, columnField{Node: f, name: f.Name()})
		seen[f.Name()] = true
	}
	add := func(name string, t larder.Type) error {
		if seen[name] {
			return larder.Invalidf("the spine has a column named %q, as the export would add: rename it in the spine", name)
		}
		seen[name] = true
		var node parquet.Node
		switch t {
		case larder.TypeInt64:
			node = parquet.Int(64)
		case larder.TypeFloat64:
			node = parquet.Leaf(parquet.DoubleType)
		case larder.TypeFloat32:
			node = parquet.Leaf(parquet.FloatType)
		case larder.TypeBool:
			node = parquet.Leaf(parquet.BooleanType)
		case larder.TypeString:
			node = parquet.String()
		default:
			node = parquet.Leaf(parquet.ByteArrayType)
		}
		cols = append(cols, columnField{Node: parquet.Optional(node), name: name})
		o.types = append(o.types, t)
		return nil
	}
	i := 0
	for _, f := range plan.feats {
		if err := add(plan.columns[i], f.j.view.Features[f.f].Type); err != nil {
			return nil, err
		}
		i++
	}
	for range plan.status {
		if err := add(plan.columns[i], larder.TypeString); err != nil {
			return nil, err
		}
		i++
	}
	for ; i < len(plan.columns); i++ {
		if err := add(plan.columns[i], larder.TypeFloat32); err != nil {
			return nil, err
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create the output: %w", err)
	}
	o.f = f
	o.w = parquet.NewWriter(f, parquet.NewSchema("export", cols), parquet.MaxRowsPerRowGroup(scoreRowGroup))
	return o, nil
}

// exportBatch is the number of spine rows written at once.
const exportBatch = 1024

// write writes the rows of ch: each spine row as read, then its values.
func (o *exportOutput) write(ctx context.Context, ch *spineChunk, plan *exportPlan, nulls []map[string]int64, written func(rows int)) error {
	rows := make([]parquet.Row, exportBatch)
	r := 0 // the spine row in ch
	// The values of each join for the current spine row, after the rules,
	// or why it has none.
	vals := make([][]larder.Value, len(plan.joins))
	why := make([]string, len(plan.joins))
	var x []float32
	if plan.ranker != nil {
		x = make([]float32, len(plan.ranker.Inputs))
	}
	for _, rg := range ch.groups {
		pr := rg.file.pf.RowGroups()[rg.index].Rows()
		for {
			if err := ctx.Err(); err != nil {
				pr.Close()
				return err
			}
			n, err := pr.ReadRows(rows)
			for i := range n {
				rows[i] = slices.Grow(rows[i], len(plan.columns))
				if err := o.fill(&rows[i], ch, plan, r, vals, why, x, nulls); err != nil {
					pr.Close()
					return err
				}
				r++
			}
			if n > 0 {
				if _, werr := o.w.WriteRows(rows[:n]); werr != nil {
					pr.Close()
					return fmt.Errorf("write the output: %w", werr)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				pr.Close()
				return fmt.Errorf("spine %s row group %d cannot be read: %w", rg.file.path, rg.index, err)
			}
		}
		pr.Close()
		written(r)
	}
	return nil
}

// fill appends to *row, spine row r as read, the values of the export.
func (o *exportOutput) fill(row *parquet.Row, ch *spineChunk, plan *exportPlan, r int, vals [][]larder.Value,
	why []string, x []float32, nulls []map[string]int64) error {
	at := time.Unix(0, ch.times[r])
	for _, j := range plan.joins {
		vals[j.id], why[j.id] = nil, ""
		switch {
		case !ch.hasKey[j.keyCol][r]:
			why[j.id] = NullNoKey
		case !j.found[r]:
			why[j.id] = NullMissing
		case j.view.Status(true, time.Unix(0, j.times[r]), at) == larder.StatusStale:
			why[j.id] = NullStale
		case j.exported:
			vs, err := j.row(ch.keys[j.keyCol][r], r)
			if err != nil {
				return err
			}
			vals[j.id] = vs
		}
	}
	col := o.leaves
	c := 0
	put := func(v larder.Value) {
		*row = append(*row, parquetValue(o.types[c], v).Level(0, defLevel(v), col))
		col++
		c++
	}
	for _, f := range plan.feats {
		v := larder.Null
		if vs := vals[f.j.id]; vs != nil {
			v = vs[f.f]
			if v.IsNull() {
				reason := NullValue
				if !f.j.value(r, f.f).IsNull() {
					reason = NullRules
				}
				nulls[c][reason]++
			}
		} else {
			nulls[c][why[f.j.id]]++
		}
		put(v)
	}
	for _, j := range plan.status {
		s := "present"
		switch why[j.id] {
		case NullStale:
			s = "stale"
		case NullMissing, NullNoKey:
			s = "missing"
		}
		put(larder.StringValue(s))
	}
	if plan.ranker == nil {
		return nil
	}
	for i := range plan.ranker.Inputs {
		in := &plan.ranker.Inputs[i]
		if q := plan.rankReq[i]; q >= 0 {
			x[i] = in.Default
			if ch.hasReq[q][r] {
				x[i] = ch.req[q][r]
			} else if !in.HasDefault {
				return larder.Invalidf("spine row %d: request feature %q is null or its column absent, and ranker %s gives it no default: fill it in the spine", ch.base+int64(r), in.Request, plan.ranker.Name)
			} else {
				nulls[c][NullRequest]++
			}
			put(larder.Float32Value(x[i]))
			continue
		}
		j := plan.rankJoins[i]
		var st larder.InputStatus
		if ch.hasKey[j.keyCol][r] {
			x[i], st = j.inputNumber(r, in.Feature, at, in.Default)
		} else {
			x[i], st = in.Default, larder.InputMissing
		}
		switch st {
		case larder.InputMissing:
			nulls[c][cmp.Or(why[j.id], NullMissing)]++
		case larder.InputStale:
			nulls[c][NullStale]++
		case larder.InputNull:
			nulls[c][NullValue]++
		}
		put(larder.Float32Value(x[i]))
	}
	return nil
}

// defLevel is the definition level of v in an optional column.
func defLevel(v larder.Value) int {
	if v.IsNull() {
		return 0
	}
	return 1
}

// parquetValue returns v as a value of an output column of type t.
func parquetValue(t larder.Type, v larder.Value) parquet.Value {
	if v.IsNull() {
		return parquet.NullValue()
	}
	switch t {
	case larder.TypeInt64:
		return parquet.Int64Value(v.Int64())
	case larder.TypeFloat64:
		return parquet.DoubleValue(v.Float64())
	case larder.TypeFloat32:
		return parquet.FloatValue(v.Float32())
	case larder.TypeBool:
		return parquet.BooleanValue(v.Bool())
	case larder.TypeString:
		return parquet.ByteArrayValue([]byte(v.Str()))
	}
	return parquet.ByteArrayValue(v.Bytes())
}

// commit completes the file and renames it over the output.
func (o *exportOutput) commit() error {
	if err := o.w.Close(); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	if err := os.Rename(o.f.Name(), o.path); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	o.f = nil
	return nil
}

// discard removes the temporary file, unless commit renamed it.
func (o *exportOutput) discard() {
	if o.f == nil {
		return
	}
	o.f.Close()
	os.Remove(o.f.Name())
	o.f = nil
}
