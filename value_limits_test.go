package larder_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/larder-dev/larder"
)

func TestValueSizeAndFinite(t *testing.T) {
	nan32, inf32 := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		name   string
		v      larder.Value
		size   int
		finite bool
		text   string // NonFiniteText
	}{
		{"null", larder.Null, 0, true, ""},
		{"int64", larder.Int64Value(math.MaxInt64), 8, true, ""},
		{"float64", larder.Float64Value(math.MaxFloat64), 8, true, ""},
		{"float64 NaN", larder.Float64Value(math.NaN()), 8, false, "NaN"},
		{"float64 +Inf", larder.Float64Value(math.Inf(1)), 8, false, "+Inf"},
		{"float64 -Inf", larder.Float64Value(math.Inf(-1)), 8, false, "-Inf"},
		{"float32", larder.Float32Value(math.MaxFloat32), 4, true, ""},
		{"float32 smallest", larder.Float32Value(math.SmallestNonzeroFloat32), 4, true, ""},
		{"float32 NaN", larder.Float32Value(nan32), 4, false, "NaN"},
		{"float32 -Inf", larder.Float32Value(-inf32), 4, false, "-Inf"},
		{"bool", larder.BoolValue(true), 1, true, ""},
		{"string", larder.StringValue("héllo"), 6, true, ""},
		{"bytes", larder.BytesValue(make([]byte, 1000)), 1000, true, ""},
		{"vector", larder.Float32VectorValue([]float32{1, -2, 0}), 12, true, ""},
		{"vector with NaN", larder.Float32VectorValue([]float32{1, nan32, inf32}), 12, false, "NaN at [1]"},
		{"vector with +Inf", larder.Float32VectorValue([]float32{inf32}), 4, false, "+Inf at [0]"},
		{"empty vector", larder.Float32VectorValue(nil), 0, true, ""},
		{"int64 list", larder.Int64ListValue([]int64{1, 2, 3}), 24, true, ""},
		{"string list", larder.StringListValue([]string{"ab", "", "c"}), 6, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.Size(); got != tt.size {
				t.Errorf("Size() = %d, want %d", got, tt.size)
			}
			if got := tt.v.Finite(); got != tt.finite {
				t.Errorf("Finite() = %v, want %v", got, tt.finite)
			}
			if got := tt.v.NonFiniteText(); got != tt.text {
				t.Errorf("NonFiniteText() = %q, want %q", got, tt.text)
			}
		})
	}
}

func TestValueRulesDefaults(t *testing.T) {
	v := &larder.View{}
	if v.ValueLimit() != larder.DefaultMaxValueBytes || v.NonFinitePolicy() != larder.DefaultNonFinite || v.OversizePolicy() != larder.DefaultOversize {
		t.Errorf("zero view: limit %d, non-finite %q, oversize %q; want the defaults", v.ValueLimit(), v.NonFinitePolicy(), v.OversizePolicy())
	}
	p := validProject() // SetDefaults has run
	for _, v := range p.Views {
		if v.MaxValueBytes != larder.DefaultMaxValueBytes || v.NonFinite != larder.PolicyNull || v.Oversize != larder.PolicyNull {
			t.Errorf("view %s after SetDefaults: max_value_bytes %d, non_finite %q, oversize %q", v.Name, v.MaxValueBytes, v.NonFinite, v.Oversize)
		}
	}
	set := &larder.View{MaxValueBytes: 10, NonFinite: larder.PolicyKeep, Oversize: larder.PolicyReject}
	if set.ValueLimit() != 10 || set.NonFinitePolicy() != larder.PolicyKeep || set.OversizePolicy() != larder.PolicyReject {
		t.Errorf("set view: limit %d, non-finite %q, oversize %q", set.ValueLimit(), set.NonFinitePolicy(), set.OversizePolicy())
	}
}

func TestValidateValueRules(t *testing.T) {
	tests := []struct {
		name string
		edit func(v *larder.View)
		path string
		msg  string // "" when valid
	}{
		{"every policy set", func(v *larder.View) {
			v.MaxValueBytes, v.NonFinite, v.Oversize = larder.MaxValueBytesLimit, larder.PolicyReject, larder.PolicyReject
		}, "", ""},
		{"keep non-finite", func(v *larder.View) { v.NonFinite = larder.PolicyKeep }, "", ""},
		{"negative limit", func(v *larder.View) { v.MaxValueBytes = -1 }, "views[0].max_value_bytes", "must be positive, got -1"},
		{"limit too large", func(v *larder.View) { v.MaxValueBytes = larder.MaxValueBytesLimit + 1 }, "views[0].max_value_bytes", "the largest value Redis stores"},
		{"unknown non-finite policy", func(v *larder.View) { v.NonFinite = "drop" }, "views[0].non_finite", `unknown policy "drop" (one of reject, null, keep)`},
		{"keep oversize", func(v *larder.View) { v.Oversize = larder.PolicyKeep }, "views[0].oversize", "raise max_value_bytes"},
		{"unknown oversize policy", func(v *larder.View) { v.Oversize = "truncate" }, "views[0].oversize", `unknown policy "truncate" (one of reject, null)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validProject()
			tt.edit(p.Views[0])
			err := p.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve *larder.ValidationError
			if !errors.As(err, &ve) || len(ve.Errs) != 1 {
				t.Fatalf("Validate() = %v, want one problem", err)
			}
			if fe := ve.Errs[0]; fe.Path != tt.path || !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("problem %v, want %s: ...%s...", fe, tt.path, tt.msg)
			}
		})
	}
}

// TestKeyNotUTF8 checks that a string key that is not valid UTF-8, which
// protobuf clients cannot decode, is refused.
func TestKeyNotUTF8(t *testing.T) {
	item := &larder.Entity{Name: "item", Key: "item_id", KeyType: larder.TypeString}
	err := larder.StringKey("i\xff").Check(item)
	var invalid *larder.InvalidError
	if !errors.As(err, &invalid) || !strings.Contains(err.Error(), `item_id of entity item is a string that is not valid UTF-8: "i\xff"`) {
		t.Errorf("Check of a key that is not UTF-8 = %v", err)
	}
	if err := larder.StringKey("société").Check(item); err != nil {
		t.Errorf("Check of a UTF-8 key = %v", err)
	}
}
