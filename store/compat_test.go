package store_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// Compatibility fixtures: the Redis keys of generations written by the
// store of a past release, which the current code must read. A rolling
// upgrade runs readers of the new release on data that writers of the old
// one wrote (and the old generations stay live until the next run), so a
// release whose reader cannot read them breaks serving until every view is
// materialized again.
//
// Each file in testdata/compat is the dump of one release's writes (see
// compatFixture for the format). TestCompatFixtures loads every file into a
// fresh redis-server and a fresh miniredis and reads every row back through
// store.Read (whole rows and numbers), Keys and Live, pinned to a replaced
// generation as well as from the live one.
//
// To add the fixture of a release, at the release's commit (and only with
// the store code of that release):
//
//	go test ./store -run TestCompatFixtures -update -compat.release v0.7.0
//
// which writes testdata/compat/v0.7.0.json from a real redis-server; commit
// it with the release. Keep the files of the releases that a rolling
// upgrade may still start from; delete older ones only together with a
// migration note that says which releases can no longer be upgraded from
// directly. The generator refuses to overwrite a release's file.
//
// Never regenerate or edit a fixture to make a failing read pass: the
// failure is the incompatibility that an upgrade would meet in production.
// Make the reader read the old format again, or bump the codec version
// with a migration note (see golden_test.go).
var (
	compatUpdate  = flag.Bool("update", false, "write the compatibility fixture of -compat.release into testdata/compat")
	compatRelease = flag.String("compat.release", "", "the release whose store writes the new compatibility fixture (with -update)")
)

// compatDir holds the compatibility fixtures, one JSON file per release.
const compatDir = "testdata/compat"

// compatFixture is one release's fixture file: what was written, described
// as domain values, and the Redis keys it left, byte for byte.
type compatFixture struct {
	// Comment says what the file is, for someone who opens it.
	Comment string `json:"comment"`
	// Release names the code that wrote the keys; Codec is its codec
	// version.
	Release string `json:"release"`
	Codec   int    `json:"codec_version"`
	Project string `json:"project"`
	// Views are the definitions the generations were written with.
	Views []compatView `json:"views"`
	// Generations are the generations written, with their rows.
	Generations []compatGeneration `json:"generations"`
	// Keys are every key of the project after the writes, by name.
	Keys map[string]compatKey `json:"keys"`
}

// compatView is a view definition: a latest view of an entity.
type compatView struct {
	Name     string          `json:"name"`
	Kind     string          `json:"kind"`
	Entity   string          `json:"entity"`
	KeyType  string          `json:"key_type"`
	Features []compatFeature `json:"features"`
}

type compatFeature struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// compatGeneration is one generation written, and what a reader must find
// in it.
type compatGeneration struct {
	View       string `json:"view"`
	Generation int64  `json:"generation"`
	// Live marks the generation that was live when the keys were dumped;
	// the others were replaced, and are read pinned.
	Live  bool   `json:"live"`
	Rows  int64  `json:"rows"`
	Model string `json:"model,omitempty"`
	// Entities maps the canonical text of each key to its row.
	Entities map[string]compatRow `json:"entities"`
}

// compatRow is a row as domain values: the event time in RFC 3339 with
// nanoseconds, and one rendered value per feature (see renderValue).
type compatRow struct {
	EventTime string   `json:"event_time"`
	Values    []string `json:"values"`
}

// compatKey is one Redis key: its type, and its content with every value in
// hex. Hash field names are text (the generator refuses one that is not
// UTF-8); sorted set scores are Redis's text for them. Keys have no TTL (the
// generator refuses one that has).
type compatKey struct {
	Type string `json:"type"`
	// Value is the value of a string.
	Value string `json:"value,omitempty"`
	// Fields are the fields of a hash, each to its value.
	Fields map[string]string `json:"fields,omitempty"`
	// Members are the members of a set (sorted) or the elements of a list
	// (in order).
	Members []string `json:"members,omitempty"`
	// Scores are the members of a sorted set, each to its score.
	Scores map[string]string `json:"scores,omitempty"`
}

// renderValue writes v as a fixture's rows hold it: "null", or the type's
// name, a colon and the value: numbers in Go's shortest exact form, strings
// quoted, bytes in hex, vectors and lists in brackets, comma separated.
// The format belongs to the fixtures: do not change it, or old fixtures no
// longer compare.
func renderValue(v larder.Value) string {
	if v.IsNull() {
		return "null"
	}
	var s string
	switch v.Type() {
	case larder.TypeInt64:
		s = strconv.FormatInt(v.Int64(), 10)
	case larder.TypeFloat64:
		s = strconv.FormatFloat(v.Float64(), 'g', -1, 64)
	case larder.TypeFloat32:
		s = strconv.FormatFloat(float64(v.Float32()), 'g', -1, 32)
	case larder.TypeBool:
		s = strconv.FormatBool(v.Bool())
	case larder.TypeString:
		s = strconv.Quote(v.Str())
	case larder.TypeBytes:
		s = hex.EncodeToString([]byte(v.Str()))
	case larder.TypeFloat32Vector:
		parts := make([]string, len(v.Vector()))
		for i, f := range v.Vector() {
			parts[i] = strconv.FormatFloat(float64(f), 'g', -1, 32)
		}
		s = "[" + strings.Join(parts, ",") + "]"
	case larder.TypeInt64List:
		parts := make([]string, len(v.Int64List()))
		for i, n := range v.Int64List() {
			parts[i] = strconv.FormatInt(n, 10)
		}
		s = "[" + strings.Join(parts, ",") + "]"
	case larder.TypeStringList:
		parts := make([]string, len(v.StringList()))
		for i, e := range v.StringList() {
			parts[i] = strconv.Quote(e)
		}
		s = "[" + strings.Join(parts, ",") + "]"
	default:
		s = "?" + v.String()
	}
	return v.Type().String() + ":" + s
}

func renderRow(r larder.Row) compatRow {
	out := compatRow{EventTime: r.EventTime.UTC().Format(time.RFC3339Nano), Values: make([]string, len(r.Values))}
	for i, v := range r.Values {
		out.Values[i] = renderValue(v)
	}
	return out
}

// project returns the validated project of the fixture's views.
func (f *compatFixture) project(tb testing.TB) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name:    f.Project,
		Sources: []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
	}
	for _, cv := range f.Views {
		if !slices.ContainsFunc(p.Entities, func(e *larder.Entity) bool { return e.Name == cv.Entity }) {
			kt, err := larder.ParseType(cv.KeyType)
			if err != nil {
				tb.Fatalf("fixture view %s: %v", cv.Name, err)
			}
			p.Entities = append(p.Entities, &larder.Entity{Name: cv.Entity, Key: cv.Entity + "_id", KeyType: kt})
		}
		v := &larder.View{Name: cv.Name, Kind: larder.ViewKind(cv.Kind), Entity: cv.Entity, Source: "events"}
		for _, cf := range cv.Features {
			t, err := larder.ParseType(cf.Type)
			if err != nil {
				tb.Fatalf("fixture view %s feature %s: %v", cv.Name, cf.Name, err)
			}
			v.Features = append(v.Features, larder.Feature{Name: cf.Name, Type: t})
		}
		p.Views = append(p.Views, v)
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("fixture views: %v", err)
	}
	return p
}

// TestCompatFixtures reads, with the current code, the generations that
// past releases wrote (see the comment on compatUpdate). With -update it
// first writes the fixture of the current code as -compat.release.
func TestCompatFixtures(t *testing.T) {
	if *compatUpdate {
		writeCompatFixture(t, *compatRelease)
	}
	files, err := filepath.Glob(filepath.Join(compatDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no compatibility fixture in %s: write one with -update -compat.release NAME", compatDir)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var f compatFixture
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
				loadCompatKeys(t, client, f.Keys)
				readCompatFixture(t, client, &f)
			})
		})
	}
}

// loadCompatKeys writes keys into client, which holds nothing yet.
func loadCompatKeys(tb testing.TB, client redis.UniversalClient, keys map[string]compatKey) {
	tb.Helper()
	ctx := context.Background()
	unhex := func(key, s string) string {
		b, err := hex.DecodeString(s)
		if err != nil {
			tb.Fatalf("fixture key %s: %v", key, err)
		}
		return string(b)
	}
	for key, k := range keys {
		var err error
		switch k.Type {
		case "string":
			err = client.Set(ctx, key, unhex(key, k.Value), 0).Err()
		case "hash":
			args := make([]any, 0, 2*len(k.Fields))
			for f, v := range k.Fields {
				args = append(args, f, unhex(key, v))
			}
			err = client.HSet(ctx, key, args...).Err()
		case "set":
			args := make([]any, len(k.Members))
			for i, m := range k.Members {
				args[i] = unhex(key, m)
			}
			err = client.SAdd(ctx, key, args...).Err()
		case "list":
			args := make([]any, len(k.Members))
			for i, m := range k.Members {
				args[i] = unhex(key, m)
			}
			err = client.RPush(ctx, key, args...).Err()
		case "zset":
			args := []any{"zadd", key}
			for m, score := range k.Scores {
				args = append(args, score, unhex(key, m))
			}
			err = client.Do(ctx, args...).Err()
		default:
			tb.Fatalf("fixture key %s has type %q, which the fixture loader does not know", key, k.Type)
		}
		if err != nil {
			tb.Fatalf("load fixture key %s: %v", key, err)
		}
	}
}

// readCompatFixture checks that every generation of f reads back as f
// says, through a Store that has never seen the views.
func readCompatFixture(t *testing.T, client redis.UniversalClient, f *compatFixture) {
	ctx := context.Background()
	p := f.project(t)
	s := store.New(client, f.Project, store.Options{})
	for _, g := range f.Generations {
		v := p.View(g.View)
		if v == nil {
			t.Fatalf("fixture generation %d names no fixture view %q", g.Generation, g.View)
		}
		name := fmt.Sprintf("%s@%d", g.View, g.Generation)
		var pin int64
		if g.Live {
			live, err := s.Live(ctx, v)
			if err != nil {
				t.Fatalf("%s: Live: %v", name, err)
			}
			if live.ID != g.Generation || live.Rows != g.Rows || live.Fingerprint != v.Fingerprint() || live.Model != g.Model {
				t.Errorf("%s: Live = generation %d, %d rows, schema %s, model %q; want generation %d, %d rows, schema %s, model %q",
					name, live.ID, live.Rows, live.Fingerprint, live.Model, g.Generation, g.Rows, v.Fingerprint(), g.Model)
			}
		} else {
			pin = g.Generation
		}

		// Every entity, and one that was never written, in one Read.
		var keys []larder.Key
		for text := range g.Entities {
			k, err := larder.ParseKey(v.EntityDef().KeyType, text)
			if err != nil {
				t.Fatalf("%s: fixture entity %q: %v", name, text, err)
			}
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b larder.Key) int { return strings.Compare(a.String(), b.String()) })
		missing := larder.StringKey("never-written")
		if v.EntityDef().KeyType == larder.TypeInt64 {
			missing = larder.Int64Key(987654321)
		}
		keys = append(keys, missing)
		l := &larder.Lookup{View: v, Keys: keys, Pin: pin}
		if err := s.Read(ctx, []*larder.Lookup{l}); err != nil {
			t.Fatalf("%s: Read: %v", name, err)
		}
		if l.Generation != g.Generation || l.Model != g.Model {
			t.Errorf("%s: Read from generation %d, model %q; want %d, %q", name, l.Generation, l.Model, g.Generation, g.Model)
		}
		for i, k := range keys {
			want, ok := g.Entities[k.String()]
			if !ok {
				if l.Found[i] {
					t.Errorf("%s: key %s: found a row, want none", name, k)
				}
				continue
			}
			if !l.Found[i] {
				t.Errorf("%s: key %s: no row, want %v", name, k, want)
				continue
			}
			if got := renderRow(l.Rows[i]); !slices.Equal(got.Values, want.Values) || got.EventTime != want.EventTime {
				t.Errorf("%s: key %s:\n got %v\nwant %v", name, k, got, want)
			}
		}

		// The numbers a model reads, decoded by the read path's own
		// decoder, agree with the whole rows.
		var numeric []int
		for i, ft := range v.Features {
			if ft.Type.Numeric() {
				numeric = append(numeric, i)
			}
		}
		if len(numeric) > 0 {
			defs := make([]float32, len(numeric))
			for j := range defs {
				defs[j] = -7
			}
			nl := &larder.Lookup{View: v, Keys: keys, Pin: pin, Numbers: &larder.NumberRead{Features: numeric, Defaults: defs}}
			if err := s.Read(ctx, []*larder.Lookup{nl}); err != nil {
				t.Fatalf("%s: Read numbers: %v", name, err)
			}
			for i, k := range keys {
				for j, fi := range numeric {
					want := defs[j]
					if l.Found[i] {
						if n, ok := l.Rows[i].Values[fi].Number(); ok {
							want = float32(n)
						}
					}
					got := nl.Numbers.Values[i*len(numeric)+j]
					if math.Float32bits(got) != math.Float32bits(want) {
						t.Errorf("%s: key %s feature %s: number %v, want %v", name, k, v.Features[fi].Name, got, want)
					}
				}
				if nl.Found[i] && !nl.Rows[i].EventTime.Equal(l.Rows[i].EventTime) {
					t.Errorf("%s: key %s: event time with numbers %v, want %v", name, k, nl.Rows[i].EventTime, l.Rows[i].EventTime)
				}
			}
		}

		// Keys lists exactly the entities.
		var listed []string
		err := s.Keys(ctx, v, pin, func(ks []larder.Key) error {
			for _, k := range ks {
				listed = append(listed, k.String())
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: Keys: %v", name, err)
		}
		var want []string
		for text := range g.Entities {
			want = append(want, text)
		}
		slices.Sort(listed)
		slices.Sort(want)
		if !slices.Equal(listed, want) {
			t.Errorf("%s: Keys = %q, want %q", name, listed, want)
		}
	}
}

// The generations the fixture generator writes. Their content is fixed
// here so that every release's fixture holds the same cases; a new type
// or layout gets rows of its own in the next release's fixture.
var (
	compatProject = "compat"
	compatViews   = []compatView{
		{Name: "mixed", Kind: string(larder.KindLatest), Entity: "user", KeyType: "int64", Features: []compatFeature{
			{"n", "int64"}, {"x", "float64"}, {"f", "float32"}, {"b", "bool"}, {"s", "string"},
			{"raw", "bytes"}, {"emb", "float32_vector"}, {"ids", "int64_list"}, {"tags", "string_list"},
		}},
		{Name: "items", Kind: string(larder.KindLatest), Entity: "item", KeyType: "string", Features: []compatFeature{
			{"price", "float64"}, {"tags", "string_list"},
		}},
	}
	compatT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// compatMixed returns the rows of generation gen (1 or 2) of view mixed:
// every type, nulls, empty vectors and lists, extremes, the zero event
// time. Entity 5 is in generation 1 only, entity 6 in generation 2 only.
func compatMixed(gen int64) map[int64]larder.Row {
	at := time.Date(2026, 2, 28, 23, 59, 59, 999999000, time.UTC).Add(time.Duration(gen) * time.Hour)
	g := float64(gen)
	rows := map[int64]larder.Row{
		1: {EventTime: at, Values: []larder.Value{
			larder.Int64Value(-42 * int64(gen)), larder.Float64Value(3.25 * g), larder.Float32Value(-1.5), larder.BoolValue(true),
			larder.StringValue("héllo"), larder.BytesValue([]byte{0, 1, 0xff}), larder.Float32VectorValue([]float32{1, -2, float32(g) / 2}),
			larder.Int64ListValue([]int64{7, -1, 300}), larder.StringListValue([]string{"a", "", "é"}),
		}},
		2: {EventTime: at, Values: make([]larder.Value, 9)},
		3: {EventTime: at.Add(-time.Minute), Values: []larder.Value{
			larder.Null, larder.Float64Value(g), larder.Null, larder.BoolValue(false), larder.StringValue(""), larder.BytesValue(nil),
			larder.Float32VectorValue([]float32{}), larder.Null, larder.StringListValue([]string{}),
		}},
		4: {EventTime: time.Date(1901, 1, 1, 0, 0, 0, 1000, time.UTC), Values: []larder.Value{
			larder.Int64Value(math.MinInt64), larder.Float64Value(math.MaxFloat64), larder.Float32Value(float32(math.Inf(-1))),
			larder.Null, larder.StringValue(strings.Repeat("long ", 40)), larder.Null, larder.Null,
			larder.Int64ListValue([]int64{math.MaxInt64, math.MinInt64}), larder.Null,
		}},
	}
	if gen == 1 {
		rows[5] = larder.Row{Values: []larder.Value{ // the zero event time
			larder.Int64Value(math.MaxInt64), larder.Float64Value(math.Copysign(0, -1)), larder.Float32Value(math.SmallestNonzeroFloat32),
			larder.BoolValue(true), larder.Null, larder.BytesValue([]byte{}), larder.Null, larder.Null, larder.Null,
		}}
	} else {
		rows[6] = larder.Row{EventTime: at, Values: []larder.Value{
			larder.Int64Value(6), larder.Float64Value(math.Inf(1)), larder.Float32Value(0.1), larder.BoolValue(false),
			larder.StringValue("six"), larder.Null, larder.Float32VectorValue([]float32{0.25}), larder.Int64ListValue([]int64{}), larder.Null,
		}}
	}
	return rows
}

// compatItems returns the rows of view items, keyed by strings that are
// empty, digits only, non-ASCII, or hold the key layout's separators.
func compatItems() map[string]larder.Row {
	at := compatT0.Add(-30 * time.Minute)
	return map[string]larder.Row{
		"sku-1":  {EventTime: at, Values: []larder.Value{larder.Float64Value(9.99), larder.StringListValue([]string{"new", "sale"})}},
		"héllo":  {EventTime: at, Values: []larder.Value{larder.Float64Value(-0.5), larder.Null}},
		"a:b{c}": {EventTime: at, Values: []larder.Value{larder.Null, larder.StringListValue([]string{"{x}"})}},
		"42":     {EventTime: at.Add(time.Second), Values: []larder.Value{larder.Float64Value(42), larder.StringListValue([]string{})}},
		"":       {EventTime: at, Values: []larder.Value{larder.Float64Value(0), larder.Null}},
	}
}

// writeCompatFixture writes, with the current store into a real
// redis-server, the generations of the fixture, and saves the keys they
// left as testdata/compat/<release>.json.
func writeCompatFixture(t *testing.T, release string) {
	if release == "" {
		t.Fatal("-update needs -compat.release NAME: the release whose code writes the fixture")
	}
	if strings.ContainsAny(release, `/\`) || strings.HasPrefix(release, ".") {
		t.Fatalf("-compat.release %q: want a plain name, such as v0.7.0", release)
	}
	path := filepath.Join(compatDir, release+".json")
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("%s exists: the fixture of a release is never rewritten (see compat_test.go); delete it by hand only if it was never part of a release", path)
	}
	ctx := context.Background()
	client := redistest.Start(t).Client()
	f := &compatFixture{
		Comment: "Redis keys written by the store of release " + release + ", which every later release must read. " +
			"Written by `go test ./store -run TestCompatFixtures -update -compat.release " + release + "`; never edit or regenerate it (see store/compat_test.go).",
		Release: release,
		Codec:   store.CodecVersion,
		Project: compatProject,
		Views:   compatViews,
	}
	p := f.project(t)
	clock := newFakeClock()
	clock.Advance(compatT0.Sub(clock.Now()))
	s := store.New(client, compatProject, store.Options{Now: clock.Now, Buckets: 7, Owner: "compat-writer"})
	mixed, items := p.View("mixed"), p.View("items")

	// items: one generation, begun by a job without a run lease (the
	// generation holds a write lease of its own).
	w, err := s.BeginWith(ctx, items, larder.BeginOptions{ExpectedRows: 5, Run: larder.RunInfo{
		AsOf: compatT0.Add(-time.Minute), Trigger: larder.TriggerJob, Job: "job-7", Owner: "worker-1",
	}})
	if err != nil {
		t.Fatal(err)
	}
	itemRows := compatItems()
	for _, key := range slices.Sorted(maps.Keys(itemRows)) {
		if err := w.Put(ctx, larder.StringKey(key), itemRows[key]); err != nil {
			t.Fatal(err)
		}
	}
	itemsGen, err := w.Publish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.addGeneration(items, itemsGen, itemRows)

	// mixed: generation 1, then generation 2 under a run lease, which
	// records a model and its input; generation 1 is then retired, still
	// held for the grace period, and read pinned.
	var mixedGens []larder.Generation
	for gen := int64(1); gen <= 2; gen++ {
		clock.Advance(time.Minute)
		opts := larder.BeginOptions{ExpectedRows: -1, Run: larder.RunInfo{Trigger: larder.TriggerSchedule, Tick: clock.Now()}}
		var lease larder.Lease
		if gen == 2 {
			if lease, err = s.AcquireLease(ctx, mixed.Name, "scheduler-1", time.Minute); err != nil {
				t.Fatal(err)
			}
			opts.Run.Lease = lease
			opts.Run.Trigger = larder.TriggerManual
			opts.Run.Tick = time.Time{}
		}
		w, err := s.BeginWith(ctx, mixed, opts)
		if err != nil {
			t.Fatal(err)
		}
		if gen == 2 {
			w.SetModel("model-v2")
			w.SetInputs([]larder.InputGeneration{{View: items.Name, Generation: itemsGen.ID, AsOf: itemsGen.AsOf}})
		}
		rows := compatMixed(gen)
		for _, id := range slices.Sorted(maps.Keys(rows)) {
			if err := w.Put(ctx, larder.Int64Key(id), rows[id]); err != nil {
				t.Fatal(err)
			}
		}
		g, err := w.Publish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if gen == 2 {
			if err := s.ReleaseLease(ctx, lease); err != nil {
				t.Fatal(err)
			}
		}
		mixedGens = append(mixedGens, g)
		f.addGeneration(mixed, g, int64Keyed(rows))
	}
	if mixedGens[0].ID != 1 || mixedGens[1].ID != 2 {
		t.Fatalf("mixed generations %d and %d, want 1 and 2 in a fresh server", mixedGens[0].ID, mixedGens[1].ID)
	}
	f.Generations[1].Live = false // mixed@1 was replaced by mixed@2

	f.Keys = dumpKeys(t, client, "larder:"+compatProject+":*")
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(compatDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d keys", path, len(f.Keys))
}

func (f *compatFixture) addGeneration(v *larder.View, g larder.Generation, rows map[string]larder.Row) {
	cg := compatGeneration{View: v.Name, Generation: g.ID, Live: true, Rows: g.Rows, Model: g.Model, Entities: make(map[string]compatRow)}
	for k, r := range rows {
		cg.Entities[k] = renderRow(r)
	}
	f.Generations = append(f.Generations, cg)
}

// int64Keyed keys rows by the canonical text of their keys.
func int64Keyed(rows map[int64]larder.Row) map[string]larder.Row {
	out := make(map[string]larder.Row, len(rows))
	for id, r := range rows {
		out[larder.Int64Key(id).String()] = r
	}
	return out
}

// dumpKeys returns every key matching pattern on client, with its content.
func dumpKeys(tb testing.TB, client redis.UniversalClient, pattern string) map[string]compatKey {
	tb.Helper()
	ctx := context.Background()
	out := make(map[string]compatKey)
	for _, key := range keysOf(tb, client, pattern) {
		typ, err := client.Type(ctx, key).Result()
		if err != nil {
			tb.Fatal(err)
		}
		if ttl, err := client.PTTL(ctx, key).Result(); err != nil || ttl >= 0 {
			tb.Fatalf("key %s has a TTL (%v, %v), which the fixture format does not keep: extend compatKey", key, ttl, err)
		}
		k := compatKey{Type: typ}
		switch typ {
		case "string":
			v, err := client.Get(ctx, key).Result()
			if err != nil {
				tb.Fatal(err)
			}
			k.Value = hex.EncodeToString([]byte(v))
		case "hash":
			h, err := client.HGetAll(ctx, key).Result()
			if err != nil {
				tb.Fatal(err)
			}
			k.Fields = make(map[string]string, len(h))
			for field, v := range h {
				if !utf8.ValidString(field) {
					tb.Fatalf("hash %s has a field %q that is not UTF-8, which the fixture format keeps as text: extend compatKey", key, field)
				}
				k.Fields[field] = hex.EncodeToString([]byte(v))
			}
		case "set":
			m, err := client.SMembers(ctx, key).Result()
			if err != nil {
				tb.Fatal(err)
			}
			for _, e := range m {
				k.Members = append(k.Members, hex.EncodeToString([]byte(e)))
			}
			slices.Sort(k.Members)
		case "list":
			m, err := client.LRange(ctx, key, 0, -1).Result()
			if err != nil {
				tb.Fatal(err)
			}
			for _, e := range m {
				k.Members = append(k.Members, hex.EncodeToString([]byte(e)))
			}
		case "zset":
			zs, err := client.ZRangeWithScores(ctx, key, 0, -1).Result()
			if err != nil {
				tb.Fatal(err)
			}
			k.Scores = make(map[string]string, len(zs))
			for _, z := range zs {
				score := strconv.FormatFloat(z.Score, 'f', -1, 64)
				switch {
				case math.IsInf(z.Score, 1):
					score = "+inf" // as ZADD takes it
				case math.IsInf(z.Score, -1):
					score = "-inf"
				}
				k.Scores[hex.EncodeToString([]byte(z.Member.(string)))] = score
			}
		default:
			tb.Fatalf("key %s has type %s, which the fixture format does not keep: extend compatKey", key, typ)
		}
		out[key] = k
	}
	return out
}
