package server

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// requestInput is one request feature of a ranker, resolved at start-up.
type requestInput struct {
	col    int // the model input column it fills
	name   string
	typ    larder.Type
	def    float32
	hasDef bool
}

// maxStackRequests is how many request features a Rank request reads into
// buffers on the stack; a ranker with more allocates them.
const maxStackRequests = 8

// planRequests resolves the request features of r into p: their columns and
// types, and the lists that error messages give.
func planRequests(p *rankerPlan, r *larder.Ranker) {
	var names, takes []string
	for j := range r.Inputs {
		in := &r.Inputs[j]
		if in.Side != larder.SideRequest {
			continue
		}
		ri := requestInput{col: j, name: in.Request, typ: in.RequestType(), def: in.Default, hasDef: in.HasDefault}
		p.requests = append(p.requests, ri)
		p.request[in.Request] = true
		names = append(names, in.Request)
		takes = append(takes, ri.describe())
	}
	if len(names) == 0 {
		p.knownRequest, p.takes = " (it takes none)", " (it takes none)"
		return
	}
	p.knownRequest = " (it takes: " + strings.Join(names, ", ") + ")"
	p.takes = " (it takes: " + strings.Join(takes, ", ") + ")"
}

// describe returns "hour int64 (required)" or "discount float64 (default 0.5)".
func (ri requestInput) describe() string {
	if !ri.hasDef {
		return ri.name + " " + ri.typ.String() + " (required)"
	}
	return ri.name + " " + ri.typ.String() + " (default " + ri.formatDefault() + ")"
}

func (ri requestInput) formatDefault() string {
	if ri.typ == larder.TypeBool {
		return strconv.FormatBool(ri.def != 0)
	}
	return strconv.FormatFloat(float64(ri.def), 'g', -1, 32)
}

// readRequest checks the request features of a Rank request against plan
// and writes, for each of plan.requests, the number the model sees into
// vals and whether it is the feature's default into defaulted; both are
// len(plan.requests) long. It returns an INVALID_ARGUMENT error for a name
// the ranker does not declare, a required feature left out, a value of
// the wrong kind, or a number the model would read as a NaN or an infinity.
// It allocates nothing unless it fails.
func readRequest(plan *rankerPlan, feats map[string]*larderv1.Value, vals []float32, defaulted []bool) error {
	for name := range feats {
		if !plan.request[name] {
			if msg := checkName(name, larder.MaxNameBytes); msg != "" {
				return larder.Invalidf("request_features: %s%s", msg, plan.knownRequest)
			}
			return larder.Invalidf("request_features: ranker %q has no request feature %s%s", plan.ranker.Name, echo(name), plan.knownRequest)
		}
	}
	for q := range plan.requests {
		ri := &plan.requests[q]
		v, ok := feats[ri.name]
		if !ok {
			if !ri.hasDef {
				return larder.Invalidf("request_features: ranker %q needs request feature %q%s", plan.ranker.Name, ri.name, plan.takes)
			}
			vals[q], defaulted[q] = ri.def, true
			continue
		}
		x, ok := requestNumber(v, ri.typ)
		if !ok {
			return ri.kindError(v)
		}
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return ri.finiteError(v)
		}
		vals[q], defaulted[q] = x, false
	}
	return nil
}

// requestNumber reads v as a model input of a request feature of type t. ok
// is false when v is not of a kind that t takes: int64 takes an int64 value;
// float64 and float32 take a float64 or float32 value, or an int64 value
// that converts to t exactly; bool takes a bool value.
func requestNumber(v *larderv1.Value, t larder.Type) (x float32, ok bool) {
	switch k := v.GetKind().(type) {
	case *larderv1.Value_Int64Value:
		n := k.Int64Value
		switch t {
		case larder.TypeInt64:
			// As a stored int64 becomes a model input (Value.Number).
			return float32(float64(n)), true
		case larder.TypeFloat64:
			f := float64(n)
			return float32(f), exactInt(f, n)
		case larder.TypeFloat32:
			f := float32(n)
			return f, exactInt(float64(f), n)
		}
	case *larderv1.Value_Float64Value:
		if t == larder.TypeFloat64 || t == larder.TypeFloat32 {
			return float32(k.Float64Value), true
		}
	case *larderv1.Value_Float32Value:
		if t == larder.TypeFloat64 || t == larder.TypeFloat32 {
			return k.Float32Value, true
		}
	case *larderv1.Value_BoolValue:
		if t == larder.TypeBool {
			if k.BoolValue {
				return 1, true
			}
			return 0, true
		}
	}
	return 0, false
}

// exactInt reports whether f, a conversion of n, is n exactly. 2^63 is the
// one float that compares below the int64 range's end yet does not convert
// back.
func exactInt(f float64, n int64) bool {
	return f < math.MaxInt64 && int64(f) == n
}

// kindError returns the INVALID_ARGUMENT error for v, a value of a kind the
// feature does not take.
func (ri *requestInput) kindError(v *larderv1.Value) error {
	var want string
	switch ri.typ {
	case larder.TypeInt64:
		want = "an int64 value"
	case larder.TypeBool:
		want = "a bool value"
	default:
		want = fmt.Sprintf("a float64 or float32 value, or an int64 value that %s holds exactly", ri.typ)
	}
	got := "got " + kindOf(v)
	if n, ok := v.GetKind().(*larderv1.Value_Int64Value); ok && ri.typ != larder.TypeInt64 && ri.typ != larder.TypeBool {
		got = fmt.Sprintf("got int64 value %d, which %s does not hold exactly", n.Int64Value, ri.typ)
	}
	if ri.hasDef && v.GetKind() == nil {
		got += "; leave the feature out to use its default, " + ri.formatDefault()
	}
	return larder.Invalidf("request_features[%q]: must be %s (request feature %s is %s); %s", ri.name, want, ri.name, ri.typ, got)
}

// finiteError returns the INVALID_ARGUMENT error for v, a float64 or
// float32 value that the model would read as a NaN or an infinity: one
// that is, or a float64 past float32's range. A model fed one scores every
// candidate NaN, or at an extreme, and the ranking means nothing.
func (ri *requestInput) finiteError(v *larderv1.Value) error {
	var got string
	f := v.GetFloat64Value()
	if k, ok := v.GetKind().(*larderv1.Value_Float32Value); ok {
		f = float64(k.Float32Value)
	}
	switch {
	case math.IsNaN(f):
		got = "got NaN"
	case math.IsInf(f, 1):
		got = "got +Inf"
	case math.IsInf(f, -1):
		got = "got -Inf"
	default:
		got = fmt.Sprintf("got %g, past float32's range (the model reads every value as a float32)", f)
	}
	return larder.Invalidf("request_features[%q]: must be a finite number (request feature %s is %s); %s", ri.name, ri.name, ri.typ, got)
}

// kindOf names the kind of v for error messages: "a float64 value", "null".
func kindOf(v *larderv1.Value) string {
	switch v.GetKind().(type) {
	case *larderv1.Value_Int64Value:
		return "an int64 value"
	case *larderv1.Value_Float64Value:
		return "a float64 value"
	case *larderv1.Value_Float32Value:
		return "a float32 value"
	case *larderv1.Value_BoolValue:
		return "a bool value"
	case *larderv1.Value_StringValue:
		return "a string value"
	case *larderv1.Value_BytesValue:
		return "a bytes value"
	case *larderv1.Value_Float32VectorValue:
		return "a float32_vector value"
	case *larderv1.Value_Int64ListValue:
		return "an int64_list value"
	case *larderv1.Value_StringListValue:
		return "a string_list value"
	}
	return "null"
}
