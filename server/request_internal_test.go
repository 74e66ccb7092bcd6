package server

import (
	"testing"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// TestRequestNumber checks which kinds of value each type of request
// feature takes, and the number the model then sees.
func TestRequestNumber(t *testing.T) {
	i64 := func(n int64) *larderv1.Value { return &larderv1.Value{Kind: &larderv1.Value_Int64Value{Int64Value: n}} }
	f64 := func(x float64) *larderv1.Value {
		return &larderv1.Value{Kind: &larderv1.Value_Float64Value{Float64Value: x}}
	}
	f32 := func(x float32) *larderv1.Value {
		return &larderv1.Value{Kind: &larderv1.Value_Float32Value{Float32Value: x}}
	}
	boolean := func(b bool) *larderv1.Value { return &larderv1.Value{Kind: &larderv1.Value_BoolValue{BoolValue: b}} }
	str := &larderv1.Value{Kind: &larderv1.Value_StringValue{StringValue: "1"}}
	const (
		i = larder.TypeInt64
		d = larder.TypeFloat64
		f = larder.TypeFloat32
		b = larder.TypeBool
	)
	tests := []struct {
		name string
		v    *larderv1.Value
		t    larder.Type
		want float32
		ok   bool
	}{
		{"int64 int64", i64(-42), i, -42, true},
		{"int64 large int64", i64(1<<40 + 1), i, float32(float64(1<<40 + 1)), true},
		{"int64 float64", f64(1), i, 0, false},
		{"int64 float32", f32(1), i, 0, false},
		{"int64 bool", boolean(true), i, 0, false},
		{"float64 float64", f64(2.75), d, 2.75, true},
		{"float64 float32", f32(0.25), d, 0.25, true},
		{"float64 int64 within 2^53", i64(-(1 << 53)), d, -(1 << 53), true},
		{"float64 int64 past 2^53", i64(1<<53 + 1), d, 0, false},
		{"float64 int64 max", i64(1<<63 - 1), d, 0, false},
		{"float64 int64 min", i64(-1 << 63), d, -(1 << 63), true},
		{"float64 bool", boolean(false), d, 0, false},
		{"float32 float64", f64(2.5), f, 2.5, true},
		{"float32 int64 2^24", i64(1 << 24), f, 1 << 24, true},
		{"float32 int64 2^24+1", i64(1<<24 + 1), f, 0, false},
		{"float32 int64 2^30", i64(1 << 30), f, 1 << 30, true},
		{"bool true", boolean(true), b, 1, true},
		{"bool false", boolean(false), b, 0, true},
		{"bool int64", i64(1), b, 0, false},
		{"bool float64", f64(1), b, 0, false},
		{"string", str, d, 0, false},
		{"null", &larderv1.Value{}, d, 0, false},
		{"nil", nil, b, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := requestNumber(tt.v, tt.t)
			if ok != tt.ok || (ok && got != tt.want) {
				t.Errorf("requestNumber(%v, %s) = %v, %v; want %v, %v", tt.v, tt.t, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestReadRequestAllocs checks that reading valid request features allocates
// nothing.
func TestReadRequestAllocs(t *testing.T) {
	r := &larder.Ranker{Name: "r", Inputs: []larder.RankerInput{
		{Ref: "request:hour", Side: larder.SideRequest, Request: "hour", Type: larder.TypeInt64},
		{Ref: "request:mobile", Side: larder.SideRequest, Request: "mobile", Type: larder.TypeBool, HasDefault: true, Default: 1},
		{Ref: "request:price", Side: larder.SideRequest, Request: "price"},
	}}
	p := &rankerPlan{ranker: r, request: map[string]bool{}}
	planRequests(p, r)
	feats := map[string]*larderv1.Value{
		"hour":  {Kind: &larderv1.Value_Int64Value{Int64Value: 13}},
		"price": {Kind: &larderv1.Value_Float64Value{Float64Value: 9.5}},
	}
	vals, defaulted := make([]float32, 3), make([]bool, 3)
	allocs := testing.AllocsPerRun(100, func() {
		if err := readRequest(p, feats, vals, defaulted); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("readRequest allocates %v times per call, want 0", allocs)
	}
	if want := []float32{13, 1, 9.5}; vals[0] != want[0] || vals[1] != want[1] || vals[2] != want[2] {
		t.Errorf("values = %v, want %v", vals, want)
	}
	if defaulted[0] || !defaulted[1] || defaulted[2] {
		t.Errorf("defaulted = %v, want only mobile", defaulted)
	}
}
