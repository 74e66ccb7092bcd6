package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// Model scores a batch of candidates for one ranker. x holds n rows of the
// ranker's inputs, row-major; Score writes n scores into out. The models
// package implements it over ONNX Runtime.
type Model interface {
	Score(ctx context.Context, x []float32, n int, out []float32) error
	Version() string
}

// Config holds what a Service needs. Project, Store and a Model for every
// ranker of the project are required.
type Config struct {
	Project *larder.Project
	// Store is what the FeatureService reads. When it is also a
	// larder.PushStore, the IngestService's Push writes through it;
	// otherwise Push answers UNIMPLEMENTED.
	Store larder.FeatureStore
	// Models holds the model of each ranker, by ranker name.
	Models map[string]Model
	Logger *slog.Logger
	// Now is the clock used for staleness and ages; time.Now when nil.
	Now func() time.Time
	// LoadModel, when set, loads a ranker's model file for Service.Reload;
	// without it Reload is refused (SwapModel still works).
	LoadModel LoadModelFunc
	// Metrics, when set, receive the service's counts: requests (through
	// the interceptor of NewGRPC and its variants), degraded responses,
	// model swaps and store errors. Nil records nothing.
	Metrics *Metrics
	// Jobs, when set, is the job queue the JobService submits to and reads
	// from; the JobService is then served wherever the AdminService is (by
	// NewGRPC and NewAdminGRPC). Nil leaves the JobService out, and its
	// methods answer UNIMPLEMENTED.
	Jobs larder.JobQueue
	// Freshness, when set, tells ListViews what is known of each view's
	// runs besides its live generation. Nil leaves those fields of the
	// response unset.
	Freshness FreshnessFunc
	// Auth, when set, authenticates the caller of every request but health
	// checks and refuses the methods its role does not allow (see NewAuth).
	// Nil lets every caller call every method.
	Auth *Auth
	// AuditLogger receives the audit line of every call of the operators'
	// services (AdminService, JobService), at level INFO. Nil means Logger.
	AuditLogger *slog.Logger
	// Tracing, when set, traces every call the gRPC servers of the Service
	// (NewGRPC and its variants) handle but health checks and reflection:
	// a span per call, a child of the caller's when the request carries a
	// W3C traceparent, with a child span per round trip to the store
	// (store.Read) and per run of a ranker's model (model.Score). Nil
	// traces nothing and costs the request path nothing.
	Tracing trace.TracerProvider
}

// FreshnessFunc returns what is known of the runs of view v: its last
// success and failure, its next scheduled run, the zone its schedule is read
// in and its number of shards. ListViews calls it once per view, so it
// should be cheap, such as a read of a run log kept in the store. An error
// fails the ListViews call (through the one table of codes); a view with no
// recorded runs is the zero ViewFreshness and no error.
type FreshnessFunc func(ctx context.Context, v *larder.View) (larder.ViewFreshness, error)

// Service implements larderv1.FeatureServiceServer.
type Service struct {
	larderv1.UnimplementedFeatureServiceServer

	store larder.FeatureStore
	// backend is Config.Store itself, where store may be wrapped by the
	// metrics and tracing, which hide its other methods: Ready asks it.
	backend larder.FeatureStore
	// pusher is Config.Store as a larder.PushStore, or nil when it is not
	// one.
	pusher larder.PushStore
	logger *slog.Logger
	now    func() time.Time
	// limits are the server block of the project the Service was made
	// with: a reload (ApplyProject) does not change them.
	limits larder.Server
	// cfg is what the Service serves by now; ApplyProject replaces it.
	cfg atomic.Pointer[servingConfig]
	// applyMu makes ApplyProject, SwapModel and Reload run one at a time,
	// so that a model is never swapped into the slot of a ranker a new
	// configuration just retired.
	applyMu sync.Mutex

	// loadModel, metrics, jobs and freshness come from Config.
	loadModel LoadModelFunc
	metrics   *Metrics
	jobs      larder.JobQueue
	freshness FreshnessFunc
	auth      *Auth
	audit     *slog.Logger
	// tracing is Config.Tracing, and tracer its tracer; both nil when
	// tracing is off.
	tracing trace.TracerProvider
	tracer  trace.Tracer

	// degraded counts Rank responses served without the model.
	degraded atomic.Int64

	// load bounds the requests in progress and their deadlines, for every
	// gRPC server of the Service.
	load *load
}

// servingConfig is a project resolved for serving: its views and rankers,
// and the plans of its rankers. A request reads it once, at its start, so
// that a reload never shows it half of one configuration and half of
// another.
type servingConfig struct {
	project *larder.Project
	rankers map[string]*rankerPlan
	// names holds "view:feature" of every feature of every view, for
	// GetFeatures requests of view:*.
	names map[*larder.View][]string
}

// serving returns the configuration the Service serves by now.
func (s *Service) serving() *servingConfig { return s.cfg.Load() }

// Degraded returns how many Rank responses were served in degraded mode:
// candidates in their precomputed order because the model failed.
func (s *Service) Degraded() int64 { return s.degraded.Load() }

// rankerPlan is a ranker resolved once at start-up, so that a Rank request
// builds no maps: the distinct views to read on each side and, per model
// input, where its value comes from.
type rankerPlan struct {
	ranker *larder.Ranker
	slot   *modelSlot
	state  *modelState // reloads of the slot's model
	// scoreTimeout bounds the wait for the model's scores (see
	// scoreTimeout); a swap keeps the ranker, and so the timeout.
	scoreTimeout time.Duration
	context      []*larder.View // views read for the context key
	cands        []*larder.View // views read for the candidate keys
	inputs       []inputPlan
	// request holds the names of the request features; requests resolves
	// each, in model order. knownRequest lists their names and takes their
	// names and types, for error messages.
	request      map[string]bool
	requests     []requestInput
	knownRequest string
	takes        string
	// names are the inputs' references in model order, for explain.
	names []string
	// stored is the candidates view a request without candidates ranks the
	// stored list of (the ranker's candidates_from), or nil; storedFeature
	// is the index of its candidate keys.
	stored        *larder.View
	storedFeature int
	// maxCandidates is the most candidates a request may rank within the
	// server's limits: server.max_candidates, and server.max_request_cells
	// over the model's inputs. A stored list is cut to it.
	maxCandidates int
}

type inputPlan struct {
	side    larder.InputSide
	lookup  int // index into context or cands
	feature int
	def     float32
}

// New returns a Service, or an error when a ranker has no model.
func New(cfg Config) (*Service, error) {
	if cfg.Project == nil || cfg.Store == nil {
		return nil, fmt.Errorf("server: a project and a store are required")
	}
	s := &Service{
		store:   cfg.Store,
		backend: cfg.Store,
		logger:  cfg.Logger,
		now:     cfg.Now,
		limits:  cfg.Project.Server,

		loadModel: cfg.LoadModel,
		metrics:   cfg.Metrics,
		jobs:      cfg.Jobs,
		freshness: cfg.Freshness,
		auth:      cfg.Auth,
		audit:     cfg.AuditLogger,
		load:      newLoad(cfg.Project.Server),
	}
	// Taken before the store is wrapped, which hides its other methods.
	s.pusher, _ = cfg.Store.(larder.PushStore)
	if s.metrics != nil {
		s.store = countingStore{FeatureStore: cfg.Store, m: s.metrics}
	}
	if cfg.Tracing != nil {
		s.tracing, s.tracer = cfg.Tracing, cfg.Tracing.Tracer(tracerName)
		s.store = tracingStore{FeatureStore: s.store, tracer: s.tracer}
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.audit == nil {
		s.audit = s.logger
	}
	// A line logged in a request says which (its request_id).
	s.logger, s.audit = withRequest(s.logger), withRequest(s.audit)
	if s.now == nil {
		s.now = time.Now
	}
	c := newServingConfig(cfg.Project)
	for _, r := range cfg.Project.Rankers {
		m := cfg.Models[r.Name]
		if m == nil {
			return nil, fmt.Errorf("server: ranker %q has no model loaded", r.Name)
		}
		// A batching ranker's model is wrapped before it goes in the slot,
		// so that a swap replaces model and batcher together.
		m, err := batchModel(r, m)
		if err != nil {
			return nil, fmt.Errorf("server: ranker %q: %w", r.Name, err)
		}
		plan := s.planRanker(r, newModelSlot(m), &modelState{path: cfg.Project.Path(r.Model), loadedAt: s.now()})
		c.rankers[r.Name] = plan
		s.metrics.initRanker(r.Name, m.Version(), plan.state.loadedAt)
	}
	s.cfg.Store(c)
	return s, nil
}

// newServingConfig resolves p's views for serving; its rankers' plans are
// left for the caller to add.
func newServingConfig(p *larder.Project) *servingConfig {
	c := &servingConfig{
		project: p,
		rankers: make(map[string]*rankerPlan, len(p.Rankers)),
		names:   make(map[*larder.View][]string, len(p.Views)),
	}
	for _, v := range p.Views {
		names := make([]string, len(v.Features))
		for i, f := range v.Features {
			names[i] = v.Name + ":" + f.Name
		}
		c.names[v] = names
	}
	return c
}

// planRanker resolves ranker r, which serves with the model in slot, whose
// reloads state records, within the Service's limits.
func (s *Service) planRanker(r *larder.Ranker, slot *modelSlot, state *modelState) *rankerPlan {
	p := &rankerPlan{ranker: r, slot: slot, state: state, scoreTimeout: scoreTimeout(r, slot.current()), request: map[string]bool{}}
	p.maxCandidates = max(1, min(s.limits.MaxCandidates, s.limits.MaxRequestCells/max(1, len(r.Inputs))))
	index := func(views *[]*larder.View, v *larder.View) int {
		if i := slices.Index(*views, v); i >= 0 {
			return i
		}
		*views = append(*views, v)
		return len(*views) - 1
	}
	for _, in := range r.Inputs {
		ip := inputPlan{side: in.Side, feature: in.Feature, def: in.Default}
		switch in.Side {
		case larder.SideContext:
			ip.lookup = index(&p.context, in.View)
		case larder.SideCandidate:
			ip.lookup = index(&p.cands, in.View)
		}
		p.inputs = append(p.inputs, ip)
		p.names = append(p.names, in.Ref)
	}
	planRequests(p, r)
	if v := r.CandidatesView(); v != nil {
		p.stored, p.storedFeature = v, v.FeatureIndex(larder.CandidatesFeature)
	}
	return p
}

// ListViews describes every view, its live generation and, with a
// Config.Freshness, its runs.
func (s *Service) ListViews(ctx context.Context, _ *larderv1.ListViewsRequest) (*larderv1.ListViewsResponse, error) {
	now := s.now()
	project := s.serving().project
	resp := &larderv1.ListViewsResponse{Views: make([]*larderv1.ViewInfo, 0, len(project.Views))}
	for _, v := range project.Views {
		info := &larderv1.ViewInfo{
			Name:     v.Name,
			Kind:     string(v.Kind),
			Entity:   v.Entity,
			Schedule: v.Schedule,
			Features: make([]*larderv1.FeatureSchema, len(v.Features)),
		}
		if v.MaxAge > 0 {
			info.MaxAge = durationpb.New(v.MaxAge)
		}
		for i, f := range v.Features {
			info.Features[i] = &larderv1.FeatureSchema{Name: f.Name, Type: typeToProto(f.Type)}
		}
		g, err := s.store.Live(ctx, v)
		switch {
		case err == nil:
			info.Generation = g.ID
			info.Rows = g.Rows
			info.Model = g.Model
			info.PublishedAt = timestamppb.New(g.PublishedAt)
			info.Trigger = string(g.Trigger)
			info.Inputs = inputsToProto(g.Inputs)
			// The age is that of the data, not of the publish: a backfill
			// published now as of last week is a week old.
			computed := g.PublishedAt
			if !g.AsOf.IsZero() {
				info.AsOf = timestamppb.New(g.AsOf)
				computed = g.AsOf
			}
			info.Age = durationpb.New(now.Sub(computed))
		case !errorsIsNoGeneration(err):
			return nil, toStatus(err)
		}
		if s.freshness != nil {
			f, err := s.freshness(ctx, v)
			if err != nil {
				return nil, toStatus(err)
			}
			info.LastSuccess = runToProto(f.LastSuccess)
			info.LastFailure = runToProto(f.LastFailure)
			info.NextRunAt = timeToProto(f.NextRun)
			info.TimeZone = f.TimeZone
			info.Shards = int32(f.Shards)
			for _, l := range f.Streams {
				info.Streams = append(info.Streams, &larderv1.StreamLag{Stream: l.Stream, Source: l.Source, Entries: l.Entries,
					Pending: l.Pending, Behind: durationpb.New(time.Duration(l.Seconds * float64(time.Second))), Error: l.Err})
			}
		}
		resp.Views = append(resp.Views, info)
	}
	return resp, nil
}

// knownViews lists the views of p after a name that is not one of them.
// It names p too: a client that calls the server of another project learns
// which one it reached.
func knownViews(p *larder.Project) string {
	names := make([]string, len(p.Views))
	for i, v := range p.Views {
		names[i] = v.Name
	}
	return known(p, "views", names)
}

// knownRankers lists the rankers of p after a name that is not one of them,
// naming p as knownViews does.
func knownRankers(p *larder.Project) string {
	names := make([]string, len(p.Rankers))
	for i, r := range p.Rankers {
		names[i] = r.Name
	}
	return known(p, "rankers", names)
}

func known(p *larder.Project, what string, names []string) string {
	if len(names) == 0 {
		return " (the server's project " + p.Name + " has no " + what + ")"
	}
	return " (the server's project " + p.Name + " has " + what + ": " + strings.Join(names, ", ") + ")"
}

func knownFeatures(v *larder.View) string {
	names := make([]string, len(v.Features))
	for i, f := range v.Features {
		names[i] = f.Name
	}
	return " (features: " + strings.Join(names, ", ") + ")"
}
