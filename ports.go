package larder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Row is the stored value of one entity in one view: the values in the order
// of the view's features, and the event time of the data they came from.
type Row struct {
	EventTime time.Time
	Values    []Value
}

// Generation is one materialization run of a view, as the store records it.
type Generation struct {
	View string
	// ID increases with every run of the view; 0 means none.
	ID          int64
	Rows        int64
	Fingerprint string
	StartedAt   time.Time
	PublishedAt time.Time
	// Model is the version (Model.Version) of the model that computed the
	// generation of a prediction view; "" for other views.
	Model string
	// AsOf is the instant the generation was computed as of: source rows
	// after it were left out, and windows end at it.
	AsOf time.Time
	// Inputs are the generations of other views the generation was
	// computed from, in the order of the view's dependencies.
	Inputs []InputGeneration
	// Trigger is what started the run that wrote the generation, and Job
	// the id of its job, if it ran on a worker.
	Trigger Trigger
	Job     string
}

// Lookup is a read of one view's live generation for a list of keys. The
// caller sets View and Keys; FeatureStore.Read sets the rest.
type Lookup struct {
	View *View
	Keys []Key
	// Pin, when not 0, reads that generation of View instead of the live
	// one: a run that reads other views reads one generation of each from
	// start to end, even when a new one is published meanwhile. The
	// generation must still be held (live, or replaced less than the grace
	// period ago); Read returns an error wrapping ErrNotFound otherwise.
	Pin int64
	// Numbers, when not nil, asks for chosen features as numbers instead of
	// whole rows (see NumberRead); Rows[i] then holds only the event time.
	Numbers *NumberRead

	// Generation is the generation the rows were read from, and Model the
	// version of the model that computed it (prediction views only).
	// Watermark is the newest event time the runs that wrote the
	// generation read (zero when it records none): a row with a later
	// event time was pushed or streamed in since.
	Generation int64
	Watermark  time.Time
	Model      string
	// Found[i] reports whether Keys[i] has a row; Rows[i] is that row.
	Found []bool
	Rows  []Row
	// TileTime is, for a streaming aggregate view (View.Streaming), the
	// time T the windows were read as of: the read's time rounded down to
	// the view's tile. A row answered as of T has event time T; one whose
	// generation's horizon has passed keeps the generation's cutoff, and
	// goes stale by the view's max age. Zero for other views.
	TileTime time.Time
	// Streamed[i], for a streaming aggregate view, is the newest event
	// time of the stream events that Rows[i] counts; zero when it counts
	// none. Nil for other views.
	Streamed []time.Time
}

// NumberRead asks a FeatureStore to decode chosen features of each row
// straight into float32 numbers, as a model's input needs them, rather than
// into Row.Values. The caller sets Features and Defaults; Read sets Values.
type NumberRead struct {
	// Features are indexes into the view's features; an index may repeat.
	Features []int
	// Defaults[j] is the number for Features[j] when its value is null or
	// not numeric, and for every feature of a key with no row.
	Defaults []float32
	// Values holds len(Features) numbers per key, row-major: Values[i*len(Features)+j]
	// is feature Features[j] of Keys[i], read as Value.Number does. Read
	// resizes it, reusing its capacity.
	Values []float32
}

// FeatureStore is the read side of the online store, used by the server and
// by the CLI.
type FeatureStore interface {
	// Read fills every lookup from its view's live generation, all in one
	// round trip. It returns an error wrapping ErrNoGeneration when a view
	// has never been published, ErrSchemaChanged when the live generation
	// was written with another schema, and ctx.Err() when ctx ends first.
	Read(ctx context.Context, lookups []*Lookup) error
	// Live returns the live generation of v, or an error wrapping
	// ErrNoGeneration.
	Live(ctx context.Context, v *View) (Generation, error)
}

// FreshReader is implemented by a FeatureStore whose Live may answer from a
// cache that lags a publish by other processes. LiveFresh returns the live
// generation of v as the store holds it now, with Live's errors. Runs and
// jobs that read other views use it, so that they never read a generation
// older than one already published.
type FreshReader interface {
	LiveFresh(ctx context.Context, v *View) (Generation, error)
}

// GenerationStore is the write side of the online store, used by the
// materializer.
type GenerationStore interface {
	// Begin starts a new generation of v, or a writer of one shard of a
	// sharded generation (opts.Shard). Nothing it writes is visible to
	// readers until Publish. It returns an error wrapping ErrLeaseLost when
	// opts.Run.Lease is no longer held.
	Begin(ctx context.Context, v *View, opts BeginOptions) (GenerationWriter, error)
}

// GenerationWriter writes one generation of one view. It is not safe for
// concurrent use unless the implementation says so.
type GenerationWriter interface {
	// ID returns the id of the generation being written.
	ID() int64
	// Put buffers the row of one entity; writes are flushed in pipelined
	// batches. Put is done with row when it returns, so the caller may reuse
	// row.Values. ctx bounds the Put only: the writes it starts belong to
	// the writer, and go on when ctx ends after Put has returned. An error
	// means the generation cannot be published.
	Put(ctx context.Context, key Key, row Row) error
	// Publish flushes what is buffered and makes the generation live in one
	// atomic step. The replaced generation is deleted after the grace period.
	// For a shard writer, it marks the shard done and publishes the
	// generation when it is the last shard; the Generation returned then
	// has a zero PublishedAt while other shards are still to finish. It
	// returns an error wrapping ErrLeaseLost when the run's lease was lost,
	// and the generation is then not published.
	Publish(ctx context.Context) (Generation, error)
	// Abort discards the generation. The live generation is untouched.
	// It cleans up even when ctx is cancelled, but returns by ctx's
	// deadline.
	Abort(ctx context.Context) error
}

// Fingerprint identifies the schema of v: its kind, its entity's key type and
// its features' names and types, in order. A generation records the
// fingerprint it was written with, so that a reader never decodes a value
// against another schema.
func (v *View) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(v.Kind))
	h.Write([]byte{0})
	if v.entity != nil {
		h.Write([]byte{byte(v.entity.KeyType)})
	}
	for _, f := range v.Features {
		h.Write([]byte(f.Name))
		h.Write([]byte{0, byte(f.Type)})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// ModelRecorder is implemented by a GenerationWriter that can record which
// model computed the generation, so that readers can tell which model
// produced a prediction (Generation.Model).
type ModelRecorder interface {
	// SetModel records version (Model.Version) as the model of the
	// generation being written. Call it before Publish.
	SetModel(version string)
}

// InputRecorder is implemented by a GenerationWriter that can record the
// generations of other views a generation is computed from
// (Generation.Inputs).
type InputRecorder interface {
	// SetInputs records inputs. Call it before Publish.
	SetInputs(inputs []InputGeneration)
}

// ShardedStore is implemented by a GenerationStore that can write one
// generation in shards, each written by its own run (see ShardRef).
type ShardedStore interface {
	// BeginSharded records a new generation of v to be written in count
	// shards, and returns its id. Each shard is then written by a writer
	// from Begin with BeginOptions.Shard; the generation is published when
	// the last shard publishes. The generation is held by opts.Run.Lease,
	// which its shards' runs renew: when it lapses, the generation is
	// abandoned.
	BeginSharded(ctx context.Context, v *View, opts BeginOptions, count int) (int64, error)
	// AbortGeneration deletes generation gen of v, with the rows of every
	// shard, unless it is live. It is how a sharded run that finally
	// failed, or was cancelled, leaves nothing behind. deleted reports
	// whether it found the generation being written (so that one of
	// several callers records the run).
	AbortGeneration(ctx context.Context, v *View, gen int64) (deleted bool, err error)
	// ShardedRun finds the sharded generation of v that job is writing:
	// its id, the token of the run lease that holds it and its as-of; ok
	// is false when there is none. A retried job uses it to go on with the
	// shards an earlier attempt started, rather than start them again.
	ShardedRun(ctx context.Context, v *View, job string) (gen, token int64, asOf time.Time, ok bool, err error)
}

// KeyLister lists the entities stored in a view's live generation, which is
// how a prediction view finds the entities it scores. The store implements
// it next to FeatureStore.
type KeyLister interface {
	// Keys calls fn with successive batches of the keys of the entities in
	// generation gen of v (the live one when gen is 0), each key once, in
	// no particular order. fn must not keep the slice after it returns.
	// Keys stops at the first error fn returns and returns it as is; it
	// returns an error wrapping ErrNoGeneration when v has never been
	// published, ErrNotFound when generation gen is no longer held, and
	// ErrUnavailable or ctx.Err() when the store cannot be read.
	Keys(ctx context.Context, v *View, gen int64, fn func([]Key) error) error
}

// IncrementalStore is the write side of incremental runs of latest views,
// used by the materializer next to GenerationStore. An incremental run
// writes into the view's live generation instead of a new one, keeping for
// each entity the row with the newest event time, and moves the view's
// watermark forward when it succeeds.
type IncrementalStore interface {
	// BeginIncremental returns a writer into the live generation of v. Its
	// Put writes a row only when the entity has no stored row or one with
	// an event time no newer than the row's; rows become visible to readers
	// as they are flushed, not at Publish. Publish advances the
	// generation's watermark to the newest event time Put and announces the
	// change; Abort stops writing and leaves the watermark as it was (the
	// rows already flushed stay: each of them is valid on its own).
	//
	// It returns an error wrapping ErrNoGeneration when v has no live
	// generation (a full run must come first), ErrSchemaChanged when the
	// live generation was written with another schema than v's, and
	// ErrUnavailable or ctx.Err() when the store cannot be reached.
	BeginIncremental(ctx context.Context, v *View) (GenerationWriter, error)
	// Watermark returns the newest event time written into the live
	// generation of v by its full run and the incremental runs published
	// since: source data at or before it has been read. It is the zero time
	// when the generation records none. It returns an error wrapping
	// ErrNoGeneration when v has no live generation, and ErrUnavailable or
	// ctx.Err() when the store cannot be reached.
	Watermark(ctx context.Context, v *View) (time.Time, error)
}

// InputGeneration names a generation of another view that a generation was
// computed from (the input views of a prediction view, the from_view and
// context views of a candidates view), with that generation's as-of.
type InputGeneration struct {
	View       string
	Generation int64
	AsOf       time.Time
}

// Trigger says what started a run.
type Trigger string

// The triggers of a run.
const (
	// TriggerManual is `larder materialize`, or a run started by hand in
	// any other way.
	TriggerManual Trigger = "manual"
	// TriggerSchedule is a tick of the view's cron schedule.
	TriggerSchedule Trigger = "schedule"
	// TriggerCatchUp is the latest tick missed while no scheduler ran,
	// run once when a scheduler starts.
	TriggerCatchUp Trigger = "catch-up"
	// TriggerDependency is the publish of an input view: the view has no
	// schedule of its own and runs after its inputs, at their as-of.
	TriggerDependency Trigger = "dependency"
	// TriggerJob is a job submitted to the job queue (`larder materialize
	// --async`, JobService.SubmitJob).
	TriggerJob Trigger = "job"
	// TriggerStartup is `larder serve` or `larder demo` filling the
	// embedded store when it starts.
	TriggerStartup Trigger = "startup"
)

// RunInfo is what a run tells the store about itself when it begins a
// generation. The store records it with the generation, so that an operator
// can tell what computed a generation, and so that Cleanup can record a run
// that was killed.
type RunInfo struct {
	// AsOf is the instant the run computes its view as of. The zero time
	// means the store's clock when the generation begins.
	AsOf    time.Time
	Trigger Trigger
	// Tick is the schedule tick that started the run, for TriggerSchedule
	// and TriggerCatchUp; zero otherwise.
	Tick time.Time
	// Job is the id of the job that runs it, "" outside the job queue.
	Job string
	// Owner says who runs it, such as "host:pid", for operators.
	Owner string
	// Lease is the view's run lease the run holds. A zero Token means none:
	// the generation's writer then holds a lease of its own on the
	// generation. Either way, a generation whose lease lapses while it is
	// being written was abandoned by a killed run, and a writer whose lease
	// was lost cannot publish.
	Lease Lease
}

// ShardRef makes a writer write one shard of a sharded generation: the
// entities whose key hash falls in shard Index of Count (see ShardOf). The
// generation is published when the last of its shards publishes.
type ShardRef struct {
	Generation   int64
	Index, Count int
}

// BeginOptions configure GenerationStore.Begin.
type BeginOptions struct {
	// ExpectedRows is about how many rows the generation will hold, which
	// lets the store size it; negative means unknown.
	ExpectedRows int64
	// Run describes the run that writes the generation.
	Run RunInfo
	// Shard, when not nil, makes the writer write one shard of an existing
	// sharded generation (see ShardedStore) instead of beginning a new one.
	Shard *ShardRef
}

// Lease is a view's run lease: at most one run of a view holds it at a
// time. Token is its fencing token, which grows with every acquisition of
// the view's lease: a run that stalled past its lease cannot publish over
// the run that took the lease after it, because the store checks the token
// when it publishes.
type Lease struct {
	View  string
	Token int64
	Owner string
	// TTL is how long the lease lasts unless renewed.
	TTL time.Duration
}

// Held reports whether l is a lease that was acquired.
func (l Lease) Held() bool { return l.Token > 0 }

// ErrLeaseHeld means that another run holds the view's run lease.
var ErrLeaseHeld = errors.New("another run of the view is in progress")

// ErrLeaseLost means that a run no longer holds its run lease: it lapsed
// (the run stalled or could not reach Redis for longer than the lease), or
// another run took it. The run must stop without publishing.
var ErrLeaseLost = errors.New("the run lease was lost (it lapsed, or another run took over)")

// LeaseHeldError is ErrLeaseHeld with the holder of the lease.
type LeaseHeldError struct {
	View string
	// Owner and Token are those of the run that holds the lease; Expires
	// is when it lapses unless renewed.
	Owner   string
	Token   int64
	Expires time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("view %s: %v (held by %s, lease %d, until %s)", e.View, ErrLeaseHeld, e.Owner, e.Token,
		e.Expires.UTC().Format(time.RFC3339))
}

// Unwrap returns ErrLeaseHeld.
func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// RunLeases hands out views' run leases. The store implements it.
type RunLeases interface {
	// AcquireLease takes the run lease of view for owner, for ttl. It
	// returns a *LeaseHeldError when another run holds it, and
	// ErrUnavailable or ctx.Err() when the store cannot be reached.
	AcquireLease(ctx context.Context, view, owner string, ttl time.Duration) (Lease, error)
	// RenewLease extends l by its TTL from now. It returns an error
	// wrapping ErrLeaseLost when l is no longer held.
	RenewLease(ctx context.Context, l Lease) error
	// ReleaseLease gives l up, if it is still held. Releasing a lease
	// that was lost is not an error.
	ReleaseLease(ctx context.Context, l Lease) error
	// ReclaimLease is AcquireLease that also takes the lease from a holder
	// with the same owner, with a new token: how a job's attempt takes
	// over from an earlier attempt of the job whose worker died, fencing
	// it off.
	ReclaimLease(ctx context.Context, view, owner string, ttl time.Duration) (Lease, error)
	// LeaseHolder returns the owner and token of the run that holds the
	// run lease of view; held is false when it is free.
	LeaseHolder(ctx context.Context, view string) (owner string, token int64, held bool, err error)
}

// ShardOf returns the shard, of count, that the entity key with canonical
// form canonical (Key.AppendCanonical) belongs to: its 32-bit FNV-1a hash
// modulo count.
func ShardOf(canonical []byte, count int) int {
	h := uint32(2166136261)
	for _, c := range canonical {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h % uint32(count))
}

// TickOutcome is what came of a scheduler's claim of one tick of a view's
// schedule.
type TickOutcome string

// The outcomes of a tick claim.
const (
	// TickStarted: this scheduler claimed the tick and starts its run.
	TickStarted TickOutcome = "started"
	// TickTaken: another scheduler claimed the tick (or a later one).
	TickTaken TickOutcome = "taken"
	// TickBusy: the view's previous run still holds its run lease; the
	// tick is not claimed, and may be claimed again once the lease is
	// released or lapses.
	TickBusy TickOutcome = "busy"
	// TickSkipped: the view's previous run was still going, and this
	// scheduler recorded the tick as skipped.
	TickSkipped TickOutcome = "skipped"
)

// ClaimOptions configure ScheduleLog.ClaimTick.
type ClaimOptions struct {
	// Owner names the scheduler, for operators.
	Owner string
	// LeaseTTL, when positive, takes the view's run lease with the tick,
	// for a run the scheduler starts itself; 0 claims the tick alone, for
	// a run that takes the lease where it runs (a worker).
	LeaseTTL time.Duration
	// Busy tells that the view's previous run is still going although it
	// holds no lease yet (its job is queued): the tick is then busy too.
	Busy bool
	// Skip, when the tick is busy, records it as skipped (TickSkipped)
	// instead of leaving it unclaimed (TickBusy).
	Skip bool
}

// TickClaim is the result of ScheduleLog.ClaimTick.
type TickClaim struct {
	Outcome TickOutcome
	// Lease is the run lease taken with a started tick (ClaimOptions.LeaseTTL).
	Lease Lease
	// Holder names the run that holds the view's run lease, for a busy or
	// skipped tick ("" when Busy was given and no lease is held).
	Holder string
}

// ScheduleState is what the store records of a view's schedule.
type ScheduleState struct {
	// LastTick is the newest tick claimed, started or skipped; zero when
	// none was. Outcome says which, Owner which scheduler claimed it, and
	// Job the job that runs it, when a worker does.
	LastTick time.Time
	Outcome  TickOutcome
	Owner    string
	Job      string
}

// ScheduleLog records views' schedule ticks so that any number of
// schedulers run each tick once. The store implements it.
type ScheduleLog interface {
	// ClaimTick claims tick of view, atomically: when tick is newer than
	// the newest tick claimed, and the view's previous run is not going,
	// it records tick as started (taking the run lease when
	// opts.LeaseTTL > 0); when the previous run is going, it returns
	// TickBusy, or records the tick as skipped (opts.Skip); otherwise
	// TickTaken. It returns ErrUnavailable or ctx.Err() when the store
	// cannot be reached.
	ClaimTick(ctx context.Context, view string, tick time.Time, opts ClaimOptions) (TickClaim, error)
	// ScheduleState returns what is recorded of view's schedule.
	ScheduleState(ctx context.Context, view string) (ScheduleState, error)
	// SetTickJob records job as the job that runs the view's claimed tick.
	SetTickJob(ctx context.Context, view string, tick time.Time, job string) error
}

// PushStore is implemented by an online store that takes rows pushed one
// at a time between runs (the Push RPC, stream ingestion) into the live
// generation of a latest view.
type PushStore interface {
	// Push writes each row into v's live generation when the entity has
	// no stored row or one whose event time is not newer (write-if-newer),
	// atomically per row, and records it so that a full run of v that
	// publishes later (within the store's push retention) replays it into
	// its new generation: a push is not lost to a run written at the same
	// time. It returns one outcome per row, in order. A row that does not
	// fit v (a key of another type, values that do not match the
	// features) is PushInvalid with the reason, and the others are still
	// written. It returns an error wrapping ErrNoGeneration when v has no
	// live generation, ErrSchemaChanged when the live generation has
	// another schema than v, an *InvalidError when v is not a latest
	// view, and ErrUnavailable or ctx.Err() when the store cannot be
	// written; then no outcome is known.
	Push(ctx context.Context, v *View, rows []PushRow) ([]PushOutcome, error)
}

// PushRow is one row pushed for one entity.
type PushRow struct {
	Key Key
	Row Row
}

// MaxEventSkew is how far past the clock of the process that takes it (the
// server for the Push RPC, larder ingest for a stream) an event time may
// be. A row from the future would win write-if-newer against every real
// event of its entity until its time came, and be replayed from the push
// log into later runs, so one further ahead than a clock's drift is
// refused.
const MaxEventSkew = time.Minute

// CheckEventTime returns why event time at is refused when the clock of
// the process that takes it, which clock names ("the server's clock"),
// reads now: it is more than MaxEventSkew past now. It returns nil
// otherwise.
func CheckEventTime(at, now time.Time, clock string) error {
	if at.Sub(now) <= MaxEventSkew {
		return nil
	}
	return fmt.Errorf("%s is more than %s past %s; a row from the future would hide every event until then",
		at.UTC().Format(time.RFC3339Nano), MaxEventSkew, clock)
}

// PushOutcome is what became of one pushed row.
type PushOutcome struct {
	Result PushResult
	// Reason says why a row is PushInvalid; empty otherwise.
	Reason string
}

// PushResult is the fate of a pushed row.
type PushResult int

const (
	// PushWritten means the row is now the entity's stored row.
	PushWritten PushResult = iota + 1
	// PushOlder means the stored row has a newer event time: the pushed
	// one was left out (a late or replayed event).
	PushOlder
	// PushInvalid means the row does not fit the view; Reason says why.
	PushInvalid
)

func (r PushResult) String() string {
	switch r {
	case PushWritten:
		return "written"
	case PushOlder:
		return "older"
	case PushInvalid:
		return "invalid"
	}
	return "unknown"
}
