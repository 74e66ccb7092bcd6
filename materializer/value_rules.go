package materializer

import (
	"fmt"
	"log/slog"

	"github.com/larder-dev/larder"
)

// The reasons a value is stored as null rather than as computed, as counted
// in Report.Nulled.
const (
	// NullNonFinite counts the NaN and infinite values of float64, float32
	// and float32_vector features (see larder.Value.Finite) under the
	// policy larder.PolicyNull.
	NullNonFinite = "non-finite"
	// NullOversize counts the values over the view's max_value_bytes (see
	// larder.Value.Size) under the policy larder.PolicyNull.
	NullOversize = "oversize"
)

// The reasons, as indexes of valueRules' counts.
const (
	ruleNonFinite = iota
	ruleOversize
	ruleCount
)

var ruleReasons = [ruleCount]string{NullNonFinite, NullOversize}

// valueRules applies a view's value rules (larder.View.ValueLimit,
// NonFinitePolicy and OversizePolicy) to every row a run writes, just
// before it is put: the one place every kind of view, full or incremental,
// sends its rows through. A value the rules refuse is stored as null and
// counted, or kept, or fails the run with a *ValueError, as the view's
// policy for it says. A valueRules is used from one goroutine.
type valueRules struct {
	view      *larder.View
	limit     int
	nonFinite larder.ValuePolicy
	oversize  larder.ValuePolicy
	// checks lists the features whose values the rules may refuse:
	// floats and vectors (unless non-finite values are kept), and values
	// of variable size. Numbers and bools are never too large.
	checks []ruleCheck
	nulled [ruleCount]int64
	// first is the first value nulled for each reason, for the log.
	first [ruleCount]*ValueError
	// vals holds the values of a row that had some nulled.
	vals []larder.Value
}

// ruleCheck is what the rules check of one feature.
type ruleCheck struct {
	feature         int
	typ             larder.Type
	finite, limited bool
}

// newValueRules returns the value rules of v.
func newValueRules(v *larder.View) *valueRules {
	r := &valueRules{view: v, limit: v.ValueLimit(), nonFinite: v.NonFinitePolicy(), oversize: v.OversizePolicy()}
	for i, f := range v.Features {
		c := ruleCheck{feature: i, typ: f.Type}
		switch f.Type {
		case larder.TypeFloat64, larder.TypeFloat32:
			c.finite = true
		case larder.TypeFloat32Vector:
			c.finite, c.limited = true, true
		case larder.TypeString, larder.TypeBytes, larder.TypeInt64List, larder.TypeStringList:
			c.limited = true
		}
		c.finite = c.finite && r.nonFinite != larder.PolicyKeep
		if c.finite || c.limited {
			r.checks = append(r.checks, c)
		}
	}
	return r
}

// apply returns row with the values that the rules null stored as null,
// and a *ValueError for the first value that they reject. The row returned
// shares row's values when none is nulled; otherwise its values are valid
// until the next call. row is never modified.
func (r *valueRules) apply(k larder.Key, row larder.Row) (larder.Row, error) {
	out, copied := row, false
	for _, c := range r.checks {
		v := &row.Values[c.feature]
		// Most checks are of numbers, which take this path: x-x is 0 for
		// a finite x (and for null, read as 0), NaN otherwise.
		switch c.typ {
		case larder.TypeFloat64:
			if x := v.Float64(); x-x == 0 {
				continue
			}
		case larder.TypeFloat32:
			if x := v.Float32(); x-x == 0 {
				continue
			}
		}
		reason := -1
		switch {
		case v.IsNull():
		case c.limited && v.Size() > r.limit:
			reason = ruleOversize
		case c.finite && !v.Finite():
			reason = ruleNonFinite
		}
		if reason < 0 {
			continue
		}
		policy := r.nonFinite
		if reason == ruleOversize {
			policy = r.oversize
		}
		if policy == larder.PolicyKeep {
			continue
		}
		if policy == larder.PolicyReject {
			return row, r.refusal(k, c.feature, reason, *v)
		}
		if r.first[reason] == nil {
			r.first[reason] = r.refusal(k, c.feature, reason, *v)
		}
		r.nulled[reason]++
		if !copied {
			r.vals = append(r.vals[:0], row.Values...)
			out.Values, copied = r.vals, true
		}
		out.Values[c.feature] = larder.Null
	}
	return out, nil
}

// refusal returns the *ValueError of value v of feature i of the entity k,
// refused for reason.
func (r *valueRules) refusal(k larder.Key, i, reason int, v larder.Value) *ValueError {
	f := r.view.Features[i]
	e := &ValueError{View: r.view.Name, Kind: r.view.Kind, Key: k, Feature: f.Name, Reason: ruleReasons[reason], Limit: r.limit}
	if ent := r.view.EntityDef(); ent != nil {
		e.Entity = ent.Name
	}
	if r.view.Kind == larder.KindLatest {
		e.Column = f.Column
	}
	if reason == ruleNonFinite {
		e.Value = v.NonFiniteText()
	} else {
		e.Value = fmt.Sprintf("a %s of %d bytes", v.Type(), v.Size())
	}
	return e
}

// report returns the counts of values nulled by reason, nil when none was.
func (r *valueRules) report() map[string]int64 {
	var m map[string]int64
	for reason, n := range r.nulled {
		if n > 0 {
			if m == nil {
				m = make(map[string]int64, ruleCount)
			}
			m[ruleReasons[reason]] = n
		}
	}
	return m
}

// logNulled logs, for each reason a value was nulled for, how many were and
// the first of them, so that an operator can find it in the data.
func (r *valueRules) logNulled(log *slog.Logger) {
	for reason, n := range r.nulled {
		if n == 0 {
			continue
		}
		e := r.first[reason]
		log.Warn("values stored as null by the view's value rules", "view", r.view.Name, "reason", ruleReasons[reason], "values", n,
			"first_key", e.Key.String(), "first_feature", e.Feature, "first_value", e.Value)
	}
}

// ValueError is a value that its view's value rules refuse under the
// policy larder.PolicyReject: a NaN or an infinity (larder.View.NonFinite)
// or a value over larder.View.MaxValueBytes (larder.View.Oversize). A run
// that meets one fails with it, and publishes nothing.
type ValueError struct {
	View   string
	Kind   larder.ViewKind
	Entity string
	Key    larder.Key
	// Feature is the feature of the value, Column its source column when
	// the view copies it from the source (a latest view).
	Feature, Column string
	// Reason is NullNonFinite or NullOversize.
	Reason string
	// Value describes the value: "NaN", "+Inf" or "-Inf" (for a vector,
	// followed by the element's position, such as "NaN at [3]"), or its
	// type and size, such as "a string of 1048576 bytes".
	Value string
	// Limit is the view's max_value_bytes.
	Limit int
	// File and Row locate the value in the source, when it is copied from
	// one source row (a latest view): the file, and the row in the file,
	// counting from 0. File is "" for a computed value (an aggregation, a
	// model's output, a list of candidates).
	File string
	Row  int64
}

func (e *ValueError) Error() string {
	where := ""
	if e.File != "" {
		where = fmt.Sprintf("source file %s, row %d, column %q: ", e.File, e.Row, e.Column)
	}
	fix := "fix the source"
	switch e.Kind {
	case larder.KindPrediction:
		fix = "fix the model or its inputs"
	case larder.KindCandidates:
		fix = "fix the scores"
	}
	what := fmt.Sprintf("%s%s %s's feature %q", where, e.Entity, e.Key, e.Feature)
	if e.Reason == NullOversize {
		return fmt.Sprintf("%s is %s, more than the view's max_value_bytes of %d, and its oversize policy is reject: %s, raise max_value_bytes, or set oversize to null to store such values as null",
			what, e.Value, e.Limit, fix)
	}
	return fmt.Sprintf("%s is %s, and the view's non_finite policy is reject: %s, or set non_finite to null (to store such values as null) or keep",
		what, e.Value, fix)
}
