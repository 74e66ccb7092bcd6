package config_test

import (
	"strings"
	"testing"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// Lines of base holding the home_feed ranker's request input (its third)
// and its last input, a view input with a default.
const (
	requestInputLine = 48
	ctrInputLine     = 49
)

func TestParseRequestInputs(t *testing.T) {
	tests := []struct {
		line       string
		typ        larder.Type // as written; TypeInvalid when left out
		reqType    larder.Type
		hasDefault bool
		def        float32
	}{
		{"      - request:hour_of_day", larder.TypeInvalid, larder.TypeFloat64, false, 0},
		{"      - {ref: request:hour_of_day}", larder.TypeInvalid, larder.TypeFloat64, false, 0},
		{"      - {ref: request:hour_of_day, type: int64}", larder.TypeInt64, larder.TypeInt64, false, 0},
		{"      - {ref: request:hour_of_day, type: int64, default: 12}", larder.TypeInt64, larder.TypeInt64, true, 12},
		{"      - {ref: request:hour_of_day, type: float32, default: -0.5}", larder.TypeFloat32, larder.TypeFloat32, true, -0.5},
		{"      - {ref: request:hour_of_day, default: 0}", larder.TypeInvalid, larder.TypeFloat64, true, 0},
		{"      - {ref: request:hour_of_day, default: null}", larder.TypeInvalid, larder.TypeFloat64, false, 0},
		{"      - {ref: request:hour_of_day, type: bool, default: true}", larder.TypeBool, larder.TypeBool, true, 1},
		{"      - {ref: request:hour_of_day, default: false, type: bool}", larder.TypeBool, larder.TypeBool, true, 0},
		{"      - {ref: request:hour_of_day, type: bool, default: 1}", larder.TypeBool, larder.TypeBool, true, 1},
		{"      - ref: request:hour_of_day\n        type: float64\n        default: 3", larder.TypeFloat64, larder.TypeFloat64, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			src := edit(t, base, requestInputLine, "      - request:hour_of_day", tt.line)
			p, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			in := p.Ranker("home_feed").Inputs[2]
			if in.Side != larder.SideRequest || in.Request != "hour_of_day" || in.Type != tt.typ || in.RequestType() != tt.reqType ||
				in.HasDefault != tt.hasDefault || in.Default != tt.def {
				t.Errorf("input = %+v (request type %s), want type %s (%s), has default %v, default %v",
					in, in.RequestType(), tt.typ, tt.reqType, tt.hasDefault, tt.def)
			}
		})
	}
	// A view input's default is recorded as written.
	p, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if in := p.Ranker("home_feed").Inputs; in[3].Default != 0.01 || !in[3].HasDefault || in[0].HasDefault {
		t.Errorf("view inputs = %+v", in)
	}
}

func TestParseRequestInputsBad(t *testing.T) {
	tests := []struct {
		name      string
		lineNo    int
		line      string
		at        string // the text the problem points at: its column
		wantField string
		wantMsg   string
	}{
		{"type on a view input", ctrInputLine, "      - {ref: item_stats:ctr, type: float32}", "float32",
			"rankers[0].inputs[3].type", `only a request input has a type: view input "item_stats:ctr" has its feature's type, float32`},
		{"unknown type", requestInputLine, "      - {ref: request:hour_of_day, type: int8}", "int8",
			"rankers[0].inputs[2].type", `unknown type "int8" (a request feature is int64, float32, float64 or bool)`},
		{"a type no request feature has", requestInputLine, "      - {ref: request:hour_of_day, type: string}", "string",
			"rankers[0].inputs[2].type", "a request feature is int64, float32, float64 or bool, not string"},
		{"a fraction for an int64", requestInputLine, "      - {ref: request:hour_of_day, type: int64, default: 1.5}", "1.5",
			"rankers[0].inputs[2].default", `request feature "hour_of_day" is int64: its default must be a whole number, not 1.5`},
		{"2 for a bool", requestInputLine, "      - {ref: request:hour_of_day, type: bool, default: 2}", "2}",
			"rankers[0].inputs[2].default", `request feature "hour_of_day" is bool: its default is true or false, not 2`},
		{"true for a float64", requestInputLine, "      - {ref: request:hour_of_day, default: true}", "true",
			"rankers[0].inputs[2].default", "want a number; true and false are the defaults of a request input of type bool only"},
		{"true for a view input", ctrInputLine, "      - {ref: item_stats:ctr, default: true}", "true",
			"rankers[0].inputs[3].default", "want a number"},
		{"a string default", requestInputLine, "      - {ref: request:hour_of_day, default: noon}", "noon",
			"rankers[0].inputs[2].default", `want a number; got "noon"`},
		{"unknown field", requestInputLine, "      - {ref: request:hour_of_day, kind: int64}", "kind",
			"rankers[0].inputs[2].kind", `unknown field "kind"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := map[int]string{requestInputLine: "      - request:hour_of_day", ctrInputLine: "      - {ref: item_stats:ctr, default: 0.01}"}
			src := edit(t, base, tt.lineNo, want[tt.lineNo], tt.line)
			_, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(src))
			ps := problems(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ps), err)
			}
			p, col := ps[0], strings.Index(tt.line, tt.at)+1
			if p.Line != tt.lineNo || p.Column != col || p.Field != tt.wantField || !strings.Contains(p.Msg, tt.wantMsg) {
				t.Errorf("got %s\nwant larder.yaml:%d:%d: %s: ...%s...", p, tt.lineNo, col, tt.wantField, tt.wantMsg)
			}
		})
	}
}

// TestValidateRankerInputTypes checks the rules Project.Validate holds for
// projects built in code.
func TestValidateRankerInputTypes(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(in []larder.RankerInput)
		field string
		msg   string
	}{
		{"type on a view input", func(in []larder.RankerInput) { in[0].Type = larder.TypeInt64 },
			"rankers[0].inputs[0].type", "only a request input has a type"},
		{"a list type", func(in []larder.RankerInput) { in[2].Type = larder.TypeInt64List },
			"rankers[0].inputs[2].type", "not int64_list"},
		{"a fraction for an int64", func(in []larder.RankerInput) {
			in[2].Type, in[2].Default, in[2].HasDefault = larder.TypeInt64, 0.25, true
		}, "rankers[0].inputs[2].default", "whole number"},
		{"-1 for a bool", func(in []larder.RankerInput) {
			in[2].Type, in[2].Default, in[2].HasDefault = larder.TypeBool, -1, true
		}, "rankers[0].inputs[2].default", "true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(base))
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(p.Ranker("home_feed").Inputs)
			err = p.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field+": ") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Validate = %v, want a problem at %s: ...%s...", err, tt.field, tt.msg)
			}
		})
	}
	// An unwritten default is not checked against the type.
	p, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	in := p.Ranker("home_feed").Inputs
	in[2].Type, in[2].Default = larder.TypeBool, 7
	if err := p.Validate(); err != nil {
		t.Errorf("Validate = %v, want no problem for a default that is not written", err)
	}
}
