// Package queue is larder's job queue: larder.JobQueue on Redis Streams,
// and the workers that run the jobs.
//
// A job is a hash that holds every field of larder.Job. Submitting a job
// writes its hash and adds its id to a stream; workers read the stream in
// one consumer group, so each entry goes to one worker. Every change of a
// job's state is one Lua script, so a crash never leaves half a change, and
// two workers never both start one job.
//
// # Keys
//
// For project p (project names hold only letters, digits, '_' and '-'):
//
//	larder:p:{p:jobs}:stream         stream of entries {id: <job id>}; consumer
//	                                 group "workers"
//	larder:p:{p:jobs}:job:<id>       hash: the job (see scripts.go for fields)
//	larder:p:{p:jobs}:children:<id>  list: the ids of the jobs <id> started
//	larder:p:{p:jobs}:index          sorted set: job ids by creation time (ms)
//	larder:p:{p:jobs}:delayed        sorted set: job ids by the time (ms) they
//	                                 go back to the stream: retries, and jobs
//	                                 that a worker without their kind let go
//	larder:p:{p:jobs}:finished       sorted set: finished job ids by finish
//	                                 time (ms), for retention
//	larder:p:{p:jobs}:cancel         Pub/Sub channel, message: a job id whose
//	                                 cancellation was requested
//
// Every key carries the hash tag {p:jobs}: on Redis Cluster the queue of a
// project lives in one slot, so that one script may touch all its keys, while
// the queues of different projects spread over the cluster. The keys keep
// the prefix larder:p: of the project's other keys, so that a SCAN pattern or
// an ACL key pattern for the project covers them.
//
// # Workers, heartbeats and lapses
//
// A worker (Queue.Work) reads entries with XREADGROUP. The job hash names
// the entry that currently stands for the job ("entry"); the worker starts
// the job only if the delivered entry is that one and the job is queued.
// While the job runs, the worker claims the entry to itself again every
// Heartbeat (XCLAIM ... JUSTID, in a script that first checks the entry
// still stands for the job), which resets the entry's idle time on the
// server. Every worker looks, about every Heartbeat, for entries idle for
// longer than Lapse (XPENDING ... IDLE, in the script that also changes the
// job, rather than XAUTOCLAIM, so that finding a silent worker's job and
// taking it away are one step): their worker stopped answering. Such a running job's
// attempt counts as failed; the job is queued again at once under a new
// entry, or fails when it was the last attempt. The worker that stalled
// finds, at its next heartbeat, that its entry no longer stands for the job,
// and cancels its handler's context with ErrLost; its outcome is ignored. A
// worker that cannot reach Redis for Lapse cancels its handlers with ErrLost
// by itself, so that by the time another worker may take a job over, the
// first has been told to stop. Idle times are the server's clock, so the
// workers' clocks need not agree.
//
// # Hooks
//
// A hook (Hooks) owed for a job is recorded in its hash and delivered by a
// stream entry, like a job, to a worker that handles the job's kind; the
// entry is acknowledged only after the hook returned. So every Failed and
// Cancelled hook is called at least once, on a worker, whoever decided the
// outcome: a worker, a client's Cancel, or the reclaim of a dead worker's
// job. A Retrying hook is not called when the job's next attempt started
// first.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/larder-dev/larder"
	"github.com/redis/go-redis/v9"
)

// Defaults for the zero Options.
const (
	DefaultHeartbeat   = 2 * time.Second
	DefaultMaxAttempts = 3
	DefaultBackoff     = 5 * time.Second
	DefaultMaxBackoff  = 5 * time.Minute
	DefaultRetention   = 7 * 24 * time.Hour
	DefaultMaxFinished = 10_000
	// lapseBeats is the default Lapse in Heartbeats.
	lapseBeats = 5
)

// Event is something that happened to a job, for metrics (Options.OnEvent).
type Event string

// The events. Each is reported by the process that caused or saw it: a
// client for EventSubmitted and for the jobs its Cancel cancelled at once, a
// worker for the others, so a metric summed over every process counts each
// event once.
const (
	EventSubmitted Event = "submitted"
	// EventStarted is an attempt that started.
	EventStarted Event = "started"
	// EventSucceeded, EventFailed and EventCancelled are jobs that reached
	// that final state, parents included.
	EventSucceeded Event = "succeeded"
	EventFailed    Event = "failed"
	EventCancelled Event = "cancelled"
	// EventRetried is a failed attempt that will be retried after a backoff.
	EventRetried Event = "retried"
	// EventReclaimed is a running job taken from a worker that stopped
	// answering; it is retried at once or, on its last attempt, fails.
	EventReclaimed Event = "reclaimed"
)

// Options configure a Queue. The zero Options is a valid configuration.
type Options struct {
	// Logger receives the workers' events; nil discards them.
	Logger *slog.Logger
	// Now is the clock that stamps jobs' times and decides when retries
	// and retention are due; nil means time.Now. Intervals (heartbeats,
	// lapses) use the monotonic clock and the Redis server's.
	Now func() time.Time
	// Heartbeat is how often a worker proves that it is alive for each job
	// it runs; 0 means DefaultHeartbeat.
	Heartbeat time.Duration
	// Lapse is how long a running job's worker may go without a heartbeat
	// before another worker takes the job over; 0 (or a value not above
	// Heartbeat) means 5 Heartbeats. Every worker of a queue should use the
	// same Heartbeat and Lapse.
	Lapse time.Duration
	// MaxAttempts is the attempts of a job whose spec says 0; 0 means
	// DefaultMaxAttempts.
	MaxAttempts int
	// Backoff is the delay before a failed job's first retry, doubled for
	// each further one up to MaxBackoff, plus up to a tenth of jitter; 0
	// means DefaultBackoff and DefaultMaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Retention is how long finished jobs are kept; 0 means
	// DefaultRetention. MaxFinished bounds the finished jobs kept, the
	// oldest deleted first; 0 means DefaultMaxFinished. Active jobs are
	// never deleted.
	Retention   time.Duration
	MaxFinished int
	// Kinds are the job kinds Submit accepts; nil accepts any non-empty
	// kind.
	Kinds []larder.JobKind
	// OnEvent, when set, is called for every Event with the job's kind,
	// such as to count them in a Prometheus counter vector. It must not
	// block.
	OnEvent func(kind larder.JobKind, event Event)
}

// Queue is the job queue of one project on one Redis deployment. It
// implements larder.JobQueue, runs workers (Work), and is safe for
// concurrent use.
type Queue struct {
	client redis.UniversalClient
	k      keys
	opts   Options
	log    *slog.Logger
	now    func() time.Time
}

var _ larder.JobQueue = (*Queue)(nil)

// New returns the Queue of project on client. The Queue does not own
// client: the caller closes it after the Queue's last use, and after every
// Work returned. Context deadlines bound Redis calls only when client was
// built with ContextTimeoutEnabled.
func New(client redis.UniversalClient, project string, opts Options) *Queue {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Lapse <= opts.Heartbeat {
		opts.Lapse = lapseBeats * opts.Heartbeat
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = opts.Backoff
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxFinished <= 0 {
		opts.MaxFinished = DefaultMaxFinished
	}
	return &Queue{
		client: client,
		k:      newKeys(project),
		opts:   opts,
		log:    opts.Logger.With("component", "queue", "project", project),
		now:    opts.Now,
	}
}

// keys names the queue's keys of one project (see the package doc). The
// scripts derive the same names from the prefix.
type keys struct{ prefix string }

func newKeys(project string) keys {
	return keys{prefix: "larder:" + project + ":{" + project + ":jobs}:"}
}

func (k keys) stream() string            { return k.prefix + "stream" }
func (k keys) job(id string) string      { return k.prefix + "job:" + id }
func (k keys) children(id string) string { return k.prefix + "children:" + id }
func (k keys) index() string             { return k.prefix + "index" }
func (k keys) channel() string           { return k.prefix + "cancel" }

// group is the consumer group of the workers.
const group = "workers"

// Submit queues a job and returns it with its id. It returns an
// *larder.InvalidError when spec has no kind, a kind that Options.Kinds does
// not list, a negative MaxAttempts, Args that are not JSON, or a Parent that
// does not exist or is no longer active; larder.ErrUnavailable or ctx.Err()
// when Redis cannot be written.
func (q *Queue) Submit(ctx context.Context, spec larder.JobSpec) (larder.Job, error) {
	if err := q.validate(spec); err != nil {
		return larder.Job{}, err
	}
	maxAttempts := spec.MaxAttempts
	if maxAttempts == 0 {
		maxAttempts = q.opts.MaxAttempts
	}
	for range 3 {
		id, err := q.newID()
		if err != nil {
			return larder.Job{}, err
		}
		res, err := q.run(ctx, scriptSubmit, id, string(spec.Kind), string(spec.Args), spec.Description, maxAttempts, spec.Parent, spec.Key)
		if err != nil {
			return larder.Job{}, redisErr(ctx, "submit a "+string(spec.Kind)+" job", err)
		}
		switch res.status {
		case "ok":
			return decodeRecord(res.record(2))
		case "exists":
			continue // a 32-bit collision within one millisecond: draw again
		case "noparent":
			return larder.Job{}, larder.Invalidf("parent job %q does not exist", spec.Parent)
		case "parentdone":
			return larder.Job{}, larder.Invalidf("parent job %s is %s; it takes no more children", spec.Parent, res.str(2))
		default:
			return larder.Job{}, fmt.Errorf("queue: submit: unexpected answer %q", res.status)
		}
	}
	return larder.Job{}, errors.New("queue: submit: no free job id after 3 draws")
}

func (q *Queue) validate(spec larder.JobSpec) error {
	if spec.Kind == "" {
		return larder.Invalidf("a job needs a kind")
	}
	if q.opts.Kinds != nil && !contains(q.opts.Kinds, spec.Kind) {
		names := make([]string, len(q.opts.Kinds))
		for i, k := range q.opts.Kinds {
			names[i] = string(k)
		}
		return larder.Invalidf("unknown job kind %q; known kinds: %s", spec.Kind, strings.Join(names, ", "))
	}
	if spec.MaxAttempts < 0 {
		return larder.Invalidf("max attempts of a %s job is %d; want 0 (the default) or more", spec.Kind, spec.MaxAttempts)
	}
	if len(spec.Args) > 0 && !json.Valid(spec.Args) {
		return larder.Invalidf("the arguments of a %s job are not valid JSON", spec.Kind)
	}
	return nil
}

func contains(kinds []larder.JobKind, k larder.JobKind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// newID returns a job id that sorts by submission time to the millisecond:
// the UTC time and 32 random bits, such as "20261202T053000.123Z-1a2b3c4d".
func (q *Queue) newID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("queue: job id: %w", err)
	}
	return q.now().UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:]), nil
}

// Job returns the job with the id, an error wrapping larder.ErrNotFound when
// there is none (or it was deleted after its retention), and
// larder.ErrUnavailable or ctx.Err() when Redis cannot be read. The Progress
// of a waiting job counts its children: Done of Total jobs finished.
func (q *Queue) Job(ctx context.Context, id string) (larder.Job, error) {
	pipe := q.client.Pipeline()
	h := pipe.HGetAll(ctx, q.k.job(id))
	c := pipe.LRange(ctx, q.k.children(id), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return larder.Job{}, redisErr(ctx, "read job "+id, err)
	}
	if len(h.Val()) == 0 {
		return larder.Job{}, fmt.Errorf("queue: job %q: %w", id, larder.ErrNotFound)
	}
	return decodeJob(h.Val(), c.Val())
}

// jobsPage is how many jobs Jobs reads per round trip.
const jobsPage = 200

// Jobs returns the jobs that f selects, newest first. It returns an
// *larder.InvalidError for an unknown state or a negative limit, and
// larder.ErrUnavailable or ctx.Err() when Redis cannot be read.
func (q *Queue) Jobs(ctx context.Context, f larder.JobFilter) ([]larder.Job, error) {
	if f.State != "" && !f.State.Valid() {
		return nil, larder.Invalidf("unknown job state %q", f.State)
	}
	if f.Limit < 0 {
		return nil, larder.Invalidf("job limit %d is negative", f.Limit)
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	var out []larder.Job
	for start := int64(0); len(out) < limit; start += jobsPage {
		ids, err := q.client.ZRevRange(ctx, q.k.index(), start, start+jobsPage-1).Result()
		if err != nil {
			return nil, redisErr(ctx, "list jobs", err)
		}
		if len(ids) == 0 {
			break
		}
		pipe := q.client.Pipeline()
		hs := make([]*redis.MapStringStringCmd, len(ids))
		cs := make([]*redis.StringSliceCmd, len(ids))
		for i, id := range ids {
			hs[i] = pipe.HGetAll(ctx, q.k.job(id))
			cs[i] = pipe.LRange(ctx, q.k.children(id), 0, -1)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, redisErr(ctx, "read jobs", err)
		}
		for i := range ids {
			h := hs[i].Val()
			if len(h) == 0 {
				continue // deleted since the index was read
			}
			if (f.State != "" && larder.JobState(h["state"]) != f.State) || (f.Kind != "" && larder.JobKind(h["kind"]) != f.Kind) {
				continue
			}
			j, err := decodeJob(h, cs[i].Val())
			if err != nil {
				return nil, err
			}
			out = append(out, j)
			if len(out) == limit {
				break
			}
		}
		if len(ids) < jobsPage {
			break
		}
	}
	return out, nil
}

// Cancel cancels a job that is not done, and the active jobs it started. A
// queued, retrying or waiting job is cancelled at once; a running one is
// asked to stop: its worker cancels the handler's context with
// ErrCancelled and then records it cancelled (Job.LastError says so
// meanwhile). Cancelled hooks run on a worker (see the package doc). Cancel
// returns the job as it stands after the request (unchanged when it was
// already done), an error wrapping larder.ErrNotFound for an unknown id, and
// larder.ErrUnavailable or ctx.Err() when Redis cannot be written.
func (q *Queue) Cancel(ctx context.Context, id string) (larder.Job, error) {
	res, err := q.run(ctx, scriptCancel, id)
	if err != nil {
		return larder.Job{}, redisErr(ctx, "cancel job "+id, err)
	}
	if res.status == "missing" {
		return larder.Job{}, fmt.Errorf("queue: job %q: %w", id, larder.ErrNotFound)
	}
	return decodeRecord(res.record(2))
}

// expireBatch bounds the jobs one expiry script deletes, so that it never
// blocks Redis for long.
const expireBatch = 500

// Cleanup deletes the finished jobs past Options.Retention or beyond
// Options.MaxFinished, trims the stream of acknowledged entries, and
// forgets consumers (workers) that hold nothing and have long been idle.
// Workers call it about once a minute; a caller may too. It returns the
// number of jobs deleted, and larder.ErrUnavailable or ctx.Err() when Redis
// cannot be written.
func (q *Queue) Cleanup(ctx context.Context) (int, error) {
	return q.cleanup(ctx, "")
}

func (q *Queue) cleanup(ctx context.Context, consumer string) (int, error) {
	cutoff := q.now().Add(-q.opts.Retention).UnixMilli()
	total := 0
	for {
		res, err := q.run(ctx, scriptExpire, cutoff, q.opts.MaxFinished, expireBatch)
		if err != nil {
			return total, redisErr(ctx, "delete old jobs", err)
		}
		n := res.n
		total += n
		if n < expireBatch {
			break
		}
	}
	if _, err := q.run(ctx, scriptTidy, consumerIdle(q.opts.Lapse).Milliseconds(), consumer); err != nil {
		return total, redisErr(ctx, "trim the job stream", err)
	}
	return total, nil
}

// consumerIdle is how long a consumer that holds no entry must have been
// idle before Cleanup deletes it. A live worker reads every readBlock.
func consumerIdle(lapse time.Duration) time.Duration {
	return max(10*lapse, 10*time.Minute)
}

// reply is a script's answer: {status, events, ...}; a status is a word,
// or a count for the scripts that count.
type reply struct {
	status string
	n      int
	a      []any
}

// record returns element i of the answer as a job record.
func (r reply) record(i int) []any {
	if i < len(r.a) {
		rec, _ := r.a[i].([]any)
		return rec
	}
	return nil
}

// str returns element i of the answer as a string.
func (r reply) str(i int) string {
	if i < len(r.a) {
		s, _ := r.a[i].(string)
		return s
	}
	return ""
}

// timeText is how the scripts are given the time and store it: RFC 3339 in
// UTC with all nine digits of the fraction, so that two times compare as
// their text does (a parent's finished_at is the latest of its own and its
// children's).
const timeText = "2006-01-02T15:04:05.000000000Z07:00"

// run runs a script with the common arguments and reports its events.
func (q *Queue) run(ctx context.Context, s *redis.Script, args ...any) (reply, error) {
	now := q.now()
	argv := make([]any, 0, 3+len(args))
	argv = append(argv, q.k.prefix, now.UTC().Format(timeText), now.UnixMilli())
	argv = append(argv, args...)
	v, err := s.Run(ctx, q.client, []string{q.k.stream()}, argv...).Result()
	if err != nil {
		return reply{}, err
	}
	a, ok := v.([]any)
	if !ok || len(a) < 2 {
		return reply{}, fmt.Errorf("queue: unexpected script answer %v", v)
	}
	r := reply{a: a}
	switch s := a[0].(type) {
	case string:
		r.status = s
	case int64:
		r.n = int(s)
	}
	events, _ := a[1].([]any)
	q.report(events)
	return r, nil
}

func (q *Queue) report(events []any) {
	if q.opts.OnEvent == nil {
		return
	}
	for i := 0; i+1 < len(events); i += 2 {
		kind, _ := events[i].(string)
		ev, _ := events[i+1].(string)
		q.opts.OnEvent(larder.JobKind(kind), Event(ev))
	}
}

// redisErr wraps a Redis error for callers: ctx's error when it ended, the
// error as it is for a reply that the server will give again (a script
// error), and larder.ErrUnavailable for the rest.
func redisErr(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("queue: %s: %w", op, cerr)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !transient(rerr) {
		return fmt.Errorf("queue: %s: %w", op, err)
	}
	return fmt.Errorf("queue: %s: %w: %w", op, larder.ErrUnavailable, err)
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
