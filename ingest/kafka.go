package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/larder-dev/larder"
)

// KafkaConsumer applies the records of a Kafka topic to its view, as one
// member of the stream's consumer group. A record's value is a JSON object
// of the event's fields; when it has no field for the entity key, the
// record's key is the entity key.
//
// Offsets are committed only once a batch is written (or sent to the
// dead-letter stream), so a consumer stopped or killed mid-batch loses
// nothing: the next member to own a partition reads it again from the last
// commit. When the store cannot be written (Redis down), the consumer keeps
// the batch and retries it with a growing pause, polling nothing new, so
// that the records of a partition apply in order. Applying a record twice
// changes nothing, since the store keeps the row with the newest event
// time per entity.
type KafkaConsumer struct {
	// Client is the project's Redis, where the dead-letter stream is.
	Client redis.UniversalClient
	Stream *larder.Stream
	Store  larder.PushStore
	// Batch is the most records applied at once (default 500).
	Batch  int
	Logger *slog.Logger
	// Applied, when set, is called after each batch with its counts.
	Applied func(Counts)
	// Opts are more options of the Kafka client (timeouts), applied after
	// the consumer's own. TLS and SASL are the stream's (KafkaOptions).
	Opts []kgo.Opt

	mapper *Mapper
	tally  tally

	// mu is held while a batch is written and committed, so that a
	// revocation waits for it, and guards what the callbacks change.
	mu sync.Mutex
	// owned are the partitions assigned to this member now.
	owned map[int32]bool
	// held are the records polled and not yet written.
	held []*kgo.Record
	// written are the offsets written but not yet committed, by partition.
	written map[int32]kgo.EpochOffset
}

// Counts returns what the consumer has done so far.
func (c *KafkaConsumer) Counts() Counts {
	return c.tally.counts()
}

func (c *KafkaConsumer) defaults() {
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.mapper == nil {
		c.mapper = NewMapper(c.Stream)
	}
	c.owned = map[int32]bool{}
	c.held = nil
	c.written = map[int32]kgo.EpochOffset{}
}

// Run consumes the topic until ctx ends; it returns nil then, once it has
// committed what it wrote and left the group. It returns an error at once
// when the stream is not a Kafka topic or the client's options are wrong
// (a *KafkaSettingError for a TLS file that cannot be used), and as soon
// as the brokers refuse the stream's credentials or certificates, naming
// the stream, the brokers and the settings to check. Other Kafka errors
// and Redis errors are logged and retried with a growing pause.
func (c *KafkaConsumer) Run(ctx context.Context) error {
	base, err := KafkaOptions(c.Stream)
	if err != nil {
		return err
	}
	c.defaults()
	opts := append(base,
		kgo.ConsumerGroup(c.Stream.Group),
		kgo.ConsumeTopics(c.Stream.Kafka.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		kgo.WithLogger(kafkaLogger{c.Logger}),
	)
	opts = append(opts, c.Opts...)
	watch := &authWatch{}
	cl, err := kgo.NewClient(append(opts, kgo.WithHooks(watch))...)
	if err != nil {
		return fmt.Errorf("kafka client of stream %s: %w", c.Stream.Name, err)
	}
	if err := checkKafka(ctx, c.Stream, cl, watch); err != nil {
		cl.Close()
		return err
	}
	defer func() {
		// ctx has ended: what was written and not yet committed gets a
		// commit of its own before the client leaves the group.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		c.mu.Lock()
		if err := c.commitLocked(cctx, cl, nil); err != nil {
			c.Logger.Warn("committing offsets on the way out: the next owners read some records again", "stream", c.Stream.Name, "err", err)
		}
		c.mu.Unlock()
		cancel()
		cl.Close()
	}()

	backoff := newBackoff()
	for ctx.Err() == nil {
		c.mu.Lock()
		idle := len(c.held) == 0
		c.mu.Unlock()
		// With no batch held, fetch one; else apply it. A batch that fails
		// stays held: the same records are retried, and nothing new is
		// polled until they apply.
		step := c.apply
		if idle {
			step = c.poll
		}
		err := step(ctx, cl)
		if err == nil {
			if !idle {
				backoff.reset()
			}
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if refused := kafkaRefused(c.Stream, err, nil); refused != nil {
			return refused // a password changed since the start
		}
		c.Logger.Warn("ingesting a topic: retrying", "stream", c.Stream.Name, "err", err)
		if !backoff.wait(ctx) {
			break
		}
	}
	return nil
}

// poll fetches the next batch and holds the records of the partitions
// this member still owns: a partition revoked since the fetch is read
// again by its next owner.
func (c *KafkaConsumer) poll(ctx context.Context, cl *kgo.Client) error {
	fetches := cl.PollRecords(ctx, c.Batch)
	if fetches.IsClientClosed() {
		return kgo.ErrClientClosed
	}
	var ferr error
	fetches.EachError(func(topic string, partition int32, err error) {
		if ferr == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			ferr = fmt.Errorf("fetch %s partition %d: %w", topic, partition, err)
		}
	})
	recs := fetches.Records()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		if c.owned[r.Partition] {
			c.held = append(c.held, r)
		}
	}
	if len(c.held) > 0 {
		return nil // the records that came are applied; a fetch error recurs
	}
	return ferr
}

// apply maps the held records to rows, pushes them in one call, sends
// those that can never apply to the dead-letter stream with the reason,
// then commits their offsets. Nothing is committed when the push or the
// dead letters fail: the records stay held. A commit that fails is
// retried with the next batch, or when the partition is revoked.
func (c *KafkaConsumer) apply(ctx context.Context, cl *kgo.Client) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	recs := c.held
	if len(recs) == 0 {
		return nil // revoked meanwhile
	}
	p, err := pushEvents(ctx, c.Store, c.Stream, c.mapper.View(), len(recs), func(i int) (larder.PushRow, error) { return c.row(recs[i]) },
		func(i int) string { return recordID(recs[i]) })
	if err != nil {
		return err
	}
	err = sendDead(ctx, c.Client, c.Stream, c.Logger, p.dead, func(d deadEvent) []any {
		r := recs[d.i]
		vals := []any{
			"topic", r.Topic, "partition", strconv.Itoa(int(r.Partition)),
			"offset", strconv.FormatInt(r.Offset, 10), "reason", d.reason, "value", r.Value,
		}
		if r.Key != nil {
			vals = append(vals, "key", r.Key)
		}
		return vals
	})
	if err != nil {
		return err
	}
	for _, r := range recs {
		at := kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
		if prev, ok := c.written[r.Partition]; !ok || prev.Less(at) {
			c.written[r.Partition] = at
		}
	}
	c.held = nil
	if err := c.commitLocked(ctx, cl, nil); err != nil && ctx.Err() == nil {
		c.Logger.Warn("committing offsets: retried with the next batch", "stream", c.Stream.Name, "err", err)
	}
	c.tally.add(p, c.Applied)
	return nil
}

// recordID identifies a record in the stream's one topic:
// partition/offset.
func recordID(r *kgo.Record) string {
	return strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
}

// row returns the row of a record whose value is a JSON object of the
// event's fields. The record's key stands for a missing key field.
func (c *KafkaConsumer) row(r *kgo.Record) (larder.PushRow, error) {
	d := json.NewDecoder(bytes.NewReader(r.Value))
	d.UseNumber()
	var fields map[string]any
	if err := d.Decode(&fields); err != nil || fields == nil {
		return larder.PushRow{}, fmt.Errorf("the record's value is not a JSON object: %q", clip(string(r.Value)))
	}
	if _, err := d.Token(); err != io.EOF {
		return larder.PushRow{}, fmt.Errorf("the record's value has more than one JSON object: %q", clip(string(r.Value)))
	}
	if _, ok := fields[c.Stream.Key]; !ok && r.Key != nil {
		fields[c.Stream.Key] = string(r.Key)
	}
	var received Received
	if r.Attrs.TimestampType() == 1 {
		// The broker's append time (a topic of
		// message.timestamp.type=LogAppendTime), by the broker's clock; a
		// producer's own time is not trusted to say when it sent.
		received = Received{At: r.Timestamp, Clock: "the time the broker appended the record"}
	}
	return c.mapper.RowReceived(func(field string) (any, bool) {
		v, ok := fields[field]
		return v, ok
	}, received)
}

// commitLocked commits the offsets written, of the partitions in only
// (all when nil), and forgets those committed. c.mu is held.
func (c *KafkaConsumer) commitLocked(ctx context.Context, cl *kgo.Client, only []int32) error {
	offsets := map[int32]kgo.EpochOffset{}
	for p, at := range c.written {
		if only == nil || slices.Contains(only, p) {
			offsets[p] = at
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	topic := c.Stream.Kafka.Topic
	var cerr error
	cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
						cerr = fmt.Errorf("partition %d: %w", p.Partition, err)
						continue
					}
					if at, ok := c.written[p.Partition]; ok && !offsets[p.Partition].Less(at) {
						delete(c.written, p.Partition)
					}
				}
			}
		})
	if cerr != nil {
		return fmt.Errorf("commit offsets of %s for group %s: %w", topic, c.Stream.Group, cerr)
	}
	return nil
}

// assigned notes the partitions this member now owns.
func (c *KafkaConsumer) assigned(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ps[c.Stream.Kafka.Topic] {
		c.owned[p] = true
	}
}

// revoked commits what was written of the partitions taken away (it waits
// for a batch being written), and drops their records not yet written:
// their next owner reads them again from that commit.
func (c *KafkaConsumer) revoked(ctx context.Context, cl *kgo.Client, ps map[string][]int32) {
	gone := ps[c.Stream.Kafka.Topic]
	if len(gone) == 0 {
		// The end of a cooperative session that keeps every partition:
		// the group waits for no batch.
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.commitLocked(ctx, cl, gone); err != nil {
		c.Logger.Warn("committing offsets of revoked partitions: their next owner reads some records again",
			"stream", c.Stream.Name, "partitions", gone, "err", err)
	}
	c.dropLocked(gone)
}

// lost drops what this member held of partitions it lost without a
// revocation (it left the group on an error): a commit would fail.
func (c *KafkaConsumer) lost(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	if gone := ps[c.Stream.Kafka.Topic]; len(gone) > 0 {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.dropLocked(gone)
	}
}

func (c *KafkaConsumer) dropLocked(gone []int32) {
	for _, p := range gone {
		delete(c.owned, p)
		delete(c.written, p)
	}
	kept := c.held[:0]
	for _, r := range c.held {
		if c.owned[r.Partition] {
			kept = append(kept, r)
		}
	}
	clear(c.held[len(kept):])
	c.held = kept
}

// KafkaLag returns how far the stream's consumer group is behind its
// topic, at now: Entries is the number of records after the group's
// committed offsets, summed over the partitions (from the start of a
// partition the group has not committed to), and Seconds the age of the
// oldest of them by its Kafka timestamp, which costs one small fetch per
// partition that is behind; Seconds stays 0 when none of those records
// can be read within oldestWait (a partition whose last records are only
// transaction markers). Pending is 0: Kafka keeps no record delivered to
// a group and not acknowledged. A topic that does not exist has no lag.
// The client is the stream's (KafkaOptions: TLS, SASL), with opts, more
// options, after them; KafkaLag connects to the brokers for each call.
// Brokers that refuse the stream's credentials or certificates get an
// error that names the stream, the brokers and the settings to check.
func KafkaLag(ctx context.Context, s *larder.Stream, now time.Time, opts ...kgo.Opt) (Lag, error) {
	watch := &authWatch{}
	lag, err := kafkaLag(ctx, s, now, append(slices.Clip(opts), kgo.WithHooks(watch)))
	if refused := kafkaRefused(s, err, watch); refused != nil {
		return lag, refused
	}
	return lag, err
}

func kafkaLag(ctx context.Context, s *larder.Stream, now time.Time, more []kgo.Opt) (Lag, error) {
	var lag Lag
	opts, err := KafkaOptions(s)
	if err != nil {
		return lag, err
	}
	opts = append(opts, more...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return lag, fmt.Errorf("kafka client of stream %s: %w", s.Name, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := s.Kafka.Topic
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return lag, nil
	}
	if err != nil {
		return lag, fmt.Errorf("list the start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return lag, fmt.Errorf("list the end offsets of %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, s.Group)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // a group not created yet
	}
	if err != nil {
		return lag, fmt.Errorf("fetch the offsets of group %s: %w", s.Group, err)
	}
	behind := map[int32]kgo.Offset{}
	ends.Each(func(end kadm.ListedOffset) {
		from := int64(0)
		if st, ok := starts.Lookup(topic, end.Partition); ok {
			from = st.Offset
		}
		if o, ok := committed.Lookup(topic, end.Partition); ok && o.At > from {
			from = o.At
		}
		if end.Offset > from {
			lag.Entries += end.Offset - from
			behind[end.Partition] = kgo.NewOffset().At(from)
		}
	})
	if len(behind) == 0 {
		return lag, nil
	}
	oldest, err := oldestTimestamp(ctx, topic, behind, opts)
	if err != nil {
		return lag, fmt.Errorf("read the oldest record %s's group %s has not committed: %w", topic, s.Group, err)
	}
	if !oldest.IsZero() {
		lag.Seconds = max(0, now.Sub(oldest).Seconds())
	}
	return lag, nil
}

// oldestWait bounds how long KafkaLag waits for the oldest records.
const oldestWait = 5 * time.Second

// oldestTimestamp fetches the first record at each offset and returns
// the earliest of their timestamps, or the zero time when none came
// within oldestWait.
func oldestTimestamp(ctx context.Context, topic string, at map[int32]kgo.Offset, opts []kgo.Opt) (time.Time, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, oldestWait)
	defer cancel()
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at}),
		kgo.FetchMaxPartitionBytes(1<<10), // a broker still returns one whole batch
	)...)
	if err != nil {
		return time.Time{}, err
	}
	defer cl.Close()
	var oldest time.Time
	for seen := map[int32]bool{}; len(seen) < len(at); {
		fetches := cl.PollFetches(ctx)
		if err := parent.Err(); err != nil {
			return oldest, err
		}
		if ctx.Err() != nil {
			return oldest, nil
		}
		if fetches.IsClientClosed() {
			return oldest, kgo.ErrClientClosed
		}
		var ferr error
		fetches.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("partition %d: %w", p, err) })
		if ferr != nil {
			return oldest, ferr
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 || seen[p.Partition] {
				return
			}
			seen[p.Partition] = true
			if ts := p.Records[0].Timestamp; oldest.IsZero() || ts.Before(oldest) {
				oldest = ts
			}
			cl.PauseFetchPartitions(map[string][]int32{topic: {p.Partition}})
		})
	}
	return oldest, nil
}

// kafkaLogger passes the Kafka client's warnings and errors to a
// consumer's logger.
type kafkaLogger struct{ l *slog.Logger }

func (k kafkaLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kafkaLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka: "+msg, keyvals...)
	}
}
