package materializer

import (
	"fmt"
	"time"

	"github.com/larder-dev/larder"
)

// SourceProblem is what keeps a view from reading its source: a path that
// names no file, a file that is not Parquet, a column that is missing or of
// a type that cannot feed the view (a *ColumnError).
type SourceProblem struct {
	View string
	Err  error
}

func (p SourceProblem) Error() string { return fmt.Sprintf("view %s: %v", p.View, p.Err) }

func (p SourceProblem) Unwrap() error { return p.Err }

// CheckSources opens the source files of every view of p that reads one,
// reading their footers only, and checks the columns each view's run would
// read, as a run does before it reads any data. It returns a problem per
// view at fault, in project order; none when every source would do. p must
// be validated.
func CheckSources(p *larder.Project) []SourceProblem {
	var out []SourceProblem
	now := time.Now()
	for _, v := range p.Views {
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
		if err := checkSource(p, src, comp); err != nil {
			out = append(out, SourceProblem{View: v.Name, Err: err})
		}
	}
	return out
}

func checkSource(p *larder.Project, src *larder.Source, comp sourceComputation) error {
	ds, err := openDataset(p.Path(src.Path), src.Name)
	if err != nil {
		return err
	}
	defer ds.Close()
	return ds.bind(comp.columns())
}
