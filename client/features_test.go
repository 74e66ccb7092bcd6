package client_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// everyType is a response of 2 rows with a column of each type this client
// knows, in the order of larderv1.ValueType, and one of a type from a
// later version of the API, whose rows read as null.
func everyType(tb testing.TB) *client.Features {
	tb.Helper()
	col := func(name string, t larderv1.ValueType) *larderv1.FeatureColumn {
		return &larderv1.FeatureColumn{Name: "user:" + name, Type: t}
	}
	cols := []*larderv1.FeatureColumn{
		col("age", larderv1.ValueType_VALUE_TYPE_INT64),
		col("score", larderv1.ValueType_VALUE_TYPE_FLOAT64),
		col("ctr", larderv1.ValueType_VALUE_TYPE_FLOAT32),
		col("premium", larderv1.ValueType_VALUE_TYPE_BOOL),
		col("country", larderv1.ValueType_VALUE_TYPE_STRING),
		col("avatar", larderv1.ValueType_VALUE_TYPE_BYTES),
		col("embedding", larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR),
		col("recent", larderv1.ValueType_VALUE_TYPE_INT64_LIST),
		col("tags", larderv1.ValueType_VALUE_TYPE_STRING_LIST),
		col("future", 99),
	}
	c := cols
	c[0].Int64Values = []int64{34, 0}
	c[1].Float64Values = []float64{0.75, 0}
	c[2].Float32Values = []float32{0.5, 0}
	c[3].BoolValues = []bool{true, false}
	c[4].StringValues = []string{"fr", ""}
	c[5].BytesValues = [][]byte{{1}, nil}
	c[6].ListLengths, c[6].Float32VectorValues = []int32{2, 0}, []float32{0.5, -1}
	c[7].ListLengths, c[7].Int64ListValues = []int32{1, 0}, []int64{7}
	c[8].ListLengths, c[8].StringListValues = []int32{1, 0}, []string{"a"}
	for _, col := range cols[:9] {
		col.NullRows = []int32{1}
	}
	f, err := client.NewFeatures(&larderv1.GetFeaturesResponse{
		RowCount:    2,
		Views:       []*larderv1.ViewRows{{View: "user", Statuses: []larderv1.FeatureStatus{present, present}, EventTimeMicros: []int64{1, 2}}},
		Generations: []*larderv1.ViewGeneration{{View: "user", Generation: 1}},
		Columns:     cols,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// panics returns the message fn panics with, and "" when it returns.
func panics(fn func()) (msg string) {
	defer func() {
		if p := recover(); p != nil {
			msg = fmt.Sprint(p)
		}
	}()
	fn()
	return ""
}

// accessor is one typed accessor of Features and its Row counterpart,
// with the type of column it reads.
type accessor struct {
	name string
	typ  larderv1.ValueType
	f    func(f *client.Features, col, row int)
	row  func(r client.Row, col int)
}

// accessors are the typed accessors, by family: the scalars, then the
// lists.
var accessors = []accessor{
	{"Int64", larderv1.ValueType_VALUE_TYPE_INT64,
		func(f *client.Features, c, r int) { f.Int64(c, r) }, func(r client.Row, c int) { r.Int64(c) }},
	{"Float64", larderv1.ValueType_VALUE_TYPE_FLOAT64,
		func(f *client.Features, c, r int) { f.Float64(c, r) }, func(r client.Row, c int) { r.Float64(c) }},
	{"Float32", larderv1.ValueType_VALUE_TYPE_FLOAT32,
		func(f *client.Features, c, r int) { f.Float32(c, r) }, func(r client.Row, c int) { r.Float32(c) }},
	{"Bool", larderv1.ValueType_VALUE_TYPE_BOOL,
		func(f *client.Features, c, r int) { f.Bool(c, r) }, func(r client.Row, c int) { r.Bool(c) }},
	{"String", larderv1.ValueType_VALUE_TYPE_STRING,
		func(f *client.Features, c, r int) { f.String(c, r) }, func(r client.Row, c int) { r.String(c) }},
	{"Bytes", larderv1.ValueType_VALUE_TYPE_BYTES,
		func(f *client.Features, c, r int) { f.Bytes(c, r) }, func(r client.Row, c int) { r.Bytes(c) }},
	{"Float32Vector", larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR,
		func(f *client.Features, c, r int) { f.Float32Vector(c, r) }, func(r client.Row, c int) { r.Float32Vector(c) }},
	{"Int64List", larderv1.ValueType_VALUE_TYPE_INT64_LIST,
		func(f *client.Features, c, r int) { f.Int64List(c, r) }, func(r client.Row, c int) { r.Int64List(c) }},
	{"StringList", larderv1.ValueType_VALUE_TYPE_STRING_LIST,
		func(f *client.Features, c, r int) { f.StringList(c, r) }, func(r client.Row, c int) { r.StringList(c) }},
}

// TestAccessorOfTheWrongType checks that every typed accessor, of Features
// and of Row, panics on a column of another type, null row or not, with a
// message that names the accessor, the column and its type, and the
// accessor of that type; and reads its own type's column, null rows
// included, without one.
func TestAccessorOfTheWrongType(t *testing.T) {
	f := everyType(t)
	for _, a := range accessors {
		t.Run(a.name, func(t *testing.T) {
			for col := range f.Columns() {
				for row := range f.Rows() {
					fmsg := panics(func() { a.f(f, col, row) })
					rmsg := panics(func() { a.row(f.Row(row), col) })
					if f.Type(col) == a.typ {
						if fmsg != "" || rmsg != "" {
							t.Errorf("%s of its own type's column %s, row %d: panics %q, %q", a.name, f.Name(col), row, fmsg, rmsg)
						}
						continue
					}
					typ, other := strings.ToLower(strings.TrimPrefix(f.Type(col).String(), "VALUE_TYPE_")), ""
					for _, b := range accessors {
						if b.typ == f.Type(col) {
							other = b.name
						}
					}
					if other == "" { // a type this client does not know
						typ, other = "99", "Value"
					}
					want := []string{a.name + " of column " + fmt.Sprint(col), f.Name(col), typ, other}
					for _, msg := range []string{fmsg, rmsg} {
						for _, w := range want {
							if !strings.Contains(msg, w) {
								t.Errorf("%s of column %s (%s), row %d: panics %q, want a message naming %q", a.name, f.Name(col), f.Type(col), row, msg, w)
								break
							}
						}
					}
				}
			}
		})
	}
	// The message of one, in full.
	want := `client: Float64 of column 0 "user:age", a column of type int64: read it with Int64, or any type with Value`
	if msg := panics(func() { f.Float64(0, 0) }); msg != want {
		t.Errorf("Float64 of an int64 column panics %q, want %q", msg, want)
	}
	// Value reads every column, whatever its type.
	for col := range f.Columns() {
		if msg := panics(func() { f.Value(col, 0); f.Row(1).Value(col) }); msg != "" {
			t.Errorf("Value of column %s: %s", f.Name(col), msg)
		}
	}
}

// TestOutOfRange checks that a column or row out of range, such as the -1
// that Column answers for a name the response lacks, panics with a message
// that says so, whatever reads it.
func TestOutOfRange(t *testing.T) {
	f := everyType(t)
	missing, ok := f.Column("user:nope")
	if ok || missing != -1 {
		t.Fatalf("Column of a name the response lacks = %d, %v; want -1, false", missing, ok)
	}
	reads := map[string]func(col, row int){
		"Name":       func(c, _ int) { f.Name(c) },
		"Type":       func(c, _ int) { f.Type(c) },
		"View":       func(c, _ int) { f.View(c) },
		"Generation": func(c, _ int) { f.Generation(c) },
		"IsNull":     func(c, r int) { f.IsNull(c, r) },
		"Status":     func(c, r int) { f.Status(c, r) },
		"Found":      func(c, r int) { f.Found(c, r) },
		"EventTime":  func(c, r int) { f.EventTime(c, r) },
		"Value":      func(c, r int) { f.Value(c, r) },
		"Row.Value":  func(c, r int) { f.Row(r).Value(c) },
		"Row.Status": func(c, r int) { f.Row(r).Status(c) },
	}
	for _, a := range accessors {
		reads[a.name] = func(c, r int) { a.f(f, c, r) }
		reads["Row."+a.name] = func(c, r int) { a.row(f.Row(r), c) }
	}
	for name, read := range reads {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				col, row int
				want     string
			}{
				{missing, 0, "client: column -1 out of range [0, 10) (Column answers -1 for a name the response lacks)"},
				{10, 0, "client: column 10 out of range [0, 10)"},
				{0, 2, "client: row 2 out of range [0, 2)"},
				{0, -1, "client: row -1 out of range [0, 2)"},
			} {
				if strings.HasPrefix(tc.want, "client: row") && (name == "Name" || name == "Type" || name == "View" || name == "Generation") {
					continue // no row
				}
				if msg := panics(func() { read(tc.col, tc.row) }); !strings.HasPrefix(msg, tc.want) {
					t.Errorf("column %d, row %d: panics %q, want %q", tc.col, tc.row, msg, tc.want)
				}
			}
		})
	}
	if msg := panics(func() { f.Row(2) }); msg != "client: row 2 out of range [0, 2)" {
		t.Errorf("Row(2) of 2 rows panics %q", msg)
	}
}

// TestColumnOfType checks that ColumnOfType finds a column of the type
// asked for, and answers an error that says what is wrong for a column of
// another type or a name the response lacks.
func TestColumnOfType(t *testing.T) {
	f := everyType(t)
	for _, tc := range []struct {
		ref  string
		typ  larderv1.ValueType
		want int
		err  string
	}{
		{"user:age", larderv1.ValueType_VALUE_TYPE_INT64, 0, ""},
		{"user:tags", larderv1.ValueType_VALUE_TYPE_STRING_LIST, 8, ""},
		{"user:future", 99, 9, ""},
		{"user:age", larderv1.ValueType_VALUE_TYPE_FLOAT64, -1, `client: column "user:age" is of type int64, not float64: read it with Int64, or any type with Value`},
		{"user:future", larderv1.ValueType_VALUE_TYPE_STRING, -1, `client: column "user:future" is of type 99 that this client does not know, not string: Value reads it as null`},
		{"user:nope", larderv1.ValueType_VALUE_TYPE_INT64, -1, `client: no column "user:nope" in the response: it holds the columns of the request's references ("view:feature" or "view:*")`},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.ref, tc.typ), func(t *testing.T) {
			col, err := f.ColumnOfType(tc.ref, tc.typ)
			if col != tc.want || fmt.Sprint(err) != tc.err && !(err == nil && tc.err == "") {
				t.Errorf("ColumnOfType(%q, %s) = %d, %v; want %d, %q", tc.ref, tc.typ, col, err, tc.want, tc.err)
			}
		})
	}
}
