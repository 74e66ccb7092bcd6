package larder

import (
	"path/filepath"
	"strings"
	"time"
)

// Defaults applied by the config loader where larder.yaml is silent.
const (
	DefaultListen          = "127.0.0.1:50051"
	DefaultMaxEntities     = 1000
	DefaultMaxCandidates   = 1000
	DefaultTopK            = 10
	DefaultGracePeriod     = 10 * time.Minute
	DefaultRefreshInterval = 10 * time.Second
	DefaultModelInput      = "features"
	DefaultModelOutput     = "score"
	// DefaultModelTimeout bounds one run of a ranker's model when the
	// ranker sets no model_timeout: about a hundred times what the bundled
	// example model takes for 100 candidates, and well under a product's
	// usual request deadline.
	DefaultModelTimeout = 100 * time.Millisecond

	// The defaults of a ranker's batching settings, for the fields its
	// batching mapping leaves out.
	DefaultBatchMaxDelay = 2 * time.Millisecond
	DefaultBatchMaxRows  = 1024
	DefaultBatchMaxQueue = 64
)

// Project is one larder.yaml: everything larder serves and materializes.
// Call Validate before use: it checks the definitions, resolves references
// and builds the lookup indexes the other methods use.
type Project struct {
	Name string
	// Dir is the folder relative paths (sources, models) are resolved against:
	// the folder holding larder.yaml.
	Dir      string
	Redis    Redis
	Server   Server
	Entities []*Entity
	Sources  []*Source
	Views    []*View
	Rankers  []*Ranker

	entities map[string]*Entity
	sources  map[string]*Source
	views    map[string]*View
	rankers  map[string]*Ranker
}

// Redis says how to reach the online store.
type Redis struct {
	// Addrs are host:port addresses. None means the embedded in-process
	// server; one is a standalone server; several are a cluster (or Sentinel
	// nodes when MasterName is set).
	Addrs      []string
	MasterName string
	Username   string
	Password   string
	TLS        bool
	DB         int
	// GracePeriod is how long a replaced generation stays readable before it
	// is deleted, so that requests in flight finish on it.
	GracePeriod time.Duration
}

// Embedded reports whether the project uses the embedded in-process server.
func (r Redis) Embedded() bool { return len(r.Addrs) == 0 }

// Server holds the serving settings.
type Server struct {
	Listen        string
	MaxEntities   int
	MaxCandidates int
	// RefreshInterval is how often the server re-reads live generations as a
	// fallback to publish notifications.
	RefreshInterval time.Duration
	// MetricsListen is the host:port of the Prometheus /metrics endpoint;
	// empty means no endpoint.
	MetricsListen string
	// AdminListen is the host:port of a gRPC listener that serves the
	// AdminService alone, away from Listen; empty means the AdminService is
	// served on Listen with the FeatureService.
	AdminListen string
}

// Entity is a kind of thing with a key, such as a user keyed by user_id.
type Entity struct {
	Name string
	// Key is the name of the key: the column that holds it in sources.
	Key     string
	KeyType Type
}

// Source is a Parquet data set: a file, a folder or a glob.
type Source struct {
	Name string
	Path string
	// EventTime is the column holding each row's event timestamp.
	EventTime string
}

// ViewKind is the kind of computation that fills a view.
type ViewKind string

// The view kinds.
const (
	// KindLatest keeps the newest source row per entity.
	KindLatest ViewKind = "latest"
	// KindAggregate computes windowed aggregations of a source's events.
	KindAggregate ViewKind = "aggregate"
	// KindPrediction scores every entity with a batch ONNX model over
	// features of other views.
	KindPrediction ViewKind = "prediction"
	// KindCandidates keeps the top K candidates per context entity.
	KindCandidates ViewKind = "candidates"
)

// ViewKinds lists the view kinds, in the order the documentation gives them.
func ViewKinds() []ViewKind {
	return []ViewKind{KindLatest, KindAggregate, KindPrediction, KindCandidates}
}

// View is a named, typed set of values per entity, materialized from a source.
type View struct {
	Name     string
	Kind     ViewKind
	Entity   string
	Source   string
	Features []Feature
	// MaxAge is how old a value may be before reads report it stale; zero
	// means values never go stale.
	MaxAge time.Duration
	// Schedule is a cron spec for scheduled runs; empty means on demand only.
	Schedule    string
	Description string

	// Aggregations define an aggregate view; Validate generates its Features
	// from them.
	Aggregations []Aggregation
	// Prediction defines a prediction view.
	Prediction *Prediction
	// Candidates defines a candidates view; Validate generates its Features.
	Candidates *Candidates

	entity *Entity
	source *Source
	index  map[string]int
	deps   []*View
	// generated is set when Validate generated Features from the view's
	// aggregations or candidates, so that a second Validate regenerates them.
	generated bool
}

// DependsOn returns the views whose live generations v reads when it is
// materialized (the input views of a prediction view, in input order; the
// from_view and context views of a candidates view). It is nil before
// Project.Validate.
func (v *View) DependsOn() []*View { return v.deps }

// Feature is one typed value of a view.
type Feature struct {
	Name string
	Type Type
	// Column is the source column the value comes from (the name by default).
	Column string
}

// EntityDef returns the entity of v. It is nil before Project.Validate.
func (v *View) EntityDef() *Entity { return v.entity }

// SourceDef returns the source of v. It is nil before Project.Validate.
func (v *View) SourceDef() *Source { return v.source }

// FeatureIndex returns the position of the named feature in v.Features, or -1.
func (v *View) FeatureIndex(name string) int {
	if v.index != nil {
		if i, ok := v.index[name]; ok {
			return i
		}
		return -1
	}
	for i := range v.Features {
		if v.Features[i].Name == name {
			return i
		}
	}
	return -1
}

// Status reports how a row read from v at now should be seen: not found,
// stale (older than MaxAge), or present.
func (v *View) Status(found bool, eventTime, now time.Time) Status {
	switch {
	case !found:
		return StatusNotFound
	case v.MaxAge > 0 && now.Sub(eventTime) > v.MaxAge:
		return StatusStale
	}
	return StatusPresent
}

// Status is the state of a value read from the online store.
type Status uint8

// The statuses of a value.
const (
	StatusNotFound Status = iota
	StatusPresent
	StatusStale
)

func (s Status) String() string {
	switch s {
	case StatusPresent:
		return "present"
	case StatusStale:
		return "stale"
	}
	return "not_found"
}

// Ranker is an online model: for one context entity and N candidates it builds
// an N×F input from view values and request features, scores it and returns
// the best candidates.
type Ranker struct {
	Name string
	// Model is the path of the ONNX model file.
	Model string
	// ModelInput and ModelOutput name the model's float32 [N, F] input and
	// its [N, 1] (or [N]) output.
	ModelInput  string
	ModelOutput string
	Context     string
	Candidate   string
	Inputs      []RankerInput
	TopK        int
	// CandidatesFrom names a candidates view keyed by the context entity:
	// a Rank request without candidates ranks the context's stored list.
	CandidatesFrom string
	// ModelTimeout bounds one run of the model; a Rank whose model takes
	// longer is answered in degraded mode. Zero means DefaultModelTimeout.
	ModelTimeout time.Duration
	// Batching, when not nil, joins concurrent Rank requests for this ranker
	// into one model run. Nil means that every request runs the model alone.
	Batching *Batching

	context        *Entity
	candidate      *Entity
	candidatesFrom *View
}

// Batching is how a ranker joins concurrent requests into one model run: a
// run takes the rows of the requests waiting, in order, up to MaxRows (a
// request's rows are never split; a request larger than MaxRows runs alone),
// and starts at most MaxDelay after the first of them arrived. A zero field
// takes its default (DefaultBatchMaxDelay, DefaultBatchMaxRows,
// DefaultBatchMaxQueue) from Project.SetDefaults.
type Batching struct {
	// MaxDelay is the longest a request waits for others to join its run.
	MaxDelay time.Duration
	// MaxRows is the most rows (candidates) one run scores.
	MaxRows int
	// MaxQueue is the most requests that may wait; one more is refused
	// at once with ErrOverloaded.
	MaxQueue int
}

// CandidatesView returns the view named by CandidatesFrom, or nil.
func (r *Ranker) CandidatesView() *View { return r.candidatesFrom }

// ContextDef returns the context entity of r. It is nil before Project.Validate.
func (r *Ranker) ContextDef() *Entity { return r.context }

// CandidateDef returns the candidate entity of r. It is nil before Project.Validate.
func (r *Ranker) CandidateDef() *Entity { return r.candidate }

// InputSide says where a ranker input comes from.
type InputSide uint8

// The sides of a ranker input.
const (
	SideCandidate InputSide = iota // a view of the candidate entity, one value per candidate
	SideContext                    // a view of the context entity, shared by all candidates
	SideRequest                    // a request-time feature
)

func (s InputSide) String() string {
	switch s {
	case SideContext:
		return "context"
	case SideRequest:
		return "request"
	}
	return "candidate"
}

// RankerInput is one column of a ranker's model input, written in larder.yaml
// as "view:feature" or "request:name".
type RankerInput struct {
	Ref string
	// Default is, for a view input, the value the model sees when the stored
	// value is missing, null or stale. For a request input it is the value
	// used when the request leaves the feature out, and only when HasDefault
	// is set: a request input without a default is required.
	Default float32
	// HasDefault reports whether a default was written. A view input without
	// one has the default 0.
	HasDefault bool
	// Type is the type of a request input's values: int64, float32, float64
	// or bool. TypeInvalid means float64 (see RequestType). A view input has
	// the type of its view's feature and must leave Type unset.
	Type Type

	Side    InputSide
	View    *View // nil for request features
	Feature int   // index into View.Features
	Request string
}

// RequestType returns the type of a request input's values: Type, or
// float64 when it is unset.
func (in *RankerInput) RequestType() Type {
	if in.Type == TypeInvalid {
		return TypeFloat64
	}
	return in.Type
}

// RequestPrefix starts a ranker input that is a request-time feature.
const RequestPrefix = "request"

// Entity returns the named entity, or nil.
func (p *Project) Entity(name string) *Entity {
	return lookup(p.entities, p.Entities, name, func(e *Entity) string { return e.Name })
}

// Source returns the named source, or nil.
func (p *Project) Source(name string) *Source {
	return lookup(p.sources, p.Sources, name, func(s *Source) string { return s.Name })
}

// View returns the named view, or nil.
func (p *Project) View(name string) *View {
	return lookup(p.views, p.Views, name, func(v *View) string { return v.Name })
}

// Ranker returns the named ranker, or nil.
func (p *Project) Ranker(name string) *Ranker {
	return lookup(p.rankers, p.Rankers, name, func(r *Ranker) string { return r.Name })
}

// lookup finds a definition by name: in the index Validate built, or by a
// scan before Validate.
func lookup[T any](index map[string]*T, all []*T, name string, nameOf func(*T) string) *T {
	if index != nil {
		return index[name]
	}
	for _, x := range all {
		if nameOf(x) == name {
			return x
		}
	}
	return nil
}

// Path resolves a path from larder.yaml against the project folder.
func (p *Project) Path(path string) string {
	if path == "" || filepath.IsAbs(path) || p.Dir == "" {
		return path
	}
	return filepath.Join(p.Dir, path)
}

// SplitRef splits a "view:feature" reference. ok is false when ref has no
// colon or an empty part.
func SplitRef(ref string) (view, feature string, ok bool) {
	view, feature, ok = strings.Cut(ref, ":")
	return view, feature, ok && view != "" && feature != ""
}
