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
// Keys, for project p and view v (project and view names never hold ':'):
//
//	larder:p:v:live          string: the live generation id
//	larder:p:v:seq           counter: generation ids
//	larder:p:v:g:<gen>       hash: generation metadata (fingerprint, buckets,
//	                         rows, started_at, published_at, state,
//	                         watermark)
//	larder:p:v:gens          sorted set: generation ids, scored by the unix
//	                         microsecond after which each may be deleted
//	                         (+inf while writing or live)
//	larder:p:v:<gen>:<b>     hash: canonical entity key -> encoded row, for
//	                         bucket b = fnv-1a(key) mod the generation's buckets
//	larder:p:views           set: the names of the views ever written or
//	                         run
//	larder:p:runs:v          list: JSON records of v's last RunHistory
//	                         runs, newest first (see RecordRun)
//	larder:p:publish         Pub/Sub channel, message "<view> <gen>"
//
// No command spans two keys, so the layout works on Redis Cluster as on a
// single server; it also works on the embedded miniredis server.
package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/larder-dev/larder"
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
	// AbandonAfter is how long a generation may stay in the writing state
	// before Cleanup deletes it as abandoned by a killed run; 0 means
	// DefaultAbandonAfter.
	AbandonAfter time.Duration
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

	mu   sync.RWMutex
	live map[string]*liveGen // by view name

	noUnlink atomic.Bool // the server does not know UNLINK: use DEL

	reads readBatcher // coalesces concurrent Reads' round trips
}

var (
	_ larder.FeatureStore     = (*Store)(nil)
	_ larder.GenerationStore  = (*Store)(nil)
	_ larder.GenerationWriter = (*Writer)(nil)
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
	return &Store{
		client:  client,
		project: project,
		k:       keys{prefix: "larder:" + project + ":"},
		opts:    opts,
		log:     opts.Logger,
		now:     opts.Now,
		live:    make(map[string]*liveGen),
	}
}

// Connect returns a go-redis client for the project's Redis settings: a
// standalone client for one address, a Sentinel-backed client when
// MasterName is set, a Cluster client for several addresses. It does not
// dial: the first command does. It returns an error when r names no address
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
		// The server name is taken from each address when dialing.
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return redis.NewUniversalClient(opts), nil
}

// keys builds the Redis keys of one project (see the package doc).
type keys struct {
	prefix string // "larder:<project>:"
}

func (k keys) live(view string) string  { return k.prefix + view + ":live" }
func (k keys) seq(view string) string   { return k.prefix + view + ":seq" }
func (k keys) gens(view string) string  { return k.prefix + view + ":gens" }
func (k keys) views() string            { return k.prefix + "views" }
func (k keys) channel() string          { return k.prefix + "publish" }
func (k keys) runs(view string) string  { return k.prefix + "runs:" + view }
func (k keys) scanAll() string          { return k.prefix + "*" }
func (k keys) scanView(v string) string { return k.prefix + v + ":*" }

func (k keys) meta(view string, gen int64) string {
	return k.prefix + view + ":g:" + strconv.FormatInt(gen, 10)
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
	return m, true, nil
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

// featureTypes returns the types of v's features, in order.
func featureTypes(v *larder.View) []larder.Type {
	types := make([]larder.Type, len(v.Features))
	for i, f := range v.Features {
		types[i] = f.Type
	}
	return types
}
