package materializer

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/larder-dev/larder"
	"github.com/parquet-go/parquet-go"
)

// exportOutput is the Parquet file an export writes: a temporary file next
// to the output, renamed over it by commit.
type exportOutput struct {
	path   string
	f      *os.File
	w      *parquet.GenericWriter[any]
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
	o.w = parquet.NewGenericWriter[any](f, parquet.NewSchema("export", cols), parquet.MaxRowsPerRowGroup(scoreRowGroup))
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
