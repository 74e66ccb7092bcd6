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
