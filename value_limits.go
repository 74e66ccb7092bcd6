package larder

import (
	"cmp"
	"fmt"
	"strings"
)

// ValuePolicy says what a materialization run does with a value that a
// view's value rules refuse: a NaN or an infinity (View.NonFinite), or a
// value larger than View.MaxValueBytes (View.Oversize).
type ValuePolicy string

// The value policies.
const (
	// PolicyReject fails the run, naming the entity, the feature and, when
	// the value comes from one source row, the file, the row and the
	// column. The live generation keeps serving.
	PolicyReject ValuePolicy = "reject"
	// PolicyNull stores the value as null, and counts it in the run's
	// report and record.
	PolicyNull ValuePolicy = "null"
	// PolicyKeep stores the value as it is. Only View.NonFinite takes it:
	// to keep larger values, raise View.MaxValueBytes.
	PolicyKeep ValuePolicy = "keep"
)

// The defaults and the limit of a view's value rules.
//
// A non-finite or oversized value is stored as null by default rather than
// refused: a run that published before these rules existed still publishes,
// a reader never gets a NaN, an infinity or a huge value it did not ask for,
// and the values nulled are counted where operators look (the run's summary
// and `larder runs`). PolicyReject is for pipelines that prefer a failed run
// to a value left out.
const (
	// DefaultMaxValueBytes is the size limit of a value when the view sets
	// none: 64 KiB, far above the usual feature (an embedding of 768
	// float32s takes 3 KiB) and far below what makes reading one entity
	// slow.
	DefaultMaxValueBytes = 64 << 10
	// MaxValueBytesLimit bounds View.MaxValueBytes: 512 MiB, the largest
	// value Redis stores.
	MaxValueBytesLimit = 512 << 20
	DefaultNonFinite   = PolicyNull
	DefaultOversize    = PolicyNull
)

// NonFinitePolicies lists the policies View.NonFinite takes, in
// documentation order.
func NonFinitePolicies() []ValuePolicy { return []ValuePolicy{PolicyReject, PolicyNull, PolicyKeep} }

// OversizePolicies lists the policies View.Oversize takes, in
// documentation order.
func OversizePolicies() []ValuePolicy { return []ValuePolicy{PolicyReject, PolicyNull} }

// ValueLimit returns the most bytes one value of v may take (see
// Value.Size): MaxValueBytes, or DefaultMaxValueBytes when it is zero.
func (v *View) ValueLimit() int { return cmp.Or(v.MaxValueBytes, DefaultMaxValueBytes) }

// NonFinitePolicy returns what a run of v does with a non-finite value
// (see Value.Finite): NonFinite, or DefaultNonFinite when it is empty.
func (v *View) NonFinitePolicy() ValuePolicy { return cmp.Or(v.NonFinite, DefaultNonFinite) }

// OversizePolicy returns what a run of v does with a value over
// ValueLimit: Oversize, or DefaultOversize when it is empty.
func (v *View) OversizePolicy() ValuePolicy { return cmp.Or(v.Oversize, DefaultOversize) }

// validateValueRules checks the value rules of v, the view at path.
func validateValueRules(v *View, path string, add addFunc) {
	switch {
	case v.MaxValueBytes < 0:
		add(path+".max_value_bytes", "must be positive, got %d", v.MaxValueBytes)
	case v.MaxValueBytes > MaxValueBytesLimit:
		add(path+".max_value_bytes", "%d is more than %d (512 MiB), the largest value Redis stores", v.MaxValueBytes, MaxValueBytesLimit)
	}
	switch v.NonFinite {
	case "", PolicyReject, PolicyNull, PolicyKeep:
	default:
		add(path+".non_finite", "unknown policy %q (one of %s)", v.NonFinite, policyNames(NonFinitePolicies()))
	}
	switch v.Oversize {
	case "", PolicyReject, PolicyNull:
	case PolicyKeep:
		add(path+".oversize", "keep is not an oversize policy (one of %s): to keep larger values, raise max_value_bytes", policyNames(OversizePolicies()))
	default:
		add(path+".oversize", "unknown policy %q (one of %s)", v.Oversize, policyNames(OversizePolicies()))
	}
}

func policyNames(ps []ValuePolicy) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

// ApplyValueRules applies the view's value rules to x, a value of feature
// f, as a run does: a NaN or an infinity, or a value over the view's
// max_value_bytes, is kept, made null or refused, as the view's policies
// say. It returns the value to store, or the reason it is refused. Pushed
// and streamed rows go through it.
func (v *View) ApplyValueRules(f *Feature, x Value) (Value, string) {
	if x.IsNull() {
		return x, ""
	}
	switch f.Type {
	case TypeString, TypeBytes, TypeFloat32Vector, TypeInt64List, TypeStringList:
		if n, limit := x.Size(), v.ValueLimit(); n > limit {
			switch v.OversizePolicy() {
			case PolicyReject:
				return x, fmt.Sprintf("the value takes %d bytes, more than view %q's max_value_bytes of %d (oversize: reject)", n, v.Name, limit)
			case PolicyNull:
				return Null, ""
			}
		}
	}
	if !x.Finite() {
		switch v.NonFinitePolicy() {
		case PolicyReject:
			return x, fmt.Sprintf("%s is refused by view %q (non_finite: reject)", x.NonFiniteText(), v.Name)
		case PolicyNull:
			return Null, ""
		}
	}
	return x, ""
}
