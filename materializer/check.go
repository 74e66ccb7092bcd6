package materializer

import (
	"fmt"
	"slices"
	"time"

	"github.com/larder-dev/larder"
)

// SourceProblem is what keeps a view from reading its source: a path that
// names no file, a file that is not Parquet, a column that is missing or of
// a type that cannot feed the view (a *ColumnError).
type SourceProblem struct {
	View string
	// Field is the field of the project file at fault, as
	// larder.Project.Validate writes paths: the source's path, or the field
	// that names the column or its type, such as
	// "views[2].features[1].type".
	Field string
	Err   error
}

func (p SourceProblem) Error() string { return fmt.Sprintf("view %s: %v", p.View, p.Err) }

func (p SourceProblem) Unwrap() error { return p.Err }

// CheckSources opens the source files of every view of p that reads one,
// reading their footers only, and checks the columns each view's run would
// read, as a run does before it reads any data. It returns every problem,
// one per column at fault, in project order; none when every source would
// do. p must be validated.
func CheckSources(p *larder.Project) []SourceProblem {
	var out []SourceProblem
	now := time.Now()
	for i, v := range p.Views {
		src, ent := v.SourceDef(), v.EntityDef()
		if src == nil || ent == nil {
			continue
		}
		var comp sourceComputation
		switch v.Kind {
		case larder.KindLatest:
			comp = newLatest(v, ent, now)
		case larder.KindAggregate:
			comp = newAggregate(v, ent, now)
		case larder.KindCandidates:
			if v.Candidates == nil || v.Candidates.FromView != "" || v.Candidates.EntityDef() == nil {
				continue
			}
			comp = newCandidates(v, ent, now)
		default:
			continue
		}
		srcField := fmt.Sprintf("sources[%d]", slices.Index(p.Sources, src))
		specs := comp.columns()
		for j := range specs {
			placeSpec(p, fmt.Sprintf("views[%d]", i), srcField, &specs[j])
		}
		ds, err := openDataset(p, src)
		if err != nil {
			out = append(out, SourceProblem{View: v.Name, Field: srcField + ".path", Err: err})
			continue
		}
		err = ds.bind(specs)
		ds.Close()
		errs := []error{err}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			errs = joined.Unwrap()
		}
		for _, err := range errs {
			if err == nil {
				continue
			}
			sp := SourceProblem{View: v.Name, Field: srcField + ".path", Err: err}
			if ce, ok := err.(*ColumnError); ok && ce.field != "" {
				sp.Field = ce.field
			}
			out = append(out, sp)
		}
	}
	return out
}

// placeSpec makes the fields of spec, a column of the view at viewField
// reading the source at srcField, paths of the project file: the view's own
// made absolute, the entity's key and the source's event time filled in.
func placeSpec(p *larder.Project, viewField, srcField string, spec *columnSpec) {
	switch {
	case spec.field != "":
		spec.field = viewField + "." + spec.field
		if spec.typeField != "" {
			spec.typeField = viewField + "." + spec.typeField
		}
	case spec.role == roleKey:
		e := slices.IndexFunc(p.Entities, func(e *larder.Entity) bool { return e.Name == spec.name })
		if e >= 0 {
			spec.field, spec.typeField = fmt.Sprintf("entities[%d].key", e), fmt.Sprintf("entities[%d].type", e)
		}
	case spec.role == roleEventTime, spec.role == roleRowCount:
		spec.field = srcField + ".event_time"
	}
}
