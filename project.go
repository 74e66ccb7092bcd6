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

	// The defaults of the scheduler settings.
	DefaultLease         = 30 * time.Second
	DefaultShutdownGrace = 5 * time.Minute
	DefaultSweepInterval = time.Minute
	// The defaults of the job queue settings.
	DefaultJobAttempts   = 3
	DefaultJobBackoff    = 10 * time.Second
	DefaultJobMaxBackoff = 10 * time.Minute
	DefaultJobHeartbeat  = 2 * time.Second
	DefaultJobLapse      = 10 * time.Second
	DefaultJobRetention  = 7 * 24 * time.Hour

	// The defaults of the server's limits (see Server). A GetFeatures of
	// max_entities keys may ask for 100 columns; a response of 64 MiB is
	// about a million values with short strings, sixteen times gRPC's default
	// receive limit of a client.
	DefaultMaxFeatures           = 1000
	DefaultMaxRequestCells       = 100_000
	DefaultMaxResponseBytes      = 64 << 20
	DefaultMaxConcurrentRequests = 256
	DefaultDeadline              = 5 * time.Second
	DefaultMaxDeadline           = 30 * time.Second
)

// Limits of the scheduler, job and view settings.
const (
	// MinLease is the shortest run lease. A lease is renewed every third
	// of its TTL; a shorter one would lapse on an ordinary stall of the
	// process or of Redis.
	MinLease = time.Second
	// MaxJobAttempts bounds Jobs.MaxAttempts.
	MaxJobAttempts = 100
	// MaxShards bounds View.Shards.
	MaxShards = 256
	// LapseBeats is the fewest heartbeats a job's lapse spans: a worker
	// may miss two beats in a row without losing its job.
	LapseBeats = 3
	// MaxNameBytes bounds the length of every name in a project (entities,
	// sources, views, features, rankers, request features), so that the
	// server can refuse a longer name in a request before looking it up.
	MaxNameBytes = 128
	// MaxRefBytes bounds a feature reference, "view:feature": two names and
	// the colon.
	MaxRefBytes = 2*MaxNameBytes + 1
)

// NoSweep, as Scheduler.SweepInterval, turns the periodic sweep off; it is
// what larder.yaml's sweep_interval: 0s decodes to.
const NoSweep time.Duration = -1

// Project is one larder.yaml: everything larder serves and materializes.
// Call Validate before use: it checks the definitions, resolves references
// and builds the lookup indexes the other methods use.
type Project struct {
	Name string
	// Dir is the folder relative paths (sources, models) are resolved against:
	// the folder holding larder.yaml.
	Dir string
	// File is the path of the project file, as the loader was given it, for
	// the messages that say what to change in it (see FileName); empty for
	// a project built in code.
	File   string
	Redis  Redis
	Server Server
	// TimeZone is the IANA name of the zone the views' schedules are read
	// in, such as "Europe/Paris"; a view's own TimeZone overrides it. Empty
	// means UTC.
	TimeZone  string
	Scheduler Scheduler
	Jobs      Jobs
	Entities  []*Entity
	Sources   []*Source
	Views     []*View
	Rankers   []*Ranker
	// Streams are the event streams `larder ingest` applies to latest
	// views between runs.
	Streams []*Stream

	entities map[string]*Entity
	sources  map[string]*Source
	views    map[string]*View
	rankers  map[string]*Ranker
	// locations holds the zones Validate loaded, by name.
	locations map[string]*time.Location
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
	// PasswordEnv is the environment variable Password was read from
	// (redis.password_env), for messages; "" when it was not.
	PasswordEnv string
	TLS         bool
	// TLSCAFile, when set, is the PEM file of the certificate authorities
	// that sign the server's certificate (the system's pool otherwise);
	// TLSCertFile and TLSKeyFile are a client certificate and its key, for
	// a server that asks for one; TLSServerName is the name the server's
	// certificate must carry, when it is not the host of the address.
	// Paths are relative to the project folder. Any of them turns TLS on.
	TLSCAFile, TLSCertFile, TLSKeyFile, TLSServerName string
	DB                                                int
	// GracePeriod is how long a replaced generation stays readable before it
	// is deleted, so that requests in flight finish on it.
	GracePeriod time.Duration
	// PushRetention is how long rows pushed into a latest view (Push,
	// streams) are kept in the view's push log, to be replayed into the
	// full runs of the view that publish after them; 0 means one hour.
	PushRetention time.Duration
	// AllowEviction lets larder run on a server whose maxmemory-policy may
	// evict its keys (anything but noeviction), with a warning: evicted
	// rows read as missing, and evicted leases or metadata break runs.
	AllowEviction bool
}

// Embedded reports whether the project uses the embedded in-process server.
func (r Redis) Embedded() bool { return len(r.Addrs) == 0 }

// Server holds the serving settings. A zero field takes its default from
// Project.SetDefaults.
type Server struct {
	Listen        string
	MaxEntities   int
	MaxCandidates int
	// MaxFeatures bounds the feature references of one GetFeatures request,
	// duplicates included.
	MaxFeatures int
	// MaxRequestCells bounds the values one request reads: keys times
	// distinct columns for GetFeatures, candidates times model inputs for
	// Rank. A larger request is refused before anything is read.
	MaxRequestCells int
	// MaxResponseBytes bounds the encoded size of one response; the server
	// stops building a larger one and refuses the request.
	MaxResponseBytes int
	// MaxConcurrentRequests bounds the FeatureService requests one process
	// handles at once; more are refused at once (load shedding).
	MaxConcurrentRequests int
	// DefaultDeadline bounds a request whose client set no deadline, and
	// MaxDeadline one whose client set a later one.
	DefaultDeadline time.Duration
	MaxDeadline     time.Duration
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
	// HTTPListen is the host:port of the HTTP/JSON gateway (POST /v1/...
	// for GetFeatures, Rank, ListViews and Push); empty means none.
	HTTPListen string
	// TLSCertFile and TLSKeyFile are the server's certificate and its key
	// (PEM): with them, every gRPC listener speaks TLS only. Both or
	// neither. TLSClientCAFile, when set, is the PEM file of the
	// authorities that sign client certificates: every client must then
	// present one they signed (mutual TLS); it needs TLSCertFile. Paths are
	// relative to the project folder.
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// NoReflection turns gRPC server reflection off on every listener;
	// the zero value serves it.
	NoReflection bool
	// Auth says who may call the server; its zero value lets every caller
	// call every method, as a server without it always did.
	Auth ServerAuth
}

// Scheduler holds the settings of scheduled runs: their leases, how they
// end when their process stops, the sweep of old generations, and whether
// runs go to workers. A zero field takes its default (DefaultLease,
// DefaultShutdownGrace, DefaultSweepInterval) from Project.SetDefaults.
type Scheduler struct {
	// Lease is the TTL of a view's run lease, which its run renews every
	// third of it; a run whose process dies holds the view for at most
	// this long. At least MinLease.
	Lease time.Duration
	// ShutdownGrace is how long a running run may take to finish, once its
	// process is asked to stop, before it is abandoned.
	ShutdownGrace time.Duration
	// SweepInterval is how often expired and abandoned generations are
	// deleted. NoSweep (or any negative value) turns the sweep off.
	SweepInterval time.Duration
	// Workers, when set, makes schedulers queue each run as a job for
	// `larder worker` processes instead of running it themselves.
	Workers bool
}

// Sweeps reports whether generations are swept periodically, every
// SweepInterval.
func (s Scheduler) Sweeps() bool { return s.SweepInterval > 0 }

// Jobs holds the settings of the job queue. A zero field takes its default
// (DefaultJobAttempts, DefaultJobBackoff, DefaultJobMaxBackoff,
// DefaultJobHeartbeat, DefaultJobLapse, DefaultJobRetention) from
// Project.SetDefaults.
type Jobs struct {
	// MaxAttempts bounds the attempts of a job that sets none, the first
	// included: 1 to MaxJobAttempts.
	MaxAttempts int
	// Backoff is the delay before a job's second attempt; it doubles with
	// each failed attempt, up to MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Heartbeat is how often a worker proves that it is alive.
	Heartbeat time.Duration
	// Lapse is how long a running job's worker may go without a beat
	// before another worker takes the job over: at least LapseBeats
	// heartbeats.
	Lapse time.Duration
	// Retention is how long finished jobs are kept.
	Retention time.Duration
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
	Schedule string
	// TimeZone is the IANA name of the zone Schedule is read in; empty
	// means the project's (Project.Location).
	TimeZone string
	// Shards is the number of pieces a run of the view is split into on
	// workers, each a job that writes the entities whose keys hash to it
	// (see ShardOf); 0 and 1 both mean one piece. At most MaxShards.
	Shards      int
	Description string

	// MaxValueBytes is the most bytes one value of the view may take, as
	// Value.Size counts them: a string, bytes, vector or list value that
	// takes more is handled as Oversize says. Zero means
	// DefaultMaxValueBytes (see ValueLimit); at most MaxValueBytesLimit.
	MaxValueBytes int
	// NonFinite says what a run does with a NaN or infinite value of a
	// float64, float32 or float32_vector feature (see Value.Finite), from
	// a source, an aggregation or a model: PolicyReject, PolicyNull or
	// PolicyKeep. Empty means DefaultNonFinite (see NonFinitePolicy).
	NonFinite ValuePolicy
	// Oversize says what a run does with a value over MaxValueBytes:
	// PolicyReject or PolicyNull. Empty means DefaultOversize (see
	// OversizePolicy).
	Oversize ValuePolicy
	// Tile is the tile interval of a streaming aggregate view (see
	// TileInterval); zero means DefaultTile.
	Tile time.Duration

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
	// stream is the stream that feeds an aggregate view, once validated.
	stream *Stream
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
	// Cast allows a conversion that may lose precision: a DOUBLE or INT64
	// column read as a float32 feature, each value rounded to the nearest
	// float32. Without it, a column is read only as a type it widens to.
	Cast bool
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

// ViewNames returns the names of the views of kind kind (of every view
// when kind is ""), in project order, for messages that list them.
func (p *Project) ViewNames(kind ViewKind) []string {
	var names []string
	for _, v := range p.Views {
		if kind == "" || v.Kind == kind {
			names = append(names, v.Name)
		}
	}
	return names
}

// FileName returns the name of the project file, for a message that says
// what to change in it: the last element of File, or "larder.yaml" when
// File is empty.
func (p *Project) FileName() string {
	if p.File == "" {
		return "larder.yaml"
	}
	return filepath.Base(p.File)
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

// ChangesSince says which views and rankers p adds or removes against old,
// another version of the same project, and which views it gives another
// schema, for the line a reload prints and logs.
func (p *Project) ChangesSince(old *Project) string {
	var out []string
	for _, v := range p.Views {
		switch ov := old.View(v.Name); {
		case ov == nil:
			out = append(out, "view "+v.Name+" added")
		case ov.Fingerprint() != v.Fingerprint():
			out = append(out, "view "+v.Name+" changed")
		}
	}
	for _, v := range old.Views {
		if p.View(v.Name) == nil {
			out = append(out, "view "+v.Name+" removed")
		}
	}
	for _, rk := range p.Rankers {
		if old.Ranker(rk.Name) == nil {
			out = append(out, "ranker "+rk.Name+" added")
		}
	}
	for _, rk := range old.Rankers {
		if p.Ranker(rk.Name) == nil {
			out = append(out, "ranker "+rk.Name+" removed")
		}
	}
	if len(out) == 0 {
		return "no view or ranker added, removed or retyped"
	}
	return strings.Join(out, ", ")
}
