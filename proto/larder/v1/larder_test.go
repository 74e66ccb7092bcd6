package larderv1_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// TestValueKindPerType keeps ValueType and the Value oneof in step: every
// declared type has exactly one Value field, named after it, and back.
func TestValueKindPerType(t *testing.T) {
	kind := (&larderv1.Value{}).ProtoReflect().Descriptor().Oneofs().ByName("kind")
	if kind == nil {
		t.Fatal("Value has no oneof kind")
	}
	types := larderv1.ValueType(0).Descriptor().Values()
	fields := map[protoreflect.Name]bool{}
	for i := range types.Len() {
		name := string(types.Get(i).Name())
		if types.Get(i).Number() == 0 {
			continue
		}
		field := protoreflect.Name(strings.ToLower(strings.TrimPrefix(name, "VALUE_TYPE_")) + "_value")
		fields[field] = true
		if fd := kind.Fields().ByName(field); fd == nil {
			t.Errorf("%s has no Value.%s in oneof kind", name, field)
		}
	}
	for i := range kind.Fields().Len() {
		if f := kind.Fields().Get(i).Name(); !fields[f] {
			t.Errorf("Value.%s has no ValueType", f)
		}
	}
}

// TestNullSurvivesTheWire checks the property the API leans on: a Value with
// no kind (null) stays distinct from a zero value of any type after a round
// trip.
func TestNullSurvivesTheWire(t *testing.T) {
	tests := []struct {
		name string
		in   *larderv1.Value
		null bool
	}{
		{"null", &larderv1.Value{}, true},
		{"int64 zero", &larderv1.Value{Kind: &larderv1.Value_Int64Value{}}, false},
		{"float64 zero", &larderv1.Value{Kind: &larderv1.Value_Float64Value{}}, false},
		{"bool false", &larderv1.Value{Kind: &larderv1.Value_BoolValue{}}, false},
		{"empty string", &larderv1.Value{Kind: &larderv1.Value_StringValue{}}, false},
		{"empty vector", &larderv1.Value{Kind: &larderv1.Value_Float32VectorValue{Float32VectorValue: &larderv1.FloatVector{}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			var out larderv1.Value
			if err := proto.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			if null := out.GetKind() == nil; null != tt.null {
				t.Errorf("after a round trip, null = %v, want %v (wire bytes %x)", null, tt.null, b)
			}
			if !proto.Equal(tt.in, &out) {
				t.Errorf("round trip changed the value: %v, want %v", &out, tt.in)
			}
		})
	}
}

// TestServiceName pins the names that clients, health checks and reflection
// see: renaming them breaks every caller. Methods may be added.
func TestServiceName(t *testing.T) {
	for _, tt := range []struct {
		desc    grpc.ServiceDesc
		name    string
		methods []string
	}{
		{larderv1.FeatureService_ServiceDesc, "larder.v1.FeatureService", []string{"GetFeatures", "Rank", "ListViews"}},
		{larderv1.IngestService_ServiceDesc, "larder.v1.IngestService", []string{"Push"}},
		{larderv1.AdminService_ServiceDesc, "larder.v1.AdminService", []string{"ReloadModel", "ListModels"}},
		{larderv1.JobService_ServiceDesc, "larder.v1.JobService", []string{"SubmitJob", "GetJob", "ListJobs", "CancelJob"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.desc.ServiceName != tt.name {
				t.Errorf("service name = %q, want %s", tt.desc.ServiceName, tt.name)
			}
			methods := map[string]bool{}
			for _, m := range tt.desc.Methods {
				methods[m.MethodName] = true
			}
			for _, want := range tt.methods {
				if !methods[want] {
					t.Errorf("%s has no unary method %s", tt.name, want)
				}
			}
		})
	}
}
