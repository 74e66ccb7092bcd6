package ingest_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// testProject has a latest view of users (clicks, page, score) and a
// Redis stream of its events.
func testProject(tb testing.TB) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name:     "ing",
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "ev", Path: "ev.parquet", EventTime: "ts"}},
		Views: []*larder.View{{Name: "user_last", Kind: larder.KindLatest, Entity: "user", Source: "ev", Features: []larder.Feature{
			{Name: "clicks", Type: larder.TypeInt64}, {Name: "page", Type: larder.TypeString}, {Name: "score", Type: larder.TypeFloat64},
		}}},
		Streams: []*larder.Stream{{Name: "clicks", View: "user_last", RedisStream: "events:clicks", Fields: map[string]string{"page": "url"}}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// fixture is a real redis-server with the view published once (users 1
// and 2 at t0).
type fixture struct {
	client redis.UniversalClient
	st     *store.Store
	p      *larder.Project
	s      *larder.Stream
}

func newFixture(t testing.TB) *fixture {
	srv := redistest.Start(t)
	f := &fixture{client: srv.Client(), p: testProject(t)}
	f.s = f.p.Stream("clicks")
	f.st = store.New(f.client, f.p.Name, store.Options{})
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
	return f
}

// add appends an entry of fields (name, value, ...) to the stream.
func (f *fixture) add(t *testing.T, fields ...any) {
	t.Helper()
	if err := f.client.XAdd(context.Background(), &redis.XAddArgs{Stream: f.s.RedisStream, Values: fields}).Err(); err != nil {
		t.Fatal(err)
	}
}

// read returns the stored clicks and page of each user, "-" when none.
func (f *fixture) read(t *testing.T, ids ...int64) []string {
	t.Helper()
	l := larder.Lookup{View: f.p.View("user_last")}
	for _, id := range ids {
		l.Keys = append(l.Keys, larder.Int64Key(id))
	}
	if err := f.st.Read(context.Background(), []*larder.Lookup{&l}); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(ids))
	for i := range ids {
		if !l.Found[i] {
			out[i] = "-"
			continue
		}
		out[i] = fmt.Sprintf("%d %s", l.Rows[i].Values[0].Int64(), l.Rows[i].Values[1].String())
	}
	return out
}

// consume runs a consumer until it has handled n events, then stops it.
func (f *fixture) consume(t *testing.T, c *ingest.RedisConsumer, n int64) ingest.Counts {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := c.Counts()
		if got.Written+got.Older+got.Dead >= n {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("the consumer handled %+v of %d events within 30s", c.Counts(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	return c.Counts()
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// TestRedisIngest applies a stream's entries to the view: new and newer
// events are written, an older one is left out, events that can never
// apply go to the dead-letter stream with the reason, and every entry is
// acknowledged.
func TestRedisIngest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	lag, err := ingest.RedisLag(ctx, f.client, f.s, time.Now())
	if err != nil || lag.Entries != 0 {
		t.Fatalf("lag of an empty stream: %+v, %v", lag, err)
	}
	f.add(t, "user_id", "1", "ts", ms(t0.Add(time.Minute)), "clicks", "10", "url", "/a", "score", "1.5")
	f.add(t, "user_id", "2", "ts", t0.Add(-time.Minute).Format(time.RFC3339), "clicks", "20", "url", "/b")
	f.add(t, "user_id", "3", "ts", ms(t0), "clicks", "30") // no url, no score: null
	f.add(t, "user_id", "x", "ts", ms(t0), "clicks", "1")
	f.add(t, "user_id", "4", "ts", ms(t0), "clicks", "many")
	f.add(t, "user_id", "5", "clicks", "1")
	lag, err = ingest.RedisLag(ctx, f.client, f.s, time.Now().Add(time.Minute))
	if err != nil || lag.Entries != 6 || lag.Seconds < 59 {
		t.Errorf("lag before any consumer: %+v, %v; want 6 entries, a minute behind", lag, err)
	}

	c := &ingest.RedisConsumer{Client: f.client, Stream: f.s, Store: f.st, Name: "c1", Block: 50 * time.Millisecond}
	got := f.consume(t, c, 6)
	if got != (ingest.Counts{Written: 2, Older: 1, Dead: 3}) {
		t.Errorf("counts %+v, want 2 written, 1 older, 3 dead", got)
	}
	if rows := f.read(t, 1, 2, 3, 4); strings.Join(rows, "|") != `10 "/a"|2 "/batch"|30 null|-` {
		t.Errorf("stored rows %q", rows)
	}
	dead, err := f.client.XRange(ctx, f.s.DeadLetter, "-", "+").Result()
	if err != nil || len(dead) != 3 {
		t.Fatalf("dead letters: %v, %v", dead, err)
	}
	for i, want := range []string{`entity key (field "user_id"): "x" is not an int64`, `feature clicks (field "clicks"): "many" is not an int64`, `no event time: field "ts" is missing`} {
		if r := dead[i].Values["reason"]; r != want || dead[i].Values["stream"] != f.s.RedisStream || dead[i].Values["id"] == "" {
			t.Errorf("dead letter %d: %v, want reason %q", i, dead[i].Values, want)
		}
	}
	pending, err := f.client.XPending(ctx, f.s.RedisStream, f.s.Group).Result()
	if err != nil || pending.Count != 0 {
		t.Errorf("pending after the consumer: %+v, %v; want none", pending, err)
	}
	lag, err = ingest.RedisLag(ctx, f.client, f.s, time.Now())
	if err != nil || lag.Entries != 0 || lag.Seconds != 0 || lag.Pending != 0 {
		t.Errorf("lag after the consumer: %+v, %v; want none", lag, err)
	}
}

// TestRedisIngestClaims leaves entries pending with a consumer that
// read them and died: the next consumer claims and applies them, and
// every entry is applied once.
func TestRedisIngestClaims(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 100 {
		f.add(t, "user_id", strconv.Itoa(100+i), "ts", ms(t0), "clicks", strconv.Itoa(i))
	}
	if err := f.client.XGroupCreateMkStream(ctx, f.s.RedisStream, f.s.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// The dead consumer reads 40 entries and never acknowledges them.
	res, err := f.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: f.s.Group, Consumer: "dead", Streams: []string{f.s.RedisStream, ">"}, Count: 40}).Result()
	if err != nil || len(res[0].Messages) != 40 {
		t.Fatalf("the dead consumer's read: %v, %v", res, err)
	}
	c := &ingest.RedisConsumer{Client: f.client, Stream: f.s, Store: f.st, Name: "c2", Block: 20 * time.Millisecond, ClaimIdle: 50 * time.Millisecond}
	got := f.consume(t, c, 100)
	if got != (ingest.Counts{Written: 100}) {
		t.Errorf("counts %+v, want 100 written, each once", got)
	}
	ids := make([]int64, 100)
	for i := range ids {
		ids[i] = int64(100 + i)
	}
	for i, r := range f.read(t, ids...) {
		if r != fmt.Sprintf("%d null", i) {
			t.Errorf("user %d: %q", 100+i, r)
		}
	}
	pending, err := f.client.XPending(ctx, f.s.RedisStream, f.s.Group).Result()
	if err != nil || pending.Count != 0 {
		t.Errorf("pending after the claim: %+v, %v; want none", pending, err)
	}
}

// TestRedisIngestReplay applies a stream, then replays it from its start
// with a new consumer group: no value moves back in time, and the counts
// show every replayed event found the same or a newer row stored.
func TestRedisIngestReplay(t *testing.T) {
	f := newFixture(t)
	// User 10 gets events out of order; the newest (t0+3m) must stay.
	for i, at := range []time.Duration{time.Minute, 3 * time.Minute, 2 * time.Minute} {
		f.add(t, "user_id", "10", "ts", ms(t0.Add(at)), "clicks", strconv.Itoa(i), "url", fmt.Sprintf("/%d", i))
	}
	f.add(t, "user_id", "11", "ts", ms(t0), "clicks", "7")
	c := &ingest.RedisConsumer{Client: f.client, Stream: f.s, Store: f.st, Name: "c1", Block: 20 * time.Millisecond}
	if got := f.consume(t, c, 4); got != (ingest.Counts{Written: 3, Older: 1}) {
		t.Errorf("first pass: %+v, want 3 written, 1 older", got)
	}
	before := f.read(t, 10, 11)
	if strings.Join(before, "|") != `1 "/1"|7 null` {
		t.Fatalf("after the first pass: %q", before)
	}
	// Replay from the start, as a new group.
	s := *f.s
	s.Group = "replay"
	c2 := &ingest.RedisConsumer{Client: f.client, Stream: &s, Store: f.st, Name: "c2", Block: 20 * time.Millisecond}
	got := f.consume(t, c2, 4)
	if after := f.read(t, 10, 11); strings.Join(after, "|") != strings.Join(before, "|") {
		t.Errorf("the replay moved values: %q, before %q", after, before)
	}
	// The replayed events of user 10 at t0+1m and t0+2m are older than
	// the stored t0+3m; those at the stored event time rewrite the same row.
	if got.Older != 2 || got.Written != 2 || got.Dead != 0 {
		t.Errorf("replay counts %+v, want 2 older and 2 rewritten with the same row", got)
	}
}

// TestRedisIngestBadTimes sends an event from the future to the
// dead-letter stream with the reason, so that the real events of the same
// entity after it are written, not left out as older; and an event whose
// time is in seconds, which is not counted older than every stored row.
func TestRedisIngestBadTimes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.add(t, "user_id", "8", "ts", "2999-01-01T00:00:00Z", "clicks", "1", "url", "/future")
	f.add(t, "user_id", "9", "ts", "99999999999999", "clicks", "1", "url", "/future")
	f.add(t, "user_id", "8", "ts", ms(t0.Add(time.Minute)), "clicks", "2", "url", "/real")
	f.add(t, "user_id", "9", "ts", ms(t0.Add(time.Minute)), "clicks", "3", "url", "/real")
	f.add(t, "user_id", "1", "ts", strconv.FormatInt(t0.Add(time.Minute).Unix(), 10), "clicks", "4", "url", "/seconds")
	c := &ingest.RedisConsumer{Client: f.client, Stream: f.s, Store: f.st, Name: "c1", Block: 20 * time.Millisecond}
	if got := f.consume(t, c, 5); got != (ingest.Counts{Written: 2, Dead: 3}) {
		t.Errorf("counts %+v, want 2 written, 3 dead", got)
	}
	if rows := f.read(t, 8, 9); strings.Join(rows, "|") != `2 "/real"|3 "/real"` {
		t.Errorf("stored rows %q, want the real events", rows)
	}
	dead, err := f.client.XRange(ctx, f.s.DeadLetter, "-", "+").Result()
	if err != nil || len(dead) != 3 {
		t.Fatalf("dead letters: %v, %v", dead, err)
	}
	for i, want := range []string{
		`event time (field "ts"): 2999-01-01T00:00:00Z is more than 1m0s past the clock of larder ingest`,
		`event time (field "ts"): 5138-11-16T09:46:39.999Z is more than 1m0s past the clock of larder ingest`,
		`event time (field "ts"): 1777636860 looks like seconds since the Unix epoch`,
	} {
		if r, _ := dead[i].Values["reason"].(string); !strings.HasPrefix(r, want) {
			t.Errorf("dead letter %d: reason %q, want %q…", i, r, want)
		}
	}
}

// TestRedisConsumerRefusesDeadLetterLoop refuses to start on a stream
// whose dead-letter stream is the stream itself: it would read its dead
// letters back, and dead-letter them again without end.
func TestRedisConsumerRefusesDeadLetterLoop(t *testing.T) {
	s := *testProject(t).Stream("clicks")
	s.DeadLetter = s.RedisStream
	c := &ingest.RedisConsumer{Stream: &s, Block: 20 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Run(ctx)
	want := `stream clicks: its dead-letter stream is its own redis_stream, events:clicks`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Run = %v, want an error with %q", err, want)
	}
}

// TestRedisIngestHostClockBehind runs larder ingest on a host whose clock
// is an hour behind Redis's and the producers': an event of now is
// written, by Redis's clock; one ten minutes ahead goes to the dead-letter
// stream, by Redis's clock too, even when its entry's id was set a century
// ahead (an id is not a clock: a producer may choose it, and every id
// Redis makes after it is as far ahead).
func TestRedisIngestHostClockBehind(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	f.add(t, "user_id", "8", "ts", ms(now), "clicks", "2", "url", "/now")
	f.add(t, "user_id", "9", "ts", ms(now.Add(10*time.Minute)), "clicks", "3", "url", "/future")
	if err := f.client.XAdd(ctx, &redis.XAddArgs{Stream: f.s.RedisStream, ID: "4102444800000-0",
		Values: []any{"user_id", "10", "ts", ms(now.Add(10 * time.Minute)), "clicks", "4", "url", "/future"}}).Err(); err != nil {
		t.Fatal(err)
	}
	f.add(t, "user_id", "11", "ts", ms(now.Add(10*time.Minute)), "clicks", "5", "url", "/future")
	c := &ingest.RedisConsumer{Client: f.client, Stream: f.s, Store: f.st, Name: "c1", Block: 20 * time.Millisecond}
	ingest.SetRedisClock(c, func() time.Time { return time.Now().Add(-time.Hour) })
	if got := f.consume(t, c, 4); got != (ingest.Counts{Written: 1, Dead: 3}) {
		t.Errorf("counts %+v, want 1 written, 3 dead", got)
	}
	if rows := f.read(t, 8, 9, 10, 11); strings.Join(rows, "|") != `2 "/now"|-|-|-` {
		t.Errorf("stored rows %q, want the event of now alone", rows)
	}
	dead, err := f.client.XRange(ctx, f.s.DeadLetter, "-", "+").Result()
	if err != nil || len(dead) != 3 {
		t.Fatalf("dead letters: %v, %v", dead, err)
	}
	for i, d := range dead {
		if r, _ := d.Values["reason"].(string); !strings.Contains(r, "is more than 1m0s past the clock of Redis") {
			t.Errorf("dead letter %d: reason %q, want it refused by Redis's clock", i, r)
		}
	}
}

// TestRedisLagNewGroup reads the lag of a group that has read nothing
// yet, over a stream longer than the 10,000 entries a count by XRANGE
// stops at: it is the server's count, the whole stream.
func TestRedisLagNewGroup(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 12_000
	pipe := f.client.Pipeline()
	for range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: f.s.RedisStream, Values: []any{"user_id", "1", "ts", ms(t0)}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.client.XGroupCreate(ctx, f.s.RedisStream, f.s.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	lag, err := ingest.RedisLag(ctx, f.client, f.s, time.Now())
	if err != nil || lag.Entries != n {
		t.Errorf("lag of a new group: %+v, %v; want %d entries", lag, err, n)
	}
}
