package main

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
	"github.com/larder-dev/larder/redistest"
)

const ingestViews = `  - name: user_last
    kind: latest
    entity: user
    source: events
    features:
      - {name: x, type: float64}
      - {name: n, type: int64}
streams:
  - name: clicks
    view: user_last
    redis_stream: clicks
`

// TestIngestKilled SIGKILLs a `larder ingest` process while it applies a
// stream, then starts another: it claims what the dead one left pending,
// and at the end every event is applied, with its value, none is pending
// and none went to the dead-letter stream.
func TestIngestKilled(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	if testing.Short() {
		t.Skip("starts larder processes")
	}
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "", ingestViews, 200, 20)
	mustSucceed(t, sp.larder(t, "materialize", "user_last"), "materialize")
	client := srv.Client()
	ctx := context.Background()
	const events = 30_000
	now := time.Now()
	for lo := 0; lo < events; lo += 1000 {
		pipe := client.Pipeline()
		for i := lo; i < lo+1000; i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: "clicks", Values: []any{
				"user_id", strconv.Itoa(1_000_000 + i), "ts", strconv.FormatInt(now.UnixMilli(), 10), "n", strconv.Itoa(i), "x", "0.5"}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s := sp.p.Stream("clicks")
	lag := redisLagOf(t, client, s)

	views := mustOutput(t, sp.larder(t, "views"))
	if !strings.Contains(views, "STREAM LAG") || !strings.Contains(views, "clicks 30000 (") {
		t.Errorf("larder views does not show the stream's lag:\n%s", views)
	}
	first := sp.start(t, "ingest", "--claim-idle", "300ms", "--status-every", "1h")
	waitFor(t, 60*time.Second, "the first ingest to apply some events", func() (string, bool) {
		l := lag()
		return "", l.Entries < events-2000
	})
	first.stop(t, syscall.SIGKILL)
	atKill := lag()
	t.Logf("killed with %d entries not delivered and %d pending", atKill.Entries, atKill.Pending)

	second := sp.start(t, "ingest", "--claim-idle", "300ms", "--status-every", "1h")
	waitFor(t, 120*time.Second, "the second ingest to apply the rest", func() (string, bool) {
		l := lag()
		return "", l.Entries == 0 && l.Pending == 0
	})
	second.stop(t, syscall.SIGTERM)
	if out := mustOutput(t, sp.larder(t, "views", "--json")); !strings.Contains(out, `"streams":[{"stream":"clicks","source":"redis stream clicks","lag_entries":0,"lag_seconds":0,"pending":0}]`) {
		t.Errorf("larder views --json does not show the stream caught up:\n%s", out)
	}
	if !strings.Contains(second.out.String(), "claimed entries a consumer left pending") && atKill.Pending > 0 {
		t.Errorf("the second ingest did not say it claimed the dead one's entries:\n%s", second.out.String())
	}

	st := sp.store(t)
	v := sp.p.View("user_last")
	l := &larder.Lookup{View: v}
	for i := range events {
		l.Keys = append(l.Keys, larder.Int64Key(int64(1_000_000+i)))
	}
	if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
		t.Fatal(err)
	}
	missing, wrong := 0, 0
	for i := range events {
		switch {
		case !l.Found[i]:
			missing++
		case l.Rows[i].Values[1].Int64() != int64(i):
			wrong++
		}
	}
	if missing > 0 || wrong > 0 {
		t.Errorf("%d of %d events missing, %d with another value", missing, events, wrong)
	}
	if n := client.XLen(ctx, s.DeadLetter).Val(); n != 0 {
		t.Errorf("%d events in the dead-letter stream, want none", n)
	}
}

const ingestTileViews = `  - name: user_clicks
    kind: aggregate
    entity: user
    source: events
    max_age: 1h
    tile: 1m
    aggregations:
      - {column: n, type: int64, functions: [count, sum], windows: [5m, 15m, 1h]}
      - {name: clicks, functions: [count], windows: [5m, 1h]}
streams:
  - name: clicks
    view: user_clicks
    redis_stream: clicks
`

// tileClick is one event of TestIngestKilledStreamingAggregate: its
// entity, time, and its n (nil when the entry has no field n).
type tileClick struct {
	user int64
	at   time.Time
	n    *int64
}

// TestIngestKilledStreamingAggregate SIGKILLs `larder ingest` processes
// while they add a stream's events to the tiles of a streaming aggregate
// view, one after another, until a kill lands between a batch's write and
// its acknowledgement; then two more, side by side, claim what the dead
// ones left pending and apply the rest. At the end every entity's windowed
// counts and sums, read as of the answer's T, are those of the events
// written, each counted once, and none went to the dead-letter stream.
func TestIngestKilledStreamingAggregate(t *testing.T) {
	t.Parallel() // mostly waiting on child processes and servers
	if testing.Short() {
		t.Skip("starts larder processes")
	}
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "", ingestTileViews, 200, 20)
	// The run's cutoff C is half an hour back, so that the stream's
	// events, after C, spread over closed tiles and the windows' edges.
	cut := time.Now().Add(-30 * time.Minute).Truncate(time.Minute)
	r := sp.larder(t, "materialize", "user_clicks", "--as-of", cut.UTC().Format(time.RFC3339))
	mustSucceed(t, r, "materialize")
	// The source holds events up to a minute ago: the cutoff is the as-of.
	if want := ", cutoff " + cut.UTC().Format(time.RFC3339) + " (the stream fills in after it)\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("materialize printed\n%s\nwant it to end with %q", r.stdout, want)
	}
	client := srv.Client()
	ctx := context.Background()

	// Events of users the batch has not (1000..1039), after C and at
	// least a tile before now: a third on a tile's end, a third just
	// after one, a sixth without n.
	const events, users = 60_000, 40
	rng := rand.New(rand.NewPCG(7, 11))
	span := time.Now().Add(-time.Minute).Sub(cut)
	clicks := make([]tileClick, events)
	for i := range clicks {
		c := tileClick{user: 1000 + rng.Int64N(users)}
		switch i % 3 {
		case 0:
			c.at = cut.Add(time.Duration(1+rng.Int64N(span.Milliseconds())) * time.Millisecond)
		case 1:
			c.at = cut.Add(time.Duration(1+rng.Int64N(int64(span/time.Minute))) * time.Minute)
		default:
			c.at = cut.Add(time.Duration(rng.Int64N(int64(span/time.Minute)))*time.Minute + time.Millisecond)
		}
		if rng.IntN(6) > 0 {
			n := rng.Int64N(2000) - 500
			c.n = &n
		}
		clicks[i] = c
	}
	for lo := 0; lo < events; lo += 1000 {
		pipe := client.Pipeline()
		for _, c := range clicks[lo : lo+1000] {
			fields := []any{"user_id", strconv.FormatInt(c.user, 10), "ts", strconv.FormatInt(c.at.UnixMilli(), 10)}
			if c.n != nil {
				fields = append(fields, "n", strconv.FormatInt(*c.n, 10))
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: "clicks", Values: fields})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s := sp.p.Stream("clicks")
	lag := redisLagOf(t, client, s)

	st := sp.store(t)
	v := sp.p.View("user_clicks")
	feats := v.AggregateFeatures()
	read := func() *larder.Lookup {
		l := &larder.Lookup{View: v}
		for u := range int64(users) {
			l.Keys = append(l.Keys, larder.Int64Key(1000+u))
		}
		if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
			t.Fatal(err)
		}
		return l
	}
	// applied returns how many events the tiles hold: all are in the 1h
	// window of the count of events.
	clicks1h := slices.IndexFunc(feats, func(af larder.AggregateFeature) bool {
		return v.Aggregations[af.Aggregation].Column == "" && af.Window.Duration == time.Hour
	})
	applied := func() int64 {
		l := read()
		n := int64(0)
		for j := range l.Keys {
			if l.Found[j] {
				n += l.Rows[j].Values[clicks1h].Int64()
			}
		}
		return n
	}

	// A kill lands before a batch's tiles are written (the batch is then
	// applied again), or after, before its entries are acknowledged (they
	// are claimed, and their events must not count twice). The first
	// process is killed once the lag shows progress, at whatever point of
	// a batch it is; the next ones as soon as the store writes tiles (a
	// keyspace notification of an HSET, which Redis sends as it runs the
	// EXEC, about when the process gets the reply), until a kill lands
	// after the write, or 8 have.
	if err := client.ConfigSet(ctx, "notify-keyspace-events", "Kh").Err(); err != nil {
		t.Fatal(err)
	}
	var atKill ingest.Lag
	afterWrite := false
	for kill := 1; kill <= 8 && !afterWrite; kill++ {
		from := lag()
		p := sp.start(t, "ingest", "--claim-idle", "300ms", "--status-every", "1h")
		waitFor(t, 60*time.Second, "an ingest to apply some events", func() (string, bool) {
			l := lag()
			return "", l.Entries <= from.Entries-500 && l.Pending > 0
		})
		if kill > 1 {
			ps := client.PSubscribe(ctx, "__keyspace@*__:*{user_clicks:*}:t")
			for {
				m, err := ps.ReceiveTimeout(ctx, 60*time.Second)
				if err != nil {
					t.Fatalf("waiting for a write of the tiles: %v", err)
				}
				if _, ok := m.(*redis.Message); ok {
					break
				}
			}
			p.stop(t, syscall.SIGKILL)
			ps.Close()
		} else {
			p.stop(t, syscall.SIGKILL)
		}
		atKill = lag()
		acked := events - atKill.Entries - atKill.Pending
		n := applied()
		afterWrite = n > acked
		t.Logf("kill %d: %d entries not delivered and %d pending; %d events in the tiles, %d acknowledged",
			kill, atKill.Entries, atKill.Pending, n, acked)
	}
	if !afterWrite {
		t.Log("no kill landed between a batch's write and its acknowledgement")
	}

	// Two processes side by side take over and apply the rest: they
	// write the same entities, so that some of their transactions are
	// refused and they write with the compare-and-set script instead.
	if err := client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var rest []*proc
	for range 2 {
		rest = append(rest, sp.start(t, "ingest", "--claim-idle", "300ms", "--status-every", "1h"))
	}
	waitFor(t, 120*time.Second, "the last ingest processes to apply the rest", func() (string, bool) {
		l := lag()
		return "", l.Entries == 0 && l.Pending == 0
	})
	out := ""
	for _, p := range rest {
		p.stop(t, syscall.SIGTERM)
		out += p.out.String()
	}
	if !strings.Contains(out, "claimed entries a consumer left pending") && atKill.Pending > 0 {
		t.Errorf("no ingest said it claimed the dead ones' entries:\n%s", out)
	}
	calls := "0"
	if m := regexp.MustCompile(`cmdstat_evalsha:calls=(\d+)`).FindStringSubmatch(client.Info(ctx, "commandstats").Val()); m != nil {
		calls = m[1]
	}
	t.Logf("the last processes called the compare-and-set script %s times", calls)
	if n := client.XLen(ctx, s.DeadLetter).Val(); n != 0 {
		t.Errorf("%d events in the dead-letter stream, want none", n)
	}

	// Windows are whole tiles ending at T, so an event counts in window w
	// when its time is in (T - w, T].
	l := read()
	T := l.TileTime
	if T.IsZero() {
		t.Fatal("the read of a streaming aggregate view has no tile time")
	}
	wrong := 0
	for j, k := range l.Keys {
		if !l.Found[j] {
			t.Errorf("user %s: no row", k)
			continue
		}
		for f, af := range feats {
			var count, sum int64
			for _, c := range clicks {
				if c.user != k.Int64() || !c.at.After(T.Add(-af.Window.Duration)) || c.at.After(T) {
					continue
				}
				if v.Aggregations[af.Aggregation].Column == "" {
					count++
				} else if c.n != nil {
					count++
					sum += *c.n
				}
			}
			want := larder.Int64Value(count)
			if af.Func == larder.AggSum {
				want = larder.Int64Value(sum)
				if count == 0 {
					want = larder.Null
				}
			}
			if got := l.Rows[j].Values[f]; !got.Equal(want) {
				if wrong++; wrong <= 10 {
					t.Errorf("user %s %s as of %s: got %v, want %v", k, v.Features[f].Name, T.Format(time.RFC3339), got, want)
				}
			}
		}
	}
	if wrong > 10 {
		t.Errorf("%d values wrong in all", wrong)
	}
}

// redisLagOf returns a function that reads the lag of stream s on client
// now, failing t when it cannot.
func redisLagOf(t *testing.T, client *redis.Client, s *larder.Stream) func() ingest.Lag {
	return func() ingest.Lag {
		t.Helper()
		l, err := ingest.RedisLag(t.Context(), client, s, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
}

// TestIngestDeadLetterLoop refuses, in validate and in ingest, a stream
// whose dead-letter stream is the stream itself, at its place in the file.
func TestIngestDeadLetterLoop(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "larder.yaml")
	yaml := `project: loop
redis:
  addresses: ["127.0.0.1:1"]
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: events, path: data/events.parquet, event_time: ts}
views:
` + ingestViews + `    dead_letter: clicks
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	want := cfg + `:20:18: streams[0].dead_letter: "clicks" is the stream's own redis_stream: ingest would read its dead letters back and send them to it again without end; leave dead_letter out for the default, clicks:dead`
	for _, args := range [][]string{{"validate", "--offline"}, {"ingest"}} {
		r := larderAt(t, t.Context(), t0, append([]string{"-c", cfg}, args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("larder %s: exit code %d, stderr:\n%s\nwant %s", args[0], r.code, r.stderr, want)
		}
	}
}

// TestIngestDurationFlags checks that ingest refuses a --status-every or
// --claim-idle that is not positive before it starts a consumer, naming
// the flag: a ticker of no interval cannot run, and an idle time of zero
// would take entries from a consumer still applying them.
func TestIngestDurationFlags(t *testing.T) {
	t.Parallel()
	config := filepath.Join(t.TempDir(), "larder.yaml") // never read
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--status-every", "0s"}, "--status-every 0s: want a positive duration, such as 10s"},
		{[]string{"--status-every", "-1s"}, "--status-every -1s: want a positive duration, such as 10s"},
		{[]string{"--claim-idle", "0s"}, "--claim-idle 0s: want a positive duration, such as 30s"},
		{[]string{"--claim-idle", "-5s"}, "--claim-idle -5s: want a positive duration, such as 30s"},
	} {
		r := larderAt(t, t.Context(), time.Now(), append([]string{"-c", config, "ingest"}, tc.flags...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("ingest %s: exit %d, %q; want an error containing %q", strings.Join(tc.flags, " "), r.code, r.stderr, tc.want)
		}
	}
}

// TestIngestMetricsListenTaken checks that ingest, whose metrics endpoint
// is set by --metrics-listen alone, names only that flag when the address
// is taken: it does not read server.metrics_listen.
func TestIngestMetricsListenTaken(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "", ingestViews, 10, 5)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	r := sp.larder(t, "ingest", "--metrics-listen", taken.Addr().String())
	if r.code == 0 || !strings.Contains(r.stderr, "pass another --metrics-listen") || strings.Contains(r.stderr, "server.metrics_listen") {
		t.Errorf("ingest on a taken --metrics-listen: exit %d, %q; want the flag named, and not server.metrics_listen, which ingest does not read", r.code, r.stderr)
	}
}

// TestIngestKafkaCAMissing stops ingest as it starts when a Kafka
// stream's ca_file cannot be read, naming the file, the stream and the
// setting, rather than starting a consumer that cannot connect.
func TestIngestKafkaCAMissing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "", ingestViews+`  - name: orders
    view: user_last
    kafka:
      brokers: ["127.0.0.1:9"]
      topic: orders
      tls: {ca_file: certs/ca.pem}
    group: larder-orders
`, 10, 5)
	r := sp.larder(t, "ingest", "orders")
	want := sp.config + ": stream orders: kafka.tls.ca_file: open " + filepath.Join(sp.dir, "certs", "ca.pem") + ": no such file or directory"
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("ingest with a missing ca_file: exit %d, %q; want an error saying %q", r.code, r.stderr, want)
	}
}

// TestClearPassword warns of a Kafka stream that sends its password in
// clear text, and of no other.
func TestClearPassword(t *testing.T) {
	plain := &larder.KafkaSASL{Mechanism: larder.SASLPlain, Username: "u", Password: "s3cret"}
	scram := &larder.KafkaSASL{Mechanism: larder.SASLScramSHA512, Username: "u", Password: "p"}
	for _, tc := range []struct {
		name string
		k    *larder.KafkaTopic
		warn bool
	}{
		{"PLAIN without TLS", &larder.KafkaTopic{Brokers: []string{"k:9092"}, SASL: plain}, true},
		{"PLAIN over TLS", &larder.KafkaTopic{Brokers: []string{"k:9092"}, SASL: plain, TLS: &larder.KafkaTLS{}}, false},
		{"SCRAM without TLS", &larder.KafkaTopic{Brokers: []string{"k:9092"}, SASL: scram}, false},
		{"no SASL", &larder.KafkaTopic{Brokers: []string{"k:9092"}}, false},
		{"a Redis stream", nil, false},
	} {
		got := clearPassword(&larder.Stream{Name: "orders", Kafka: tc.k})
		if tc.warn != (got != "") {
			t.Errorf("%s: warning %q, want one: %v", tc.name, got, tc.warn)
		}
		if tc.warn && (!strings.Contains(got, "stream orders") || !strings.Contains(got, "k:9092") || strings.Contains(got, "s3cret")) {
			t.Errorf("%s: warning %q should name the stream and the broker, and not the password", tc.name, got)
		}
	}
}

// TestIngestEveryStreamStopped checks that ingest ends with an error, and
// the reason of each stream, once the consumer of every stream it runs has
// stopped (here a Kafka cluster that refuses the stream's password), rather
// than run on with nothing to do, looking healthy to its supervisor; and
// that while one stream still runs, a stopped one shows in the status
// lines with its reason.
func TestIngestEveryStreamStopped(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"),
		kfake.EnableSASL(), kfake.Superuser(larder.SASLScramSHA256, "larder", "right"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	t.Setenv("LARDER_TEST_KAFKA_PASSWORD", "pw-9f3kq")
	srv := redistest.Start(t)
	sp := newSchedProject(t, srv.Addr, "", ingestViews+`  - name: orders
    view: user_last
    kafka:
      brokers: ["`+cluster.ListenAddrs()[0]+`"]
      topic: orders
      sasl: {mechanism: SCRAM-SHA-256, username: larder, password_env: LARDER_TEST_KAFKA_PASSWORD}
    group: larder-orders
`, 10, 5)
	refused := "stream orders: kafka broker " + cluster.ListenAddrs()[0] + " refused user larder (SASL SCRAM-SHA-256)"

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	var stdout, stderr strings.Builder
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: time.Now}
	code := a.run(ctx, []string{"-c", sp.config, "ingest", "orders"})
	if code == 0 || ctx.Err() != nil || !strings.Contains(stderr.String(), refused) || !strings.Contains(stderr.String(), "every stream stopped") {
		t.Fatalf("ingest of a refused stream alone: exit %d after %s, stderr:\n%s\nwant an exit with an error saying %q and that every stream stopped",
			code, time.Since(start).Round(time.Millisecond), stderr.String(), refused)
	}
	if strings.Contains(stderr.String()+stdout.String(), "pw-9f3kq") {
		t.Errorf("the password shows in ingest's output:\n%s", stderr.String())
	}

	// With a stream that still runs, ingest goes on, and says which
	// stream stopped, and why, in its status lines.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	a = &app{stdin: strings.NewReader(""), stdout: &out, stderr: &out, now: time.Now}
	done := make(chan int, 1)
	go func() { done <- a.run(ctx, []string{"-c", sp.config, "ingest", "--status-every", "100ms"}) }()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), "orders: stopped: "+refused) {
		if time.Now().After(deadline) {
			t.Fatalf("no status line of the stopped stream in a minute; output:\n%s", out.String())
		}
		select {
		case code := <-done:
			t.Fatalf("ingest with a stream still running ended (exit %d); output:\n%s", code, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("ingest stopped by its context: exit %d; output:\n%s", code, out.String())
	}
}

// TestIngestStoppedGauge checks larder_ingest_stopped: 0 for a stream whose
// consumer runs, 1 for one whose consumer stopped, whether or not its lag
// can be read.
func TestIngestStoppedGauge(t *testing.T) {
	t.Parallel()
	noLag := func(context.Context, time.Time) (ingest.Lag, error) { return ingest.Lag{}, errors.New("unreachable") }
	running := &streamConsumer{Stream: &larder.Stream{Name: "clicks"}, lag: noLag}
	stopped := &streamConsumer{Stream: &larder.Stream{Name: "orders"}, lag: noLag}
	stopped.stop(errors.New("stream orders: refused"))
	ing := &ingesting{a: &app{now: time.Now}, consumers: []*streamConsumer{running, stopped}}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(&lagCollector{ing: ing}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()+"{"+m.GetLabel()[0].GetValue()+"}"] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"larder_ingest_stopped{clicks}": 0, "larder_ingest_stopped{orders}": 1}
	if !maps.Equal(got, want) {
		t.Errorf("gauges %v, want %v", got, want)
	}
}
