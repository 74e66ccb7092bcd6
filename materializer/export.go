package materializer

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
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
	// Output is the Parquet file written (a relative path is resolved
	// against the project folder); it is replaced once complete.
	Output string
	// Timestamp names the spine's time column: each row's features are
	// those as of it.
	Timestamp string
	// Features are "view:feature" and "view:*" references to the features
	// exported, of latest, aggregate, prediction and candidates views
	// (not those with Candidates.FromView).
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
	// Compression is the codec of the columns the export adds (features,
	// statuses, a ranker's inputs): CompressionSnappy (the default, when
	// ""), CompressionZstd or CompressionNone. The spine's columns keep the
	// codec they have in the spine.
	Compression string
}

// The codecs of the columns an export adds (ExportArgs.Compression). Snappy
// and zstd are written with their fastest encoders: s2's Snappy encoder
// and zstd's fastest level.
const (
	CompressionSnappy = "snappy"
	CompressionZstd   = "zstd"
	CompressionNone   = "none"
)

// DefaultExportCompression is the codec of the columns an export adds when
// ExportArgs.Compression is "": Snappy, as pandas (pyarrow), Spark and
// DuckDB write by default. On BenchmarkExport1M's output it halves the file,
// for about a third more CPU than uncompressed columns (see
// docs/benchmarks.md); CompressionNone is the cheapest to write.
const DefaultExportCompression = CompressionSnappy

// ExportCompressions returns the values ExportArgs.Compression accepts,
// besides "", the default first.
func ExportCompressions() []string {
	return []string{CompressionSnappy, CompressionZstd, CompressionNone}
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
	// pos is, by spine row that has a row of the view, the row of tab
	// holding its values: a latest view's winner, an aggregate's position
	// in the spine index, a prediction's spine row.
	pos []int32
	tab exportTable
	// rules are the view's value rules, and the row handed to them.
	rules *valueRules
	vals  []larder.Value
	// scratch space kept from chunk to chunk
	best      []bestRow
	slot      []int32
	shardKeys []int64
	shardBest []bestRow
	winner    []int32
	evs       *aggEvents
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
// whatever the number of spine rows (an aggregate view also keeps the
// events in its chunk's windows, a candidates view its rows folded into
// the chunk's spine rows and the lists they make: see joinCandidates).
// The output is written to a temporary file and renamed over args.Output
// when complete, synced to disk; an args.Output that is a symbolic link is
// written through, to the file it leads to (see resolveOutput).
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
			return rep, larder.Invalidf("export: spine file %s %s: every spine file must have the columns of the first, %s",
				f.path, spineDifference(spine.files[0], f), spine.files[0].path)
		}
	}
	output := m.project.Path(args.Output)
	file, err := resolveOutput(output)
	if err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	if err := checkOutput(file); err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	if err := m.checkNotAnInput(output, file, spine, m.project.Path(args.Spine), "the spine's files", "the spine's folder or glob", "the training set"); err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	out, err := createExportOutput(file, schema, plan, cmp.Or(args.Compression, DefaultExportCompression))
	if err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	defer out.discard()

	chunkRows := int64(cmp.Or(args.ChunkRows, DefaultExportChunkRows))
	rgs := spine.rowGroups()
	// ends[i] is the end of chunk i in rgs: whole row groups, as many as
	// fit in chunkRows, one at least.
	var ends []int
	for lo := 0; lo < len(rgs); {
		hi, rows := lo, int64(0)
		for hi < len(rgs) && (hi == lo || rows+rgs[hi].numRows <= chunkRows) {
			rows += rgs[hi].numRows
			hi++
		}
		ends = append(ends, hi)
		lo = hi
	}
	counts := make([][whyCount]int64, len(plan.columns))
	ch := &spineChunk{chunks: len(ends)}
	for lo := 0; lo < len(rgs); {
		hi := ends[rep.Chunks]
		ch.chunk = rep.Chunks
		if rep.Chunks > 0 {
			// The last chunk's garbage goes before this chunk's buffers
			// fill again: memory holds one chunk, whatever the number.
			runtime.GC()
		}
		if err := readSpine(ctx, rgs[lo:hi], plan, ch); err != nil {
			return rep, err
		}
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
		if err := out.write(ctx, ch, plan, counts, written); err != nil {
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
		for why, n := range counts[i] {
			if n == 0 {
				continue
			}
			if rep.Nulls[c] == nil {
				rep.Nulls[c] = make(map[string]int64)
			}
			rep.Nulls[c][whyReasons[why]] = n
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
	case args.Compression != "" && !slices.Contains(ExportCompressions(), args.Compression):
		return nil, larder.Invalidf("export: unknown compression %q: want one of %s", args.Compression, strings.Join(ExportCompressions(), ", "))
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
		j := &exportJoin{view: v, keyCol: kc, rules: newValueRules(v)}
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
		case larder.KindCandidates:
			if v.Candidates == nil || v.SourceDef() == nil && v.Candidates.FromView == "" {
				return nil, fmt.Errorf("export: view %s: the project was not validated: call Project.Validate first", v.Name)
			}
			if v.Candidates.FromView != "" {
				return nil, larder.Invalidf("export: view %s ranks the entities of view %s as its live generation holds them, which keeps no history to read as of a spine row's time: export %s's features (the scores) instead", v.Name, v.Candidates.FromView, v.Candidates.FromView)
			}
		default:
			return nil, larder.Invalidf("export: view %s is a %s view, which cannot be exported", v.Name, v.Kind)
		}
		joins[[2]any{v, kc}] = j
		// Numbered here, after the joins of a prediction's inputs: the id
		// indexes the output's buffers of each join.
		j.id = len(p.joins)
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
			return nil, larder.Invalidf("export: feature %q: no view %q%s", ref, name, knownNames(name, "views", m.project.ViewNames("")))
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
			for i := range v.Features {
				fs = append(fs, i)
			}
		} else {
			i := v.FeatureIndex(feat)
			if i < 0 {
				names := make([]string, len(v.Features))
				for i, f := range v.Features {
					names[i] = f.Name
				}
				return nil, larder.Invalidf("export: feature %q: view %s has no feature %q%s", ref, name, feat, knownNames(feat, "features", names))
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
		r, err := m.ranker("export", args.Ranker)
		if err != nil {
			return nil, err
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

// CellValue reads back one cell of a column that Export wrote for a
// feature of type t: vs are that column's values in one row, as a
// parquet.Row holds them. A scalar is one value, null when it is; a list
// (a float32 vector, an int64 or string list) is an optional list of
// required elements, one value of definition level 0 when the list is
// null, one of level 1 when it is empty, and otherwise its elements. It is
// meant for Go programs, and tests, that read a training set.
func CellValue(t larder.Type, vs []parquet.Value) larder.Value {
	if len(vs) == 0 {
		return larder.Null
	}
	v := vs[0]
	if isList(t) && v.DefinitionLevel() == 0 || !isList(t) && v.IsNull() {
		return larder.Null
	}
	switch t {
	case larder.TypeInt64:
		return larder.Int64Value(v.Int64())
	case larder.TypeFloat64:
		return larder.Float64Value(v.Double())
	case larder.TypeFloat32:
		return larder.Float32Value(v.Float())
	case larder.TypeBool:
		return larder.BoolValue(v.Boolean())
	case larder.TypeString:
		return larder.StringValue(string(v.ByteArray()))
	case larder.TypeBytes:
		return larder.BytesValue(v.ByteArray())
	}
	if v.DefinitionLevel() == 1 {
		vs = nil // an empty list
	}
	switch t {
	case larder.TypeFloat32Vector:
		out := make([]float32, len(vs))
		for i, e := range vs {
			out[i] = e.Float()
		}
		return larder.Float32VectorValue(out)
	case larder.TypeInt64List:
		out := make([]int64, len(vs))
		for i, e := range vs {
			out[i] = e.Int64()
		}
		return larder.Int64ListValue(out)
	case larder.TypeStringList:
		out := make([]string, len(vs))
		for i, e := range vs {
			out[i] = string(e.ByteArray())
		}
		return larder.StringListValue(out)
	}
	return larder.Null
}

// knownNames ends a message about an unknown name: the known name it is
// likely a misspelling of, if any, then the known names, of what.
func knownNames(name, what string, known []string) string {
	var hint string
	if s := larder.Suggest(name, known); s != "" {
		hint = fmt.Sprintf("; did you mean %q?", s)
	}
	return fmt.Sprintf("%s (%s: %s)", hint, what, strings.Join(known, ", "))
}

// spineDifference says how the columns of spine file b differ from those
// of a, the first: one the other lacks, their order, or the first column
// whose repetition or type differs.
func spineDifference(a, b *sourceFile) string {
	first := filepath.Base(a.path)
	ac, bc := a.pf.Root().Columns(), b.pf.Root().Columns()
	names := func(cs []*parquet.Column) []string {
		ns := make([]string, len(cs))
		for i, c := range cs {
			ns[i] = c.Name()
		}
		return ns
	}
	an, bn := names(ac), names(bc)
	for _, n := range an {
		if !slices.Contains(bn, n) {
			return fmt.Sprintf("has no column %q, which %s has", n, first)
		}
	}
	for _, n := range bn {
		if !slices.Contains(an, n) {
			return fmt.Sprintf("has a column %q, which %s has not", n, first)
		}
	}
	if !slices.Equal(an, bn) {
		return fmt.Sprintf("has the same columns in another order: %s (%s: %s)", strings.Join(bn, ", "), first, strings.Join(an, ", "))
	}
	repetition := func(c *parquet.Column) string {
		switch {
		case c.Repeated():
			return "repeated"
		case c.Optional():
			return "optional"
		}
		return "required"
	}
	for i := range ac {
		if ra, rb := repetition(ac[i]), repetition(bc[i]); ra != rb {
			return fmt.Sprintf("column %q is %s there, %s in %s", an[i], rb, ra, first)
		}
		if !parquet.EqualNodes(ac[i], bc[i]) {
			return fmt.Sprintf("column %q is %s there, %s in %s", an[i], describeColumn(bc[i]), describeColumn(ac[i]), first)
		}
	}
	return "has other columns than " + first
}
