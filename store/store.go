// Package store is larder's online store: view generations in Redis.
//
// A materialization run writes a new generation of a view next to the live
// one and publishes it by flipping one pointer, so readers see exactly one
// complete generation of a view at a time; a replaced generation stays
// readable for a grace period, then is deleted without scanning the keyspace.
// Each entity's row is one compact binary value (see AppendRow), kept in a
// hash bucket of its generation, and a read of any number of entities and
// views costs one pipelined round trip.
//
// Keys, for project p and view v (project and view names never hold ':'
// nor braces). The small keys that control a view share the hash tag {v},
// so that one script may read and change several of them atomically, also
// on Redis Cluster; the bucket hashes that hold the rows carry no tag, so
// that they spread over a cluster's nodes:
//
//	larder:p:{v}:live        string: the live generation id
//	larder:p:{v}:seq         counter: generation ids
//	larder:p:{v}:g:<gen>     hash: generation metadata (fingerprint, buckets,
//	                         rows, started_at, published_at, state,
//	                         watermark, model, as_of, inputs, trigger, tick,
//	                         job, owner, lease, token, shards)
//	larder:p:{v}:gens        sorted set: generation ids, scored by the unix
//	                         microsecond after which each may be deleted
//	                         (+inf while writing or live)
//	larder:p:{v}:lease       string: the view's run lease, "<token> <owner>",
//	                         with a TTL (see AcquireLease)
//	larder:p:{v}:fence       counter: run lease tokens
//	larder:p:{v}:wl:<gen>    string: the lease of a generation being written
//	                         by a run that holds no run lease, with a TTL
//	larder:p:{v}:shards:<gen> set: the finished shards of a sharded
//	                         generation
//	larder:p:{v}:sched       hash: the view's schedule state (last tick
//	                         claimed, its outcome; see ClaimTick)
//	larder:p:{v}:active      hash: the runs in progress, by run lease
//	                         token (see StartRun)
//	larder:p:v:<gen>:<b>     hash: canonical entity key -> encoded row, for
//	                         bucket b = fnv-1a(key) mod the generation's buckets
//	larder:p:views           set: the names of the views ever written or
//	                         run
//	larder:p:runs:v          list: JSON records of v's last RunHistory
//	                         runs, newest first (see RecordRun)
//	larder:p:publish         Pub/Sub channel, message "<view> <gen>"
//
// Commands that span keys touch only keys of one hash tag, so the layout
// works on Redis Cluster as on a single server; it also works on the
// embedded miniredis server.
package store

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/internal/tlsfiles"
	"github.com/redis/go-redis/v9"
)

// Defaults for the zero Options.
const (
	DefaultWriteConnections = 4
	DefaultBatchSize        = 1 << 16
	DefaultAbandonAfter     = 24 * time.Hour
	// DefaultRowsPerBucket is the number of rows a bucket holds on average
	// when the bucket count is chosen automatically. It keeps buckets of
	// small rows under Redis's default hash-max-listpack-entries (128), so
	// they stay in the compact listpack encoding.
	DefaultRowsPerBucket = 100
	// DefaultFirstBuckets is the bucket count of a view's first generation
	// when the caller does not say how many rows to expect.
	DefaultFirstBuckets = 64
)

// Options configure a Store. The zero Options is a valid configuration.
type Options struct {
	// Logger receives cleanup and watch events; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// GracePeriod is how long a replaced generation stays readable before
	// it is deleted; 0 means larder.DefaultGracePeriod. Keep it well above
	// twice the readers' RefreshInterval: a reader that missed the publish
	// message still reads the replaced generation until its next refresh.
	GracePeriod time.Duration
	// WriteConnections bounds the pipelines a GenerationWriter keeps in
	// flight at once; 0 means DefaultWriteConnections.
	WriteConnections int
	// BatchSize is the most rows a generation writer gathers before it
	// sends them, sorted by bucket, in pipelines of about 1,000 rows; 0
	// means DefaultBatchSize (see Writer).
	BatchSize int
	// Buckets fixes the number of hash buckets of every new generation;
	// 0 chooses it from the expected rows (see BeginSized).
	Buckets int
	// RefreshInterval is how often Watch re-reads the live generations as a
	// fallback to publish messages; 0 means larder.DefaultRefreshInterval.
	// Without Watch, a cached live generation is re-read on use once it is
	// older than twice this interval.
	RefreshInterval time.Duration
	// AbandonAfter is how long a generation that records no lease (one
	// written by an older larder) may stay in the writing state before
	// Cleanup deletes it as abandoned; 0 means DefaultAbandonAfter.
	// Generations that record their lease are deleted as soon as it
	// lapses.
	AbandonAfter time.Duration
	// PushRetention is how long the push log keeps a pushed row, to be
	// replayed into the full runs of its view that publish after it (see
	// Push); 0 means DefaultPushRetention. Make it longer than the offline
	// data take to catch up with the pushes.
	PushRetention time.Duration
	// WriteLease is the TTL of the lease a generation's writer holds when
	// its run holds no run lease (see BeginWith), renewed every third of
	// it; 0 means DefaultWriteLease.
	WriteLease time.Duration
	// Owner names this process in leases and generation metadata, for
	// operators; "" means "<host>:<pid>".
	Owner string
	// ServeOwnSchema makes Read, when a view's live generation was written
	// with another definition of the view than the lookup's, read the
	// newest generation written with the lookup's definition instead of
	// failing, while one is held (see RegisterReaders, which keeps it held
	// for as long as this process runs). Servers set it, so that a schema
	// change rolls out without an outage; batch processes leave it off, so
	// that they never read stale inputs unawares.
	ServeOwnSchema bool
}

// Store is the online store of one project on one Redis deployment. It
// implements larder.FeatureStore and larder.GenerationStore, and is safe for
// concurrent use.
type Store struct {
	client  redis.UniversalClient
	project string
	k       keys
	opts    Options
	log     *slog.Logger
	now     func() time.Time

	mu      sync.RWMutex
	live    map[string]*liveGen  // by view name
	pinned  map[pinKey]*liveGen  // generations read by pinned lookups
	loading map[string]*liveLoad // loads of live generations in flight, by view
	// tileViews caches, by *larder.View, what reads of a streaming
	// aggregate view need of its definition (see tileViewOf).
	tileViews sync.Map

	noUnlink atomic.Bool // the server does not know UNLINK: use DEL

	// registered holds the member of each view's readers set this process
	// registered last (RegisterReaders).
	regMu      sync.Mutex
	registered map[string]string
	// ownMu makes the look-ups of an own-schema generation one at a time.
	ownMu sync.Mutex

	reads readBatcher // coalesces concurrent Reads' round trips
}

var (
	_ larder.FeatureStore     = (*Store)(nil)
	_ larder.GenerationStore  = (*Store)(nil)
	_ larder.GenerationWriter = (*Writer)(nil)
	_ larder.FreshReader      = (*Store)(nil)
)

// New returns a Store of project on client. The Store does not own client:
// the caller closes it after the Store's last use. Context deadlines bound
// Redis calls only when client was built with ContextTimeoutEnabled, as
// Connect does.
func New(client redis.UniversalClient, project string, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = larder.DefaultGracePeriod
	}
	if opts.WriteConnections <= 0 {
		opts.WriteConnections = DefaultWriteConnections
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.Buckets < 0 {
		opts.Buckets = 0
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = larder.DefaultRefreshInterval
	}
	if opts.AbandonAfter <= 0 {
		opts.AbandonAfter = DefaultAbandonAfter
	}
	if opts.WriteLease <= 0 {
		opts.WriteLease = DefaultWriteLease
	}
	if opts.PushRetention <= 0 {
		opts.PushRetention = DefaultPushRetention
	}
	if opts.Owner == "" {
		opts.Owner = defaultOwner()
	}
	return &Store{
		client:  client,
		project: project,
		k:       keys{prefix: "larder:" + project + ":"},
		opts:    opts,
		log:     opts.Logger,
		now:     opts.Now,
		live:    make(map[string]*liveGen),
		pinned:  make(map[pinKey]*liveGen),
		loading: make(map[string]*liveLoad),
	}
}

// Connect returns a go-redis client for the project's Redis settings: a
// standalone client for one address, a Sentinel-backed client when
// MasterName is set, a Cluster client for several addresses. A Cluster
// client reloads its map of slots as soon as a command finds no node, so
// that it follows a failover within a fraction of a second of the new
// master's election rather than go-redis's minute. It does not dial: the
// first command does. It returns an error when r names no address
// (the embedded server is started by the caller) or asks for a database
// other than 0 on a cluster.
func Connect(r larder.Redis) (redis.UniversalClient, error) {
	if r.Embedded() {
		return nil, errors.New("store: connect: redis.addresses is empty: start the embedded server, or set the address of a Redis server in larder.yaml")
	}
	if len(r.Addrs) > 1 && r.MasterName == "" && r.DB != 0 {
		return nil, fmt.Errorf("store: connect: redis.db is %d, but Redis Cluster (%d addresses) has only database 0: remove redis.db or name one server", r.DB, len(r.Addrs))
	}
	opts := &redis.UniversalOptions{
		Addrs:      r.Addrs,
		MasterName: r.MasterName,
		Username:   r.Username,
		Password:   r.Password,
		DB:         r.DB,
		// A request's deadline bounds its Redis calls, not only the
		// client's fixed read and write timeouts.
		ContextTimeoutEnabled: true,
		// Fail fast when Redis is down: a request's caller decides whether
		// to retry, and a serving process should not hold requests for
		// seconds of redials.
		MaxRetries:  1,
		DialTimeout: 2 * time.Second,
	}
	if r.TLS {
		cfg, err := TLSConfig(r)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = cfg
	}
	client := redis.NewUniversalClient(opts)
	followFailovers(client)
	return client, nil
}

// TLSConfig returns the TLS settings of a connection to r: the CA pool of
// r.TLSCAFile (the system's pool without one), the client certificate of
// r.TLSCertFile and r.TLSKeyFile, and r.TLSServerName (the host of each
// address without one). Paths must be resolved already. It returns an
// error naming the setting and the file that cannot be used.
func TLSConfig(r larder.Redis) (*tls.Config, error) {
	cfg, err := tlsfiles.Client(r.TLSCAFile, r.TLSCertFile, r.TLSKeyFile, r.TLSServerName)
	var fe *tlsfiles.Error
	switch {
	case !errors.As(err, &fe):
		return cfg, err
	case fe.File == tlsfiles.CA && fe.Err == tlsfiles.ErrNoPEM:
		return nil, fmt.Errorf("store: redis.tls_ca_file %s holds no PEM certificate", r.TLSCAFile)
	case fe.File == tlsfiles.CA:
		return nil, fmt.Errorf("store: redis.tls_ca_file: %w", fe.Err)
	}
	return nil, fmt.Errorf("store: redis.tls_cert_file %s and tls_key_file %s: %w", r.TLSCertFile, r.TLSKeyFile, fe.Err)
}

// keys builds the Redis keys of one project (see the package doc).
type keys struct {
	prefix string // "larder:<project>:"
}

// control returns the prefix of the control keys of view: "larder:p:{v}:".
func (k keys) control(view string) string { return k.prefix + "{" + view + "}:" }

func (k keys) live(view string) string  { return k.control(view) + "live" }
func (k keys) seq(view string) string   { return k.control(view) + "seq" }
func (k keys) gens(view string) string  { return k.control(view) + "gens" }
func (k keys) lease(view string) string { return k.control(view) + "lease" }
func (k keys) fence(view string) string { return k.control(view) + "fence" }
func (k keys) sched(view string) string { return k.control(view) + "sched" }

// active is the hash of the runs of view in progress, by lease token (see
// StartRun).
func (k keys) active(view string) string { return k.control(view) + "active" }
func (k keys) views() string             { return k.prefix + "views" }
func (k keys) epoch() string             { return k.prefix + "epoch" }
func (k keys) channel() string           { return k.prefix + "publish" }
func (k keys) runs(view string) string   { return k.prefix + "runs:" + view }
func (k keys) scanAll() string           { return k.prefix + "*" }
func (k keys) scanView(v string) string  { return k.prefix + v + ":*" }

func (k keys) meta(view string, gen int64) string {
	return k.control(view) + "g:" + strconv.FormatInt(gen, 10)
}

// writeLease is the key of the lease of generation gen while it is written
// by a run that holds no run lease.
func (k keys) writeLease(view string, gen int64) string {
	return k.control(view) + "wl:" + strconv.FormatInt(gen, 10)
}

// shards is the set of the finished shards of generation gen.
func (k keys) shards(view string, gen int64) string {
	return k.control(view) + "shards:" + strconv.FormatInt(gen, 10)
}

// dataPrefix is the part of a generation's bucket keys before the bucket.
func (k keys) dataPrefix(view string, gen int64) string {
	return k.prefix + view + ":" + strconv.FormatInt(gen, 10) + ":"
}

// parseData splits a bucket key into its view, generation and bucket; ok is
// false for every other key of the project.
func (k keys) parseData(key string) (view string, gen int64, bucket int, ok bool) {
	rest, found := strings.CutPrefix(key, k.prefix)
	if !found {
		return "", 0, 0, false
	}
	view, rest, found = strings.Cut(rest, ":")
	if !found {
		return "", 0, 0, false
	}
	g, b, found := strings.Cut(rest, ":")
	if !found {
		return "", 0, 0, false
	}
	gen, err := strconv.ParseInt(g, 10, 64)
	if err != nil || gen <= 0 {
		return "", 0, 0, false
	}
	bucket, err = strconv.Atoi(b)
	if err != nil || bucket < 0 {
		return "", 0, 0, false
	}
	return view, gen, bucket, true
}

// bucketOf returns the bucket of a canonical entity key: 32-bit FNV-1a of the
// key modulo the bucket count.
func bucketOf(canonical []byte, buckets uint32) uint32 {
	h := uint32(2166136261)
	for _, c := range canonical {
		h ^= uint32(c)
		h *= 16777619
	}
	return h % buckets
}

// Generation states, as stored in the metadata hash.
const (
	stateWriting = "writing"
	stateLive    = "live"
	stateRetired = "retired"
)

// Metadata hash fields.
const (
	fieldFingerprint = "fingerprint"
	fieldBuckets     = "buckets"
	fieldRows        = "rows"
	fieldStartedAt   = "started_at"
	fieldPublishedAt = "published_at"
	fieldState       = "state"
	// fieldWatermark is the newest event time (unix microseconds) written
	// into the generation by its full run and the incremental runs since;
	// absent in generations written before watermarks were kept.
	fieldWatermark = "watermark"
	// The run that wrote the generation (larder.RunInfo): its as-of (unix
	// microseconds), the input generations ("view@gen@asof,..."), trigger,
	// schedule tick, job id and owner.
	fieldAsOf    = "as_of"
	fieldInputs  = "inputs"
	fieldTrigger = "trigger"
	fieldTick    = "tick"
	fieldJob     = "job"
	fieldOwner   = "owner"
	// fieldLease and fieldToken name the lease that holds a generation
	// while it is written, and the token it must hold: the view's run
	// lease and the run's fencing token, or the generation's own write
	// lease and the writer's token. Cleanup deletes a writing generation
	// whose lease no longer holds its token (its run was killed), and
	// Publish refuses to flip to it.
	fieldLease = "lease"
	fieldToken = "token"
	// fieldShards is the number of shards of a sharded generation.
	fieldShards = "shards"
	// fieldKind is the kind of the view, so that Cleanup can record the
	// run of a generation it finds abandoned.
	fieldKind = "kind"
	// fieldEpoch is the store's epoch when the generation began (see
	// Store.epoch): generation ids start again after Redis loses its data,
	// and the epoch tells two generations of one id apart.
	fieldEpoch = "epoch"
)

// meta is a decoded generation metadata hash.
type meta struct {
	fingerprint string
	buckets     int
	rows        int64
	startedAt   time.Time
	publishedAt time.Time
	state       string
	watermark   time.Time
	model       string
	asOf        time.Time
	inputs      []larder.InputGeneration
	trigger     larder.Trigger
	tick        time.Time
	job         string
	owner       string
	lease       string // the key of the lease that holds it while written
	token       string
	shards      int
	kind        larder.ViewKind
	epoch       string
}

// parseMeta decodes a metadata hash; ok is false when it is empty (deleted).
func parseMeta(h map[string]string) (m meta, ok bool, err error) {
	if len(h) == 0 {
		return meta{}, false, nil
	}
	m.fingerprint = h[fieldFingerprint]
	m.state = h[fieldState]
	if m.buckets, err = strconv.Atoi(h[fieldBuckets]); err != nil || m.buckets <= 0 {
		return meta{}, true, fmt.Errorf("bad %s %q in generation metadata", fieldBuckets, h[fieldBuckets])
	}
	if m.rows, err = strconv.ParseInt(h[fieldRows], 10, 64); err != nil {
		return meta{}, true, fmt.Errorf("bad %s %q in generation metadata", fieldRows, h[fieldRows])
	}
	if m.startedAt, err = parseMicros(h[fieldStartedAt]); err != nil {
		return meta{}, true, err
	}
	if m.publishedAt, err = parseMicros(h[fieldPublishedAt]); err != nil {
		return meta{}, true, err
	}
	if m.watermark, err = parseMicros(h[fieldWatermark]); err != nil {
		return meta{}, true, err
	}
	if m.asOf, err = parseMicros(h[fieldAsOf]); err != nil {
		return meta{}, true, err
	}
	if m.tick, err = parseMicros(h[fieldTick]); err != nil {
		return meta{}, true, err
	}
	if m.inputs, err = parseInputs(h[fieldInputs]); err != nil {
		return meta{}, true, err
	}
	if s := h[fieldShards]; s != "" {
		if m.shards, err = strconv.Atoi(s); err != nil || m.shards < 0 {
			return meta{}, true, fmt.Errorf("bad %s %q in generation metadata", fieldShards, s)
		}
	}
	m.model, m.trigger, m.job, m.owner = h[fieldModel], larder.Trigger(h[fieldTrigger]), h[fieldJob], h[fieldOwner]
	m.lease, m.token, m.kind, m.epoch = h[fieldLease], h[fieldToken], larder.ViewKind(h[fieldKind]), h[fieldEpoch]
	return m, true, nil
}

// generation returns the larder.Generation that m describes.
func (m meta) generation(view string, id int64) larder.Generation {
	return larder.Generation{
		View: view, ID: id, Rows: m.rows, Fingerprint: m.fingerprint,
		StartedAt: m.startedAt, PublishedAt: m.publishedAt, Model: m.model,
		AsOf: m.asOf, Inputs: m.inputs, Trigger: m.trigger, Job: m.job,
	}
}

// formatInputs writes input generations as "view@gen@asof" items joined by
// commas, as-of in unix microseconds.
func formatInputs(inputs []larder.InputGeneration) string {
	var b []byte
	for i, in := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, in.View...)
		b = append(b, '@')
		b = strconv.AppendInt(b, in.Generation, 10)
		b = append(b, '@')
		b = append(b, formatMicros(in.AsOf)...)
	}
	return string(b)
}

// parseInputs reads what formatInputs wrote.
func parseInputs(s string) ([]larder.InputGeneration, error) {
	if s == "" {
		return nil, nil
	}
	var out []larder.InputGeneration
	for _, item := range strings.Split(s, ",") {
		view, rest, ok1 := strings.Cut(item, "@")
		g, at, ok2 := strings.Cut(rest, "@")
		gen, err := strconv.ParseInt(g, 10, 64)
		if !ok1 || !ok2 || err != nil {
			return nil, fmt.Errorf("bad %s %q in generation metadata", fieldInputs, s)
		}
		asOf, err := parseMicros(at)
		if err != nil {
			return nil, err
		}
		out = append(out, larder.InputGeneration{View: view, Generation: gen, AsOf: asOf})
	}
	return out, nil
}

func parseMicros(s string) (time.Time, error) {
	if s == "" || s == "0" {
		return time.Time{}, nil
	}
	us, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q in generation metadata", s)
	}
	return time.UnixMicro(us).UTC(), nil
}

func formatMicros(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

// deleteScore is the score in the gens set of a generation that may be
// deleted after t.
func deleteScore(t time.Time) float64 { return float64(t.UnixMicro()) }

var keepScore = math.Inf(1)

// redisErr wraps an error of a Redis call made for op: ctx.Err() when ctx
// ended, the server's own error as is, and anything else (a refused
// connection, a timeout) as larder.ErrUnavailable.
func redisErr(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("store: %s: %w", op, cerr)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !transient(rerr) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return fmt.Errorf("store: %s: %w: %w", op, larder.ErrUnavailable, err)
}

// transient reports whether a Redis error reply says the server cannot
// answer now but may soon: it is loading, failing over or resharding.
func transient(err redis.Error) bool {
	prefix, _, _ := strings.Cut(err.Error(), " ")
	switch prefix {
	case "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "BUSY":
		return true
	}
	return false
}

// isUnknownCommand reports whether err is the server's answer to a command it
// does not implement.
func isUnknownCommand(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "unknown command")
}

// defaultOwner names this process: "<host>:<pid>".
func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
}

// Client returns the Redis client the store uses, for the processes that
// read other keys of the same server (the streams of `larder ingest`).
func (s *Store) Client() redis.UniversalClient { return s.client }

// Owner returns the name of this process in leases and generation
// metadata (Options.Owner).
func (s *Store) Owner() string { return s.opts.Owner }

// generation reads the metadata of generation id of view. It returns an
// error wrapping larder.ErrNotFound when it is gone.
func (s *Store) generation(ctx context.Context, view string, id int64) (larder.Generation, error) {
	h, err := s.client.HGetAll(ctx, s.k.meta(view, id)).Result()
	if err != nil {
		return larder.Generation{}, redisErr(ctx, "read generation metadata of "+view, err)
	}
	m, ok, err := parseMeta(h)
	if err != nil {
		return larder.Generation{}, fmt.Errorf("store: view %s generation %d: %w", view, id, err)
	}
	if !ok {
		return larder.Generation{}, fmt.Errorf("store: view %s generation %d: %w", view, id, larder.ErrNotFound)
	}
	return m.generation(view, id), nil
}

// featureTypes returns the types of v's features, in order.
func featureTypes(v *larder.View) []larder.Type {
	types := make([]larder.Type, len(v.Features))
	for i, f := range v.Features {
		types[i] = f.Type
	}
	return types
}

// epoch returns the store's epoch: a random id made once per Redis dataset
// (SET NX), so that a dataset that was lost and started again, whose
// generation ids start again at 1, has another epoch than the one before.
// It is read at every Begin, never cached: a long-running writer must see
// a new epoch after a data loss.
func (s *Store) epoch(ctx context.Context) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: epoch: %w", err)
	}
	pipe := s.client.Pipeline()
	pipe.SetNX(ctx, s.k.epoch(), hex.EncodeToString(b[:]), 0)
	get := pipe.Get(ctx, s.k.epoch())
	if _, err := pipe.Exec(ctx); err != nil {
		return "", redisErr(ctx, "read the store's epoch", err)
	}
	return get.Val(), nil
}

// Options returns the Store's options, with defaults applied.
func (s *Store) Options() Options { return s.opts }

// EvictionPolicy returns the server's maxmemory-policy, and whether it may
// evict larder's keys: every policy but noeviction may (the volatile ones
// evict the leases, which carry a TTL). It returns "" and false when the
// server does not say (CONFIG is disabled, as on some managed services),
// and larder.ErrUnavailable or ctx.Err() when Redis cannot be reached.
func (s *Store) EvictionPolicy(ctx context.Context) (policy string, evicts bool, err error) {
	res, err := s.client.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		var rerr redis.Error
		if errors.As(err, &rerr) {
			return "", false, nil // CONFIG refused or renamed
		}
		return "", false, redisErr(ctx, "read maxmemory-policy", err)
	}
	policy = res["maxmemory-policy"]
	return policy, policy != "" && policy != "noeviction", nil
}
