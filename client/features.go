package client

import (
	"fmt"
	"iter"
	"sync"
	"time"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// Features is a GetFeatures response with typed accessors over its
// columns. Row i holds the values of the i-th key of the request; a column
// is addressed by its index (in the order of the request's references, as
// the server resolved them) or, through Column, by its name "view:feature".
//
// An accessor of the wrong type for its column (Float64 of an int64
// column) returns the type's zero value, as does a null value; IsNull and
// Status tell those apart. A column or row out of range panics, as an
// index of a slice does. A Features is safe to read from several
// goroutines.
type Features struct {
	// Response is the response as the server sent it.
	Response *larderv1.GetFeaturesResponse

	rows  int
	cols  []*larderv1.FeatureColumn
	views []*larderv1.ViewRows
	// byRef indexes the columns by name, built by the first call of
	// Column: a caller that reads columns by index never pays for it.
	byRefOnce sync.Once
	byRef     map[string]int
	// null holds, by column, which rows are null; nil for a column without
	// nulls. offsets holds, by column of a list type, where each row's
	// elements start in the column's array (rows+1 of them).
	null    [][]bool
	offsets [][]int
}

// NewFeatures checks the shape of resp (every array of the length its
// header says, every view index in range) and returns its typed view. It
// returns an error naming the column or view at fault for a response that
// does not hold together, which no larder server sends.
func NewFeatures(resp *larderv1.GetFeaturesResponse) (*Features, error) {
	f := &Features{
		Response: resp,
		rows:     int(resp.GetRowCount()),
		cols:     resp.GetColumns(),
		views:    resp.GetViews(),
		null:     make([][]bool, len(resp.GetColumns())),
		offsets:  make([][]int, len(resp.GetColumns())),
	}
	if f.rows < 0 {
		return nil, fmt.Errorf("row_count %d is negative", f.rows)
	}
	for j, v := range f.views {
		if len(v.GetStatuses()) != f.rows || len(v.GetEventTimeMicros()) != f.rows {
			return nil, fmt.Errorf("views[%d] (%s): %d statuses and %d event times for %d rows", j, v.GetView(), len(v.GetStatuses()), len(v.GetEventTimeMicros()), f.rows)
		}
	}
	for i, c := range f.cols {
		if v := int(c.GetView()); v < 0 || v >= len(f.views) {
			return nil, fmt.Errorf("columns[%d] (%s): view %d, but the response has %d views", i, c.GetName(), v, len(f.views))
		}
		if !known(c.GetType()) {
			// A type this client does not know: every row reads as null.
			null := make([]bool, f.rows)
			for r := range null {
				null[r] = true
			}
			f.null[i] = null
			continue
		}
		n, elems := valuesLen(c)
		if n != f.rows {
			return nil, fmt.Errorf("columns[%d] (%s): %d values of type %s for %d rows", i, c.GetName(), n, c.GetType(), f.rows)
		}
		if elems >= 0 {
			offsets := make([]int, f.rows+1)
			for r, l := range c.GetListLengths() {
				if l < 0 {
					return nil, fmt.Errorf("columns[%d] (%s): row %d has a list of %d elements", i, c.GetName(), r, l)
				}
				offsets[r+1] = offsets[r] + int(l)
			}
			if offsets[f.rows] != elems {
				return nil, fmt.Errorf("columns[%d] (%s): list lengths add up to %d, but the column has %d elements", i, c.GetName(), offsets[f.rows], elems)
			}
			f.offsets[i] = offsets
		}
		if nulls := c.GetNullRows(); len(nulls) > 0 {
			null := make([]bool, f.rows)
			for _, r := range nulls {
				if r < 0 || int(r) >= f.rows {
					return nil, fmt.Errorf("columns[%d] (%s): null row %d of %d rows", i, c.GetName(), r, f.rows)
				}
				null[r] = true
			}
			f.null[i] = null
		}
	}
	return f, nil
}

// valuesLen returns how many rows c's array of its type holds and, for a
// list type, how many elements its rows hold together (else -1).
func valuesLen(c *larderv1.FeatureColumn) (rows, elems int) {
	switch c.GetType() {
	case larderv1.ValueType_VALUE_TYPE_INT64:
		return len(c.GetInt64Values()), -1
	case larderv1.ValueType_VALUE_TYPE_FLOAT64:
		return len(c.GetFloat64Values()), -1
	case larderv1.ValueType_VALUE_TYPE_FLOAT32:
		return len(c.GetFloat32Values()), -1
	case larderv1.ValueType_VALUE_TYPE_BOOL:
		return len(c.GetBoolValues()), -1
	case larderv1.ValueType_VALUE_TYPE_STRING:
		return len(c.GetStringValues()), -1
	case larderv1.ValueType_VALUE_TYPE_BYTES:
		return len(c.GetBytesValues()), -1
	case larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR:
		return len(c.GetListLengths()), len(c.GetFloat32VectorValues())
	case larderv1.ValueType_VALUE_TYPE_INT64_LIST:
		return len(c.GetListLengths()), len(c.GetInt64ListValues())
	case larderv1.ValueType_VALUE_TYPE_STRING_LIST:
		return len(c.GetListLengths()), len(c.GetStringListValues())
	}
	return 0, -1
}

// Rows returns the number of rows: the number of keys of the request.
func (f *Features) Rows() int { return f.rows }

// Columns returns the number of columns.
func (f *Features) Columns() int { return len(f.cols) }

// Column returns the index of the column named ref ("view:feature"), and
// false when the response has no such column.
func (f *Features) Column(ref string) (int, bool) {
	f.byRefOnce.Do(func() {
		f.byRef = make(map[string]int, len(f.cols))
		for i := len(f.cols) - 1; i >= 0; i-- { // the first of a name wins
			f.byRef[f.cols[i].GetName()] = i
		}
	})
	i, ok := f.byRef[ref]
	return i, ok
}

// Name returns the name of column col, "view:feature".
func (f *Features) Name(col int) string { return f.cols[col].GetName() }

// Type returns the declared type of column col.
func (f *Features) Type(col int) larderv1.ValueType { return f.cols[col].GetType() }

// View returns the name of the view column col was read from.
func (f *Features) View(col int) string { return f.views[f.cols[col].GetView()].GetView() }

// Generation returns the generation of the view of column col that was
// read.
func (f *Features) Generation(col int) int64 {
	if g := f.Response.GetGenerations(); int(f.cols[col].GetView()) < len(g) {
		return g[f.cols[col].GetView()].GetGeneration()
	}
	return 0
}

// IsNull reports whether the value of column col in row row is null: its
// view holds no row for the key (Status says FEATURE_STATUS_NOT_FOUND), or
// the stored value is null.
func (f *Features) IsNull(col, row int) bool {
	if row < 0 || row >= f.rows {
		panic(fmt.Sprintf("client: row %d out of range [0, %d)", row, f.rows))
	}
	if null := f.null[col]; null != nil {
		return null[row]
	}
	return false
}

// known reports whether t is a type this client reads.
func known(t larderv1.ValueType) bool {
	return t >= larderv1.ValueType_VALUE_TYPE_INT64 && t <= larderv1.ValueType_VALUE_TYPE_STRING_LIST
}

// Status returns whether the key of row row was found in the view of
// column col, and whether it is fresh. Every column of a view shares it.
func (f *Features) Status(col, row int) larderv1.FeatureStatus {
	return f.views[f.cols[col].GetView()].GetStatuses()[row]
}

// Found reports whether the view of column col holds a row for the key of
// row row: its status is FEATURE_STATUS_PRESENT or FEATURE_STATUS_STALE.
func (f *Features) Found(col, row int) bool {
	s := f.Status(col, row)
	return s == larderv1.FeatureStatus_FEATURE_STATUS_PRESENT || s == larderv1.FeatureStatus_FEATURE_STATUS_STALE
}

// EventTime returns the event time of the source row that the values of
// row row in the view of column col were computed from, in UTC; the zero
// time when the view holds no row for the key.
func (f *Features) EventTime(col, row int) time.Time {
	us := f.views[f.cols[col].GetView()].GetEventTimeMicros()[row]
	if us == 0 && !f.Found(col, row) {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// Int64 returns the value of an int64 column; 0 when it is null.
func (f *Features) Int64(col, row int) int64 { return at(f.cols[col].GetInt64Values(), row) }

// Float64 returns the value of a float64 column; 0 when it is null.
func (f *Features) Float64(col, row int) float64 { return at(f.cols[col].GetFloat64Values(), row) }

// Float32 returns the value of a float32 column; 0 when it is null.
func (f *Features) Float32(col, row int) float32 { return at(f.cols[col].GetFloat32Values(), row) }

// Bool returns the value of a bool column; false when it is null.
func (f *Features) Bool(col, row int) bool { return at(f.cols[col].GetBoolValues(), row) }

// String returns the value of a string column; "" when it is null.
func (f *Features) String(col, row int) string { return at(f.cols[col].GetStringValues(), row) }

// Bytes returns the value of a bytes column, not a copy; nil when it is
// null.
func (f *Features) Bytes(col, row int) []byte { return at(f.cols[col].GetBytesValues(), row) }

// Float32Vector returns the value of a float32_vector column, not a copy;
// empty when it is null.
func (f *Features) Float32Vector(col, row int) []float32 {
	return list(f, col, row, f.cols[col].GetFloat32VectorValues())
}

// Int64List returns the value of an int64_list column, not a copy; empty
// when it is null.
func (f *Features) Int64List(col, row int) []int64 {
	return list(f, col, row, f.cols[col].GetInt64ListValues())
}

// StringList returns the value of a string_list column, not a copy; empty
// when it is null.
func (f *Features) StringList(col, row int) []string {
	return list(f, col, row, f.cols[col].GetStringListValues())
}

// Value returns the value of column col in row row as one larderv1.Value,
// whatever its type: a Value with no kind set when it is null. It
// allocates; the typed accessors do not.
func (f *Features) Value(col, row int) *larderv1.Value {
	if f.IsNull(col, row) {
		return &larderv1.Value{}
	}
	switch f.cols[col].GetType() {
	case larderv1.ValueType_VALUE_TYPE_INT64:
		return &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: f.Int64(col, row)}}
	case larderv1.ValueType_VALUE_TYPE_FLOAT64:
		return &larderv1.Value{Kind: &larderv1.Value_Float64Value{Float64Value: f.Float64(col, row)}}
	case larderv1.ValueType_VALUE_TYPE_FLOAT32:
		return &larderv1.Value{Kind: &larderv1.Value_Float32Value{Float32Value: f.Float32(col, row)}}
	case larderv1.ValueType_VALUE_TYPE_BOOL:
		return &larderv1.Value{Kind: &larderv1.Value_BoolValue{BoolValue: f.Bool(col, row)}}
	case larderv1.ValueType_VALUE_TYPE_STRING:
		return &larderv1.Value{Kind: &larderv1.Value_StringValue{StringValue: f.String(col, row)}}
	case larderv1.ValueType_VALUE_TYPE_BYTES:
		return &larderv1.Value{Kind: &larderv1.Value_BytesValue{BytesValue: f.Bytes(col, row)}}
	case larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR:
		return &larderv1.Value{Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{Values: f.Float32Vector(col, row)}}}
	case larderv1.ValueType_VALUE_TYPE_INT64_LIST:
		return &larderv1.Value{Kind: &larderv1.Value_Int64ListValue{Int64ListValue: &larderv1.Int64List{Values: f.Int64List(col, row)}}}
	case larderv1.ValueType_VALUE_TYPE_STRING_LIST:
		return &larderv1.Value{Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{Values: f.StringList(col, row)}}}
	}
	return &larderv1.Value{}
}

// All iterates over the rows, in request order.
func (f *Features) All() iter.Seq2[int, Row] {
	return func(yield func(int, Row) bool) {
		for i := range f.rows {
			if !yield(i, Row{f: f, row: i}) {
				return
			}
		}
	}
}

// Row returns row i.
func (f *Features) Row(i int) Row { return Row{f: f, row: i} }

// Row is one row of a Features: the values of one key. Its accessors are
// those of Features, with the row fixed.
type Row struct {
	f   *Features
	row int
}

// Index returns the row's index: the index of its key in the request.
func (r Row) Index() int { return r.row }

// IsNull is Features.IsNull of the row.
func (r Row) IsNull(col int) bool { return r.f.IsNull(col, r.row) }

// Status is Features.Status of the row.
func (r Row) Status(col int) larderv1.FeatureStatus { return r.f.Status(col, r.row) }

// EventTime is Features.EventTime of the row.
func (r Row) EventTime(col int) time.Time { return r.f.EventTime(col, r.row) }

// Int64 is Features.Int64 of the row.
func (r Row) Int64(col int) int64 { return r.f.Int64(col, r.row) }

// Float64 is Features.Float64 of the row.
func (r Row) Float64(col int) float64 { return r.f.Float64(col, r.row) }

// Float32 is Features.Float32 of the row.
func (r Row) Float32(col int) float32 { return r.f.Float32(col, r.row) }

// Bool is Features.Bool of the row.
func (r Row) Bool(col int) bool { return r.f.Bool(col, r.row) }

// String is Features.String of the row.
func (r Row) String(col int) string { return r.f.String(col, r.row) }

// Bytes is Features.Bytes of the row.
func (r Row) Bytes(col int) []byte { return r.f.Bytes(col, r.row) }

// Value is Features.Value of the row.
func (r Row) Value(col int) *larderv1.Value { return r.f.Value(col, r.row) }

// at returns s[i], or the zero value when s is empty: the array of
// another type than the column's.
func at[T any](s []T, i int) T {
	if len(s) == 0 {
		var zero T
		return zero
	}
	return s[i]
}

// list returns row row's elements of column col, whose array of elements
// is elems.
func list[T any](f *Features, col, row int, elems []T) []T {
	offsets := f.offsets[col]
	if offsets == nil || len(elems) < offsets[len(offsets)-1] {
		return nil
	}
	return elems[offsets[row]:offsets[row+1]:offsets[row+1]]
}
