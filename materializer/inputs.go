package materializer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/larder-dev/larder"
)

// pinInputs reads the live generation of every view v reads (its
// dependencies) and records each in rep.Inputs, so that the run reads those
// generations from start to end (Lookup.Pin) even when a new one is
// published meanwhile, and so that its generation records them. It returns
// the generations by view, or an error wrapping larder.ErrNoGeneration
// naming the first input never published.
func (m *Materializer) pinInputs(ctx context.Context, v *larder.View, rep *Report) (map[*larder.View]larder.Generation, error) {
	pinned := make(map[*larder.View]larder.Generation, len(v.DependsOn()))
	rep.Inputs = rep.Inputs[:0]
	for _, d := range v.DependsOn() {
		g, err := liveNow(ctx, m.reader, d)
		if err != nil {
			what := fmt.Sprintf("view %q, which it reads,", d.Name)
			if v.Kind == larder.KindPrediction {
				what = fmt.Sprintf("input view %q", d.Name)
			}
			if errors.Is(err, larder.ErrNoGeneration) {
				return nil, fmt.Errorf("materialize %s: %s has no live generation: materialize it first (larder materialize %s): %w",
					v.Name, what, d.Name, err)
			}
			return nil, fmt.Errorf("materialize %s: %s: %w", v.Name, strings.TrimSuffix(what, ","), err)
		}
		if at := inputAsOf(g); at.After(rep.RunTime) {
			// A run as of the past would read data newer than its as-of.
			switch m.run.Trigger {
			case larder.TriggerManual, larder.TriggerJob:
				return nil, fmt.Errorf("materialize %s as of %s: view %q, which it reads, is live as of %s, later: the run would read data from after its as-of; name %s too, so that it is computed as of %s first (larder materialize --as-of %s %s %s)",
					v.Name, timeText(rep.RunTime), d.Name, timeText(at), d.Name, timeText(rep.RunTime), timeText(rep.RunTime), d.Name, v.Name)
			case "":
			default:
				m.log.Warn("a view this run reads is live as of a later instant than the run's as-of", "view", v.Name, "as_of", rep.RunTime,
					"input", d.Name, "input_as_of", at)
			}
		}
		pinned[d] = g
		rep.Inputs = append(rep.Inputs, larder.InputGeneration{View: d.Name, Generation: g.ID, AsOf: inputAsOf(g)})
	}
	return pinned, nil
}

// inputAsOf returns the as-of of an input generation: its AsOf, or its
// start for generations written before as-ofs were kept.
func inputAsOf(g larder.Generation) time.Time {
	if g.AsOf.IsZero() {
		return g.StartedAt
	}
	return g.AsOf
}

// liveNow returns the live generation of v as the store holds it now: from
// LiveFresh when the store has it (its Live may lag a publish by another
// process), from Live otherwise.
func liveNow(ctx context.Context, r larder.FeatureStore, v *larder.View) (larder.Generation, error) {
	if fr, ok := r.(larder.FreshReader); ok {
		return fr.LiveFresh(ctx, v)
	}
	return r.Live(ctx, v)
}

// timeText writes t for messages: RFC 3339 in UTC.
func timeText(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
