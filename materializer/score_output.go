package materializer

import (
	"fmt"
	"os"
	"reflect"

	"github.com/larder-dev/larder"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
)

// scoreRowGroup is the number of rows per row group of a scoring job's
// output: what the writer buffers before it writes them out.
const scoreRowGroup = 64 << 10

// scoreOutput is the Parquet file a scoring job writes: a temporary file
// next to the output, renamed over it by commit.
type scoreOutput struct {
	path string
	f    *os.File
	// stale holds the temporary files of the same output found when f was
	// created (see removeStaleTemps).
	stale []string
	w     *parquet.GenericWriter[any]
	// types are the key columns' key types; rows are reused batch to batch.
	types []larder.Type
	rows  []parquet.Row
	vals  int
}

// createScoreOutput creates the temporary file of the output at path, with
// the columns of plan: its key columns (INT64 or BYTE_ARRAY STRING, after
// the key type), then one FLOAT column per model output.
func createScoreOutput(path string, plan *scorePlan) (*scoreOutput, error) {
	cols := make(columnsNode, 0, plan.nkeys+len(plan.outputs))
	o := &scoreOutput{path: path, vals: len(plan.outputs)}
	for _, s := range plan.specs[:plan.nkeys] {
		node := parquet.Leaf(parquet.Int64Type)
		if s.typ == larder.TypeString {
			node = parquet.String()
		}
		cols = append(cols, columnField{Node: node, name: s.column})
		o.types = append(o.types, s.typ)
	}
	for _, name := range plan.outputs {
		cols = append(cols, columnField{Node: parquet.Leaf(parquet.FloatType), name: name})
	}
	seen := make(map[string]bool, len(cols))
	for _, c := range cols {
		if seen[c.name] {
			return nil, fmt.Errorf("the output would have two columns named %q", c.name)
		}
		seen[c.name] = true
	}
	f, stale, err := createOutputTemp(path)
	if err != nil {
		return nil, fmt.Errorf("create the output: %w", err)
	}
	o.f, o.stale = f, stale
	o.w = parquet.NewGenericWriter[any](f, parquet.NewSchema("scores", cols), parquet.MaxRowsPerRowGroup(scoreRowGroup))
	return o, nil
}

// write adds one row per key of keys[0]: the keys of each key column, then
// the row's values of y, vals per row.
func (o *scoreOutput) write(keys [][]larder.Key, y []float32) error {
	n := len(keys[0])
	for len(o.rows) < n {
		o.rows = append(o.rows, make(parquet.Row, 0, len(keys)+o.vals))
	}
	rows := o.rows[:n]
	for i := range rows {
		row := rows[i][:0]
		for c, ks := range keys {
			k := ks[i]
			var v parquet.Value
			if o.types[c] == larder.TypeString {
				v = parquet.ByteArrayValue([]byte(k.Str()))
			} else {
				v = parquet.Int64Value(k.Int64())
			}
			row = append(row, v.Level(0, 0, c))
		}
		for j, s := range y[i*o.vals : (i+1)*o.vals] {
			row = append(row, parquet.FloatValue(s).Level(0, 0, len(keys)+j))
		}
		rows[i] = row
	}
	if _, err := o.w.WriteRows(rows); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	return nil
}

// commit completes the file and makes it the output, synced to disk (see
// commitOutputTemp).
func (o *scoreOutput) commit() error {
	if err := o.w.Close(); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	if err := commitOutputTemp(o.f, o.path, o.stale); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	return nil
}

// discard closes and removes the temporary file, best effort: a failed
// commit may have closed it already.
func (o *scoreOutput) discard() {
	_ = o.f.Close()
	_ = os.Remove(o.f.Name())
}

// columnsNode is a Parquet group whose columns keep the order given, where
// parquet.Group orders them by name.
type columnsNode []columnField

// columnField is one column of a columnsNode.
type columnField struct {
	parquet.Node
	name string
}

func (f columnField) Name() string { return f.name }

// Value returns the field of a struct with the column's name. Rows are
// written as parquet.Row values, so it serves only reflection.
func (f columnField) Value(base reflect.Value) reflect.Value { return base.FieldByName(f.name) }

func (g columnsNode) group() parquet.Group {
	m := make(parquet.Group, len(g))
	for _, c := range g {
		m[c.name] = c.Node
	}
	return m
}

func (g columnsNode) ID() int                     { return 0 }
func (g columnsNode) String() string              { return g.group().String() }
func (g columnsNode) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g columnsNode) Optional() bool              { return false }
func (g columnsNode) Repeated() bool              { return false }
func (g columnsNode) Required() bool              { return true }
func (g columnsNode) Leaf() bool                  { return false }
func (g columnsNode) Encoding() encoding.Encoding { return nil }
func (g columnsNode) Compression() compress.Codec { return nil }
func (g columnsNode) GoType() reflect.Type        { return g.group().GoType() }

func (g columnsNode) Fields() []parquet.Field {
	fs := make([]parquet.Field, len(g))
	for i := range g {
		fs[i] = g[i]
	}
	return fs
}
