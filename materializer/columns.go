package materializer

import (
	"cmp"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/larder-dev/larder"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// columnRole is what a view uses a source column for.
type columnRole uint8

const (
	roleKey columnRole = iota
	roleEventTime
	roleFeature
	// roleRequest is a request feature of a ranker, read from a scoring
	// job's input.
	roleRequest
	// roleRowCount is the event-time column read by an aggregation that
	// counts rows (one without a column): only whether a row is there.
	roleRowCount
)

// columnSpec is a column a computation needs, and the type it needs it as.
type columnSpec struct {
	column string
	role   columnRole
	// name is the feature or the entity the column feeds.
	name string
	// typ is the type of the key or of the feature; unused for event times.
	typ larder.Type
	// optional is set when a file may lack the column (see dataset.bind).
	optional bool
	// cast allows a float32 feature to read a DOUBLE or INT64 column,
	// rounding each value (larder.Feature.Cast).
	cast bool
	// field and typeField are the fields of the project file that name the
	// column and its type, for a column's problems to point at; typeField
	// "" is field. They are relative to the view ("features[2].column")
	// for the columns the view names, and "" for the entity's key and the
	// source's event time, until CheckSources fills them in.
	field, typeField string
}

func (s *columnSpec) describe() string {
	switch s.role {
	case roleKey:
		return fmt.Sprintf("%s key of entity %q", s.typ, s.name)
	case roleEventTime:
		return "event time"
	case roleRowCount:
		return fmt.Sprintf("event time, whose rows %q counts", s.name)
	case roleRequest:
		if !s.optional {
			return fmt.Sprintf("%s request feature %q, which has no default", s.typ, s.name)
		}
		return fmt.Sprintf("%s request feature %q", s.typ, s.name)
	}
	return fmt.Sprintf("%s feature %q", s.typ, s.name)
}

// conversion says how the physical values of a column become larder values.
type conversion uint8

const (
	convInt64          conversion = iota // INT64 → int64
	convInt32                            // INT32 → int64
	convUint32                           // INT32 holding an unsigned integer → int64
	convDouble                           // DOUBLE → float64
	convFloatToDouble                    // FLOAT → float64
	convFloat                            // FLOAT → float32
	convBool                             // BOOLEAN → bool
	convByteArray                        // BYTE_ARRAY → string or bytes
	convTimestamp                        // INT64 TIMESTAMP → Unix nanoseconds
	convDate                             // INT32 DATE → Unix nanoseconds at midnight UTC
	convVector                           // LIST of FLOAT → float32_vector
	convInt64ToDouble                    // INT64 → float64 (exact up to 2^53)
	convInt32ToDouble                    // INT32 → float64
	convUint32ToDouble                   // INT32 holding an unsigned integer → float64
	convInt32ToFloat                     // INT32 → float32 (exact up to 2^24)
	convDoubleToFloat                    // DOUBLE → float32, rounded (cast)
	convInt64ToFloat                     // INT64 → float32, rounded (cast)
)

// boundColumn is a columnSpec found in one file, with what it takes to decode it.
type boundColumn struct {
	spec *columnSpec
	// leaf is the index of the column chunk in each row group.
	leaf int
	kind parquet.Kind
	conv conversion
	// nanos is the length of one unit of a timestamp or date, in nanoseconds;
	// minUnits and maxUnits are the values whose conversion to nanoseconds
	// does not overflow (see toNanos), worked out once at bind time.
	nanos              int64
	minUnits, maxUnits int64
	// maxDef is the definition level of a present value.
	maxDef byte
	// repDef is, for vectors, the definition level of the repeated node: a
	// lower level means an empty list (repDef-1) or a null list (below).
	repDef byte
}

// Names of the Parquet types each larder type can be read from, for errors.
var wantTypes = map[larder.Type]string{
	larder.TypeInt64:         "INT64 or INT32",
	larder.TypeFloat64:       "DOUBLE, FLOAT, INT64 or INT32",
	larder.TypeFloat32:       "FLOAT or INT32",
	larder.TypeBool:          "BOOLEAN",
	larder.TypeString:        "BYTE_ARRAY (STRING or unannotated)",
	larder.TypeBytes:         "BYTE_ARRAY",
	larder.TypeFloat32Vector: "LIST of FLOAT",
}

const wantEventTime = "INT64 TIMESTAMP (MILLIS, MICROS or NANOS) or INT32 DATE"

// bindColumn finds the column of spec among the top-level columns of root and
// checks that its Parquet type maps to spec's type, as the package
// documentation lists. It returns a *ColumnError naming the file, the column,
// the type found and the types wanted otherwise.
func bindColumn(file string, root *parquet.Column, spec *columnSpec) (*boundColumn, error) {
	c := root.Column(spec.column)
	if c == nil {
		names := make([]string, 0, len(root.Columns()))
		for _, col := range root.Columns() {
			names = append(names, col.Name())
		}
		return nil, &ColumnError{File: file, Column: spec.column, Role: spec.describe(), Columns: names, field: spec.field}
	}
	want := wantTypes[spec.typ]
	if spec.role == roleEventTime || spec.role == roleRowCount {
		want = wantEventTime
	}
	fail := func() error {
		return &ColumnError{File: file, Column: spec.column, Role: spec.describe(), Found: describeColumn(c), Want: want,
			field: cmp.Or(spec.typeField, spec.field)}
	}

	if spec.role == roleFeature && spec.typ == larder.TypeFloat32Vector {
		bc, ok := bindVector(c)
		if !ok {
			return nil, fail()
		}
		bc.spec = spec
		return bc, nil
	}
	if !c.Leaf() || c.Repeated() || c.MaxDefinitionLevel() > 1 {
		return nil, fail()
	}
	bc := &boundColumn{spec: spec, leaf: c.Index(), kind: c.Type().Kind(), maxDef: byte(c.MaxDefinitionLevel())}
	lt := logicalType(c)

	if spec.role == roleEventTime || spec.role == roleRowCount {
		switch t := lt.(type) {
		case *format.TimestampType:
			if bc.kind != parquet.Int64 || t.Unit.Value == nil {
				return nil, fail()
			}
			bc.setUnit(convTimestamp, int64(t.Unit.Value.Duration()))
		case *format.DateType:
			if bc.kind != parquet.Int32 {
				return nil, fail()
			}
			bc.setUnit(convDate, int64(24*time.Hour))
		default:
			return nil, fail()
		}
		return bc, nil
	}

	ok := false
	switch spec.typ {
	case larder.TypeInt64:
		it, isInt := lt.(*format.IntType)
		if lt != nil && !isInt {
			break
		}
		switch {
		case bc.kind == parquet.Int64 && (!isInt || it.IsSigned):
			bc.conv, ok = convInt64, true
		case bc.kind == parquet.Int32 && (!isInt || it.IsSigned):
			bc.conv, ok = convInt32, true
		case bc.kind == parquet.Int32:
			bc.conv, ok = convUint32, true
		}
	case larder.TypeFloat64:
		// Integers widen to float64: an INT64 beyond 2^53 rounds.
		it, isInt := lt.(*format.IntType)
		switch {
		case lt != nil && !isInt:
		case bc.kind == parquet.Double && lt == nil:
			bc.conv, ok = convDouble, true
		case bc.kind == parquet.Float && lt == nil:
			bc.conv, ok = convFloatToDouble, true
		case bc.kind == parquet.Int64 && (!isInt || it.IsSigned):
			bc.conv, ok = convInt64ToDouble, true
		case bc.kind == parquet.Int32 && (!isInt || it.IsSigned):
			bc.conv, ok = convInt32ToDouble, true
		case bc.kind == parquet.Int32:
			bc.conv, ok = convUint32ToDouble, true
		}
	case larder.TypeFloat32:
		// An INT32 widens to float32: beyond 2^24 it rounds. A DOUBLE or an
		// INT64 narrows to it only when the feature asks for the cast.
		it, isInt := lt.(*format.IntType)
		switch {
		case bc.kind == parquet.Float && lt == nil:
			bc.conv, ok = convFloat, true
		case bc.kind == parquet.Int32 && (lt == nil || isInt && it.IsSigned):
			bc.conv, ok = convInt32ToFloat, true
		case bc.kind == parquet.Double && lt == nil:
			bc.conv, ok = convDoubleToFloat, spec.cast
			if !ok {
				return nil, castError(fail())
			}
		case bc.kind == parquet.Int64 && (lt == nil || isInt && it.IsSigned):
			bc.conv, ok = convInt64ToFloat, spec.cast
			if !ok {
				return nil, castError(fail())
			}
		}
	case larder.TypeBool:
		bc.conv, ok = convBool, lt == nil && bc.kind == parquet.Boolean
	case larder.TypeString, larder.TypeBytes:
		switch lt.(type) {
		case nil, *format.StringType, *format.EnumType, *format.JsonType:
			ok = true
		case *format.BsonType:
			ok = spec.typ == larder.TypeBytes
		}
		bc.conv, ok = convByteArray, ok && bc.kind == parquet.ByteArray
	}
	if !ok {
		return nil, fail()
	}
	return bc, nil
}

// castError adds to err, a *ColumnError, that the column would do with a
// cast.
func castError(err error) error {
	if ce, ok := err.(*ColumnError); ok {
		ce.Cast = true
	}
	return err
}

// bindVector binds a list of floats: a group annotated LIST (or not) whose
// chain of single children holds exactly one repeated node and ends at a FLOAT
// leaf, or a bare repeated FLOAT leaf.
func bindVector(c *parquet.Column) (*boundColumn, bool) {
	var repDef int
	def := 0
	node := c
	for {
		if !node.Required() {
			def++
		}
		if node.Repeated() {
			if repDef != 0 {
				return nil, false // a list of lists
			}
			repDef = def
		}
		if node.Leaf() {
			break
		}
		if len(node.Columns()) != 1 {
			return nil, false
		}
		node = node.Columns()[0]
	}
	if repDef == 0 || node.Type().Kind() != parquet.Float || logicalType(node) != nil {
		return nil, false
	}
	if def != node.MaxDefinitionLevel() || node.MaxRepetitionLevel() != 1 {
		return nil, false
	}
	return &boundColumn{
		leaf:   node.Index(),
		kind:   parquet.Float,
		conv:   convVector,
		maxDef: byte(def),
		repDef: byte(repDef),
	}, true
}

// logicalType returns the logical type annotating a column, or nil when there
// is none. A signed integer annotation of the physical width counts as none.
func logicalType(c *parquet.Column) format.LogicalTypeValue {
	lt := c.Type().LogicalType()
	if lt == nil || lt.Value == nil {
		return nil
	}
	if it, ok := lt.Value.(*format.IntType); ok && it.IsSigned && c.Leaf() {
		switch k := c.Type().Kind(); {
		case k == parquet.Int64 && it.BitWidth == 64, k == parquet.Int32 && it.BitWidth == 32:
			return nil
		}
	}
	return lt.Value
}

// describeColumn names the Parquet type of a column for people: "DOUBLE",
// "BYTE_ARRAY STRING", "LIST of DOUBLE", "repeated FLOAT".
func describeColumn(c *parquet.Column) string {
	var b strings.Builder
	if c.Repeated() {
		b.WriteString("repeated ")
	}
	if !c.Leaf() {
		if _, ok := logicalType(c).(*format.ListType); ok {
			leaf := c
			for !leaf.Leaf() && len(leaf.Columns()) == 1 {
				leaf = leaf.Columns()[0]
			}
			b.WriteString("LIST")
			if leaf.Leaf() {
				b.WriteString(" of ")
				b.WriteString(describeColumn(leaf))
			}
			return b.String()
		}
		if lt := logicalType(c); lt != nil {
			b.WriteString(lt.String())
			return b.String()
		}
		b.WriteString("group")
		return b.String()
	}
	b.WriteString(c.Type().Kind().String())
	if lt := logicalType(c); lt != nil {
		b.WriteByte(' ')
		b.WriteString(lt.String())
	}
	return b.String()
}

// setUnit makes bc an event-time column of conversion conv and unit nanos.
func (bc *boundColumn) setUnit(conv conversion, nanos int64) {
	bc.conv, bc.nanos = conv, max(nanos, 1)
	bc.minUnits, bc.maxUnits = math.MinInt64/bc.nanos, math.MaxInt64/bc.nanos
}

// nanosOf is toNanos for the unit of bc, without a division per value.
func (bc *boundColumn) nanosOf(v int64) int64 {
	switch {
	case v > bc.maxUnits:
		return math.MaxInt64
	case v < bc.minUnits:
		return math.MinInt64
	}
	return v * bc.nanos
}

// toNanos converts a timestamp or date to Unix nanoseconds, saturating at
// the limits of int64 (years 1677 and 2262) instead of overflowing.
func toNanos(v, unit int64) int64 {
	if unit == 1 {
		return v
	}
	if v > math.MaxInt64/unit {
		return math.MaxInt64
	}
	if v < math.MinInt64/unit {
		return math.MinInt64
	}
	return v * unit
}
