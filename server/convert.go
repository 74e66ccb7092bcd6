package server

import (
	"fmt"
	"strconv"
	"strings"

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

// numberFromProto reads a request feature as a model input.
func numberFromProto(v *larderv1.Value) (float32, bool) {
	switch k := v.GetKind().(type) {
	case *larderv1.Value_Int64Value:
		return float32(k.Int64Value), true
	case *larderv1.Value_Float64Value:
		return float32(k.Float64Value), true
	case *larderv1.Value_Float32Value:
		return k.Float32Value, true
	case *larderv1.Value_BoolValue:
		if k.BoolValue {
			return 1, true
		}
		return 0, true
	}
	return 0, false
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

// article puts "a" or "an" before a type name: "an int64", "a string".
func article(t larder.Type) string {
	if s := t.String(); strings.IndexByte("aeiou", s[0]) >= 0 {
		return "an " + s
	}
	return "a " + t.String()
}
