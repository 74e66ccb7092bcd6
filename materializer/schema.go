package materializer

import (
	"fmt"
	"slices"

	"github.com/larder-dev/larder"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// Schema is what the footers of a Parquet data set say about its columns,
// read as a view would read them.
type Schema struct {
	// Files are the files the path names, in read order.
	Files []string
	// Rows is the number of rows of all the files.
	Rows int64
	// Columns are the top-level columns, in the order of the first file,
	// then those only later files have.
	Columns []SchemaColumn
}

// SchemaColumn is one top-level column of a Schema.
type SchemaColumn struct {
	Name string
	// Parquet names the column's Parquet type for people, as errors do:
	// "INT64", "BYTE_ARRAY STRING", "LIST of FLOAT". When the files differ,
	// it is the first file's.
	Parquet string
	// Types are the feature types a view can read the column as in every
	// file, in the order of FeatureTypes; none when it can feed no feature.
	Types []larder.Type
	// EventTime is set when the column can be a source's event time in
	// every file.
	EventTime bool
	// Files is the number of files that have the column.
	Files int
	// Unfit says why the column can neither feed a feature nor be the event
	// time; empty otherwise.
	Unfit string
}

// FeatureTypes are the types ReadSchema tries for each column, in the order
// it lists them: for each kind of column, the type that loses nothing
// first.
var FeatureTypes = []larder.Type{
	larder.TypeInt64, larder.TypeFloat32, larder.TypeFloat64, larder.TypeBool,
	larder.TypeString, larder.TypeBytes, larder.TypeFloat32Vector,
}

// ReadSchema reads the footers of the Parquet files path names, as a
// source's path (a file, a folder of .parquet files or a glob; see
// resolvePaths), and says for each column which feature types it can feed
// and whether it can be the event time, by the same rules a run binds
// columns with. It returns an error naming the path when nothing matches,
// and one naming the file when a file is not a readable Parquet file.
func ReadSchema(path string) (*Schema, error) {
	ds, err := openFiles(path, "name Parquet files, a folder of them or a glob that matches some")
	if err != nil {
		return nil, err
	}
	defer ds.Close()
	s := &Schema{Rows: ds.rows}
	index := make(map[string]int)
	for fi, f := range ds.files {
		s.Files = append(s.Files, f.path)
		root := f.pf.Root()
		for _, c := range root.Columns() {
			types, eventTime := fits(f.path, root, c.Name())
			i, seen := index[c.Name()]
			if !seen {
				i = len(s.Columns)
				index[c.Name()] = i
				s.Columns = append(s.Columns, SchemaColumn{Name: c.Name(), Parquet: describeColumn(c), Types: types, EventTime: eventTime, Unfit: unfit(c)})
				if fi > 0 {
					s.Columns[i].Types, s.Columns[i].EventTime = nil, false // missing from the first file
				}
			} else {
				col := &s.Columns[i]
				col.Types = slices.DeleteFunc(col.Types, func(t larder.Type) bool { return !slices.Contains(types, t) })
				col.EventTime = col.EventTime && eventTime
			}
			s.Columns[i].Files++
		}
	}
	for i := range s.Columns {
		c := &s.Columns[i]
		switch {
		case c.Files < len(s.Files):
			c.Types, c.EventTime = nil, false
			c.Unfit = fmt.Sprintf("only %d of the %d files have it, and a view needs it in every file", c.Files, len(s.Files))
		case len(c.Types) > 0 || c.EventTime:
			c.Unfit = ""
		case c.Unfit == "":
			c.Unfit = UnfitDisagree
		}
	}
	return s, nil
}

// UnfitDisagree is the Unfit of a column that every file has, but which no
// feature type reads in all of them.
const UnfitDisagree = "the files do not agree on its type"

// fits binds the column name of root as a feature of every type of
// FeatureTypes, and as an event time, and returns what binds.
func fits(file string, root *parquet.Column, name string) (types []larder.Type, eventTime bool) {
	for _, t := range FeatureTypes {
		if _, err := bindColumn(file, root, &columnSpec{column: name, role: roleFeature, name: name, typ: t}); err == nil {
			types = append(types, t)
		}
	}
	_, err := bindColumn(file, root, &columnSpec{column: name, role: roleEventTime})
	return types, err == nil
}

// unfit says why a column that binds as nothing cannot: what to do about
// its type upstream.
func unfit(c *parquet.Column) string {
	lt := logicalType(c)
	switch t := lt.(type) {
	case *format.TimestampType, *format.DateType, *format.TimeType:
		return "a time: larder has no time feature type, and a source has one event_time; write it as INT64 (such as Unix seconds) to use it as a feature"
	case *format.DecimalType:
		return "DECIMAL: no larder type reads it; cast it to DOUBLE upstream"
	case *format.IntType:
		if !t.IsSigned && t.BitWidth == 64 {
			return "an unsigned 64-bit integer, which may not fit int64; write it as a signed INT64"
		}
	case *format.ListType:
		return "only a LIST of FLOAT can feed a feature (float32_vector); cast the elements to FLOAT, or leave it out"
	case *format.MapType:
		return "a MAP: no larder type reads it; flatten it into columns upstream"
	case *format.UUIDType:
		return "a UUID (FIXED_LEN_BYTE_ARRAY): write it as a STRING to use it as a key or a feature"
	}
	if !c.Leaf() {
		return "a group (struct): no larder type reads it; flatten it into top-level columns upstream"
	}
	if c.Repeated() {
		return "a repeated column: only a repeated FLOAT can feed a feature (float32_vector)"
	}
	switch c.Type().Kind() {
	case parquet.Int96:
		return "INT96 (a legacy timestamp): write timestamps as INT64 TIMESTAMP"
	case parquet.FixedLenByteArray:
		return "FIXED_LEN_BYTE_ARRAY: no larder type reads it; write it as BYTE_ARRAY"
	}
	return "no larder type reads " + describeColumn(c)
}
