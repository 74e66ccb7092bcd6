package larder

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// AggFunc is an aggregation function of an aggregate view.
type AggFunc string

// The aggregation functions. Null values are skipped by every function; count
// counts the non-null values of its column.
const (
	AggCount         AggFunc = "count"
	AggSum           AggFunc = "sum"
	AggMean          AggFunc = "mean"
	AggMin           AggFunc = "min"
	AggMax           AggFunc = "max"
	AggLast          AggFunc = "last"
	AggCountDistinct AggFunc = "count_distinct"
)

// AggFuncs lists the aggregation functions in documentation order.
func AggFuncs() []AggFunc {
	return []AggFunc{AggCount, AggSum, AggMean, AggMin, AggMax, AggLast, AggCountDistinct}
}

// Aggregation is one column of an aggregate view's source, aggregated with
// several functions over several windows. Each (function, window) pair
// becomes one feature named "<name>_<function>_<window>", such as
// spend_sum_7d.
type Aggregation struct {
	// Column is the source column aggregated.
	Column string
	// Type is the column's type: int64, float64, float32 or bool (and, for
	// last and count_distinct only, string).
	Type Type
	// Name is the prefix of the generated feature names; Column by default.
	Name      string
	Functions []AggFunc
	Windows   []Window
}

// Window is an aggregation window: the half-open interval (t − Duration, t]
// before the run time t. Label is how the window is written in feature names.
type Window struct {
	Label    string
	Duration time.Duration
}

// maxWindowDays is the longest window in days that a time.Duration holds.
const maxWindowDays = int(math.MaxInt64 / int64(24*time.Hour))

// ParseWindow parses a window such as 30m, 1h, 36h, 1d or 7d. Its label is the
// text as written. It returns an error, whose message quotes at most the
// first 64 bytes of s, when s is not a positive duration of at most
// 106751d (the longest a time.Duration holds).
func ParseWindow(s string) (Window, error) {
	invalid := func() (Window, error) {
		return Window{}, fmt.Errorf("invalid window %s: write a positive number of minutes, hours or days, such as 30m, 1h or 7d", quoteInput(s))
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if hint, ok := daysHint(s); err != nil && ok {
			return Window{}, fmt.Errorf("invalid window %s: %s", quoteInput(s), hint)
		}
		if err != nil || days <= 0 {
			return invalid()
		}
		if days > maxWindowDays {
			return Window{}, fmt.Errorf("invalid window %s: the longest window is %dd", quoteInput(s), maxWindowDays)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		d, err = time.ParseDuration(s)
		if hint, ok := daysHint(s); err != nil && ok {
			return Window{}, fmt.Errorf("invalid window %s: %s", quoteInput(s), hint)
		}
		if err != nil || d <= 0 {
			return invalid()
		}
	}
	return Window{Label: s, Duration: d}, nil
}

// daysHint says why s, a window that starts with a number of days but is
// not a whole number of days alone, is refused and, when s reads as a whole
// number of hours or minutes (1d12h, 1.5d), which window to write instead.
// ok is false when s does not start with a number and a d.
func daysHint(s string) (hint string, ok bool) {
	const why = "a window in days is a whole number and d alone, such as 7d"
	days, rest, found := strings.Cut(s, "d")
	if !found || days == "" || strings.Trim(days, "0123456789.") != "" {
		return "", false
	}
	n, err := strconv.ParseFloat(days, 64)
	if err != nil || n > float64(maxWindowDays) {
		return why, true
	}
	var extra time.Duration
	if rest != "" {
		if extra, err = time.ParseDuration(rest); err != nil || extra < 0 {
			return why, true
		}
	}
	total := math.Round(n*float64(24*time.Hour)) + float64(extra)
	if total <= 0 || total >= math.MaxInt64 {
		return why, true
	}
	switch d := time.Duration(total); {
	case d%time.Hour == 0:
		return why + "; write " + strconv.FormatInt(int64(d/time.Hour), 10) + "h", true
	case d%time.Minute == 0:
		return why + "; write " + strconv.FormatInt(int64(d/time.Minute), 10) + "m", true
	}
	return why, true
}

// FeatureName returns the name of the feature that holds fn over w.
func (a *Aggregation) FeatureName(fn AggFunc, w Window) string {
	name := a.Name
	if name == "" {
		name = a.Column
	}
	return name + "_" + string(fn) + "_" + w.Label
}

// ResultType returns the type of the feature holding fn over a column of
// type t: int64 for counts, float64 for means and for sums of floats, t
// itself for min, max, last, and for sums of int64.
func (fn AggFunc) ResultType(t Type) Type {
	switch fn {
	case AggCount, AggCountDistinct:
		return TypeInt64
	case AggMean:
		return TypeFloat64
	case AggSum:
		if t == TypeInt64 || t == TypeBool {
			return TypeInt64
		}
		return TypeFloat64
	}
	return t
}

// AggregateFeature says how a feature of an aggregate view is computed.
type AggregateFeature struct {
	Aggregation int // index into View.Aggregations
	Func        AggFunc
	Window      Window
}

// AggregateFeatures returns, for each feature of an aggregate view in order,
// how it is computed. It is nil for other kinds.
func (v *View) AggregateFeatures() []AggregateFeature {
	if v.Kind != KindAggregate {
		return nil
	}
	var out []AggregateFeature
	for i := range v.Aggregations {
		a := &v.Aggregations[i]
		for _, fn := range a.Functions {
			for _, w := range a.Windows {
				out = append(out, AggregateFeature{Aggregation: i, Func: fn, Window: w})
			}
		}
	}
	return out
}

// Prediction is the batch model of a prediction view: it scores every
// entity of the view's entity with an ONNX model whose inputs are features
// of other views of the same entity, and stores the outputs as the view's
// features (all float32, one per output column).
type Prediction struct {
	// Model is the path of the ONNX model file.
	Model string
	// ModelInput and ModelOutput name the model's float32 [N, F] input and
	// its [N, K] output, K being the number of the view's features.
	ModelInput  string
	ModelOutput string
	// Inputs are the model's input columns, in order: "view:feature"
	// references to views of the same entity. Their Side is SideContext.
	Inputs []RankerInput
	// EntitiesFrom names the view whose live entities are scored; by
	// default the view of the first input.
	EntitiesFrom string
	// BatchSize is the number of rows per model run (default 1024).
	BatchSize int

	entitiesFrom *View
}

// EntitiesView returns the view whose entities are scored. It is nil before
// Project.Validate.
func (p *Prediction) EntitiesView() *View { return p.entitiesFrom }

// DefaultPredictionBatch is the default number of rows per model run of a
// prediction view.
const DefaultPredictionBatch = 1024

// Candidates defines a candidates view: it keeps the TopK highest-scored
// candidates of each context entity (the view's entity), read either from a
// source of (context key, candidate key, score) rows or, when FromView is
// set, from the live generations of other views: every entity of FromView is
// a candidate, scored by its ScoreFeature, and belongs to the context whose
// key is its value of the Context feature. It stores two features:
// CandidatesFeature, the candidate keys in descending score order (an
// int64_list or a string_list, after the candidate entity's key type), and
// ScoresFeature, their scores (a float32_vector).
type Candidates struct {
	// Entity is the candidate entity.
	Entity string
	// Column is the source column holding candidate keys; by default the
	// candidate entity's key name. A view-fed candidates view has none.
	Column string
	// ScoreColumn is the source column holding scores (float32 or float64).
	ScoreColumn string
	// FromView names a view keyed by the candidate entity whose live
	// generation supplies the candidates, instead of a source. It is not a
	// candidates view.
	FromView string
	// ScoreFeature is the numeric feature of FromView holding each
	// candidate's score (larder.yaml's score, when from_view is set).
	ScoreFeature string
	// Context is the "view:feature" reference, to a view keyed by the
	// candidate entity, whose value is each candidate's context key; its
	// type is the key type of the view's entity. Required with FromView.
	Context string
	// TopK is the number of candidates kept per context entity (default 100).
	TopK int

	entity         *Entity
	fromView       *View
	score          int
	contextView    *View
	contextFeature int
}

// EntityDef returns the candidate entity. It is nil before Project.Validate.
func (c *Candidates) EntityDef() *Entity { return c.entity }

// FromViewDef returns the view named by FromView and the index of
// ScoreFeature among its features. The view is nil when FromView is empty
// or before Project.Validate.
func (c *Candidates) FromViewDef() (v *View, score int) { return c.fromView, c.score }

// ContextDef returns the view and the index of the feature that Context
// names. The view is nil when Context is empty or before Project.Validate.
func (c *Candidates) ContextDef() (v *View, feature int) { return c.contextView, c.contextFeature }

// The features of a candidates view, and the default list length.
const (
	CandidatesFeature    = "candidates"
	ScoresFeature        = "scores"
	DefaultCandidateTopK = 100
)

// RunState is how a run ended.
type RunState string

// The states of a recorded run.
const (
	// RunOK is a run that published its generation.
	RunOK RunState = "ok"
	// RunFailed is a run that ended with an error; its generation was
	// discarded, and the live one kept serving.
	RunFailed RunState = "failed"
	// RunAbandoned is a run whose process died or lost its lease while
	// it wrote: Cleanup found its generation and deleted it.
	RunAbandoned RunState = "abandoned"
	// RunCancelled is a run stopped on purpose (a cancelled job, a
	// shutdown that outlasted its grace time): nothing was published.
	RunCancelled RunState = "cancelled"
	// RunSkipped is a schedule tick that started no run because the
	// view's previous run was still going.
	RunSkipped RunState = "skipped"
)

// Run is the record of one materialization run of a view, successful or
// not, as `larder runs` shows it.
type Run struct {
	View string
	Kind ViewKind
	// State is how the run ended; "" in records written before states
	// were kept, which means RunOK when Err is empty and RunFailed
	// otherwise (see Result).
	State RunState
	// Generation is the generation published (or written into, for an
	// incremental run); 0 when the run failed before it had one.
	Generation  int64
	Incremental bool
	// AsOf is the instant the run computed its view as of.
	AsOf time.Time
	// Inputs are the generations of other views the run read.
	Inputs []InputGeneration
	// Trigger is what started the run; Tick the schedule tick, for
	// scheduled runs; Job the id of its job, for runs on a worker.
	Trigger Trigger
	Tick    time.Time
	Job     string
	// Shards is the number of shards a sharded run was written in; 0 for
	// a run in one piece.
	Shards int
	// Owner says who ran it, such as "host:pid".
	Owner string
	// Token is the fencing token of the run lease the run held; 0 when it
	// held none.
	Token     int64
	StartedAt time.Time
	Duration  time.Duration
	RowsRead  int64
	// EntitiesWritten counts the rows written into the generation.
	EntitiesWritten int64
	// Skipped counts unusable source rows by reason.
	Skipped map[string]int64
	// Nulled counts the values the view's value rules stored as null, by
	// reason ("non-finite", "oversize"); nil when none was. For a sharded
	// run, it counts those of the shard that published.
	Nulled map[string]int64
	// PeakRSS is the process's peak resident memory in bytes at the end of
	// the run, 0 when unknown.
	PeakRSS int64
	// Err is the error that ended the run, "" when it succeeded.
	Err string
}

// Result returns how r ended: State, or for records without one, RunOK
// when Err is empty and RunFailed otherwise.
func (r Run) Result() RunState {
	switch {
	case r.State != "":
		return r.State
	case r.Err != "":
		return RunFailed
	}
	return RunOK
}

// RunLog records materialization runs.
type RunLog interface {
	// StartRun notes that run r, which holds the run lease of token
	// r.Token, has started: should its process die before RecordRun, the
	// store records it as abandoned once its lease lapses, whether or not
	// it began writing a generation.
	StartRun(ctx context.Context, r Run) error
	// RecordRun stores r, the end of a run (and, when r.Token is set,
	// clears the note StartRun made); the oldest records of a view are
	// dropped past a bounded history.
	RecordRun(ctx context.Context, r Run) error
	// Runs returns the most recent runs of view (of every view when view is
	// ""), newest first, at most limit of them.
	Runs(ctx context.Context, view string, limit int) ([]Run, error)
}

// Model is a loaded ONNX model that scores rows: x holds n rows of F inputs,
// row-major, and Score writes n×K outputs into out (K = 1 for a ranker).
// The models package implements it; the server (rankers) and the
// materializer (prediction views) use it.
type Model interface {
	Score(ctx context.Context, x []float32, n int, out []float32) error
	// Version identifies the model's content, such as "sha256:1a2b3c4d5e6f".
	Version() string
}

// ModelSpec is what a ranker or a prediction view expects of its model: a
// float32 input named Input of shape [N, Features] and a float32 output
// named Output of shape [N, Outputs] (or [N] when Outputs is 1).
type ModelSpec struct {
	Path     string
	Input    string
	Output   string
	Features int
	Outputs  int
}

// ModelLoader loads the model a spec names. cmd wires it to the models
// package.
type ModelLoader func(spec ModelSpec) (Model, error)
