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
// A typed accessor reads the columns of its type (Int64 an int64 column)
// and returns the type's zero value for a null value; IsNull and Status
// tell a null from a zero. An accessor of another type than its column's
// (Float64 of an int64 column) panics, with a message that names the
// column, its type and its accessor, as reflect.Value.Int does of a
// string: a zero in its place would look like a value. (The panic's value
// is an error, whose message is built only when it is read.) Type tells a
// column's type, ColumnOfType checks it once per column with an error
// instead, and Value reads a column of any type. A column or row out of
// range panics too, as an index of a slice does. A Features is safe to
// read from several goroutines.
type Features struct {
	// resp is the message NewFeatures was given, or the one Response
	// builds.
	respOnce sync.Once
	resp     *larderv1.GetFeaturesResponse
	// data is the bytes being decoded, while they are, and fresh the names
	// the decode met that were not kept yet (see intern).
	data  []byte
	fresh []string

	rows  int
	cols  []column
	views []viewRows
	gens  []generation // by view

	// The values of the columns, one array per type, shared by the columns
	// of the type (a list column's elements are in the array of their
	// type); nulls holds rows flags per column with null rows, and offsets
	// rows+1 offsets per list column.
	int64s   []int64
	float64s []float64
	float32s []float32
	bools    []bool
	strings  []string
	bytes    [][]byte
	nulls    []bool
	offsets  []int

	// byRef indexes the columns by name, built by the first call of
	// Column: a caller that reads columns by index never pays for it.
	byRefOnce sync.Once
	byRef     map[string]int
}

// column describes one column of a Features.
type column struct {
	name string
	typ  larderv1.ValueType
	view int32
	// start is the index of the column's first value, or list element, in
	// the array of its type.
	start int
	// nulls is the index of the column's first row in Features.nulls, or
	// noNulls, or allNull for a type this client does not know.
	nulls int
	// offsets is the index of the column's first offset in
	// Features.offsets; -1 for a type that is not a list.
	offsets int
}

const (
	noNulls = -1
	allNull = -2
)

// generation is a larderv1.ViewGeneration: the generation of a view that
// was read.
type generation struct {
	view, model          string
	generation, tileTime int64
}

// viewRows is the status and event time of each row in one view.
type viewRows struct {
	name     string
	statuses []larderv1.FeatureStatus
	times    []int64
}

// NewFeatures checks the shape of resp (every array of the length its
// header says, every view index in range) and returns its typed view. It
// returns an error naming the column or view at fault for a response that
// does not hold together, which no larder server sends. Client.GetFeatures
// decodes the server's bytes with DecodeFeatures instead, without building
// the message.
func NewFeatures(resp *larderv1.GetFeaturesResponse) (*Features, error) {
	data, err := resp.MarshalVT()
	if err != nil {
		return nil, err
	}
	f := &Features{resp: resp}
	if err := f.decode(data); err != nil {
		return nil, err
	}
	return f, nil
}

// Response returns the response as a message. A Features made by
// NewFeatures returns the message it was given. One decoded from bytes
// builds it on the first call, from its columns, which share their arrays
// with it: the message holds what the columns hold, without the fields
// this client does not know, nor the values of a column of a type it does
// not know.
func (f *Features) Response() *larderv1.GetFeaturesResponse {
	f.respOnce.Do(func() {
		if f.resp == nil {
			f.resp = f.message()
		}
	})
	return f.resp
}

// message builds the response's message from f.
func (f *Features) message() *larderv1.GetFeaturesResponse {
	m := &larderv1.GetFeaturesResponse{RowCount: int32(f.rows)}
	for _, g := range f.gens {
		m.Generations = append(m.Generations, &larderv1.ViewGeneration{View: g.view, Generation: g.generation, Model: g.model, TileTimeMicros: g.tileTime})
	}
	for _, v := range f.views {
		m.Views = append(m.Views, &larderv1.ViewRows{View: v.name, Statuses: v.statuses, EventTimeMicros: v.times})
	}
	for _, c := range f.cols {
		fc := &larderv1.FeatureColumn{Name: c.name, Type: c.typ, View: c.view}
		if c.nulls >= 0 {
			for r, null := range f.nulls[c.nulls : c.nulls+f.rows] {
				if null {
					fc.NullRows = append(fc.NullRows, int32(r))
				}
			}
		}
		n := f.rows
		if c.offsets >= 0 {
			for r := range f.rows {
				fc.ListLengths = append(fc.ListLengths, int32(f.offsets[c.offsets+r+1]-f.offsets[c.offsets+r]))
			}
			n = f.offsets[c.offsets+f.rows]
		}
		from, to := c.start, c.start+n
		switch valuesField(c.typ) {
		case colInt64:
			fc.Int64Values = f.int64s[from:to:to]
		case colFloat64:
			fc.Float64Values = f.float64s[from:to:to]
		case colFloat32:
			fc.Float32Values = f.float32s[from:to:to]
		case colBool:
			fc.BoolValues = f.bools[from:to:to]
		case colString:
			fc.StringValues = f.strings[from:to:to]
		case colBytes:
			fc.BytesValues = f.bytes[from:to:to]
		case colFloat32Vector:
			fc.Float32VectorValues = f.float32s[from:to:to]
		case colInt64List:
			fc.Int64ListValues = f.int64s[from:to:to]
		case colStringList:
			fc.StringListValues = f.strings[from:to:to]
		}
		m.Columns = append(m.Columns, fc)
	}
	return m
}

// Rows returns the number of rows: the number of keys of the request.
func (f *Features) Rows() int { return f.rows }

// Columns returns the number of columns.
func (f *Features) Columns() int { return len(f.cols) }

// Column returns the index of the column named ref ("view:feature"), and
// false when the response has no such column. The index of a column that
// is not there is -1, so that an accessor given it panics instead of
// reading another column: check ok, or know the request's references.
// ColumnOfType checks the column's type too, and answers an error.
func (f *Features) Column(ref string) (int, bool) {
	f.byRefOnce.Do(func() {
		f.byRef = make(map[string]int, len(f.cols))
		for i := len(f.cols) - 1; i >= 0; i-- { // the first of a name wins
			f.byRef[f.cols[i].name] = i
		}
	})
	i, ok := f.byRef[ref]
	if !ok {
		return -1, false
	}
	return i, true
}

// ColumnOfType returns the index of the column named ref ("view:feature"),
// as Column does, after checking that it is of type t: a service that
// looks its columns up once per response with it gets an error, instead of
// the panic of a typed accessor, when a view's feature changed type. It
// returns -1 and an error that names what is wrong when the response has
// no such column or the column is of another type.
func (f *Features) ColumnOfType(ref string, t larderv1.ValueType) (int, error) {
	col, ok := f.Column(ref)
	if !ok {
		return -1, fmt.Errorf("client: no column %q in the response: it holds the columns of the request's references (\"view:feature\" or \"view:*\")", ref)
	}
	if c := &f.cols[col]; c.typ != t {
		name, advice := describe(c.typ)
		want, _ := typeName(t)
		return -1, fmt.Errorf("client: column %q is of type %s, not %s: %s", ref, name, want, advice)
	}
	return col, nil
}

// Name returns the name of column col, "view:feature".
func (f *Features) Name(col int) string { return f.col(col).name }

// Type returns the declared type of column col.
func (f *Features) Type(col int) larderv1.ValueType { return f.col(col).typ }

// View returns the name of the view column col was read from.
func (f *Features) View(col int) string { return f.views[f.col(col).view].name }

// Generation returns the generation of the view of column col that was
// read; 0 when the response does not say (a larder server always does).
func (f *Features) Generation(col int) int64 {
	if v := int(f.col(col).view); v < len(f.gens) {
		return f.gens[v].generation
	}
	return 0
}

// IsNull reports whether the value of column col in row row is null: its
// view holds no row for the key (Status says FEATURE_STATUS_NOT_FOUND), or
// the stored value is null. Every row of a column of a type this client
// does not know, from a later version of the API, is null.
func (f *Features) IsNull(col, row int) bool {
	c := f.col(col)
	f.checkRow(row)
	switch c.nulls {
	case noNulls:
		return false
	case allNull:
		return true
	}
	return f.nulls[c.nulls+row]
}

// checkRow panics when row is out of range, as an index of a slice does.
func (f *Features) checkRow(row int) {
	if uint(row) >= uint(f.rows) {
		panic(rowOutOfRange{row, f.rows})
	}
}

// col returns column col, and panics when col is out of range, as an
// index of a slice does.
func (f *Features) col(col int) *column {
	if uint(col) >= uint(len(f.cols)) {
		panic(colOutOfRange{col, len(f.cols)})
	}
	return &f.cols[col]
}

// rowOutOfRange and colOutOfRange are the panics of a row or column out of
// range, of n. Their messages are built when they are printed, which keeps
// the functions that check a row or column small enough to be inlined.
type (
	rowOutOfRange struct{ i, n int }
	colOutOfRange struct{ i, n int }
)

func (e rowOutOfRange) Error() string {
	return fmt.Sprintf("client: row %d out of range [0, %d)", e.i, e.n)
}

func (e colOutOfRange) Error() string {
	msg := fmt.Sprintf("client: column %d out of range [0, %d)", e.i, e.n)
	if e.i == -1 {
		msg += " (Column answers -1 for a name the response lacks)"
	}
	return msg
}

// Status returns whether the key of row row was found in the view of
// column col, and whether it is fresh. Every column of a view shares it.
func (f *Features) Status(col, row int) larderv1.FeatureStatus {
	statuses := f.views[f.col(col).view].statuses
	f.checkRow(row)
	return statuses[row]
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
	times := f.views[f.col(col).view].times
	f.checkRow(row)
	us := times[row]
	if us == 0 && !f.Found(col, row) {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// Int64 returns the value of an int64 column; 0 when it is null. It
// panics for a column of another type.
func (f *Features) Int64(col, row int) int64 {
	return at(f, col, row, larderv1.ValueType_VALUE_TYPE_INT64, f.int64s)
}

// Float64 returns the value of a float64 column; 0 when it is null. It
// panics for a column of another type.
func (f *Features) Float64(col, row int) float64 {
	return at(f, col, row, larderv1.ValueType_VALUE_TYPE_FLOAT64, f.float64s)
}

// Float32 returns the value of a float32 column; 0 when it is null. It
// panics for a column of another type.
func (f *Features) Float32(col, row int) float32 {
	return at(f, col, row, larderv1.ValueType_VALUE_TYPE_FLOAT32, f.float32s)
}

// Bool returns the value of a bool column; false when it is null. It
// panics for a column of another type.
func (f *Features) Bool(col, row int) bool {
	return at(f, col, row, larderv1.ValueType_VALUE_TYPE_BOOL, f.bools)
}

// String returns the value of a string column; "" when it is null. It
// panics for a column of another type.
func (f *Features) String(col, row int) string {
	return at(f, col, row, larderv1.ValueType_VALUE_TYPE_STRING, f.strings)
}

// Bytes returns the value of a bytes column, not a copy; nil when it is
// null. It panics for a column of another type.
func (f *Features) Bytes(col, row int) []byte {
	return at(f, col, row, larderv1.ValueType_VALUE_TYPE_BYTES, f.bytes)
}

// Float32Vector returns the value of a float32_vector column, not a copy;
// empty when it is null. It panics for a column of another type.
func (f *Features) Float32Vector(col, row int) []float32 {
	return list(f, col, row, larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR, f.float32s)
}

// Int64List returns the value of an int64_list column, not a copy; empty
// when it is null. It panics for a column of another type.
func (f *Features) Int64List(col, row int) []int64 {
	return list(f, col, row, larderv1.ValueType_VALUE_TYPE_INT64_LIST, f.int64s)
}

// StringList returns the value of a string_list column, not a copy; empty
// when it is null. It panics for a column of another type.
func (f *Features) StringList(col, row int) []string {
	return list(f, col, row, larderv1.ValueType_VALUE_TYPE_STRING_LIST, f.strings)
}

// Value returns the value of column col in row row as one larderv1.Value,
// whatever its type: a Value with no kind set when it is null (see
// IsNull). It allocates; the typed accessors do not.
func (f *Features) Value(col, row int) *larderv1.Value {
	if f.IsNull(col, row) {
		return &larderv1.Value{}
	}
	switch f.cols[col].typ {
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

// Row returns row i. It panics when i is out of range, as an index of a
// slice does.
func (f *Features) Row(i int) Row {
	f.checkRow(i)
	return Row{f: f, row: i}
}

// Row is one row of a Features: the values of one key. Its accessors are
// those of Features that read a value, with the row fixed.
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

// Found is Features.Found of the row.
func (r Row) Found(col int) bool { return r.f.Found(col, r.row) }

// Float32Vector is Features.Float32Vector of the row.
func (r Row) Float32Vector(col int) []float32 { return r.f.Float32Vector(col, r.row) }

// Int64List is Features.Int64List of the row.
func (r Row) Int64List(col int) []int64 { return r.f.Int64List(col, r.row) }

// StringList is Features.StringList of the row.
func (r Row) StringList(col int) []string { return r.f.StringList(col, r.row) }

// Value is Features.Value of the row.
func (r Row) Value(col int) *larderv1.Value { return r.f.Value(col, r.row) }

// at returns the value of row row of column col, whose array of values, of
// every column of type t, is vals. It panics for a column of another type.
func at[T any](f *Features, col, row int, t larderv1.ValueType, vals []T) T {
	c := f.col(col)
	f.checkRow(row)
	if c.typ != t {
		panic(wrongType{col, c, t})
	}
	return vals[c.start+row]
}

// list returns row row's elements of column col, whose array of elements,
// of every column of type t, is elems. It panics for a column of another
// type.
func list[T any](f *Features, col, row int, t larderv1.ValueType, elems []T) []T {
	c := f.col(col)
	f.checkRow(row)
	if c.typ != t {
		panic(wrongType{col, c, t})
	}
	if c.offsets < 0 { // not a list: decode gives every list column offsets
		return nil
	}
	from, to := c.start+f.offsets[c.offsets+row], c.start+f.offsets[c.offsets+row+1]
	return elems[from:to:to]
}

// wrongType is the panic of the accessor of type accessor (the accessor's
// name is the type's) on column col, of another type. Its message is
// built when it is printed, which keeps the accessors small.
type wrongType struct {
	col      int
	c        *column
	accessor larderv1.ValueType
}

func (e wrongType) Error() string {
	_, accessor := typeName(e.accessor)
	name, advice := describe(e.c.typ)
	return fmt.Sprintf("client: %s of column %d %q, a column of type %s: %s", accessor, e.col, e.c.name, name, advice)
}

// typeName returns the name of type t as larder's configuration spells it
// ("float32_vector"), and the name of its accessor ("Float32Vector"); for a
// type this client does not know, its number and "".
func typeName(t larderv1.ValueType) (name, accessor string) {
	switch t {
	case larderv1.ValueType_VALUE_TYPE_INT64:
		return "int64", "Int64"
	case larderv1.ValueType_VALUE_TYPE_FLOAT64:
		return "float64", "Float64"
	case larderv1.ValueType_VALUE_TYPE_FLOAT32:
		return "float32", "Float32"
	case larderv1.ValueType_VALUE_TYPE_BOOL:
		return "bool", "Bool"
	case larderv1.ValueType_VALUE_TYPE_STRING:
		return "string", "String"
	case larderv1.ValueType_VALUE_TYPE_BYTES:
		return "bytes", "Bytes"
	case larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR:
		return "float32_vector", "Float32Vector"
	case larderv1.ValueType_VALUE_TYPE_INT64_LIST:
		return "int64_list", "Int64List"
	case larderv1.ValueType_VALUE_TYPE_STRING_LIST:
		return "string_list", "StringList"
	}
	return fmt.Sprint(int32(t)), ""
}

// describe names type t for a message, and says how to read a column of
// it: "int64" and "read it with Int64, or any type with Value".
func describe(t larderv1.ValueType) (name, advice string) {
	name, accessor := typeName(t)
	if accessor == "" {
		return name + " that this client does not know", "Value reads it as null"
	}
	return name, "read it with " + accessor + ", or any type with Value"
}
