package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder/config"
)

const streamsProject = `project: shop
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: ev, path: ev.parquet, event_time: ts}
views:
  - name: user_last
    kind: latest
    entity: user
    source: ev
    features:
      - {name: clicks, type: int64}
      - {name: page, type: string, column: url}
  - name: user_stats
    kind: aggregate
    entity: user
    source: ev
    aggregations:
      - {column: clicks, type: int64, functions: [count], windows: [1h]}
`

// TestParseStreams reads a Redis and a Kafka stream, with their defaults.
func TestParseStreams(t *testing.T) {
	p, err := config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - name: clicks
    view: user_last
    redis_stream: events:clicks
    fields: {clicks: n_clicks}
  - name: from_kafka
    view: user_last
    kafka:
      brokers: ["127.0.0.1:9092"]
      topic: clicks
    group: g1
    key: uid
    event_time: at
`))
	if err != nil {
		t.Fatal(err)
	}
	r, k := p.Stream("clicks"), p.Stream("from_kafka")
	if r == nil || k == nil {
		t.Fatalf("streams %+v", p.Streams)
	}
	if r.Transport() != "redis" || r.RedisStream != "events:clicks" || r.Group != "larder-shop" || r.Key != "user_id" || r.EventTime != "ts" ||
		r.DeadLetter != "events:clicks:dead" || r.ViewDef() != p.View("user_last") {
		t.Errorf("redis stream: %+v", r)
	}
	v := p.View("user_last")
	if r.FieldOf(v.Features[0]) != "n_clicks" || r.FieldOf(v.Features[1]) != "url" {
		t.Errorf("fields: %s, %s; want n_clicks, url", r.FieldOf(v.Features[0]), r.FieldOf(v.Features[1]))
	}
	if k.Transport() != "kafka" || k.Kafka.Topic != "clicks" || k.Kafka.Brokers[0] != "127.0.0.1:9092" || k.Group != "g1" || k.Key != "uid" || k.EventTime != "at" ||
		k.DeadLetter != "larder:shop:dead:from_kafka" {
		t.Errorf("kafka stream: %+v %+v", k, k.Kafka)
	}
}

// TestParseBadStreams reports every problem of streams, each at its place.
func TestParseBadStreams(t *testing.T) {
	_, err := config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - name: a
    view: user_last
    fields: {nope: x, page: ""}
  - name: a
    view: user_stats
    redis_stream: s
  - name: c
    view: user_lost
    redis_stream: s
    kafka: {topic: t}
`))
	text := strings.Join(problemLines(t, err), "\n")
	for _, want := range []string{
		`larder.yaml:21:5: streams[0]: needs redis_stream (the key of a Redis stream) or kafka (brokers and topic)`,
		`streams[0].fields.nope: view "user_last" has no feature "nope" (known: clicks, page)`,
		`streams[0].fields.page: is empty`,
		`streams[1].name: duplicate stream "a"`,
		`streams[2].kafka: a stream reads redis_stream or kafka, not both`,
		`streams[2].view: unknown view "user_lost" (known: user_last, user_stats)`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no problem %q in:\n%s", want, text)
		}
	}
}

// TestParseKafkaBrokerReadAsMapping quotes a broker that YAML read as a
// mapping of host to port, as it does with host:port inside { }.
func TestParseKafkaBrokerReadAsMapping(t *testing.T) {
	_, err := config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - name: from_kafka
    view: user_last
    kafka: {brokers: [kafka-1:9092], topic: clicks}
`))
	want := `larder.yaml:23:23: streams[0].kafka.brokers[0]: want a host:port address; got a mapping of kafka-1 to 9092 (YAML reads an unquoted host:port as one here): write it quoted: "kafka-1:9092"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Parse = %v\nwant %s", err, want)
	}
}

// TestParseAggregateStreams checks a stream that feeds an aggregate view:
// its fields name aggregated columns, every window is a multiple of the
// view's tile, count_distinct is refused, and only aggregate views take a
// tile.
func TestParseAggregateStreams(t *testing.T) {
	const project = `project: shop
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: ev, path: ev.parquet, event_time: ts}
views:
  - name: user_last
    kind: latest
    entity: user
    source: ev
    tile: 1m
    features:
      - {name: clicks, type: int64}
  - name: user_stats
    kind: aggregate
    entity: user
    source: ev
    tile: 10m
    aggregations:
      - {column: clicks, type: int64, functions: [count, sum], windows: [1h, 90s]}
      - {column: url, type: string, functions: [count_distinct], windows: [1d]}
streams:
  - name: a
    view: user_stats
    redis_stream: s
    fields: {clicks: n, nope: x}
`
	_, err := config.Parse("larder.yaml", []byte(project))
	text := strings.Join(problemLines(t, err), "\n")
	for _, want := range []string{
		`larder.yaml:11:5: views[0].tile: tile is a field of aggregate views`,
		`views[1].aggregations[0].windows[1]: window 90s is not a multiple of the view's tile 10m0s`,
		`views[1].aggregations[1].functions: url_count_distinct_1d: count_distinct cannot be kept current from stream "a"`,
		`streams[0].fields.nope: view "user_stats" has no aggregated column "nope" (known: clicks, url)`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no problem %q in:\n%s", want, text)
		}
	}
	if strings.Contains(text, "fields.clicks") {
		t.Errorf("a field mapping an aggregated column is refused:\n%s", text)
	}

	ok := strings.Replace(strings.Replace(strings.Replace(project, "90s", "30m", 1), "functions: [count_distinct]", "functions: [last]", 1), "    tile: 1m\n", "", 1)
	ok = strings.Replace(ok, ", nope: x", "", 1)
	p, err := config.Parse("larder.yaml", []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	v := p.View("user_stats")
	if !v.Streaming() || v.StreamSource().Name != "a" || v.TileInterval() != 10*time.Minute || v.TileHorizon() != time.Hour {
		t.Errorf("user_stats: streaming %v, tile %s, horizon %s", v.Streaming(), v.TileInterval(), v.TileHorizon())
	}
	if p.View("user_last").Streaming() {
		t.Error("a latest view is streaming")
	}
}

// TestParseDeadLetterLoop refuses a dead-letter stream that is a stream
// ingest reads, its own or another's: ingest would read its dead letters
// back, and dead-letter them again without end.
func TestParseDeadLetterLoop(t *testing.T) {
	_, err := config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - name: loopy
    view: user_last
    redis_stream: events:loop
    dead_letter: events:loop
  - name: a
    view: user_last
    redis_stream: events:a
    dead_letter: events:b
  - name: b
    view: user_last
    redis_stream: events:b
  - name: k
    view: user_last
    kafka: {brokers: ["k:9092"], topic: t}
    dead_letter: events:a
`))
	got := problemLines(t, err)
	text := strings.Join(got, "\n")
	for _, want := range []string{
		`larder.yaml:24:18: streams[0].dead_letter: "events:loop" is the stream's own redis_stream: ingest would read its dead letters back and send them to it again without end; leave dead_letter out for the default, events:loop:dead`,
		`larder.yaml:28:18: streams[1].dead_letter: "events:b" is the redis_stream of stream "b": ingest would apply this stream's dead letters as events of "b"; name another Redis stream, or leave dead_letter out for the default, events:a:dead`,
		`larder.yaml:35:18: streams[3].dead_letter: "events:a" is the redis_stream of stream "a": ingest would apply this stream's dead letters as events of "a"; name another Redis stream, or leave dead_letter out for the default, larder:shop:dead:k`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no problem %q in:\n%s", want, text)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(got), text)
	}
}

// TestParseStreamsNoFollowOn reports a redis_stream that cannot be decoded,
// or is empty, once: not again as a stream that reads neither a Redis
// stream nor Kafka. A broker without a port is refused.
func TestParseStreamsNoFollowOn(t *testing.T) {
	for _, tc := range []struct {
		stream string
		want   string
	}{
		{`redis_stream: [events, clicks]`, `larder.yaml:23:19: streams[0].redis_stream: want a string; got a list`},
		{`redis_stream: ""`, `larder.yaml:23:19: streams[0].redis_stream: is empty: write the key of the Redis stream`},
		{`kafka: [a]`, `larder.yaml:23:12: streams[0].kafka: want a mapping`},
		{`kafka: {brokers: [a], topic: t}`, `larder.yaml:23:23: streams[0].kafka.brokers[0]: want host:port, such as "a:9092"; got "a": write the broker's port too`},
		{`kafka: {brokers: ["a:"], topic: t}`, `streams[0].kafka.brokers[0]: want host:port, such as "a:9092"; got "a:"`},
		{`kafka: {brokers: [":9092"], topic: t}`, `streams[0].kafka.brokers[0]: want host:port, such as "kafka-1:9092"; got ":9092": write the broker's host too`},
	} {
		_, err := config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - name: a
    view: user_last
    `+tc.stream+`
`))
		got := problemLines(t, err)
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%s: got\n%s\nwant one problem: %s", tc.stream, strings.Join(got, "\n"), tc.want)
		}
	}
	if _, err := config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - name: a
    view: user_last
    kafka: {brokers: ["kafka-1:9092", "[::1]:9092"], topic: t}
`)); err != nil {
		t.Errorf("brokers with ports: %v", err)
	}
}

// TestParseMisspeltTile suggests tile for tiel, two letters swapped, as it
// suggests fields for feilds.
func TestParseMisspeltTile(t *testing.T) {
	_, err := config.Parse("larder.yaml", []byte(strings.Replace(streamsProject, "    aggregations:", "    tiel: 1m\n    aggregations:", 1)))
	want := `larder.yaml:18:5: views[1].tiel: unknown field "tiel"; did you mean "tile"?`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Parse = %v\nwant %s", err, want)
	}
}

// TestParseMisplacedSetting names the mapping that takes a field written
// under redis or server instead.
func TestParseMisplacedSetting(t *testing.T) {
	for _, tc := range []struct{ settings, want string }{
		{"redis:\n  http_listen: 127.0.0.1:8080\n", `larder.yaml:3:3: redis.http_listen: http_listen is a field of server, not redis: move it to server.http_listen (fields here: addresses,`},
		{"server:\n  addresses: [\"127.0.0.1:6379\"]\n", `larder.yaml:3:3: server.addresses: addresses is a field of redis, not server: move it to redis.addresses (fields here: listen,`},
	} {
		_, err := config.Parse("larder.yaml", []byte(strings.Replace(streamsProject, "project: shop\n", "project: shop\n"+tc.settings, 1)))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Parse = %v\nwant %s…", err, tc.want)
		}
	}
}

// TestParseDeadLetterOwnSharedStream says a stream dead-letters into its
// own redis_stream also when another stream reads it too.
func TestParseDeadLetterOwnSharedStream(t *testing.T) {
	_, err := config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - {name: a, view: user_last, redis_stream: events:x}
  - {name: b, view: user_stats, redis_stream: events:x, dead_letter: events:x}
`))
	want := `streams[1].dead_letter: "events:x" is the stream's own redis_stream`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Parse = %v\nwant %s", err, want)
	}
}

// TestParseSharedRedisStream takes two streams that read one Redis stream
// in groups of their own, and refuses them in one group, where each entry
// would go to one of them only.
func TestParseSharedRedisStream(t *testing.T) {
	p, err := config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - {name: a, view: user_last, redis_stream: events:x}
  - {name: b, view: user_stats, redis_stream: events:x, group: larder-shop-b}
`))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := p.Stream("a"), p.Stream("b"); a.Group != "larder-shop" || b.Group != "larder-shop-b" {
		t.Errorf("groups %q and %q, want larder-shop and larder-shop-b", a.Group, b.Group)
	}

	_, err = config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - {name: a, view: user_last, redis_stream: events:x}
  - {name: b, view: user_stats, redis_stream: events:x}
`))
	want := `streams[1].group: stream "a" reads redis stream events:x in group larder-shop too: a group hands each entry to one consumer, so each stream would get only part of the entries; give this stream a group of its own`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Parse = %v\nwant %s", err, want)
	}
}

// TestParseSharedKafkaTopic takes two streams that read one Kafka topic in
// groups of their own, or two topics in one group, and refuses them on one
// topic in one group, where the group would split the topic's partitions
// between them and each would get only part of the records.
func TestParseSharedKafkaTopic(t *testing.T) {
	for _, ok := range []string{
		`  - {name: a, view: user_last, kafka: {brokers: ["k:9092"], topic: clicks}}
  - {name: b, view: user_stats, kafka: {brokers: ["k:9092"], topic: clicks}, group: larder-shop-b}
`,
		`  - {name: a, view: user_last, kafka: {brokers: ["k:9092"], topic: clicks}}
  - {name: b, view: user_stats, kafka: {brokers: ["k:9092"], topic: orders}}
`,
	} {
		if _, err := config.Parse("larder.yaml", []byte(streamsProject+"streams:\n"+ok)); err != nil {
			t.Errorf("Parse(%s) = %v", ok, err)
		}
	}

	_, err := config.Parse("larder.yaml", []byte(streamsProject+`streams:
  - {name: a, view: user_last, kafka: {brokers: ["k:9092"], topic: clicks}}
  - {name: b, view: user_stats, kafka: {brokers: ["k:9092"], topic: clicks}}
`))
	want := `streams[1].group: stream "a" reads kafka topic clicks in group larder-shop too: a group hands each partition to one member, so each stream would get only part of the records; give this stream a group of its own`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Parse = %v\nwant %s", err, want)
	}
}
