package larder

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Type is the type of a feature value or of an entity key.
// The zero Type is TypeInvalid; a Value of that type is null.
type Type uint8

// The value types larder stores.
const (
	TypeInvalid Type = iota
	TypeInt64
	TypeFloat64
	TypeFloat32
	TypeBool
	TypeString
	TypeBytes
	TypeFloat32Vector
	TypeInt64List
	TypeStringList
)

var typeNames = [...]string{
	TypeInvalid:       "invalid",
	TypeInt64:         "int64",
	TypeFloat64:       "float64",
	TypeFloat32:       "float32",
	TypeBool:          "bool",
	TypeString:        "string",
	TypeBytes:         "bytes",
	TypeFloat32Vector: "float32_vector",
	TypeInt64List:     "int64_list",
	TypeStringList:    "string_list",
}

// TypeNames lists the names ParseType accepts, in a stable order.
func TypeNames() []string {
	return []string{"int64", "float64", "float32", "bool", "string", "bytes", "float32_vector", "int64_list", "string_list"}
}

// String returns the name of t as written in larder.yaml.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Numeric reports whether values of t can be read as a number (and so be a
// model input): int64, float64, float32 and bool.
func (t Type) Numeric() bool {
	return t == TypeInt64 || t == TypeFloat64 || t == TypeFloat32 || t == TypeBool
}

// ParseType returns the Type named s, or an error that lists the valid names.
func ParseType(s string) (Type, error) {
	for i, n := range typeNames {
		if i != int(TypeInvalid) && n == s {
			return Type(i), nil
		}
	}
	return TypeInvalid, fmt.Errorf("unknown type %q (want one of %s)", s, strings.Join(TypeNames(), ", "))
}

// Value is one typed value. The zero Value is null.
// Values are immutable: vector and list values do not copy their slices, so
// callers must not modify a slice after handing it over.
type Value struct {
	typ Type
	num uint64 // int64, bool (0/1), float64 bits, float32 bits
	str string // string and bytes
	aux any    // []float32, []int64 or []string for vectors and lists
}

// Null is the null value.
var Null = Value{}

// Int64Value returns an int64 value.
func Int64Value(v int64) Value { return Value{typ: TypeInt64, num: uint64(v)} }

// Float64Value returns a float64 value.
func Float64Value(v float64) Value { return Value{typ: TypeFloat64, num: math.Float64bits(v)} }

// Float32Value returns a float32 value.
func Float32Value(v float32) Value { return Value{typ: TypeFloat32, num: uint64(math.Float32bits(v))} }

// BoolValue returns a bool value.
func BoolValue(v bool) Value {
	var n uint64
	if v {
		n = 1
	}
	return Value{typ: TypeBool, num: n}
}

// StringValue returns a string value.
func StringValue(v string) Value { return Value{typ: TypeString, str: v} }

// BytesValue returns a bytes value; it copies v.
func BytesValue(v []byte) Value { return Value{typ: TypeBytes, str: string(v)} }

// BytesValueString returns a bytes value holding the bytes of v, without a copy.
func BytesValueString(v string) Value { return Value{typ: TypeBytes, str: v} }

// Float32VectorValue returns a vector value that shares v.
func Float32VectorValue(v []float32) Value { return Value{typ: TypeFloat32Vector, aux: v} }

// Int64ListValue returns a list of int64 values that shares v, such as the
// keys of a candidate list.
func Int64ListValue(v []int64) Value { return Value{typ: TypeInt64List, aux: v} }

// StringListValue returns a list of strings that shares v.
func StringListValue(v []string) Value { return Value{typ: TypeStringList, aux: v} }

// Type returns the type of v, or TypeInvalid when v is null.
func (v Value) Type() Type { return v.typ }

// IsNull reports whether v is null.
func (v Value) IsNull() bool { return v.typ == TypeInvalid }

// Int64 returns the value of an int64 Value, and 0 for any other type.
func (v Value) Int64() int64 {
	if v.typ != TypeInt64 {
		return 0
	}
	return int64(v.num)
}

// Float64 returns the value of a float64 Value, and 0 for any other type.
func (v Value) Float64() float64 {
	if v.typ != TypeFloat64 {
		return 0
	}
	return math.Float64frombits(v.num)
}

// Float32 returns the value of a float32 Value, and 0 for any other type.
func (v Value) Float32() float32 {
	if v.typ != TypeFloat32 {
		return 0
	}
	return math.Float32frombits(uint32(v.num))
}

// Bool returns the value of a bool Value, and false for any other type.
func (v Value) Bool() bool { return v.typ == TypeBool && v.num != 0 }

// Str returns the value of a string or bytes Value, and "" for any other type.
func (v Value) Str() string {
	if v.typ != TypeString && v.typ != TypeBytes {
		return ""
	}
	return v.str
}

// Bytes returns a copy of the value of a bytes Value, and nil for any other type.
func (v Value) Bytes() []byte {
	if v.typ != TypeBytes {
		return nil
	}
	return []byte(v.str)
}

// Vector returns the value of a float32_vector Value (not a copy), and nil
// for any other type.
func (v Value) Vector() []float32 {
	vec, _ := v.aux.([]float32)
	return vec
}

// Int64List returns the value of an int64_list Value (not a copy), and nil
// for any other type.
func (v Value) Int64List() []int64 {
	l, _ := v.aux.([]int64)
	return l
}

// StringList returns the value of a string_list Value (not a copy), and nil
// for any other type.
func (v Value) StringList() []string {
	l, _ := v.aux.([]string)
	return l
}

// Number returns v as a float64 and true when v is a non-null numeric value
// (int64, float64, float32, or bool as 0 or 1); otherwise 0 and false.
func (v Value) Number() (float64, bool) {
	switch v.typ {
	case TypeInt64:
		return float64(int64(v.num)), true
	case TypeFloat64:
		return math.Float64frombits(v.num), true
	case TypeFloat32:
		return float64(math.Float32frombits(uint32(v.num))), true
	case TypeBool:
		return float64(v.num), true
	}
	return 0, false
}

// Equal reports whether v and w have the same type and value. Floating-point
// values compare by bits, so NaN equals NaN.
func (v Value) Equal(w Value) bool {
	if v.typ != w.typ || v.num != w.num || v.str != w.str {
		return false
	}
	switch v.typ {
	case TypeFloat32Vector:
		a, b := v.Vector(), w.Vector()
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				return false
			}
		}
	case TypeInt64List:
		return slices.Equal(v.Int64List(), w.Int64List())
	case TypeStringList:
		return slices.Equal(v.StringList(), w.StringList())
	}
	return true
}

// String formats v for people: numbers in their shortest exact form, strings
// quoted, bytes in hexadecimal, vectors in brackets and null as "null".
func (v Value) String() string {
	switch v.typ {
	case TypeInt64:
		return strconv.FormatInt(v.Int64(), 10)
	case TypeFloat64:
		return strconv.FormatFloat(v.Float64(), 'g', -1, 64)
	case TypeFloat32:
		return strconv.FormatFloat(float64(v.Float32()), 'g', -1, 32)
	case TypeBool:
		return strconv.FormatBool(v.Bool())
	case TypeString:
		return strconv.Quote(v.str)
	case TypeBytes:
		return fmt.Sprintf("0x%x", v.str)
	case TypeFloat32Vector:
		var b strings.Builder
		b.WriteByte('[')
		for i, f := range v.Vector() {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatFloat(float64(f), 'g', -1, 32))
		}
		b.WriteByte(']')
		return b.String()
	case TypeInt64List:
		var b strings.Builder
		b.WriteByte('[')
		for i, n := range v.Int64List() {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatInt(n, 10))
		}
		b.WriteByte(']')
		return b.String()
	case TypeStringList:
		var b strings.Builder
		b.WriteByte('[')
		for i, s := range v.StringList() {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.Quote(s))
		}
		b.WriteByte(']')
		return b.String()
	}
	return "null"
}

// Size returns the bytes the data of v takes, as View.MaxValueBytes counts
// them: 8 for an int64 or a float64, 4 for a float32, 1 for a bool, the
// length of a string or bytes value, 4 per element of a float32_vector, 8
// per element of an int64_list, and for a string_list the lengths of its
// strings plus one byte per string; 0 for null. It is within a few bytes
// of the value's encoded size in the store.
func (v Value) Size() int {
	switch v.typ {
	case TypeInt64, TypeFloat64:
		return 8
	case TypeFloat32:
		return 4
	case TypeBool:
		return 1
	case TypeString, TypeBytes:
		return len(v.str)
	case TypeFloat32Vector:
		return 4 * len(v.Vector())
	case TypeInt64List:
		return 8 * len(v.Int64List())
	case TypeStringList:
		n := 0
		for _, s := range v.StringList() {
			n += len(s) + 1
		}
		return n
	}
	return 0
}

// Finite reports whether v holds neither a NaN nor an infinity: it is false
// for a float64 or float32 value that is NaN, +Inf or -Inf, and for a
// float32_vector holding one; true for every other value, null included.
func (v Value) Finite() bool {
	switch v.typ {
	case TypeFloat64:
		f := math.Float64frombits(v.num)
		return !math.IsNaN(f) && !math.IsInf(f, 0)
	case TypeFloat32:
		// An exponent of all ones is an infinity or a NaN.
		return v.num&0x7f800000 != 0x7f800000
	case TypeFloat32Vector:
		for _, f := range v.Vector() {
			if math.Float32bits(f)&0x7f800000 == 0x7f800000 {
				return false
			}
		}
	}
	return true
}

// NonFiniteText describes the first non-finite number of v for a message:
// "NaN", "+Inf" or "-Inf", for a vector followed by its position, such as
// "NaN at [3]"; "" when v is finite.
func (v Value) NonFiniteText() string {
	text := func(f float64) string {
		switch {
		case math.IsNaN(f):
			return "NaN"
		case math.IsInf(f, 1):
			return "+Inf"
		}
		return "-Inf"
	}
	switch v.typ {
	case TypeFloat64, TypeFloat32:
		if f, _ := v.Number(); !v.Finite() {
			return text(f)
		}
	case TypeFloat32Vector:
		for i, f := range v.Vector() {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return fmt.Sprintf("%s at [%d]", text(float64(f)), i)
			}
		}
	}
	return ""
}
