package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
)

// full sets every field larder.yaml has.
const full = `project: shop
redis:
  addresses: [10.0.0.1:26379, 10.0.0.2:26379]
  master_name: mymaster
  username: larder
  password_env: LARDER_REDIS_PASSWORD
  tls: true
  db: 2
  grace_period: 15m
server:
  listen: 0.0.0.0:6000
  max_entities: 200
  max_candidates: 300
  max_features: 400
  max_request_cells: 50000
  max_response_bytes: 16MiB
  max_concurrent_requests: 64
  default_deadline: 2s
  max_deadline: 10s
  refresh_interval: 30s
  tls_cert_file: tls/server.pem
  tls_key_file: tls/server-key.pem
  tls_client_ca_file: tls/clients.pem
  reflection: false
  auth:
    tokens_file: /etc/larder/tokens
    tokens_env: LARDER_TOKENS
    certificates:
      - {identity: ops-cli, role: admin}
      - identity: spiffe://shop/recs
        role: read
entities:
  - name: user
    key: user_id
    type: int64
  - name: item
    key: item_id
    type: string
sources:
  - name: users
    path: data/users.parquet
    event_time: updated_at
  - name: items
    path: /srv/items/*.parquet
    event_time: ts
views:
  - name: user_profile
    kind: latest
    entity: user
    source: users
    description: Profile attributes of a user.
    max_age: 7d
    schedule: "0 * * * *"
    features:
      - {name: age, type: int64}
      - {name: country, type: string, column: country_code}
  - name: item_stats
    kind: latest
    entity: item
    source: items
    max_age: 1d12h
    schedule: "@hourly"
    features:
      - name: price
        type: float64
      - {name: ctr, type: float32}
      - {name: in_stock, type: bool}
      - {name: title, type: bytes}
      - {name: embedding, type: float32_vector}
rankers:
  - name: home_feed
    model: models/rerank.onnx
    model_input: input
    model_output: output
    context: user
    candidate: item
    top_k: 20
    inputs:
      - user_profile:age
      - item_stats:price
      - request:hour_of_day
      - {ref: item_stats:ctr, default: 0.01}
  - name: minimal
    model: models/other.onnx
    context: user
    candidate: item
    inputs: [item_stats:in_stock]
`

// base is a small valid project that the bad cases edit one line of; the
// expected line numbers below are its line numbers.
const base = `project: shop
redis:
  addresses: [127.0.0.1:6379]
  grace_period: 10m
server:
  listen: 127.0.0.1:50051
  max_entities: 500
entities:
  - name: user
    key: user_id
    type: int64
  - name: item
    key: item_id
    type: string
sources:
  - name: users
    path: data/users.parquet
    event_time: updated_at
  - name: items
    path: data/items/
    event_time: ts
views:
  - name: user_profile
    kind: latest
    entity: user
    source: users
    max_age: 48h
    schedule: "0 * * * *"
    features:
      - {name: age, type: int64}
      - {name: country, type: string, column: country_code}
  - name: item_stats
    kind: latest
    entity: item
    source: items
    features:
      - {name: price, type: float64}
      - {name: ctr, type: float32}
rankers:
  - name: home_feed
    model: models/rerank.onnx
    context: user
    candidate: item
    top_k: 10
    inputs:
      - user_profile:age
      - item_stats:price
      - request:hour_of_day
      - {ref: item_stats:ctr, default: 0.01}
`

// env is a LookupEnv over a map.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// edit returns src with line n (counting from 1) replaced by repl, which
// may span several lines. It fails when the line is not want, so that the
// cases below stay tied to base.
func edit(tb testing.TB, src string, n int, want, repl string) string {
	tb.Helper()
	lines := strings.Split(src, "\n")
	if n < 1 || n > len(lines) || lines[n-1] != want {
		tb.Fatalf("line %d of the source is not %q", n, want)
	}
	lines[n-1] = repl
	return strings.Join(lines, "\n")
}

// problems returns the problems of err, failing when it is not a *config.Error.
func problems(tb testing.TB, err error) []config.Problem {
	tb.Helper()
	var ce *config.Error
	if !errors.As(err, &ce) {
		tb.Fatalf("error = %v (%T), want a *config.Error", err, err)
	}
	if len(ce.Problems) == 0 {
		tb.Fatal("*config.Error holds no problems")
	}
	return ce.Problems
}

// problemLines returns the problems of err, a *config.Error, as text.
func problemLines(tb testing.TB, err error) []string {
	tb.Helper()
	var lines []string
	for _, p := range problems(tb, err) {
		lines = append(lines, p.String())
	}
	return lines
}

func TestParseFull(t *testing.T) {
	p, err := config.Loader{LookupEnv: env(map[string]string{"LARDER_REDIS_PASSWORD": "s3cret"})}.Parse("conf/larder.yaml", []byte(full))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	wantDir, _ := filepath.Abs("conf")
	if p.Dir != wantDir {
		t.Errorf("Dir = %q, want %q", p.Dir, wantDir)
	}
	if got := p.Path("data/users.parquet"); got != filepath.Join(wantDir, "data/users.parquet") {
		t.Errorf("Path(data/users.parquet) = %q", got)
	}
	if p.Name != "shop" {
		t.Errorf("Name = %q", p.Name)
	}

	wantRedis := larder.Redis{
		Addrs:       []string{"10.0.0.1:26379", "10.0.0.2:26379"},
		MasterName:  "mymaster",
		Username:    "larder",
		Password:    "s3cret",
		TLS:         true,
		DB:          2,
		GracePeriod: 15 * time.Minute,
	}
	if r := p.Redis; !slices.Equal(r.Addrs, wantRedis.Addrs) || r.MasterName != wantRedis.MasterName ||
		r.Username != wantRedis.Username || r.Password != wantRedis.Password || r.TLS != wantRedis.TLS ||
		r.DB != wantRedis.DB || r.GracePeriod != wantRedis.GracePeriod {
		t.Errorf("Redis = %+v, want %+v", r, wantRedis)
	}
	wantServer := larder.Server{Listen: "0.0.0.0:6000", MaxEntities: 200, MaxCandidates: 300, MaxFeatures: 400, MaxRequestCells: 50000,
		MaxResponseBytes: 16 << 20, MaxConcurrentRequests: 64, DefaultDeadline: 2 * time.Second, MaxDeadline: 10 * time.Second,
		RefreshInterval: 30 * time.Second, TLSCertFile: "tls/server.pem", TLSKeyFile: "tls/server-key.pem", TLSClientCAFile: "tls/clients.pem",
		NoReflection: true, Auth: larder.ServerAuth{TokensFile: "/etc/larder/tokens", TokensEnv: "LARDER_TOKENS", Certificates: []larder.CertificateRole{
			{Identity: "ops-cli", Role: larder.RoleAdmin}, {Identity: "spiffe://shop/recs", Role: larder.RoleRead}}}}
	if !reflect.DeepEqual(p.Server, wantServer) {
		t.Errorf("Server = %+v, want %+v", p.Server, wantServer)
	}

	wantEntities := []larder.Entity{
		{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
		{Name: "item", Key: "item_id", KeyType: larder.TypeString},
	}
	if len(p.Entities) != len(wantEntities) {
		t.Fatalf("%d entities, want %d", len(p.Entities), len(wantEntities))
	}
	for i, e := range p.Entities {
		if *e != wantEntities[i] {
			t.Errorf("Entities[%d] = %+v, want %+v", i, *e, wantEntities[i])
		}
	}

	wantSources := []larder.Source{
		{Name: "users", Path: "data/users.parquet", EventTime: "updated_at"},
		{Name: "items", Path: "/srv/items/*.parquet", EventTime: "ts"},
	}
	if len(p.Sources) != len(wantSources) {
		t.Fatalf("%d sources, want %d", len(p.Sources), len(wantSources))
	}
	for i, s := range p.Sources {
		if *s != wantSources[i] {
			t.Errorf("Sources[%d] = %+v, want %+v", i, *s, wantSources[i])
		}
	}

	views := []struct {
		name, entity, source, schedule, description string
		maxAge                                      time.Duration
		features                                    []larder.Feature
	}{
		{"user_profile", "user", "users", "0 * * * *", "Profile attributes of a user.", 7 * 24 * time.Hour, []larder.Feature{
			{Name: "age", Type: larder.TypeInt64, Column: "age"},
			{Name: "country", Type: larder.TypeString, Column: "country_code"},
		}},
		{"item_stats", "item", "items", "@hourly", "", 36 * time.Hour, []larder.Feature{
			{Name: "price", Type: larder.TypeFloat64, Column: "price"},
			{Name: "ctr", Type: larder.TypeFloat32, Column: "ctr"},
			{Name: "in_stock", Type: larder.TypeBool, Column: "in_stock"},
			{Name: "title", Type: larder.TypeBytes, Column: "title"},
			{Name: "embedding", Type: larder.TypeFloat32Vector, Column: "embedding"},
		}},
	}
	if len(p.Views) != len(views) {
		t.Fatalf("%d views, want %d", len(p.Views), len(views))
	}
	for i, w := range views {
		v := p.Views[i]
		if v.Name != w.name || v.Kind != larder.KindLatest || v.Entity != w.entity || v.Source != w.source ||
			v.Schedule != w.schedule || v.Description != w.description || v.MaxAge != w.maxAge {
			t.Errorf("Views[%d] = %+v", i, *v)
		}
		if !slices.Equal(v.Features, w.features) {
			t.Errorf("Views[%d].Features = %+v, want %+v", i, v.Features, w.features)
		}
		if v.EntityDef() != p.Entity(w.entity) || v.SourceDef() != p.Source(w.source) || p.View(w.name) != v {
			t.Errorf("Views[%d] references are not resolved", i)
		}
	}

	home := p.Ranker("home_feed")
	if home == nil {
		t.Fatal("ranker home_feed not found")
	}
	if home.Model != "models/rerank.onnx" || home.ModelInput != "input" || home.ModelOutput != "output" ||
		home.Context != "user" || home.Candidate != "item" || home.TopK != 20 {
		t.Errorf("home_feed = %+v", *home)
	}
	if home.ContextDef() != p.Entity("user") || home.CandidateDef() != p.Entity("item") {
		t.Error("home_feed entities are not resolved")
	}
	profile, stats := p.View("user_profile"), p.View("item_stats")
	wantInputs := []larder.RankerInput{
		{Ref: "user_profile:age", Side: larder.SideContext, View: profile, Feature: 0},
		{Ref: "item_stats:price", Side: larder.SideCandidate, View: stats, Feature: 0},
		{Ref: "request:hour_of_day", Side: larder.SideRequest, Request: "hour_of_day"},
		{Ref: "item_stats:ctr", Default: 0.01, HasDefault: true, Side: larder.SideCandidate, View: stats, Feature: 1},
	}
	if !slices.Equal(home.Inputs, wantInputs) {
		t.Errorf("home_feed inputs = %+v\nwant %+v", home.Inputs, wantInputs)
	}

	minimal := p.Ranker("minimal")
	if minimal.TopK != larder.DefaultTopK || minimal.ModelInput != larder.DefaultModelInput || minimal.ModelOutput != larder.DefaultModelOutput {
		t.Errorf("minimal ranker defaults = top_k %d, model_input %q, model_output %q", minimal.TopK, minimal.ModelInput, minimal.ModelOutput)
	}
	if len(minimal.Inputs) != 1 || minimal.Inputs[0].View != stats || minimal.Inputs[0].Feature != 2 {
		t.Errorf("minimal inputs = %+v", minimal.Inputs)
	}
}

func TestParseDefaults(t *testing.T) {
	src := `project: tiny
entities: [{name: user, key: user_id, type: int64}]
sources: [{name: users, path: users.parquet, event_time: ts}]
views:
  - {name: profile, kind: latest, entity: user, source: users, features: [{name: age, type: int64}]}
`
	p, err := config.Parse("larder.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !p.Redis.Embedded() || p.Redis.GracePeriod != larder.DefaultGracePeriod {
		t.Errorf("Redis = %+v, want the embedded server and the default grace period", p.Redis)
	}
	want := larder.Server{
		Listen:          larder.DefaultListen,
		MaxEntities:     larder.DefaultMaxEntities,
		MaxCandidates:   larder.DefaultMaxCandidates,
		RefreshInterval: larder.DefaultRefreshInterval,

		MaxFeatures:           larder.DefaultMaxFeatures,
		MaxRequestCells:       larder.DefaultMaxRequestCells,
		MaxResponseBytes:      larder.DefaultMaxResponseBytes,
		MaxConcurrentRequests: larder.DefaultMaxConcurrentRequests,
		DefaultDeadline:       larder.DefaultDeadline,
		MaxDeadline:           larder.DefaultMaxDeadline,
	}
	if !reflect.DeepEqual(p.Server, want) {
		t.Errorf("Server = %+v, want %+v", p.Server, want)
	}
	v := p.View("profile")
	if v.MaxAge != 0 || v.Schedule != "" || v.Features[0].Column != "age" {
		t.Errorf("view = %+v", *v)
	}
	if cwd, _ := os.Getwd(); p.Dir != cwd {
		t.Errorf("Dir = %q, want the working folder %q", p.Dir, cwd)
	}
}

func TestParseAnchors(t *testing.T) {
	src := `project: shop
x-common: &common
  kind: latest
  entity: user
  source: users
x-age: &age {name: age, type: int64}
entities: [{name: user, key: user_id, type: int64}]
sources: [{name: users, path: users.parquet, event_time: ts}]
views:
  - <<: *common
    name: a
    features: [*age]
  - <<: *common
    name: b
    kind: latest
    max_age: !!str 90s
    features:
      - *age
      - {name: score, type: float64}
`
	p, err := config.Parse("larder.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, name := range []string{"a", "b"} {
		v := p.View(name)
		if v == nil || v.Kind != larder.KindLatest || v.Entity != "user" || v.Source != "users" || v.Features[0].Name != "age" {
			t.Errorf("view %s = %+v", name, v)
		}
	}
	if got := p.View("b").MaxAge; got != 90*time.Second {
		t.Errorf("b.MaxAge = %v", got)
	}
}

func TestParseDurationsAndSchedules(t *testing.T) {
	tests := []struct {
		maxAge, schedule string
		want             time.Duration
		wantErr          string // "" for none
	}{
		{"90s", "", 90 * time.Second, ""},
		{"48h", "", 48 * time.Hour, ""},
		{"7d", "", 7 * 24 * time.Hour, ""},
		{"1d12h30m", "", 36*time.Hour + 30*time.Minute, ""},
		{"0", "", 0, ""},
		{"0d", "", 0, ""},
		{"1h30m", `"@every 15m"`, 90 * time.Minute, ""},
		{"10m", `"*/5 * * * *"`, 10 * time.Minute, ""},
		{"10m", `"@daily"`, 10 * time.Minute, ""},
		{"7", "", 0, `views[0].max_age: invalid duration "7"`},
		{"d", "", 0, `views[0].max_age: invalid duration "d"`},
		{"1.5d", "", 0, `views[0].max_age: invalid duration "1.5d"`},
		{"7d-1h", "", 0, `views[0].max_age: invalid duration "7d-1h"`},
		{"99999999d", "", 0, `views[0].max_age: invalid duration "99999999d": too long`},
		{"[1h]", "", 0, "views[0].max_age: want a duration such as 90s, 48h or 7d; got a list"},
		{"1h", `"0 * * *"`, 0, `views[0].schedule: invalid schedule "0 * * *": expected exactly 5 fields`},
		{"1h", `"@sometimes"`, 0, `views[0].schedule: invalid schedule "@sometimes"`},
		{"1h", `"0 0 * * * *"`, 0, `views[0].schedule: invalid schedule "0 0 * * * *"`},
	}
	for _, tt := range tests {
		t.Run(tt.maxAge+" "+tt.schedule, func(t *testing.T) {
			src := edit(t, base, 27, "    max_age: 48h", "    max_age: "+tt.maxAge)
			src = edit(t, src, 28, `    schedule: "0 * * * *"`, "    schedule: "+tt.schedule)
			p, err := config.Parse("larder.yaml", []byte(src))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := p.View("user_profile").MaxAge; got != tt.want {
				t.Errorf("MaxAge = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		name string
		line int    // the line of base to replace
		old  string // its text
		new  string // what replaces it
		env  map[string]string

		wantLine  int
		wantField string
		wantMsg   string
	}{
		{"unknown top-level field", 5, "server:", "sever:",
			nil, 5, "sever", `unknown field "sever"; did you mean "server"?`},
		{"unknown nested field", 7, "  max_entities: 500", "  max_entitys: 500",
			nil, 7, "server.max_entitys", `unknown field "max_entitys"; did you mean "max_entities"?`},
		{"unknown field in a list item", 21, "    event_time: ts", "    event_tme: ts",
			nil, 21, "sources[1].event_tme", `unknown field "event_tme"`},
		{"unknown field in a flow mapping", 49, "      - {ref: item_stats:ctr, default: 0.01}", "      - {ref: item_stats:ctr, defualt: 0.01}",
			nil, 49, "rankers[0].inputs[3].defualt", `did you mean "default"?`},
		{"string for an integer", 7, "  max_entities: 500", "  max_entities: lots",
			nil, 7, "server.max_entities", `want a whole number; got "lots"`},
		{"quoted integer", 44, "    top_k: 10", `    top_k: "10"`,
			nil, 44, "rankers[0].top_k", `want a whole number; got "10"`},
		{"float for an integer", 7, "  max_entities: 500", "  max_entities: 1.5",
			nil, 7, "server.max_entities", "want a whole number; got 1.5"},
		{"string for a boolean", 4, "  grace_period: 10m", "  tls: maybe",
			nil, 4, "redis.tls", `want true or false; got "maybe"`},
		{"list for a string", 10, "    key: user_id", "    key: [a, b]",
			nil, 10, "entities[0].key", "want a string; got a list"},
		{"string for a list", 3, "  addresses: [127.0.0.1:6379]", "  addresses: 127.0.0.1:6379",
			nil, 3, "redis.addresses", `want a list of host:port addresses`},
		{"string for a number", 49, "      - {ref: item_stats:ctr, default: 0.01}", "      - {ref: item_stats:ctr, default: high}",
			nil, 49, "rankers[0].inputs[3].default", `want a number; got "high"`},
		{"bad duration", 27, "    max_age: 48h", "    max_age: 2x",
			nil, 27, "views[0].max_age", `invalid duration "2x": write a number and a unit`},
		{"bad grace period", 4, "  grace_period: 10m", "  grace_period: soon",
			nil, 4, "redis.grace_period", `invalid duration "soon"`},
		{"negative max_age", 27, "    max_age: 48h", "    max_age: -48h",
			nil, 27, "views[0].max_age", "must not be negative"},
		{"negative refresh interval", 6, "  listen: 127.0.0.1:50051", "  refresh_interval: -1s",
			nil, 6, "server.refresh_interval", "must be positive"},
		{"bad cron", 28, `    schedule: "0 * * * *"`, `    schedule: "0 25 * * *"`,
			nil, 28, "views[0].schedule", `invalid schedule "0 25 * * *"`},
		{"unknown feature type", 37, "      - {name: price, type: float64}", "      - {name: price, type: double}",
			nil, 37, "views[1].features[0].type", `unknown type "double" (want one of int64, float64`},
		{"missing feature type", 37, "      - {name: price, type: float64}", "      - {name: price}",
			nil, 37, "views[1].features[0].type", "is required"},
		{"unknown kind", 33, "    kind: latest", "    kind: newest",
			nil, 33, "views[1].kind", `unknown kind "newest"`},
		{"unknown entity in view", 34, "    entity: item", "    entity: itme",
			nil, 34, "views[1].entity", `unknown entity "itme" (known: user, item)`},
		{"unknown source", 26, "    source: users", "    source: user",
			nil, 26, "views[0].source", `unknown source "user" (known: users, items)`},
		{"duplicate view name", 32, "  - name: item_stats", "  - name: user_profile",
			nil, 32, "views[1].name", `duplicate view "user_profile"`},
		{"duplicate feature", 31, "      - {name: country, type: string, column: country_code}", "      - {name: age, type: string, column: country_code}",
			nil, 31, "views[0].features[1].name", `duplicate feature "age" in view "user_profile"`},
		{"feature is the key column", 31, "      - {name: country, type: string, column: country_code}", "      - {name: country, type: string, column: user_id}",
			nil, 31, "views[0].features[1].column", "is the entity key column"},
		{"cast to another type than float32", 30, "      - {name: age, type: int64}", "      - {name: age, type: int64, cast: true}",
			nil, 30, "views[0].features[0].cast", "casts to float32 only"},
		{"cast not a bool", 30, "      - {name: age, type: int64}", "      - {name: age, type: float32, cast: yes please}",
			nil, 30, "views[0].features[0].cast", "want true or false"},
		{"field set twice", 27, "    max_age: 48h", "    source: items",
			nil, 27, "views[0].source", "is set twice (first on line 26)"},
		{"dangling ranker input view", 47, "      - item_stats:price", "      - item_stat:price",
			nil, 47, "rankers[0].inputs[1]", `unknown view "item_stat" (known: user_profile, item_stats)`},
		{"unknown feature in input", 46, "      - user_profile:age", "      - user_profile:height",
			nil, 46, "rankers[0].inputs[0]", `view "user_profile" has no feature "height" (known: age, country)`},
		{"non-numeric input feature", 46, "      - user_profile:age", "      - user_profile:country",
			nil, 46, "rankers[0].inputs[0]", "model inputs must be int64, float64, float32 or bool"},
		{"bad input ref syntax", 48, "      - request:hour_of_day", "      - hour_of_day",
			nil, 48, "rankers[0].inputs[2]", `"hour_of_day" is not a reference: write view:feature or request:name`},
		{"duplicate input", 48, "      - request:hour_of_day", "      - item_stats:price",
			nil, 48, "rankers[0].inputs[2]", `duplicate input "item_stats:price"`},
		{"ranker context entity unknown", 42, "    context: user", "    context: usr",
			nil, 42, "rankers[0].context", `unknown entity "usr"`},
		{"missing project", 1, "project: shop", "# project: shop",
			nil, 2, "project", "is required: name the project"},
		{"invalid project name", 1, "project: shop", "project: my shop",
			nil, 1, "project", `"my shop" is not a valid name`},
		{"invalid feature name", 30, "      - {name: age, type: int64}", "      - {name: 2age, type: int64}",
			nil, 30, "views[0].features[0].name", `"2age" is not a valid feature name`},
		{"view named request", 32, "  - name: item_stats", "  - name: request",
			nil, 32, "views[1].name", `"request" is not a valid view name`},
		{"bad entity key type", 14, "    type: string", "    type: float64",
			nil, 14, "entities[1].type", "entity keys must be int64 or string, got float64"},
		{"unknown entity key type", 11, "    type: int64", "    type: int32",
			nil, 11, "entities[0].type", `unknown type "int32"`},
		{"missing ranker model", 41, "    model: models/rerank.onnx", "    # no model",
			nil, 40, "rankers[0].model", "is required: the path of an ONNX model file"},
		{"missing entity key", 10, "    key: user_id", "",
			nil, 9, "entities[0].key", "is required"},
		{"negative top_k", 44, "    top_k: 10", "    top_k: -1",
			nil, 44, "rankers[0].top_k", "must be positive, got -1"},
		{"negative db", 4, "  grace_period: 10m", "  db: -1",
			nil, 4, "redis.db", "must be 0 or more, got -1"},
		{"master_name without addresses", 3, "  addresses: [127.0.0.1:6379]", "  master_name: mymaster",
			nil, 3, "redis.master_name", "needs the Sentinel addresses"},
		{"empty address", 3, "  addresses: [127.0.0.1:6379]", `  addresses: [""]`,
			nil, 3, "redis.addresses[0]", "is empty: write host:port"},
		// YAML reads "host: port", and inside { } even "host:port", as a
		// mapping of host to port.
		{"address read as a mapping", 3, "  addresses: [127.0.0.1:6379]", "  addresses: [127.0.0.1: 6379]",
			nil, 3, "redis.addresses[0]", `want a host:port address; got a mapping of 127.0.0.1 to 6379 (YAML reads an unquoted host:port as one here): write it quoted: "127.0.0.1:6379"`},
		{"address in a flow mapping", 2, "redis:", "redis: {addresses: [127.0.0.1:6379]}\nx-old:",
			nil, 2, "redis.addresses[0]", `write it quoted: "127.0.0.1:6379"`},
		{"addresses written as a mapping", 3, "  addresses: [127.0.0.1:6379]", "  addresses: {127.0.0.1:6379, redis-2:6380}",
			nil, 3, "redis.addresses", `want a list of host:port addresses; got a mapping (YAML reads { } as one, and an unquoted host:port inside it as a host and a port): write a list, quoted: ["127.0.0.1:6379", "redis-2:6380"]`},
		{"second address read as a mapping", 3, "  addresses: [127.0.0.1:6379]", "  addresses: [127.0.0.1:6379, redis-2: 6379]",
			nil, 3, "redis.addresses[1]", `write it quoted: "redis-2:6379"`},
		{"password_env unset", 4, "  grace_period: 10m", "  password_env: LARDER_TEST_PASSWORD",
			map[string]string{"OTHER": "x"}, 4, "redis.password_env", "environment variable LARDER_TEST_PASSWORD is not set"},
		{"password and password_env", 4, "  grace_period: 10m", "  password: a\n  password_env: LARDER_TEST_PASSWORD",
			map[string]string{"LARDER_TEST_PASSWORD": "x"}, 5, "redis.password_env", "set either redis.password or redis.password_env, not both"},
		{"unknown alias", 27, "    max_age: 48h", "    max_age: *age",
			nil, 27, "views[0].max_age", "unknown alias *age: define the anchor &age above it"},
		{"unsupported tag", 27, "    max_age: 48h", "    max_age: !env AGE",
			nil, 27, "views[0].max_age", "unsupported tag !env"},
		{"a list item that is not a mapping", 30, "      - {name: age, type: int64}", "      - age",
			nil, 30, "views[0].features[0]", `want a mapping of name, type, column, cast; got "age"`},
		{"second document", 49, "      - {ref: item_stats:ctr, default: 0.01}", "      - {ref: item_stats:ctr, default: 0.01}\n---\nproject: other",
			nil, 50, "", "holds one YAML document"},
		{"YAML syntax error", 28, `    schedule: "0 * * * *"`, `    schedule: "0 * * * *`,
			nil, 28, "", "invalid YAML: could not find end character of double-quoted text"},
		// The parser places this one at the end of the line before.
		{"YAML syntax error: bad indentation", 7, "  max_entities: 500", "   max_entities: 500",
			nil, 6, "", "invalid YAML: mapping value is not allowed in this context"},
		{"unquoted schedule", 28, `    schedule: "0 * * * *"`, "    schedule: @hourly",
			nil, 28, "", `'@' is a reserved character; put the value in quotes`},
		{"tab", 10, "    key: user_id", "\tkey: user_id",
			nil, 10, "", "indented with a tab; YAML indents with spaces only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := edit(t, base, tt.line, tt.old, tt.new)
			_, err := config.Loader{LookupEnv: env(tt.env)}.Parse("larder.yaml", []byte(src))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			ps := problems(t, err)
			found := slices.ContainsFunc(ps, func(p config.Problem) bool {
				return p.File == "larder.yaml" && p.Line == tt.wantLine && p.Field == tt.wantField && strings.Contains(p.Msg, tt.wantMsg)
			})
			if !found {
				t.Errorf("no problem at line %d, field %q, saying %q; got:\n%v", tt.wantLine, tt.wantField, tt.wantMsg, err)
			}
			prefix := "larder.yaml:" + strconv.Itoa(tt.wantLine) + ":"
			if tt.wantField != "" {
				if !strings.Contains(err.Error(), tt.wantField+": ") {
					t.Errorf("message does not name the field %q:\n%v", tt.wantField, err)
				}
			}
			if !strings.Contains(err.Error(), prefix) {
				t.Errorf("message does not name line %d:\n%v", tt.wantLine, err)
			}
		})
	}
}

func TestParseBadDocuments(t *testing.T) {
	tests := []struct {
		name, src string
		want      string // the whole error
	}{
		{"empty file", "", "larder.yaml: project: is required: name the project"},
		{"only comments", "# nothing yet\n", "larder.yaml: project: is required: name the project"},
		{"a list", "- project: shop\n", "larder.yaml:1:1: want a mapping of project, redis, server, entities, sources, views and rankers; got a list"},
		{"a scalar", "shop\n", `larder.yaml:1:1: want a mapping of project, redis, server, entities, sources, views and rankers; got "shop"`},
		{"complex key", "project: shop\n? [a]\n: 1\n", "larder.yaml:3:1: invalid YAML: found an invalid key for this map"},
		{"two tabs", "project: shop\nserver:\n\tlisten: :1\n\tmax_entities: 2\n",
			"larder.yaml:3:1: indented with a tab; YAML indents with spaces only: replace the tab with spaces\n" +
				"larder.yaml:4:1: indented with a tab; YAML indents with spaces only: replace the tab with spaces"},
		{"a mapping that merges itself", "project: shop\nserver: &s\n  <<: *s\n",
			"larder.yaml:3:3: server.<<: merges the mapping it is in: remove the merge"},
		{"a merged mapping that merges back", "project: shop\nx-a: &a\n  listen: :1\nserver: &s\n  <<: [*a, {<<: *s}]\n",
			"larder.yaml:5:13: server.<<: merges a mapping that merges this one back: remove the cycle"},
		// Each mapping is read once however often it is merged: this once took
		// time exponential in the length of the list.
		{"a mapping that merges itself twice", "project: shop\nserver: &s\n  <<: [*s, *s, *s, *s]\n",
			"larder.yaml:3:3: server.<<: merges the mapping it is in: remove the merge"},
		{"extension field only at the top", "project: shop\nserver:\n  x-note: 1\n",
			`larder.yaml:3:3: server.x-note: unknown field "x-note" (fields here: listen, max_entities, max_candidates, max_features, max_request_cells, max_response_bytes, max_concurrent_requests, default_deadline, max_deadline, refresh_interval, metrics_listen, admin_listen, http_listen, tls_cert_file, tls_key_file, tls_client_ca_file, reflection, auth)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("larder.yaml", []byte(tt.src))
			problems(t, err)
			if err.Error() != tt.want {
				t.Errorf("error =\n%v\nwant\n%v", err, tt.want)
			}
		})
	}
}

// TestParseEveryProblem checks that one bad field does not hide the others:
// syntax-level and validation problems are reported together, in the order
// of the file, each at its line.
func TestParseEveryProblem(t *testing.T) {
	src := `project: shop
colour: blue
redis:
  tls: "yes"
  grace_period: 2x
server:
  max_entities: many
entities:
  - name: user
    key: user_id
    type: int32
  - {name: user, key: uid, type: int64}
sources:
  - name: users
    path: users.parquet
views:
  - name: profile
    kind: latest
    entity: customer
    source: users
    max_age: -1h
    schedule: every hour
    features:
      - {name: age, type: int64}
      - {name: age, type: decimal}
rankers:
  - name: feed
    model: m.onnx
    context: user
    candidate: item
    top_k: -5
    inputs:
      - profile:height
      - nope
`
	want := []config.Problem{
		{Line: 2, Column: 1, Field: "colour"},
		{Line: 4, Column: 8, Field: "redis.tls"},
		{Line: 5, Column: 17, Field: "redis.grace_period"},
		{Line: 7, Column: 17, Field: "server.max_entities"},
		{Line: 11, Column: 11, Field: "entities[0].type"},
		{Line: 12, Column: 12, Field: "entities[1].name"},
		{Line: 14, Column: 5, Field: "sources[0].event_time"},
		{Line: 19, Column: 13, Field: "views[0].entity"},
		{Line: 21, Column: 14, Field: "views[0].max_age"},
		{Line: 22, Column: 15, Field: "views[0].schedule"},
		{Line: 25, Column: 16, Field: "views[0].features[1].name"},
		{Line: 25, Column: 27, Field: "views[0].features[1].type"},
		{Line: 30, Column: 16, Field: "rankers[0].candidate"},
		{Line: 31, Column: 12, Field: "rankers[0].top_k"},
		{Line: 33, Column: 9, Field: "rankers[0].inputs[0]"},
		{Line: 34, Column: 9, Field: "rankers[0].inputs[1]"},
	}
	_, err := config.Parse("larder.yaml", []byte(src))
	got := problems(t, err)
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.File != "larder.yaml" || g.Line != w.Line || g.Column != w.Column || g.Field != w.Field || g.Msg == "" {
			t.Errorf("problem %d = %s:%d:%d %s, want line %d:%d field %s", i, g.File, g.Line, g.Column, g.Field, w.Line, w.Column, w.Field)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(got) {
		t.Errorf("Error() has %d lines, want one per problem (%d)", len(lines), len(got))
	}
	format := regexp.MustCompile(`^larder\.yaml:\d+:\d+: [a-z_\[\].0-9]+: \S.*$`)
	for _, l := range lines {
		if !format.MatchString(l) {
			t.Errorf("line %q does not match file:line:column: field: message", l)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	src := edit(t, base, 27, "    max_age: 48h", "    max_age: 2x")
	_, err := config.Parse("conf/larder.yaml", []byte(src))
	want := `conf/larder.yaml:27:14: views[0].max_age: invalid duration "2x": write a number and a unit (s, m, h or d), such as 90s, 48h or 7d`
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%v", err, want)
	}
	tests := []struct {
		p    config.Problem
		want string
	}{
		{config.Problem{File: "a.yaml", Line: 3, Column: 5, Field: "views[0].name", Msg: "is required"}, "a.yaml:3:5: views[0].name: is required"},
		{config.Problem{File: "a.yaml", Line: 3, Msg: "invalid YAML: x"}, "a.yaml:3: invalid YAML: x"},
		{config.Problem{File: "a.yaml", Field: "project", Msg: "is required"}, "a.yaml: project: is required"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "larder.yaml")
	if err := os.WriteFile(path, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if p.Dir != dir {
		t.Errorf("Dir = %q, want %q", p.Dir, dir)
	}
	if got := p.Path("data/items/"); got != filepath.Join(dir, "data/items") {
		t.Errorf("Path = %q", got)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("project: shop\nviews: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(bad)
	if ps := problems(t, err); ps[0].File != bad || ps[0].Line != 2 || ps[0].Field != "views" {
		t.Errorf("problem = %+v, want %s line 2 field views", ps[0], bad)
	}

	_, err = config.Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want one wrapping fs.ErrNotExist", err)
	}
}

// TestDocumentedExample keeps the examples of docs/configuration.md that
// are whole files (its yaml blocks) valid: the complete example first.
func TestDocumentedExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var examples []string
	for rest := string(doc); ; {
		var ok bool
		if _, rest, ok = strings.Cut(rest, "```yaml\n"); !ok {
			break
		}
		var example string
		if example, rest, ok = strings.Cut(rest, "```"); !ok {
			t.Fatal("docs/configuration.md has a yaml example that does not end")
		}
		examples = append(examples, example)
	}
	if len(examples) < 2 {
		t.Fatalf("docs/configuration.md has %d yaml examples, want the complete one and the scheduled one", len(examples))
	}
	l := config.Loader{LookupEnv: env(map[string]string{"LARDER_REDIS_PASSWORD": "x", "LARDER_KAFKA_PASSWORD": "x"})}
	for i, example := range examples {
		p, err := l.Parse("larder.yaml", []byte(example))
		if err != nil {
			t.Errorf("yaml example %d does not load:\n%v", i+1, err)
			continue
		}
		if i == 1 {
			// The page says that the scheduled example writes the defaults
			// out, but for workers.
			wantScheduler := larder.Scheduler{Lease: larder.DefaultLease, ShutdownGrace: larder.DefaultShutdownGrace,
				SweepInterval: larder.DefaultSweepInterval, Workers: true}
			wantJobs := larder.Jobs{MaxAttempts: larder.DefaultJobAttempts, Backoff: larder.DefaultJobBackoff, MaxBackoff: larder.DefaultJobMaxBackoff,
				Heartbeat: larder.DefaultJobHeartbeat, Lapse: larder.DefaultJobLapse, Retention: larder.DefaultJobRetention}
			if p.Scheduler != wantScheduler || p.Jobs != wantJobs {
				t.Errorf("the scheduled example sets scheduler %+v and jobs %+v; the page says they are the defaults, but for workers", p.Scheduler, p.Jobs)
			}
		}
		if i > 0 {
			continue
		}
		// The page says which features this view generates.
		if v := p.View("user_orders"); v == nil || len(v.Features) != 14 || v.Features[0].Name != "spend_count_1d" ||
			v.Features[3].Name != "spend_sum_1d" || v.Features[13].Name != "items_last_7d" {
			t.Errorf("user_orders features = %v, not as documented", v)
		}
	}
}

// TestDocumentedErrors keeps the problems that docs/configuration.md shows
// (the lines of its code blocks that start with "larder.yaml:") as larder
// writes them: each problem of these files whose field the page shows an
// example of must read as one of the page's examples of that field, but
// for its line and column.
func TestDocumentedErrors(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string][]string{} // field: "field: message" as the page writes it
	place := regexp.MustCompile(`^larder\.yaml:\d+:\d+: `)
	inBlock := false
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		if !inBlock || !place.MatchString(line) {
			continue
		}
		rest := place.ReplaceAllString(line, "")
		if field, _, ok := strings.Cut(rest, ": "); ok {
			shown[field] = append(shown[field], rest)
		}
	}
	files := []string{`project: shop
redis:
  grace_period: soon
  password_env: LARDER_REDIS_PASSWORD
server:
  max_entitys: 3
scheduler:
  lease: 500ms
entities:
  - {name: user, key: user_id, type: int32}
  - {name: item, key: item_id, type: int64}
sources:
  - {name: users, path: data/users.parquet, event_time: updated_at}
  - {name: orders, path: data/orders/, event_time: ordered_at}
  - {name: recs, path: data/recs.parquet, event_time: at}
views:
  - name: user_profile
    kind: latest
    entity: customer
    source: users
    max_age: 2x
    schedule: "0 25 * * *"
    features:
      - {name: age, type: int64}
      - {name: country, type: string}
  - name: user_orders
    kind: aggregate
    entity: user
    source: orders
    aggregations:
      - {column: amount, type: float64, functions: [count, sum, avg], windows: [1d, 7x]}
  - name: user_churn
    kind: prediction
    entity: user
    model: models/churn.onnx
    inputs: [user_profile:age]
    entities_from: user_profile
    batch_size: -1
    max_value_bytes: 64KB
    oversize: keep
    features:
      - {name: churn, type: float32}
  - name: user_recs
    kind: candidates
    entity: user
    source: recs
    candidates: {entity: itme, column: item_id, score: score, top_k: 10}
rankers:
  - name: home_feed
    model: models/rerank.onnx
    context: user
    candidate: item
    candidates_from: user_profile
    inputs: [user_profile:height]
`, `project: shop
server:
  max_entities: lots
timezone: europe/paris
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: users, path: data/users.parquet, event_time: updated_at}
views:
  - name: user_profile
    kind: latest
    entity: user
    source: users
    model: models/churn.onnx
    features:
      - {name: age, type: int64}
      - {name: age, type: int64}
`}
	matched := 0
	for i, src := range files {
		_, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(src))
		var cerr *config.Error
		if !errors.As(err, &cerr) {
			t.Fatalf("file %d: Parse error = %v, want problems", i+1, err)
		}
		for _, p := range cerr.Problems {
			examples := shown[p.Field]
			if len(examples) == 0 {
				continue
			}
			got := p.Field + ": " + p.Msg
			if !slices.Contains(examples, got) {
				t.Errorf("docs/configuration.md shows %s as\n  %s\nbut larder writes\n  %s", p.Field, strings.Join(examples, "\n  "), got)
				continue
			}
			matched++
		}
	}
	if matched < 15 {
		t.Errorf("%d of the page's examples of problems were checked, want at least 15", matched)
	}
}

// FuzzParse checks that no input makes Parse panic, that every failure is a
// *config.Error (Parse reads no files) whose problems are each placed in
// the file: a line and column within it, wherever the file holds anything
// but comments, and one problem per line of Error; and that a project Parse
// returns is valid.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		base, full, kinds, scheduled, viewCands, "", "- a", "a: &x {<<: *x}", "project: !!str 5\nx: *y\n", "\tproject: x",
		"# only a comment\n", "---\n...\n", "~", "project: shop\n---\nproject: two\n", "{", "[a, b", "project: \"\\xff\"",
		"project: shop\nviews:\n  - name: v\n    kind: aggregate\n    aggregations: [{column: c, windows: [200000d]}]\n",
		"project: shop\r\nentities:\r\n  - {name: u, key: id, type: int64}\r\n", "\xef\xbb\xbfproject: shop\n", "project: \xff\xfe\n",
		"project: shop\nredis: {addresses: [\"\"]}\nserver: {max_entities: -1}\n", "a:\n  b:\n    c: [&a 1, *a, *b]\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(src))
		if err == nil {
			if p == nil {
				t.Fatal("Parse returned neither a project nor an error")
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("Parse returned a project that does not validate: %v", err)
			}
			return
		}
		if p != nil {
			t.Fatalf("Parse returned a project and the error %v", err)
		}
		ps := problems(t, err)
		// YAML ends lines at "\r\n", "\r" and "\n".
		lines := strings.Split(strings.ReplaceAll(strings.ReplaceAll(src, "\r\n", "\n"), "\r", "\n"), "\n")
		for _, pr := range ps {
			if pr.File != "larder.yaml" {
				t.Fatalf("problem %q names the file %q, want larder.yaml", pr, pr.File)
			}
			if strings.ContainsAny(pr.Msg, "\r\n") || strings.ContainsAny(pr.Field, "\r\n") {
				t.Fatalf("problem %q spans lines: Error prints one problem per line", pr)
			}
			if pr.Line == 0 {
				if hasContent(src) {
					t.Fatalf("problem %q has no line, in a file with content", pr)
				}
				continue
			}
			if pr.Line < 0 || pr.Line > len(lines) {
				t.Fatalf("problem %q is on line %d of a file of %d lines", pr, pr.Line, len(lines))
			}
			// Columns count runes, as the YAML parser does.
			width := utf8.RuneCountInString(lines[pr.Line-1])
			if pr.Column < 1 || pr.Column > width+1 {
				t.Fatalf("problem %q is at column %d of a line %d runes wide", pr, pr.Column, width)
			}
		}
		if got := strings.Count(err.Error(), "\n") + 1; got != len(ps) {
			t.Fatalf("Error has %d lines for %d problems", got, len(ps))
		}
	})
}

// TestRedisTLSSettings decodes the TLS settings of the redis block: any of
// them turns TLS on, and a certificate needs its key.
func TestRedisTLSSettings(t *testing.T) {
	head := "project: p\nentities:\n  - {name: user, key: user_id, type: int64}\nredis:\n  addresses: [\"127.0.0.1:6380\"]\n"
	p, err := config.Parse("larder.yaml", []byte(head+"  tls_ca_file: ca.pem\n  tls_cert_file: c.pem\n  tls_key_file: k.pem\n  tls_server_name: redis.internal\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Redis; !r.TLS || r.TLSCAFile != "ca.pem" || r.TLSCertFile != "c.pem" || r.TLSKeyFile != "k.pem" || r.TLSServerName != "redis.internal" {
		t.Errorf("redis = %+v", r)
	}
	_, err = config.Parse("larder.yaml", []byte(head+"  tls_cert_file: c.pem\n"))
	if err == nil || !strings.Contains(err.Error(), "larder.yaml:6:18: redis.tls_cert_file: needs tls_key_file too") {
		t.Errorf("a certificate without its key: %v", err)
	}
}

// hasContent reports whether a YAML file holds anything but blank lines,
// comments and document markers.
func hasContent(src string) bool {
	for _, line := range strings.FieldsFunc(src, func(r rune) bool { return r == '\n' || r == '\r' }) {
		line = strings.Trim(line, " \t")
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" && line != "..." {
			return true
		}
	}
	return false
}

// TestProblemPlaces checks the places of problems that the YAML parser
// places poorly. FuzzParse found "entities:\n  -" placed at 2:5, past the
// end of the 3-column line "  -", where the parser puts the null it reads
// there; and "!" (a lone tag, which the parser reads as an empty document)
// placed nowhere; and, after a quoted value written over a CRLF line break,
// a problem placed a line too far, past the end of the file, as the parser
// counted that line break twice. Lines end at "\r" too.
func TestProblemPlaces(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"list item", "entities:\n  -", "larder.yaml:2:4: entities[0].name: is required"},
		{"list item, CRLF", "project: x\r\nentities:\r\n  -\r\n", "larder.yaml:3:4: entities[0].name: is required"},
		{"list item, CR", "project: x\rentities:\r  -\r", "larder.yaml:3:4: entities[0].name: is required"},
		{"top level, after a CR", "\r0", "larder.yaml:2:1: want a mapping"},
		{"after a quoted value over CRLF", "\"\r\n\"0", "larder.yaml:2:2: invalid YAML"},
		{"after quoted values over CRLF", "a: \"x\r\ny\"\r\nb: \"x\r\n\r\ny\"\r\nc: [", "larder.yaml:6:4: invalid YAML"},
		{"mapping value", "project: shop\nentities:\n  - name: éé\n    key:", "larder.yaml:4:9: entities[0].key: is required"},
		{"lone tag", "!", "larder.yaml:1:1: project: is required"},
		{"lone tag after comments", "# larder\n---\n\n  !foo", "larder.yaml:4:3: project: is required"},
		{"empty", "", "larder.yaml: project: is required"},
		{"comments only", "# larder\n", "larder.yaml: project: is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(tt.src))
			problems(t, err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant a line %s", err, tt.want)
			}
		})
	}
}

// TestProblemsOnOneLine checks that Error keeps one problem per line when
// the file writes a name over two lines. FuzzParse found an entity name so
// written listed among the known entities of another problem, and an alias
// so written quoted in its own problem.
func TestProblemsOnOneLine(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"known names", "entities:\n  - name: 0000\n\n     0\n  - {name: user, key: id, type: int64}\nrankers:\n  - context: 0",
			`rankers[0].context: unknown entity "0" (known: user)`},
		{"alias", "* 0\n\n0", `unknown alias *0\n0: define the anchor &0\n0 above it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Loader{LookupEnv: env(nil)}.Parse("larder.yaml", []byte(tt.src))
			ps := problems(t, err)
			for _, p := range ps {
				if strings.ContainsAny(p.Msg, "\r\n") {
					t.Errorf("problem %q spans lines", p)
				}
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant a line with %s", err, tt.want)
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(ps) {
				t.Errorf("Error has %d lines for %d problems", got, len(ps))
			}
		})
	}
}
