package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder"
)

// Counts are what a consumer has done since it started.
type Counts struct {
	// Written and Older count the events applied: written, or left out
	// because the stored row was newer (a late or replayed event).
	Written, Older int64
	// Dead counts the events sent to the dead-letter stream.
	Dead int64
}

// Lag is how far a consumer group is behind its stream.
type Lag struct {
	// Entries is the number of entries not yet delivered to the group,
	// and Pending the number delivered but not yet acknowledged.
	Entries, Pending int64
	// Seconds is the age of the oldest entry not yet delivered: 0 when
	// the group is up to date.
	Seconds float64
}

// RedisConsumer applies the entries of a Redis stream to its view, as one
// consumer of the stream's consumer group. An entry is acknowledged only
// once it is written (or sent to the dead-letter stream), so a consumer
// killed mid-batch loses nothing: the entries it held stay pending, and
// another consumer claims them (XAUTOCLAIM) once they have been idle for
// ClaimIdle. Applying an entry twice changes nothing, since the store
// keeps the row with the newest event time per entity.
type RedisConsumer struct {
	Client redis.UniversalClient
	Stream *larder.Stream
	Store  larder.PushStore
	// Name names this consumer in the group; "" means "<host>:<pid>".
	Name string
	// Batch is the most entries read at once (default 500); Block is how
	// long a read waits for new entries (default 1s); ClaimIdle is how
	// long an entry delivered to another consumer stays unacknowledged
	// before this one takes it over (default 30s).
	Batch     int
	Block     time.Duration
	ClaimIdle time.Duration
	Logger    *slog.Logger
	// Applied, when set, is called after each batch with its counts.
	Applied func(Counts)

	mapper *Mapper
	tally  tally
}

// Counts returns what the consumer has done so far.
func (c *RedisConsumer) Counts() Counts {
	return c.tally.counts()
}

func (c *RedisConsumer) defaults() {
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Block <= 0 {
		c.Block = time.Second
	}
	if c.ClaimIdle <= 0 {
		c.ClaimIdle = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "localhost"
		}
		c.Name = host + ":" + strconv.Itoa(os.Getpid())
	}
	if c.mapper == nil {
		c.mapper = NewMapper(c.Stream)
	}
}

// Run consumes the stream until ctx ends; it returns nil then. Redis
// errors are logged and retried with a growing pause. It refuses to start
// on a stream whose dead-letter stream is the stream itself, which
// validation refuses too: it would read its dead letters back, and send
// them to it again without end.
func (c *RedisConsumer) Run(ctx context.Context) error {
	if c.Stream.DeadLetter == c.Stream.RedisStream {
		return fmt.Errorf("stream %s: its dead-letter stream is its own redis_stream, %s: the events that cannot apply would be read back without end; set dead_letter to another Redis stream", c.Stream.Name, c.Stream.RedisStream)
	}
	c.defaults()
	backoff := newBackoff()
	claimAt := time.Time{}
	for ctx.Err() == nil {
		var err error
		if time.Now().After(claimAt) {
			// Entries left pending by a consumer that died.
			err = c.claim(ctx)
			claimAt = time.Now().Add(c.ClaimIdle / 2)
		}
		if err == nil {
			err = c.readNew(ctx)
		}
		if err == nil {
			backoff.reset()
			continue
		}
		if ctx.Err() != nil {
			break
		}
		c.Logger.Warn("ingesting a stream: retrying", "stream", c.Stream.Name, "err", err)
		if !backoff.wait(ctx) {
			break
		}
	}
	return nil
}

// ensureGroup creates the consumer group, reading the stream from its
// start, unless it exists.
func (c *RedisConsumer) ensureGroup(ctx context.Context) error {
	err := c.Client.XGroupCreateMkStream(ctx, c.Stream.RedisStream, c.Stream.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group %s of %s: %w", c.Stream.Group, c.Stream.RedisStream, err)
	}
	return nil
}

// readNew reads and applies the entries not yet delivered to the group.
func (c *RedisConsumer) readNew(ctx context.Context) error {
	res, err := c.Client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: c.Stream.Group, Consumer: c.Name, Streams: []string{c.Stream.RedisStream, ">"},
		Count: int64(c.Batch), Block: c.Block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		return c.ensureGroup(ctx)
	}
	if err != nil {
		return err
	}
	for _, s := range res {
		if err := c.apply(ctx, s.Messages); err != nil {
			return err
		}
	}
	return nil
}

// claim takes over and applies the entries that another consumer of the
// group left pending for longer than ClaimIdle.
func (c *RedisConsumer) claim(ctx context.Context) error {
	start := "0-0"
	for {
		msgs, next, err := c.Client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: c.Stream.RedisStream, Group: c.Stream.Group, Consumer: c.Name,
			MinIdle: c.ClaimIdle, Start: start, Count: int64(c.Batch),
		}).Result()
		if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
			return c.ensureGroup(ctx)
		}
		if err != nil {
			return err
		}
		if len(msgs) > 0 {
			c.Logger.Info("claimed entries a consumer left pending", "stream", c.Stream.Name, "entries", len(msgs))
			if err := c.apply(ctx, msgs); err != nil {
				return err
			}
		}
		if next == "0-0" || next == "" {
			return nil
		}
		start = next
	}
}

// apply maps msgs to rows, pushes them, sends those that can never apply
// to the dead-letter stream with the reason, then acknowledges them all.
// Nothing is acknowledged when the push fails: the entries stay pending.
func (c *RedisConsumer) apply(ctx context.Context, msgs []redis.XMessage) error {
	received := c.redisNow(ctx)
	p, err := pushEvents(ctx, c.Store, c.Stream, c.mapper.View(), len(msgs), func(i int) (larder.PushRow, error) {
		return c.mapper.RowReceived(func(field string) (any, bool) {
			v, ok := msgs[i].Values[field]
			return v, ok
		}, received)
	}, func(i int) string { return msgs[i].ID })
	if err != nil {
		return err
	}
	err = sendDead(ctx, c.Client, c.Stream, c.Logger, p.dead, func(d deadEvent) []any {
		m := msgs[d.i]
		vals := []any{"stream", c.Stream.RedisStream, "id", m.ID, "reason", d.reason}
		for k, v := range m.Values {
			vals = append(vals, "field:"+k, v)
		}
		return vals
	})
	if err != nil {
		return err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	if err := c.Client.XAck(ctx, c.Stream.RedisStream, c.Stream.Group, ids...).Err(); err != nil {
		return fmt.Errorf("acknowledge %d entries of %s: %w", len(ids), c.Stream.RedisStream, err)
	}
	c.tally.add(p, c.Applied)
	return nil
}

// RedisLag returns how far the stream's consumer group is behind it, at
// now. A group that does not exist yet is as far behind as the stream is
// long.
func RedisLag(ctx context.Context, client redis.UniversalClient, s *larder.Stream, now time.Time) (Lag, error) {
	var lag Lag
	groups, err := client.XInfoGroups(ctx, s.RedisStream).Result()
	if err != nil && !strings.Contains(err.Error(), "no such key") {
		return lag, err
	}
	last := "0-0"
	found := false
	for _, g := range groups {
		if g.Name == s.Group {
			found, last, lag.Pending = true, g.LastDeliveredID, g.Pending
			// Redis 7 counts the lag (-1 when it cannot); before 7 the
			// field is missing and reads 0, which only entries-read tells
			// from a group that is up to date. A group that has read
			// nothing yet has no entries-read, and its lag is counted.
			if g.Lag > 0 || (g.Lag == 0 && g.EntriesRead > 0) {
				lag.Entries = g.Lag
			}
		}
	}
	// The oldest entry not yet delivered gives the time behind; its count
	// is read when the server does not keep it.
	next, err := client.XRangeN(ctx, s.RedisStream, "("+last, "+", 1).Result()
	if err != nil {
		return lag, err
	}
	if len(next) == 0 {
		lag.Entries = 0
		return lag, nil
	}
	if ms, err := strconv.ParseInt(strings.SplitN(next[0].ID, "-", 2)[0], 10, 64); err == nil {
		lag.Seconds = max(0, now.Sub(time.UnixMilli(ms)).Seconds())
	}
	if lag.Entries == 0 || !found {
		n, err := client.XLen(ctx, s.RedisStream).Result()
		if err == nil && !found {
			lag.Entries = n
		} else if err == nil {
			// Without the server's count: at most the stream's length.
			rest, err := client.XRangeN(ctx, s.RedisStream, "("+last, "+", 10_000).Result()
			if err == nil {
				lag.Entries = int64(len(rest))
			}
		}
	}
	return lag, nil
}

// backoff is a growing pause between retries: 100ms, doubling, to 5s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

// wait pauses, and reports false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(2*b.d, 5*time.Second)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// redisNow returns the time by Redis's clock (TIME), read once per batch
// of entries, so that their event times are held to it when the host's
// clock runs behind; the zero Received when it cannot be read (the host's
// clock alone then counts). An entry's id is not taken as a clock: a
// producer may set it, and once one id is in the future every later id
// made by Redis is too.
func (c *RedisConsumer) redisNow(ctx context.Context) Received {
	t, err := c.Client.Time(ctx).Result()
	if err != nil {
		return Received{}
	}
	return Received{At: t, Clock: "the clock of Redis"}
}
