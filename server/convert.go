package server

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// keyFromProto converts a request key and checks it against entity e. field
// and index name the key in error messages: "keys[3]", or "context_key" when
// index is negative. The name is built only on error, off the hot path.
func keyFromProto(k *larderv1.EntityKey, e *larder.Entity, field string, index int) (larder.Key, error) {
	key, err := checkKey(k, e)
	if err != nil {
		what := field
		if index >= 0 {
			what = field + "[" + strconv.Itoa(index) + "]"
		}
		return key, larder.Invalidf("%s: %s", what, err)
	}
	return key, nil
}

// checkKey converts a request key and checks it against entity e; its error
// message is completed by keyFromProto.
func checkKey(k *larderv1.EntityKey, e *larder.Entity) (larder.Key, error) {
	var key larder.Key
	switch v := k.GetKey().(type) {
	case *larderv1.EntityKey_Int64Value:
		key = larder.Int64Key(v.Int64Value)
	case *larderv1.EntityKey_StringValue:
		// A key goes back in the response as it came: one that is not
		// UTF-8 would make the response one that protobuf decoders refuse.
		if !utf8.ValidString(v.StringValue) {
			return key, fmt.Errorf("string key %s is not valid UTF-8", echo(v.StringValue))
		}
		key = larder.StringKey(v.StringValue)
	default:
		return key, fmt.Errorf("missing key (entity %s is keyed by %s %s)", e.Name, e.KeyType, e.Key)
	}
	if key.Type() != e.KeyType {
		return key, fmt.Errorf("entity %s is keyed by %s %s, got %s key", e.Name, e.KeyType, e.Key, article(key.Type()))
	}
	return key, nil
}

func keyToProto(k larder.Key) *larderv1.EntityKey {
	if k.Type() == larder.TypeString {
		return &larderv1.EntityKey{Key: &larderv1.EntityKey_StringValue{StringValue: k.Str()}}
	}
	return &larderv1.EntityKey{Key: &larderv1.EntityKey_Int64Value{Int64Value: k.Int64()}}
}

// valueToProto converts a value; null becomes a Value with no kind set.
func valueToProto(v larder.Value) *larderv1.Value {
	switch v.Type() {
	case larder.TypeInt64:
		return &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: v.Int64()}}
	case larder.TypeFloat64:
		return &larderv1.Value{Kind: &larderv1.Value_Float64Value{Float64Value: v.Float64()}}
	case larder.TypeFloat32:
		return &larderv1.Value{Kind: &larderv1.Value_Float32Value{Float32Value: v.Float32()}}
	case larder.TypeBool:
		return &larderv1.Value{Kind: &larderv1.Value_BoolValue{BoolValue: v.Bool()}}
	case larder.TypeString:
		return &larderv1.Value{Kind: &larderv1.Value_StringValue{StringValue: v.Str()}}
	case larder.TypeBytes:
		return &larderv1.Value{Kind: &larderv1.Value_BytesValue{BytesValue: v.Bytes()}}
	case larder.TypeFloat32Vector:
		return &larderv1.Value{Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{Values: v.Vector()}}}
	case larder.TypeInt64List:
		return &larderv1.Value{Kind: &larderv1.Value_Int64ListValue{Int64ListValue: &larderv1.Int64List{Values: v.Int64List()}}}
	case larder.TypeStringList:
		return &larderv1.Value{Kind: &larderv1.Value_StringListValue{StringListValue: &larderv1.StringList{Values: v.StringList()}}}
	}
	return &larderv1.Value{}
}

func typeToProto(t larder.Type) larderv1.ValueType {
	switch t {
	case larder.TypeInt64:
		return larderv1.ValueType_VALUE_TYPE_INT64
	case larder.TypeFloat64:
		return larderv1.ValueType_VALUE_TYPE_FLOAT64
	case larder.TypeFloat32:
		return larderv1.ValueType_VALUE_TYPE_FLOAT32
	case larder.TypeBool:
		return larderv1.ValueType_VALUE_TYPE_BOOL
	case larder.TypeString:
		return larderv1.ValueType_VALUE_TYPE_STRING
	case larder.TypeBytes:
		return larderv1.ValueType_VALUE_TYPE_BYTES
	case larder.TypeFloat32Vector:
		return larderv1.ValueType_VALUE_TYPE_FLOAT32_VECTOR
	case larder.TypeInt64List:
		return larderv1.ValueType_VALUE_TYPE_INT64_LIST
	case larder.TypeStringList:
		return larderv1.ValueType_VALUE_TYPE_STRING_LIST
	}
	return larderv1.ValueType_VALUE_TYPE_UNSPECIFIED
}

func statusToProto(s larder.Status) larderv1.FeatureStatus {
	switch s {
	case larder.StatusPresent:
		return larderv1.FeatureStatus_FEATURE_STATUS_PRESENT
	case larder.StatusStale:
		return larderv1.FeatureStatus_FEATURE_STATUS_STALE
	}
	return larderv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND
}

// timeToProto converts t; the zero time, which the domain uses for "not
// yet" or "not known", is an unset field.
func timeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// inputsToProto converts the generations a generation or a job read or
// wrote; none is a nil list.
func inputsToProto(gs []larder.InputGeneration) []*larderv1.InputGeneration {
	if len(gs) == 0 {
		return nil
	}
	out := make([]*larderv1.InputGeneration, len(gs))
	for i, g := range gs {
		out[i] = &larderv1.InputGeneration{View: g.View, Generation: g.Generation, AsOf: timeToProto(g.AsOf)}
	}
	return out
}

// runToProto summarizes a recorded run; nil is an unset field.
func runToProto(r *larder.Run) *larderv1.RunSummary {
	if r == nil {
		return nil
	}
	rs := &larderv1.RunSummary{
		StartedAt:  timeToProto(r.StartedAt),
		Generation: r.Generation,
		Error:      r.Err,
		AsOf:       timeToProto(r.AsOf),
		Trigger:    string(r.Trigger),
	}
	if !r.StartedAt.IsZero() {
		rs.FinishedAt = timestamppb.New(r.StartedAt.Add(r.Duration))
	}
	return rs
}

// article puts "a" or "an" before a type name: "an int64", "a string".
func article(t larder.Type) string {
	if s := t.String(); strings.IndexByte("aeiou", s[0]) >= 0 {
		return "an " + s
	}
	return "a " + t.String()
}

// valueSlab hands out the Value messages of one response, and the wrappers
// of their numeric, bool and string kinds, from slices sized up front: a few
// allocations per response instead of two per value.
type valueSlab struct {
	vals []larderv1.Value
	i64  []larderv1.Value_Int64Value
	f64  []larderv1.Value_Float64Value
	f32  []larderv1.Value_Float32Value
	bool []larderv1.Value_BoolValue
	str  []larderv1.Value_StringValue
}

// newValueSlab sizes a slab for the values of cols over nk keys.
func newValueSlab(lookups []*larder.Lookup, cols []column, nk int) *valueSlab {
	var count [larder.TypeStringList + 1]int
	for _, c := range cols {
		if t := lookups[c.lookup].View.Features[c.feature].Type; int(t) < len(count) {
			count[t] += nk
		}
	}
	s := &valueSlab{vals: make([]larderv1.Value, 0, len(cols)*nk)}
	s.i64 = make([]larderv1.Value_Int64Value, 0, count[larder.TypeInt64])
	s.f64 = make([]larderv1.Value_Float64Value, 0, count[larder.TypeFloat64])
	s.f32 = make([]larderv1.Value_Float32Value, 0, count[larder.TypeFloat32])
	s.bool = make([]larderv1.Value_BoolValue, 0, count[larder.TypeBool])
	s.str = make([]larderv1.Value_StringValue, 0, count[larder.TypeString])
	return s
}

// value converts a non-null v, as valueToProto does. The slab never grows
// past the capacity newValueSlab gave it (a slice that grew would move the
// messages already handed out), so a value beyond it is allocated alone.
func (s *valueSlab) value(v larder.Value) *larderv1.Value {
	if len(s.vals) == cap(s.vals) {
		return valueToProto(v)
	}
	s.vals = s.vals[:len(s.vals)+1]
	m := &s.vals[len(s.vals)-1]
	switch v.Type() {
	case larder.TypeInt64:
		if k := slabNext(&s.i64); k != nil {
			k.Int64Value = v.Int64()
			m.Kind = k
			return m
		}
	case larder.TypeFloat64:
		if k := slabNext(&s.f64); k != nil {
			k.Float64Value = v.Float64()
			m.Kind = k
			return m
		}
	case larder.TypeFloat32:
		if k := slabNext(&s.f32); k != nil {
			k.Float32Value = v.Float32()
			m.Kind = k
			return m
		}
	case larder.TypeBool:
		if k := slabNext(&s.bool); k != nil {
			k.BoolValue = v.Bool()
			m.Kind = k
			return m
		}
	case larder.TypeString:
		if k := slabNext(&s.str); k != nil {
			k.StringValue = v.Str()
			m.Kind = k
			return m
		}
	}
	m.Kind = valueToProto(v).Kind
	return m
}

// slabNext returns the next free element of *s, or nil when it is full.
func slabNext[T any](s *[]T) *T {
	if len(*s) == cap(*s) {
		return nil
	}
	*s = (*s)[:len(*s)+1]
	return &(*s)[len(*s)-1]
}
