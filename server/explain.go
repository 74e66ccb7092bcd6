package server

import (
	"slices"
	"time"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// A Rank request with explain set builds its model input from whole rows
// rather than from numbers decoded straight into it (see NumberRead), since
// the numbers cannot tell a null value from a missing row. The input it
// builds is the same, value for value: fillExplained follows fillInput and
// the store's number decoding, and the model scores what it builds.

// explained is where each value of a model input came from, by value:
// its source, the event time of its row (Unix microseconds, 0 for none)
// and whether that row was pushed or streamed in. For a streaming
// aggregate view, a value is streamed in when its row counts stream
// events, and its time is then the newest of them.
type explained struct {
	sources []larderv1.InputSource
	times   []int64
	pushed  []bool
}

func newExplained(n int) *explained {
	return &explained{sources: make([]larderv1.InputSource, n), times: make([]int64, n), pushed: make([]bool, n)}
}

// requestSources records the source of the request features' columns:
// INPUT_SOURCE_REQUEST, or INPUT_SOURCE_REQUEST_DEFAULT where the request
// left the feature out. sources holds n rows of f.
func requestSources(sources []larderv1.InputSource, f, n int, plan *rankerPlan, defaulted []bool) {
	for q := range plan.requests {
		src := larderv1.InputSource_INPUT_SOURCE_REQUEST
		if defaulted[q] {
			src = larderv1.InputSource_INPUT_SOURCE_REQUEST_DEFAULT
		}
		col := plan.requests[q].col
		for i := range n {
			sources[i*f+col] = src
		}
	}
}

// fillExplained is fillInput for a lookup that read whole rows: it writes
// the values of the features nr names into the model input x at the columns
// cols, and where each came from into sources. A missing row, a stale row
// and a null value take the input's default from nr.Defaults.
func fillExplained(x []float32, ex *explained, f, n int, l *larder.Lookup, nr *larder.NumberRead, cols []int, context bool, now time.Time) {
	for i := range n {
		src := i
		if context {
			src = 0
		}
		var at int64
		var pushed bool
		found := l.Found[src]
		var et time.Time
		var vals []larder.Value
		if found {
			et = l.Rows[src].EventTime
			vals = l.Rows[src].Values
			at = et.UnixMicro()
			pushed = !l.Watermark.IsZero() && et.After(l.Watermark)
			if !l.TileTime.IsZero() {
				// A streaming aggregate view's row is as of its read
				// time: it was streamed in when it counts stream events,
				// and then its time is the newest of those.
				pushed = l.Streamed != nil && !l.Streamed[src].IsZero()
				if pushed {
					at = l.Streamed[src].UnixMicro()
				}
			}
		}
		row := x[i*f : (i+1)*f]
		from, times, pushes := ex.sources[i*f:(i+1)*f], ex.times[i*f:(i+1)*f], ex.pushed[i*f:(i+1)*f]
		for c, col := range cols {
			var val larder.Value
			if found {
				val = vals[nr.Features[c]]
			}
			// Numeric features only reach a model (Project.Validate), so a
			// value that is not a number is null.
			v, st := l.View.InputNumber(found, et, now, val, nr.Defaults[c])
			s := inputSources[st]
			row[col], from[col], times[col], pushes[col] = v, s, at, pushed
		}
	}
}

// inputSources maps where a model input came from to its proto enum.
var inputSources = [...]larderv1.InputSource{
	larder.InputPresent: larderv1.InputSource_INPUT_SOURCE_PRESENT,
	larder.InputMissing: larderv1.InputSource_INPUT_SOURCE_MISSING,
	larder.InputStale:   larderv1.InputSource_INPUT_SOURCE_STALE,
	larder.InputNull:    larderv1.InputSource_INPUT_SOURCE_NULL,
}

// explainResponse adds the explanation of each returned candidate to resp:
// scored[i] is candidate order[i], whose model input is row order[i] of x
// and whose sources are that row of sources (f values a row). The values
// are copied, since x goes back to a pool; ex is the request's own.
func explainResponse(resp *larderv1.RankResponse, scored []larderv1.ScoredCandidate, order []int, plan *rankerPlan, x []float32, ex *explained, f int) {
	resp.InputNames = slices.Clone(plan.names)
	exps := make([]larderv1.Explanation, len(order))
	inputs := make([]float32, len(order)*f)
	for i, c := range order {
		in := inputs[i*f : (i+1)*f : (i+1)*f]
		copy(in, x[c*f:(c+1)*f])
		exps[i].Inputs = in
		exps[i].Sources = ex.sources[c*f : (c+1)*f : (c+1)*f]
		exps[i].EventTimeMicros = ex.times[c*f : (c+1)*f : (c+1)*f]
		exps[i].Pushed = ex.pushed[c*f : (c+1)*f : (c+1)*f]
		scored[i].Explanation = &exps[i]
	}
}

// tileTime returns the read time of a streaming aggregate view's windows
// in Unix microseconds (see larder.Lookup.TileTime), 0 for other views.
func tileTime(l *larder.Lookup) int64 {
	if l.TileTime.IsZero() {
		return 0
	}
	return l.TileTime.UnixMicro()
}
