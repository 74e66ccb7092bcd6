package larder

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Stream is a stream of events that `larder ingest` applies between runs
// to a latest view, through the same path as the Push RPC (each event is
// one row of one entity, written when it is not older than the stored
// row), or to a streaming aggregate view (each event is added once to its
// entity's tile; see View.Streaming). The events come from a Redis stream
// or a Kafka topic.
//
// A Redis stream entry holds its values as fields; a Kafka record's value
// is a JSON object of them. Key names the field that holds the entity key,
// EventTime the one that holds the event time (RFC 3339 text, or a number
// of milliseconds since the Unix epoch), and Fields maps feature names to
// field names where they differ; a feature without a field is null.
type Stream struct {
	Name string
	// View is the latest view the events are rows of, or the aggregate
	// view they are events of.
	View string
	// RedisStream is the key of the Redis stream, in the project's Redis;
	// Kafka is set instead for a Kafka topic.
	RedisStream string
	Kafka       *KafkaTopic
	// Group is the consumer group; "" means "larder-<project>".
	Group string
	// Key and EventTime name the fields of the entity key and the event
	// time; "" means the entity's key name, and the view's source's
	// event-time column.
	Key       string
	EventTime string
	// Fields maps feature names (of a latest view) or aggregated column
	// names (of an aggregate view) to the names of their fields, where
	// these differ.
	Fields map[string]string
	// DeadLetter is the Redis stream where events that can never apply go,
	// with the reason; "" means RedisStream + ":dead" (for a Kafka topic,
	// "larder:<project>:dead:<stream name>" in the project's Redis).
	DeadLetter string

	view *View
}

// KafkaTopic is a Kafka topic and the brokers to reach it.
type KafkaTopic struct {
	Brokers []string
	Topic   string
	// TLS, when set, is how the connections to the brokers are encrypted;
	// nil means plaintext.
	TLS *KafkaTLS
	// SASL, when set, is how larder authenticates to the brokers; nil
	// means it does not.
	SASL *KafkaSASL
}

// KafkaTLS is the TLS of the connections to a stream's brokers. Its zero
// value checks the brokers' certificates against the system's authorities.
type KafkaTLS struct {
	// CAFile, when set, is the PEM file of the authorities that sign the
	// brokers' certificates (the system's pool otherwise). CertFile and
	// KeyFile are a client certificate and its key, for brokers that ask
	// for one. ServerName is the name the brokers' certificates must
	// carry, when it is not the host of each broker's address. Paths are
	// relative to the project folder until Project.SetDefaults makes them
	// absolute.
	CAFile, CertFile, KeyFile, ServerName string
}

// The SASL mechanisms larder authenticates to Kafka with.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// KafkaSASL is how larder authenticates to a stream's brokers.
type KafkaSASL struct {
	// Mechanism is SASLPlain, SASLScramSHA256 or SASLScramSHA512.
	Mechanism string
	Username  string
	Password  string
	// PasswordEnv is the environment variable Password was read from
	// (kafka.sasl.password_env), for messages; "" when it was not.
	PasswordEnv string
}

// ViewDef returns the view the stream's events are rows of, once the
// project is validated.
func (s *Stream) ViewDef() *View { return s.view }

// Transport names where the stream's events come from: "redis" or "kafka".
func (s *Stream) Transport() string {
	if s.Kafka != nil {
		return "kafka"
	}
	return "redis"
}

// Source names the stream for people: the Redis key or the Kafka topic.
func (s *Stream) Source() string {
	if s.Kafka != nil {
		return "kafka topic " + s.Kafka.Topic
	}
	return "redis stream " + s.RedisStream
}

// FieldOf returns the name of the field that holds feature f.
func (s *Stream) FieldOf(f Feature) string {
	if name, ok := s.Fields[f.Name]; ok {
		return name
	}
	if f.Column != "" {
		return f.Column
	}
	return f.Name
}

// Stream returns the stream of that name, or nil.
func (p *Project) Stream(name string) *Stream {
	for _, s := range p.Streams {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// setStreamDefaults fills in a stream's group, key, event time and dead
// letter stream.
func (p *Project) setStreamDefaults(s *Stream) {
	if s.Group == "" {
		s.Group = "larder-" + p.Name
	}
	if s.DeadLetter == "" {
		s.DeadLetter = p.defaultDeadLetter(s)
	}
	if s.Kafka != nil && s.Kafka.TLS != nil {
		t := s.Kafka.TLS
		for _, f := range []*string{&t.CAFile, &t.CertFile, &t.KeyFile} {
			*f = p.Path(*f)
		}
	}
}

// defaultDeadLetter returns the dead-letter stream of s when it names none.
func (p *Project) defaultDeadLetter(s *Stream) string {
	if s.Kafka == nil && s.RedisStream != "" {
		return s.RedisStream + ":dead"
	}
	return "larder:" + p.Name + ":dead:" + s.Name
}

// checkDeadLetter checks that the dead-letter stream of s is no stream
// that ingest reads (readers maps the key of each Redis stream of the
// project to its stream): ingest would read the dead letters back.
func (p *Project) checkDeadLetter(s *Stream, path string, readers map[string]*Stream, add func(path, format string, args ...any)) {
	r := readers[s.DeadLetter]
	if r == nil {
		return
	}
	fallback := p.defaultDeadLetter(s)
	if s.Kafka == nil && s.RedisStream == s.DeadLetter {
		add(path+".dead_letter", "%q is the stream's own redis_stream: ingest would read its dead letters back and send them to it again without end; leave dead_letter out for the default, %s",
			s.DeadLetter, fallback)
		return
	}
	add(path+".dead_letter", "%q is the redis_stream of stream %q: ingest would apply this stream's dead letters as events of %q; name another Redis stream, or leave dead_letter out for the default, %s",
		s.DeadLetter, r.Name, r.Name, fallback)
}

// validateStreams checks the project's streams; it runs once the views
// are resolved.
func (p *Project) validateStreams(add func(path, format string, args ...any)) {
	seen := map[string]bool{}
	for _, v := range p.Views {
		v.stream = nil
	}
	viewNames := known(names(p.Views, func(v *View) string { return v.Name }))
	readers := map[string]*Stream{}
	for _, s := range p.Streams {
		if s.Kafka == nil && s.RedisStream != "" && readers[s.RedisStream] == nil {
			readers[s.RedisStream] = s
		}
	}
	// groups maps a Redis stream or a Kafka topic and a consumer group to
	// the first stream that reads it in that group.
	type streamGroup struct {
		kafka      bool
		key, group string
	}
	groups := map[streamGroup]*Stream{}
	for i, s := range p.Streams {
		path := fmt.Sprintf("streams[%d]", i)
		switch {
		case s.Name == "":
			add(path+".name", "is required")
		case !validName(s.Name):
			add(path+".name", "%q is not a valid name (letters, digits, '_' and '-', starting with a letter)", s.Name)
		case seen[s.Name]:
			add(path+".name", "duplicate stream %q", s.Name)
		}
		seen[s.Name] = true
		switch {
		case s.RedisStream == "" && s.Kafka == nil:
			add(path, "needs redis_stream (the key of a Redis stream) or kafka (brokers and topic)")
		case s.RedisStream != "" && s.Kafka != nil:
			add(path+".kafka", "a stream reads redis_stream or kafka, not both")
		case s.Kafka != nil:
			if len(s.Kafka.Brokers) == 0 {
				add(path+".kafka.brokers", "is required: the host:port of one broker or more")
			}
			if s.Kafka.Topic == "" {
				add(path+".kafka.topic", "is required")
			}
			validateKafkaSecurity(s.Kafka, path+".kafka", add)
		}
		p.checkDeadLetter(s, path, readers, add)
		switch {
		case s.Kafka == nil && s.RedisStream != "":
			sg := streamGroup{key: s.RedisStream, group: s.Group}
			if first := groups[sg]; first != nil {
				add(path+".group", "stream %q reads redis stream %s in group %s too: a group hands each entry to one consumer, so each stream would get only part of the entries; give this stream a group of its own",
					first.Name, s.RedisStream, s.Group)
			} else {
				groups[sg] = s
			}
		case s.Kafka != nil && s.RedisStream == "" && s.Kafka.Topic != "":
			// Topics are told apart by name: two clusters that hold a
			// topic of one name are refused too, and a group of its own
			// settles it.
			sg := streamGroup{kafka: true, key: s.Kafka.Topic, group: s.Group}
			if first := groups[sg]; first != nil {
				add(path+".group", "stream %q reads kafka topic %s in group %s too: a group hands each partition to one member, so each stream would get only part of the records; give this stream a group of its own",
					first.Name, s.Kafka.Topic, s.Group)
			} else {
				groups[sg] = s
			}
		}
		s.view = nil
		v := p.views[s.View]
		switch {
		case s.View == "":
			add(path+".view", "is required: the latest or aggregate view the events are rows of")
			continue
		case v == nil:
			add(path+".view", "unknown view %q%s", s.View, viewNames)
			continue
		case v.Kind != KindLatest && v.Kind != KindAggregate:
			add(path+".view", "view %q is %s %s view: events can be applied to latest and aggregate views only", v.Name, article(string(v.Kind)), v.Kind)
			continue
		}
		if v.Kind == KindAggregate {
			if v.stream != nil && v.stream != s {
				add(path+".view", "aggregate view %q is already fed by stream %q: one stream per aggregate view", v.Name, v.stream.Name)
				continue
			}
			v.stream = s
		}
		s.view = v
		if s.Key == "" && v.EntityDef() != nil {
			s.Key = v.EntityDef().Key
		}
		if s.EventTime == "" {
			if src := p.Source(v.Source); src != nil {
				s.EventTime = src.EventTime
			}
		}
		if s.EventTime == "" {
			add(path+".event_time", "is required: the field that holds each event's time")
		}
		// A latest view's fields are named after its features; an
		// aggregate view's after the columns it aggregates.
		var targets []string
		what := "feature"
		if v.Kind == KindAggregate {
			what = "aggregated column"
			for _, a := range v.Aggregations {
				if a.Column != "" && !slices.Contains(targets, a.Column) {
					targets = append(targets, a.Column)
				}
			}
		} else {
			for _, f := range v.Features {
				targets = append(targets, f.Name)
			}
		}
		var mapped []string
		for name := range s.Fields {
			mapped = append(mapped, name)
		}
		sort.Strings(mapped)
		for _, name := range mapped {
			if !slices.Contains(targets, name) {
				add(path+".fields."+name, "view %q has no %s %q%s", v.Name, what, name, known(targets))
			} else if s.Fields[name] == "" {
				add(path+".fields."+name, "is empty: name the field that holds the %s", what)
			}
		}
	}
}

// ColumnField returns the field that holds aggregated column col of an
// aggregate view's events.
func (s *Stream) ColumnField(col string) string {
	if name, ok := s.Fields[col]; ok {
		return name
	}
	return col
}

// article returns "an" before a word that starts with a vowel, else "a".
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

// validateKafkaSecurity checks the TLS and SASL settings of a Kafka topic,
// whose path is path.
func validateKafkaSecurity(k *KafkaTopic, path string, add func(path, format string, args ...any)) {
	if t := k.TLS; t != nil {
		switch {
		case t.CertFile != "" && t.KeyFile == "":
			add(path+".tls.cert_file", "needs key_file too: the key of the client certificate")
		case t.KeyFile != "" && t.CertFile == "":
			add(path+".tls.key_file", "needs cert_file too: the client certificate of the key")
		}
	}
	s := k.SASL
	if s == nil {
		return
	}
	switch s.Mechanism {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	case "":
		add(path+".sasl.mechanism", "is required: %s, %s or %s", SASLPlain, SASLScramSHA256, SASLScramSHA512)
	default:
		add(path+".sasl.mechanism", "unknown mechanism %q: want %s, %s or %s", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if s.Username == "" {
		add(path+".sasl.username", "is required: the user larder authenticates as")
	}
	if s.Password == "" && s.PasswordEnv == "" {
		add(path+".sasl.password_env", "is required: the environment variable that holds the password")
	}
}
