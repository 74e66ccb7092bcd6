package materializer

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/larder-dev/larder"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// exportOutput is the Parquet file an export writes: a temporary file next
// to the output, renamed over it by commit. It is written column by column,
// a block of rows at a time, straight into the writer's column buffers: the
// spine's columns copied value by value from the spine's pages, then the
// added columns from the joins.
type exportOutput struct {
	path string
	f    *os.File
	// stale holds the temporary files of the same output found when f was
	// created (see removeStaleTemps).
	stale  []string
	w      *parquet.GenericWriter[any]
	cols   []*parquet.ColumnWriter
	leaves int // the spine's leaf columns
	// flat is set when no spine column is repeated: each is copied from its
	// pages, one value per row; otherwise rows are read and split.
	flat  bool
	types []larder.Type // of the added columns
	// rows is the number of rows of the row group being written; ends is
	// set when the block being written ends it.
	rows int
	ends bool
	// vals holds a block of values per column; why the state of each
	// join for the rows of the block, and blocks their values.
	vals   [][]parquet.Value
	lists  [][]parquet.Value // by column, the values of a list column's block
	why    [][]uint8
	blocks []joinBlock
	// flag marks the rows whose values the view's rules may change; slow
	// holds their values after the rules, and slowRows counts them, by
	// join.
	flag     [][]bool
	slow     [][][]larder.Value
	slowRows []int
	// required is set when the ranker has request features without a
	// default, which every spine row must have.
	required bool
	errs     []error
	touched  []struct {
		n uint64
		_ [56]byte
	}
}

// The reasons a join has no value for a spine row (present when it has),
// as indexes of the null counts.
const (
	whyNoKey uint8 = iota
	whyMissing
	whyStale
	whyValue
	whyRules
	whyRequest
	whyCount
	whyPresent = whyCount
)

var whyReasons = [whyCount]string{NullNoKey, NullMissing, NullStale, NullValue, NullRules, NullRequest}

// exportWriteBuffer is the size of the writes to the output file.
const exportWriteBuffer = 1 << 20

// exportBlock is the number of rows written to each column at once; it
// divides scoreRowGroup.
const exportBlock = 4096

// createExportOutput creates the temporary file of the output at path:
// the spine's columns, then the columns of plan, each optional and
// compressed with codec (one of ExportCompressions).
func createExportOutput(path string, spine *parquet.Schema, plan *exportPlan, codec string) (*exportOutput, error) {
	o := &exportOutput{path: path, leaves: len(spine.Columns()), flat: true}
	for _, c := range spine.Columns() {
		if leaf, ok := spine.Lookup(c...); !ok || leaf.MaxRepetitionLevel > 0 {
			o.flat = false
		}
	}
	// One codec for every added column: its encoders are pooled.
	var added compress.Codec
	switch codec {
	case CompressionSnappy:
		added = fastCodec(format.Snappy)
	case CompressionZstd:
		added = fastCodec(format.Zstd)
	}
	leaf := func(n parquet.Node) parquet.Node {
		if added == nil {
			return n
		}
		return parquet.Compressed(n, added)
	}
	var cols columnsNode
	seen := map[string]bool{}
	for _, f := range spine.Fields() {
		cols = append(cols, columnField{Node: spineNode(f), name: f.Name()})
		seen[f.Name()] = true
	}
	add := func(name string, t larder.Type) error {
		if seen[name] {
			return larder.Invalidf("the spine has a column named %q, as the export would add: rename it in the spine", name)
		}
		seen[name] = true
		// A list's codec is that of its element, the leaf.
		var node parquet.Node
		switch t {
		case larder.TypeInt64:
			node = leaf(parquet.Int(64))
		case larder.TypeFloat64:
			node = leaf(parquet.Leaf(parquet.DoubleType))
		case larder.TypeFloat32:
			node = leaf(parquet.Leaf(parquet.FloatType))
		case larder.TypeBool:
			node = leaf(parquet.Leaf(parquet.BooleanType))
		case larder.TypeString:
			node = leaf(parquet.String())
		case larder.TypeFloat32Vector:
			node = parquet.List(leaf(parquet.Leaf(parquet.FloatType)))
		case larder.TypeInt64List:
			node = parquet.List(leaf(parquet.Int(64)))
		case larder.TypeStringList:
			node = parquet.List(leaf(parquet.String()))
		default:
			node = leaf(parquet.Leaf(parquet.ByteArrayType))
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
	f, stale, err := createOutputTemp(path)
	if err != nil {
		return nil, fmt.Errorf("create the output: %w", err)
	}
	o.f, o.stale = f, stale
	o.w = parquet.NewGenericWriter[any](f, parquet.NewSchema("export", cols), parquet.MaxRowsPerRowGroup(scoreRowGroup),
		// The column index and the chunks' statistics hold the pages' bounds.
		parquet.DataPageStatistics(false), parquet.WriteBufferSize(exportWriteBuffer))
	o.cols = o.w.ColumnWriters()
	if len(o.cols) != o.leaves+len(plan.columns) {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("the output has %d columns, not %d", len(o.cols), o.leaves+len(plan.columns))
	}
	o.vals = make([][]parquet.Value, len(o.cols))
	o.lists = make([][]parquet.Value, len(o.cols))
	for c := range o.vals {
		o.vals[c] = make([]parquet.Value, exportBlock)
	}
	o.why = make([][]uint8, len(plan.joins))
	o.slow = make([][][]larder.Value, len(plan.joins))
	for j := range o.why {
		o.why[j] = make([]uint8, exportBlock)
		o.slow[j] = make([][]larder.Value, exportBlock)
	}
	o.blocks = newJoinBlocks(plan)
	o.flag = make([][]bool, len(plan.joins))
	for j := range o.flag {
		o.flag[j] = make([]bool, exportBlock)
	}
	o.slowRows = make([]int, len(plan.joins))
	if plan.ranker != nil {
		for k, in := range plan.ranker.Inputs {
			o.required = o.required || (plan.rankReq[k] >= 0 && !in.HasDefault)
		}
	}
	o.errs = make([]error, len(o.cols))
	o.touched = make([]struct {
		n uint64
		_ [56]byte
	}, len(o.cols))
	return o, nil
}

// spineNode returns the output column of spine field f: f as it is, but
// that a column compressed with Snappy or zstd is written with the fastest
// encoder of the same codec (snappy's "better" encoder, which parquet-go
// uses, takes longer than the rest of the column's writing).
func spineNode(f parquet.Field) parquet.Node {
	if !f.Leaf() || f.Compression() == nil {
		return f
	}
	if c := fastCodec(f.Compression().CompressionCodec()); c != nil {
		return parquet.Compressed(f, c)
	}
	return f
}

// fastCodec returns the fastest encoder of codec c, Snappy or zstd, and nil
// for any other.
func fastCodec(c format.CompressionCodec) compress.Codec {
	switch c {
	case format.Snappy:
		return &fastSnappy{}
	case format.Zstd:
		return &zstd.Codec{Level: zstd.SpeedFastest}
	}
	return nil
}

// fastSnappy is the Snappy codec with the fast encoder of s2, whose blocks
// are Snappy's.
type fastSnappy struct{ snappy.Codec }

func (*fastSnappy) Encode(dst, src []byte) ([]byte, error) { return s2.EncodeSnappy(dst[:0], src), nil }

// statusText returns the text of the status column for a join's reason.
func statusText(why uint8) []byte {
	switch why {
	case whyPresent:
		return statusPresent
	case whyStale:
		return statusStale
	}
	return statusMissing
}

var (
	statusPresent = []byte("present")
	statusStale   = []byte("stale")
	statusMissing = []byte("missing")
)

// write writes the rows of ch: each spine row as read, then its values.
// counts holds, by added column, the nulls (or defaults) by reason.
// written is called as rows are written, with the rows of ch written.
//
// Each block of rows is written in three steps: the state of every join for
// each row and a copy of its row, gathered from the join's table in spine
// order, the rows split among the cores; the value rules of the views, row
// by row on the calling goroutine, for the rows whose values they may
// change; then the columns, split among the cores, each column's values
// built and written by one of them.
func (o *exportOutput) write(ctx context.Context, ch *spineChunk, plan *exportPlan, counts [][whyCount]int64, written func(rows int)) error {
	var sc spineCopy
	if o.flat {
		sc = newLeafCopy(o, ch)
	} else {
		sc = newRowCopy(o, ch)
	}
	defer sc.close()
	for _, j := range plan.joins {
		if b := &o.blocks[j.id]; b.need {
			b.rows = grow(b.rows, exportBlock*j.tab.stride, 0)
		}
	}
	workers := min(readWorkers(), len(o.cols))
	for lo := 0; lo < ch.n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+exportBlock, ch.n, lo+scoreRowGroup-o.rows)
		n := hi - lo
		err := o.parallel(workers, func(w int) error {
			o.gather(ch, plan, lo, lo+w*n/workers, lo+(w+1)*n/workers, w)
			return nil
		})
		if err != nil {
			return err
		}
		if err := o.check(ch, plan, lo, hi); err != nil {
			return err
		}
		o.ends = o.rows+n == scoreRowGroup
		err = o.parallel(workers, func(w int) error { return o.columns(w, workers, sc, ch, plan, lo, hi, counts) })
		if err != nil {
			return err
		}
		o.rows += hi - lo
		lo = hi
		if o.rows == scoreRowGroup {
			if err := o.w.Flush(); err != nil {
				return fmt.Errorf("write the output: %w", err)
			}
			o.rows = 0
			written(lo)
		}
	}
	written(ch.n)
	return nil
}

// stale reports whether j's row for spine row r is stale at the row's time.
func stale(j *exportJoin, r int, at int64) bool {
	if j.view.MaxAge <= 0 {
		return false
	}
	return j.view.Status(true, time.Unix(0, j.times[r]), time.Unix(0, at)) == larder.StatusStale
}

// joinBlock holds, for the rows of a block, a copy of a join's row for each
// spine row that has one (need is set when numbers or bools of the join
// are written or checked), and what the view's value rules check.
type joinBlock struct {
	need bool
	rows []uint64 // by row of the block, the row of the join's table
	// f64 and f32 are the features of those types whose finiteness the
	// rules check; other is set when they check other features.
	f64, f32 []int
	other    bool
}

// newJoinBlocks returns the joinBlock of each join of plan.
func newJoinBlocks(plan *exportPlan) []joinBlock {
	bs := make([]joinBlock, len(plan.joins))
	numeric := func(t larder.Type) bool {
		switch t {
		case larder.TypeInt64, larder.TypeFloat64, larder.TypeFloat32, larder.TypeBool:
			return true
		}
		return false
	}
	for _, f := range plan.feats {
		bs[f.j.id].need = bs[f.j.id].need || numeric(f.j.view.Features[f.f].Type)
	}
	for _, j := range plan.joins {
		if !j.exported {
			continue
		}
		b := &bs[j.id]
		for _, c := range j.rules.checks {
			switch {
			case c.typ == larder.TypeFloat64 && !c.limited:
				b.f64 = append(b.f64, c.feature)
			case c.typ == larder.TypeFloat32 && !c.limited:
				b.f32 = append(b.f32, c.feature)
			default:
				b.other = true
			}
		}
		b.need = b.need || len(b.f64)+len(b.f32) > 0
	}
	if plan.ranker != nil {
		for _, j := range plan.rankJoins {
			if j != nil {
				bs[j.id].need = true
			}
		}
	}
	return bs
}

// parallel runs fn(w) for w in [0, workers), the last on the calling
// goroutine, and returns the first error in that order, a panic of the
// Parquet library being one.
func (o *exportOutput) parallel(workers int, fn func(w int) error) error {
	onWorkers(workers, func(w int) { o.errs[w] = recoverRead(func() error { return fn(w) }) })
	for _, err := range o.errs[:workers] {
		if err != nil {
			return err
		}
	}
	return nil
}

// onWorkers runs fn(0), ..., fn(workers-1) at once, the last on the calling
// goroutine, and returns when they all have.
func onWorkers(workers int, fn func(w int)) {
	var wg sync.WaitGroup
	for w := range workers - 1 {
		wg.Go(func() { fn(w) })
	}
	fn(workers - 1)
	wg.Wait()
}

// gather sets, for the rows [from, to) of ch, rows of the block from lo,
// the state of every join, gathers the values of its row, and marks the
// rows whose values the view's value rules may change. w is the worker.
func (o *exportOutput) gather(ch *spineChunk, plan *exportPlan, lo, from, to, w int) {
	for _, j := range plan.joins {
		keys := &ch.keys[j.keyCol]
		b := &o.blocks[j.id]
		tab := &j.tab
		stride := tab.stride
		why, flag := o.why[j.id], o.flag[j.id]
		check := j.exported && len(j.rules.checks) > 0
		if b.need {
			// Touch the rows first: the loads do not depend on one
			// another, so the processor overlaps their cache misses.
			var touched uint64
			for r := from; r < to; r++ {
				if keys.has[r] && j.found[r] {
					row := tab.words[int(j.pos[r])*stride:][:stride]
					for k := 0; k < len(row); k += 8 {
						touched += row[k]
					}
					touched += row[len(row)-1]
				}
			}
			o.touched[w].n += touched
		}
		for r := from; r < to; r++ {
			i := r - lo
			flag[i] = false
			switch {
			case !keys.has[r]:
				why[i] = whyNoKey
				continue
			case !j.found[r]:
				why[i] = whyMissing
				continue
			case stale(j, r, ch.times[r]):
				why[i] = whyStale
				continue
			}
			why[i] = whyPresent
			if !b.need {
				flag[i] = check && o.mayRefuse(j, r)
				continue
			}
			row := b.rows[i*stride : (i+1)*stride]
			copy(row, tab.words[int(j.pos[r])*stride:])
			if !check {
				continue
			}
			// A float is not finite when its exponent's bits are all set;
			// the null bit is looked at only then, a value being rarely
			// not finite.
			vals := row[tab.nw:]
			for _, f := range b.f64 {
				if vals[f]&0x7ff0000000000000 == 0x7ff0000000000000 && row[f/64]>>(f%64)&1 == 0 {
					flag[i] = true
				}
			}
			for _, f := range b.f32 {
				if vals[f]&0x7f800000 == 0x7f800000 && row[f/64]>>(f%64)&1 == 0 {
					flag[i] = true
				}
			}
			if !flag[i] && b.other {
				flag[i] = o.mayRefuse(j, r)
			}
		}
	}
}

// check runs, row by row from lo to hi, the value rules of the views on
// the rows marked, and checks that each request feature of the ranker
// without a default is in the spine: the first error is that of the first
// row.
func (o *exportOutput) check(ch *spineChunk, plan *exportPlan, lo, hi int) error {
	n := hi - lo
	marked := false
	for _, j := range plan.joins {
		o.slowRows[j.id] = 0
		clear(o.slow[j.id][:n])
		marked = marked || slices.Contains(o.flag[j.id][:n], true)
	}
	if !marked && !o.required {
		return nil
	}
	for i := range n {
		r := lo + i
		for _, j := range plan.joins {
			if !o.flag[j.id][i] {
				continue
			}
			vs, err := j.row(ch.keys[j.keyCol].key(r), r)
			if err != nil {
				return err
			}
			o.slow[j.id][i] = slices.Clone(vs)
			o.slowRows[j.id]++
		}
		if !o.required {
			continue
		}
		for k := range plan.ranker.Inputs {
			in := &plan.ranker.Inputs[k]
			if q := plan.rankReq[k]; q >= 0 && !ch.hasReq[q][r] && !in.HasDefault {
				file, row := ch.place(r)
				return larder.Invalidf("spine file %s row %d: request feature %q is null or its column absent, and ranker %s gives it no default: fill it in the spine", file, row, in.Request, plan.ranker.Name)
			}
		}
	}
	return nil
}

// columns writes the columns of rows [lo, hi) that are worker w's of
// workers: every workers-th column from the w-th (the spine's included).
func (o *exportOutput) columns(w, workers int, sc spineCopy, ch *spineChunk, plan *exportPlan, lo, hi int, counts [][whyCount]int64) error {
	n := hi - lo
	if err := sc.copy(w, workers, n); err != nil {
		return err
	}
	for col := o.leaves + ((w-o.leaves)%workers+workers)%workers; col < len(o.cols); col += workers {
		c := col - o.leaves // the added column
		vals, cnt := o.vals[col][:n], &counts[c]
		switch {
		case c < len(plan.feats) && isList(o.types[c]):
			f := plan.feats[c]
			o.lists[col] = o.listValues(f.j, f.f, o.types[c], lo, n, o.lists[col][:0], cnt)
			vals = o.lists[col]
		case c < len(plan.feats):
			f := plan.feats[c]
			o.featureColumn(f.j, f.f, o.types[c], col, lo, vals, cnt)
		case c < len(plan.feats)+len(plan.status):
			j := plan.status[c-len(plan.feats)]
			for i, why := range o.why[j.id][:n] {
				vals[i] = parquet.ByteArrayValue(statusText(why))
				vals[i].SetDefinitionLevel(1)
			}
		default:
			o.inputColumn(plan, c-len(plan.feats)-len(plan.status), ch, col, lo, vals, cnt)
		}
		if _, err := o.cols[col].WriteRowValues(vals); err != nil {
			return fmt.Errorf("write the output: %w", err)
		}
	}
	if !o.ends {
		return nil
	}
	// The block ends the row group: each worker encodes the last pages of
	// its columns, those the writer's flush would encode one column after
	// the other. The spine's columns are the workers' own when copied
	// from their pages; otherwise worker 0 writes them all, and the
	// writer's flush encodes their last pages.
	for col := w; col < len(o.cols); col += workers {
		if col < o.leaves && !o.flat {
			continue
		}
		if err := o.cols[col].Flush(); err != nil {
			return fmt.Errorf("write the output: %w", err)
		}
	}
	return nil
}

// inputColumn sets vals to the values of input k of the ranker for the
// rows from lo, as the output's column col, counting the defaults.
func (o *exportOutput) inputColumn(plan *exportPlan, k int, ch *spineChunk, col, lo int, vals []parquet.Value, cnt *[whyCount]int64) {
	in := &plan.ranker.Inputs[k]
	n := len(vals)
	if q := plan.rankReq[k]; q >= 0 {
		has, req := ch.hasReq[q][lo:lo+n], ch.req[q][lo:lo+n]
		for i := range n {
			x := in.Default
			if has[i] {
				x = req[i]
			} else {
				cnt[whyRequest]++
			}
			v := parquet.FloatValue(x)
			v.SetDefinitionLevel(1)
			vals[i] = v
		}
		return
	}
	j := plan.rankJoins[k]
	b := &o.blocks[j.id]
	f, stride, nw := in.Feature, j.tab.stride, j.tab.nw
	t := j.view.Features[f].Type
	for i, why := range o.why[j.id][:n] {
		x := in.Default
		switch {
		case why != whyPresent:
			cnt[why]++
		case b.rows[i*stride+f/64]>>(f%64)&1 != 0:
			cnt[whyValue]++
		default:
			// a string or bytes is no number: a model reads it as null
			if v, ok := columnValue(t, b.rows[i*stride+nw+f]).Number(); ok {
				x = float32(v)
			} else {
				cnt[whyValue]++
			}
		}
		v := parquet.FloatValue(x)
		v.SetDefinitionLevel(1)
		vals[i] = v
	}
}

// featureColumn sets vals to the values of feature f of join j for the
// rows from lo, as the output's column col of type t, counting the nulls.
func (o *exportOutput) featureColumn(j *exportJoin, f int, t larder.Type, col, lo int, vals []parquet.Value, cnt *[whyCount]int64) {
	b := &o.blocks[j.id]
	switch t {
	case larder.TypeFloat64, larder.TypeFloat32, larder.TypeInt64, larder.TypeBool:
	default:
		o.featureValues(j, f, t, lo, vals, cnt)
		return
	}
	if o.slowRows[j.id] > 0 {
		o.featureValues(j, f, t, lo, vals, cnt)
		return
	}
	why := o.why[j.id][:len(vals)]
	stride, word, bit, at := j.tab.stride, f/64, uint(f%64), j.tab.nw+f
	rows := b.rows[:len(vals)*stride]
	// One loop per type, each value set with the definition level alone:
	// the only field of a value's levels the column writers read. A null
	// is counted by its join's reason, or as a null value (whyValue, below
	// whyPresent) when the row has one.
	switch t {
	case larder.TypeFloat64:
		for i := range vals {
			if why[i] != whyPresent || rows[i*stride+word]>>bit&1 != 0 {
				vals[i] = parquet.Value{}
				cnt[min(why[i], whyValue)]++
				continue
			}
			v := parquet.DoubleValue(math.Float64frombits(rows[i*stride+at]))
			v.SetDefinitionLevel(1)
			vals[i] = v
		}
	case larder.TypeFloat32:
		for i := range vals {
			if why[i] != whyPresent || rows[i*stride+word]>>bit&1 != 0 {
				vals[i] = parquet.Value{}
				cnt[min(why[i], whyValue)]++
				continue
			}
			v := parquet.FloatValue(math.Float32frombits(uint32(rows[i*stride+at])))
			v.SetDefinitionLevel(1)
			vals[i] = v
		}
	case larder.TypeInt64:
		for i := range vals {
			if why[i] != whyPresent || rows[i*stride+word]>>bit&1 != 0 {
				vals[i] = parquet.Value{}
				cnt[min(why[i], whyValue)]++
				continue
			}
			v := parquet.Int64Value(int64(rows[i*stride+at]))
			v.SetDefinitionLevel(1)
			vals[i] = v
		}
	default:
		for i := range vals {
			if why[i] != whyPresent || rows[i*stride+word]>>bit&1 != 0 {
				vals[i] = parquet.Value{}
				cnt[min(why[i], whyValue)]++
				continue
			}
			v := parquet.BooleanValue(rows[i*stride+at] != 0)
			v.SetDefinitionLevel(1)
			vals[i] = v
		}
	}
}

// featureValues is featureColumn for strings and bytes, and for rows some
// of whose values the view's rules may have changed.
func (o *exportOutput) featureValues(j *exportJoin, f int, t larder.Type, lo int, vals []parquet.Value, cnt *[whyCount]int64) {
	why := o.why[j.id]
	for i := range vals {
		if why[i] != whyPresent {
			vals[i] = parquet.Value{}
			cnt[why[i]]++
			continue
		}
		v := o.presentValue(j, f, lo, i, cnt)
		vals[i] = parquetValue(t, v)
		vals[i].SetDefinitionLevel(defLevel(v))
	}
}

// presentValue returns feature f of join j's row for row i of the block
// from lo, which must have one, after the view's value rules, counting it
// in cnt when it is null: by the rules (whyRules) or as stored (whyValue).
func (o *exportOutput) presentValue(j *exportJoin, f, lo, i int, cnt *[whyCount]int64) larder.Value {
	v := j.value(lo+i, f)
	if s := o.slow[j.id][i]; s != nil {
		if s[f].IsNull() && !v.IsNull() {
			cnt[whyRules]++
		} else if v.IsNull() {
			cnt[whyValue]++
		}
		return s[f]
	}
	if v.IsNull() {
		cnt[whyValue]++
	}
	return v
}

// isList reports whether an output column of type t is a list.
func isList(t larder.Type) bool {
	switch t {
	case larder.TypeFloat32Vector, larder.TypeInt64List, larder.TypeStringList:
		return true
	}
	return false
}

// listValues appends to vals the values of feature f of join j, a list of
// type t, for the n rows from lo, and returns them, counting the nulls. The
// column is an optional list of required elements: a null list is one
// value of definition level 0, an empty list one of level 1, and each
// element one of level 2, the first of a row at repetition level 0.
func (o *exportOutput) listValues(j *exportJoin, f int, t larder.Type, lo, n int, vals []parquet.Value, cnt *[whyCount]int64) []parquet.Value {
	why := o.why[j.id]
	for i := range n {
		if why[i] != whyPresent {
			vals = append(vals, parquet.Value{})
			cnt[why[i]]++
			continue
		}
		v := o.presentValue(j, f, lo, i, cnt)
		if v.IsNull() {
			vals = append(vals, parquet.Value{})
			continue
		}
		first := len(vals)
		switch t {
		case larder.TypeFloat32Vector:
			for _, x := range v.Vector() {
				vals = append(vals, parquet.FloatValue(x).Level(1, 2, 0))
			}
		case larder.TypeInt64List:
			for _, x := range v.Int64List() {
				vals = append(vals, parquet.Int64Value(x).Level(1, 2, 0))
			}
		default:
			for _, x := range v.StringList() {
				vals = append(vals, parquet.ByteArrayValue([]byte(x)).Level(1, 2, 0))
			}
		}
		if len(vals) == first {
			vals = append(vals, parquet.Value{}.Level(0, 1, 0))
			continue
		}
		vals[first].SetRepetitionLevel(0)
	}
	return vals
}

// mayRefuse reports whether the value rules of j may refuse a value of its
// row for spine row r: a float that is not finite, or a value too large.
func (o *exportOutput) mayRefuse(j *exportJoin, r int) bool {
	for _, c := range j.rules.checks {
		v := j.value(r, c.feature)
		if !v.IsNull() && ((c.limited && v.Size() > j.rules.limit) || (c.finite && !v.Finite())) {
			return true
		}
	}
	return false
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

// spineCopy copies the spine's columns of a chunk's rows to the output, in
// order.
type spineCopy interface {
	// copy writes the next n rows of the columns that are worker w's of
	// workers. Workers call it at once.
	copy(w, workers, n int) error
	close()
}

// leafCopy copies unrepeated spine columns one at a time, value by value
// from their pages.
type leafCopy struct {
	o      *exportOutput
	groups []*rowGroup
	leaves []leafReader
}

// leafReader reads the values of one spine column through the row groups
// of a chunk.
type leafReader struct {
	col   int
	g     int // the row group, in groups
	left  int // its rows not yet read
	pages parquet.Pages
	page  parquet.Page
	vr    parquet.ValueReader
	buf   []parquet.Value
	pend  []parquet.Value // read, not yet written
}

func newLeafCopy(o *exportOutput, ch *spineChunk) *leafCopy {
	c := &leafCopy{o: o, groups: ch.groups, leaves: make([]leafReader, o.leaves)}
	for i := range c.leaves {
		c.leaves[i] = leafReader{col: i, g: -1, buf: o.vals[i]}
	}
	return c
}

func (c *leafCopy) copy(w, workers, n int) error {
	for i := w; i < len(c.leaves); i += workers {
		lr := &c.leaves[i]
		for left := n; left > 0; {
			if len(lr.pend) == 0 {
				if err := c.read(lr); err != nil {
					return err
				}
			}
			k := min(left, len(lr.pend))
			if err := c.write(lr, k); err != nil {
				return err
			}
			lr.pend, left = lr.pend[k:], left-k
		}
	}
	return nil
}

// write writes the next k values of lr to the output. The output's column
// has the spine's type: a panic of the Parquet library on a type a corrupt
// footer made up is returned as an error naming the spine file.
func (c *leafCopy) write(lr *leafReader, k int) error {
	var werr error
	err := recoverRead(func() error {
		_, werr = c.o.cols[lr.col].WriteRowValues(lr.pend[:k])
		return nil
	})
	if err != nil {
		return c.fail(lr, err)
	}
	if werr != nil {
		return fmt.Errorf("write the output: %w", werr)
	}
	return nil
}

// read reads the next values of lr into lr.pend, moving to the next page
// or row group as needed. A panic of the Parquet library on a malformed
// file is returned as an error naming the file.
func (c *leafCopy) read(lr *leafReader) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = c.fail(lr, fmt.Errorf("malformed file: %v", r))
		}
	}()
	for {
		if lr.vr != nil && lr.left > 0 {
			n, err := lr.vr.ReadValues(lr.buf[:min(len(lr.buf), lr.left)])
			if n > 0 {
				lr.pend, lr.left = lr.buf[:n], lr.left-n
				return nil
			}
			if err != nil && err != io.EOF {
				return c.fail(lr, err)
			}
		}
		if lr.page != nil {
			parquet.Release(lr.page)
			lr.page, lr.vr = nil, nil
		}
		if lr.pages != nil && lr.left > 0 {
			p, err := lr.pages.ReadPage()
			if err == io.EOF {
				return c.fail(lr, fmt.Errorf("%w: fewer rows than its row group", errCorrupt))
			}
			if err != nil {
				return c.fail(lr, err)
			}
			lr.page, lr.vr = p, p.Values()
			continue
		}
		if lr.pages != nil {
			lr.pages.Close()
			lr.pages = nil
		}
		lr.g++
		if lr.g >= len(c.groups) {
			return fmt.Errorf("export: spine: %w: more rows than read", errCorrupt)
		}
		rg := c.groups[lr.g]
		lr.left = int(rg.numRows)
		lr.pages = rg.file.pf.RowGroups()[rg.index].ColumnChunks()[lr.col].Pages()
	}
}

func (c *leafCopy) fail(lr *leafReader, err error) error {
	rg := c.groups[max(lr.g, 0)]
	return fmt.Errorf("spine %s row group %d cannot be read: column %q: %w",
		rg.file.path, rg.index, strings.Join(rg.file.pf.Schema().Columns()[lr.col], "."), err)
}

func (c *leafCopy) close() {
	for i := range c.leaves {
		lr := &c.leaves[i]
		if lr.page != nil {
			parquet.Release(lr.page)
		}
		if lr.pages != nil {
			lr.pages.Close()
		}
		*lr = leafReader{}
	}
}

// rowCopy copies the spine's columns row by row, for spines with repeated
// columns: it reads whole rows and splits their values by column, all on
// worker 0.
type rowCopy struct {
	o      *exportOutput
	groups []*rowGroup
	g      int
	rows   parquet.Rows
	buf    []parquet.Row
	pend   []parquet.Row
	vals   [][]parquet.Value // by spine column
}

func newRowCopy(o *exportOutput, ch *spineChunk) *rowCopy {
	return &rowCopy{o: o, groups: ch.groups, g: -1, buf: make([]parquet.Row, 256), vals: make([][]parquet.Value, o.leaves)}
}

func (c *rowCopy) copy(w, _, n int) (err error) {
	if w != 0 {
		return nil
	}
	defer func() {
		// A malformed spine file can make the Parquet library panic as
		// its rows are read, or as they are written to the output's
		// columns, which have the spine's types that a corrupt footer
		// can make up.
		if r := recover(); r != nil {
			rg := c.groups[max(c.g, 0)]
			err = fmt.Errorf("spine %s row group %d cannot be read: malformed file: %v", rg.file.path, rg.index, r)
		}
	}()
	for n > 0 {
		if len(c.pend) == 0 {
			if err := c.read(); err != nil {
				return err
			}
		}
		k := min(n, len(c.pend))
		for i := range c.vals {
			c.vals[i] = c.vals[i][:0]
		}
		for _, row := range c.pend[:k] {
			for _, v := range row {
				c.vals[v.Column()] = append(c.vals[v.Column()], v)
			}
		}
		for i, vs := range c.vals {
			if _, err := c.o.cols[i].WriteRowValues(vs); err != nil {
				return fmt.Errorf("write the output: %w", err)
			}
		}
		c.pend, n = c.pend[k:], n-k
	}
	return nil
}

func (c *rowCopy) read() error {
	for {
		if c.rows != nil {
			n, err := c.rows.ReadRows(c.buf)
			if n > 0 {
				c.pend = c.buf[:n]
				return nil
			}
			if err != nil && err != io.EOF {
				rg := c.groups[c.g]
				return fmt.Errorf("spine %s row group %d cannot be read: %w", rg.file.path, rg.index, err)
			}
			c.rows.Close()
			c.rows = nil
		}
		c.g++
		if c.g >= len(c.groups) {
			return fmt.Errorf("export: spine: %w: more rows than read", errCorrupt)
		}
		rg := c.groups[c.g]
		c.rows = rg.file.pf.RowGroups()[rg.index].Rows()
	}
}

func (c *rowCopy) close() {
	if c.rows != nil {
		c.rows.Close()
		c.rows = nil
	}
}

// commit completes the file and makes it the output, synced to disk (see
// commitOutputTemp).
func (o *exportOutput) commit() error {
	if err := o.w.Close(); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	if err := commitOutputTemp(o.f, o.path, o.stale); err != nil {
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
