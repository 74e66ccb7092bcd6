package ingest_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

const kafkaTopic = "clicks"

// kafkaFixture is an in-process Kafka-protocol cluster with a topic of
// three partitions, and a real redis-server with the view published once
// (users 1 and 2 at t0).
type kafkaFixture struct {
	*fixture
	srv     *redistest.Server
	brokers []string
	prod    *kgo.Client
}

func newKafkaFixture(t testing.TB) *kafkaFixture {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, kafkaTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	f := &kafkaFixture{srv: redistest.Start(t), brokers: cluster.ListenAddrs()}
	f.prod, err = kgo.NewClient(kgo.SeedBrokers(f.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.prod.Close)

	p := testProject(t)
	p.Streams = []*larder.Stream{{Name: "clicks", View: "user_last", Kafka: &larder.KafkaTopic{Brokers: f.brokers, Topic: kafkaTopic},
		Fields: map[string]string{"page": "url"}}}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	f.fixture = &fixture{client: f.srv.Client(), p: p, s: p.Stream("clicks")}
	f.st = store.New(f.client, p.Name, store.Options{})
	f.publish(t)
	return f
}

// publish writes users 1 and 2 at t0 as a full run of the view.
func (f *kafkaFixture) publish(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	w, err := f.st.Begin(ctx, f.p.View("user_last"), larder.BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 2; id++ {
		if err := w.Put(ctx, larder.Int64Key(id), larder.Row{EventTime: t0, Values: []larder.Value{
			larder.Int64Value(id), larder.StringValue("/batch"), larder.Float64Value(0.5)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Publish(ctx); err != nil {
		t.Fatal(err)
	}
}

// produce writes records to the partitions given, each a key ("" for
// none) and a value.
func (f *kafkaFixture) produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	for _, r := range recs {
		r.Topic = kafkaTopic
	}
	if err := f.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func rec(partition int32, key, value string) *kgo.Record {
	r := &kgo.Record{Partition: partition, Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	return r
}

// consumer returns a consumer of the fixture's stream writing to st.
func (f *kafkaFixture) consumer(st larder.PushStore, batch int) *ingest.KafkaConsumer {
	return &ingest.KafkaConsumer{Client: f.client, Stream: f.s, Store: st, Batch: batch,
		Opts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.FetchMaxWait(100 * time.Millisecond)}}
}

// run starts c; stop ends it and waits until Run has returned.
func run(t testing.TB, c *ingest.KafkaConsumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 60s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func handled(c ingest.Counts) int64 { return c.Written + c.Older + c.Dead }

// committed returns the offsets the group has committed, summed over the
// topic's partitions.
func (f *kafkaFixture) committed(t testing.TB) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).FetchOffsets(context.Background(), f.s.Group)
	if err == nil {
		err = offsets.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	offsets.Each(func(o kadm.OffsetResponse) { n += o.At })
	return n
}

func (f *kafkaFixture) lag(t testing.TB, now time.Time) ingest.Lag {
	t.Helper()
	lag, err := ingest.KafkaLag(context.Background(), f.s, now)
	if err != nil {
		t.Fatal(err)
	}
	return lag
}

// pushStore counts the pushes to a store, and can fail them.
type pushStore struct {
	larder.PushStore
	pushes, fails atomic.Int64
	// crashAt, when > 0, is the push that writes and then fails, as a
	// consumer killed between its write and its commit would; every
	// push after it fails without writing.
	crashAt int64
	// gate, when set, holds every push after the first until it is
	// closed.
	gate chan struct{}
}

func (s *pushStore) Push(ctx context.Context, v *larder.View, rows []larder.PushRow) ([]larder.PushOutcome, error) {
	n := s.pushes.Add(1)
	if s.gate != nil && n > 1 {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.crashAt > 0 && n > s.crashAt {
		s.fails.Add(1)
		return nil, larder.ErrUnavailable
	}
	out, err := s.PushStore.Push(ctx, v, rows)
	if err == nil && n == s.crashAt {
		err = larder.ErrUnavailable
	}
	if err != nil {
		s.fails.Add(1)
	}
	return out, err
}

// TestKafkaIngest applies a topic's records to the view: new and newer
// events are written, an older one is left out, records that can never
// apply go to the dead-letter stream with the reason, and every offset is
// committed.
func TestKafkaIngest(t *testing.T) {
	t.Parallel()
	f := newKafkaFixture(t)
	if lag := f.lag(t, time.Now()); lag != (ingest.Lag{}) {
		t.Fatalf("lag of an empty topic: %+v", lag)
	}
	missing := *f.s
	missing.Kafka = &larder.KafkaTopic{Brokers: f.brokers, Topic: "missing"}
	if lag, err := ingest.KafkaLag(context.Background(), &missing, time.Now()); err != nil || lag != (ingest.Lag{}) {
		t.Fatalf("lag of a topic that does not exist: %+v, %v", lag, err)
	}
	f.produce(t,
		rec(0, "", `{"user_id": 1, "ts": `+ms(t0.Add(time.Minute))+`, "clicks": 10, "url": "/a", "score": 1.5}`),
		rec(1, "", `{"user_id": "2", "ts": "`+t0.Add(-time.Minute).Format(time.RFC3339)+`", "clicks": 20, "url": "/b"}`),
		rec(2, "3", `{"ts": `+ms(t0)+`, "clicks": 30}`), // the key is the record's; no url, no score: null
		rec(0, "", `{"user_id": "x", "ts": `+ms(t0)+`, "clicks": 1}`),
		rec(1, "", `{"user_id": 4, "ts": `+ms(t0)+`, "clicks": "many"}`),
		rec(2, "5", `not json`),
		rec(2, "", `{"user_id": 5, "clicks": 1}`),
	)
	lag := f.lag(t, time.Now().Add(time.Minute))
	if lag.Entries != 7 || lag.Seconds < 59 {
		t.Errorf("lag before any consumer: %+v; want 7 entries, a minute behind", lag)
	}

	c := f.consumer(f.st, 0)
	var batches atomic.Int64
	c.Applied = func(ingest.Counts) { batches.Add(1) }
	stop := run(t, c)
	waitFor(t, "7 records", func() bool { return handled(c.Counts()) >= 7 })
	waitFor(t, "the commits", func() bool { return f.committed(t) == 7 })
	stop()
	if got := c.Counts(); got != (ingest.Counts{Written: 2, Older: 1, Dead: 4}) {
		t.Errorf("counts %+v, want 2 written, 1 older, 4 dead", got)
	}
	if batches.Load() == 0 {
		t.Error("Applied was never called")
	}
	if rows := f.read(t, 1, 2, 3, 4); strings.Join(rows, "|") != `10 "/a"|2 "/batch"|30 null|-` {
		t.Errorf("stored rows %q", rows)
	}

	dead, err := f.client.XRange(context.Background(), f.s.DeadLetter, "-", "+").Result()
	if err != nil || len(dead) != 4 {
		t.Fatalf("dead letters: %v, %v", dead, err)
	}
	reasons := map[string]string{} // by partition/offset
	for _, d := range dead {
		if d.Values["topic"] != kafkaTopic || d.Values["value"] == "" {
			t.Errorf("dead letter %v: want the topic and the value", d.Values)
		}
		at := fmt.Sprint(d.Values["partition"], "/", d.Values["offset"])
		reasons[at] = fmt.Sprint(d.Values["reason"])
		if at == "2/1" && d.Values["key"] != "5" {
			t.Errorf("dead letter %v: want the record's key", d.Values)
		}
	}
	want := map[string]string{
		"0/1": `entity key (field "user_id"): "x" is not an int64`,
		"1/1": `feature clicks (field "clicks"): "many" is not an int64`,
		"2/1": `the record's value is not a JSON object: "not json"`,
		"2/2": `no event time: field "ts" is missing`,
	}
	for at, r := range want {
		if reasons[at] != r {
			t.Errorf("dead letter of partition/offset %s: reason %q, want %q", at, reasons[at], r)
		}
	}
	if lag := f.lag(t, time.Now()); lag != (ingest.Lag{}) {
		t.Errorf("lag after the consumer: %+v; want none", lag)
	}
}

// userEvents returns n events of each of users first..first+users-1, with
// event times that grow with the offset, each user's in one partition as a
// keyed producer would; and the clicks each user ends with.
func userEvents(first, users, n int) ([]*kgo.Record, map[int64]string) {
	var recs []*kgo.Record
	final := map[int64]string{}
	for i := range n {
		for u := first; u < first+users; u++ {
			clicks := strconv.Itoa(1000*u + i)
			recs = append(recs, rec(int32(u%3), strconv.Itoa(u),
				`{"ts": `+ms(t0.Add(time.Duration(i+1)*time.Second))+`, "clicks": `+clicks+`}`))
			final[int64(u)] = clicks + " null"
		}
	}
	return recs, final
}

func (f *kafkaFixture) checkFinal(t *testing.T, final map[int64]string) {
	t.Helper()
	for id, want := range final {
		if got := f.read(t, id)[0]; got != want {
			t.Errorf("user %d: %q, want %q", id, got, want)
		}
	}
}

// TestKafkaIngestRereads stops a consumer after a batch it wrote but
// never committed, as a killed process would: the next consumer of the
// group reads again exactly the records not committed, and every user
// ends with its newest event.
func TestKafkaIngestRereads(t *testing.T) {
	t.Parallel()
	f := newKafkaFixture(t)
	recs, final := userEvents(100, 30, 10)
	f.produce(t, recs...)

	crashing := &pushStore{PushStore: f.st, crashAt: 4}
	a := f.consumer(crashing, 20)
	stopA := run(t, a)
	waitFor(t, "the crash", func() bool { return crashing.fails.Load() >= 1 })
	stopA()
	doneA := handled(a.Counts())
	if doneA == 0 || doneA >= int64(len(recs)) {
		t.Fatalf("the first consumer handled %d of %d records before its crash", doneA, len(recs))
	}
	if c := f.committed(t); c != doneA {
		t.Errorf("committed %d offsets, want the %d records handled", c, doneA)
	}

	b := f.consumer(f.st, 20)
	stopB := run(t, b)
	rest := int64(len(recs)) - doneA
	waitFor(t, "the rest", func() bool { return handled(b.Counts()) >= rest })
	waitFor(t, "the commits", func() bool { return f.committed(t) == int64(len(recs)) })
	stopB()
	if got := handled(b.Counts()); got != rest {
		t.Errorf("the second consumer handled %d records, want the %d not committed", got, rest)
	}
	if got := a.Counts().Written + b.Counts().Written + a.Counts().Older + b.Counts().Older; got != int64(len(recs)) {
		t.Errorf("written and older %d, want %d: each record handled once by a consumer that committed it", got, len(recs))
	}
	f.checkFinal(t, final)
	if lag := f.lag(t, time.Now()); lag != (ingest.Lag{}) {
		t.Errorf("lag after the consumers: %+v; want none", lag)
	}
}

// TestKafkaIngestRedisDown stops Redis under a consumer: it commits
// nothing while the store cannot be written, keeps its batch, and applies
// it once Redis is back.
func TestKafkaIngestRedisDown(t *testing.T) {
	t.Parallel()
	f := newKafkaFixture(t)
	before, _ := userEvents(100, 10, 2)
	f.produce(t, before...)
	st := &pushStore{PushStore: f.st}
	c := f.consumer(st, 0)
	run(t, c)
	waitFor(t, "the first records", func() bool { return handled(c.Counts()) >= int64(len(before)) })
	waitFor(t, "their commits", func() bool { return f.committed(t) == int64(len(before)) })

	f.srv.Stop()
	after, final := userEvents(200, 10, 3)
	f.produce(t, after...)
	// Each failed push takes the Redis client's own retries, about two
	// seconds: one is enough to see that nothing was committed.
	waitFor(t, "a push that fails", func() bool { return st.fails.Load() >= 1 })
	if got := f.committed(t); got != int64(len(before)) {
		t.Errorf("committed %d offsets while Redis was down, want %d", got, len(before))
	}
	if lag := f.lag(t, time.Now()); lag.Entries != int64(len(after)) || lag.Seconds < 0 {
		t.Errorf("lag while Redis is down: %+v, want %d entries", lag, len(after))
	}

	// The restarted Redis is empty: the view is published again.
	f.srv.Restart()
	f.publish(t)
	total := int64(len(before) + len(after))
	waitFor(t, "the records after the outage", func() bool { return handled(c.Counts()) >= total })
	waitFor(t, "their commits", func() bool { return f.committed(t) == total })
	if got := c.Counts(); got != (ingest.Counts{Written: total}) {
		t.Errorf("counts %+v, want %d written", got, total)
	}
	f.checkFinal(t, final)
	if lag := f.lag(t, time.Now()); lag != (ingest.Lag{}) {
		t.Errorf("lag after the outage: %+v; want none", lag)
	}
}

// TestKafkaIngestRebalance has a second consumer join the group while
// the first is writing a batch: the first gives up partitions once its
// batch is written and committed, the second takes them from there, and
// every user ends with its newest event.
func TestKafkaIngestRebalance(t *testing.T) {
	t.Parallel()
	f := newKafkaFixture(t)
	recs, final := userEvents(100, 30, 20)
	f.produce(t, recs...)
	gated := &pushStore{PushStore: f.st, gate: make(chan struct{})}
	a, b := f.consumer(gated, 10), f.consumer(f.st, 10)
	run(t, a)
	waitFor(t, "the first consumer's second batch", func() bool { return gated.pushes.Load() >= 2 })
	run(t, b)
	// The group is stable once the first consumer has been told which
	// partitions it gives up, which it can do only after its batch.
	waitFor(t, "the second consumer to join", func() bool { return f.members(t) == 2 })
	close(gated.gate)
	n := int64(len(recs))
	waitFor(t, "every record", func() bool { return handled(a.Counts())+handled(b.Counts()) >= n })
	waitFor(t, "the commits", func() bool { return f.committed(t) == n })
	if handled(b.Counts()) == 0 {
		t.Error("the second consumer took no partition")
	}
	f.checkFinal(t, final)
	if lag := f.lag(t, time.Now()); lag != (ingest.Lag{}) {
		t.Errorf("lag after the consumers: %+v; want none", lag)
	}
	t.Logf("handled: first %+v, second %+v", a.Counts(), b.Counts())
}

// members returns how many members the group has once it is stable, 0
// while it rebalances.
func (f *kafkaFixture) members(t testing.TB) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	groups, err := kadm.NewClient(cl).DescribeGroups(context.Background(), f.s.Group)
	if err != nil {
		t.Fatal(err)
	}
	g := groups[f.s.Group]
	if g.State != "Stable" {
		return 0
	}
	return len(g.Members)
}

// TestKafkaConsumerNotKafka refuses a stream of a Redis stream.
func TestKafkaConsumerNotKafka(t *testing.T) {
	p := testProject(t)
	c := &ingest.KafkaConsumer{Stream: p.Stream("clicks")}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "not a Kafka topic") {
		t.Errorf("Run on a Redis stream: %v", err)
	}
	if _, err := ingest.KafkaLag(context.Background(), p.Stream("clicks"), time.Now()); err == nil {
		t.Error("KafkaLag on a Redis stream: no error")
	}
}

// BenchmarkKafkaIngest measures the events a consumer applies per second
// from a topic of new rows, in batches of 500.
func BenchmarkKafkaIngest(b *testing.B) {
	f := newKafkaFixture(b)
	recs, _ := userEvents(1000, 5000, 4)
	f.produce(b, recs...)
	b.ResetTimer()
	start := time.Now()
	var applied int64
	for range b.N {
		c := f.consumer(f.st, 500)
		c.Stream = &larder.Stream{}
		*c.Stream = *f.s
		c.Stream.Group = "bench-" + strconv.Itoa(int(applied))
		stop := run(b, c)
		waitFor(b, "every record", func() bool { return handled(c.Counts()) >= int64(len(recs)) })
		stop()
		applied += handled(c.Counts())
	}
	b.ReportMetric(float64(applied)/time.Since(start).Seconds(), "events/s")
}
