package demo

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/internal/parquettest"
)

// loadProject loads larder.yaml with the project's own loader.
func loadProject(tb testing.TB, data []byte) *larder.Project {
	tb.Helper()
	p, err := config.Parse(ProjectFile, data)
	if err != nil {
		tb.Fatalf("larder.yaml is not a valid project:\n%v", err)
	}
	return p
}

func TestProjectFile(t *testing.T) {
	dir := t.TempDir()
	opts := smallOptions()
	opts.Events = 5000
	d := generate(t, dir, opts)

	written := readFile(t, filepath.Join(dir, ProjectFile))
	if !slices.Equal(written, ProjectYAML()) {
		t.Fatalf("%s differs from ProjectYAML()", ProjectFile)
	}
	p := loadProject(t, written)

	t.Run("shape", func(t *testing.T) {
		if p.Name != "shop" || !p.Redis.Embedded() {
			t.Errorf("project %q (embedded redis %v), want shop on the embedded server", p.Name, p.Redis.Embedded())
		}
		for _, name := range []string{"user_profile", "item_profile", "user_last_event", "user_activity", "user_items", "item_click_prior", "user_recs"} {
			if p.View(name) == nil {
				t.Errorf("no view %s", name)
			}
		}
		// `larder demo --keep-serving` adds its trickle of events to the
		// Redis stream these streams read.
		for _, name := range []string{"user_last_event", "user_activity"} {
			if s := streamOf(p, name); s == nil || s.RedisStream != "events:live" {
				t.Errorf("view %s is fed by no stream of events:live", name)
			}
		}
		for _, name := range []string{"user_profile", "item_profile"} {
			if n := len(p.View(name).Features); n < 18 {
				t.Errorf("view %s has %d features, want about 20", name, n)
			}
		}
		if v := p.View("item_profile"); v.Features[v.FeatureIndex("embedding")].Type != larder.TypeFloat32Vector {
			t.Errorf("item_profile:embedding is not a float32_vector")
		}
		r := p.Ranker(RankerName)
		if r == nil {
			t.Fatalf("no ranker %s", RankerName)
		}
		if r.Model != "models/rerank.onnx" || r.Context != "user" || r.Candidate != "item" || r.TopK != 10 {
			t.Errorf("ranker = %+v", r)
		}
		if got := refs(r.Inputs); !slices.Equal(got, d.RankerInputs()) {
			t.Errorf("larder.yaml ranker inputs = %v\nRankerInputs() = %v\nthey must be the same, in the same order", got, d.RankerInputs())
		}
	})

	t.Run("sources", func(t *testing.T) {
		for _, s := range p.Sources {
			path := filepath.Join(dir, s.Path)
			st, err := os.Stat(path)
			if err != nil {
				t.Fatalf("source %s: %v", s.Name, err)
			}
			file := path
			if st.IsDir() {
				file = filepath.Join(path, "part-0000.parquet")
			}
			schema := parquettest.Open(t, file).Schema()
			if f := field(schema, s.EventTime); f == nil || !hasLogical[*format.TimestampType](f) {
				t.Errorf("source %s: event time column %q is not a timestamp", s.Name, s.EventTime)
			}
		}
	})

	t.Run("columns", func(t *testing.T) {
		// Every feature reads a column of its source with a matching type,
		// and entity keys are int64 columns.
		for _, v := range p.Views {
			if v.Kind != larder.KindLatest {
				continue // aggregate, prediction and candidates views are checked by the materializer's tests
			}
			path := filepath.Join(dir, v.SourceDef().Path)
			if v.Source == "events" {
				path = filepath.Join(path, "part-0000.parquet")
			}
			schema := parquettest.Open(t, path).Schema()
			if f := field(schema, v.EntityDef().Key); f == nil || f.Type().Kind() != parquet.Int64 {
				t.Errorf("view %s: key column %s is missing or not int64", v.Name, v.EntityDef().Key)
			}
			for _, feat := range v.Features {
				f := field(schema, feat.Column)
				if f == nil {
					t.Errorf("view %s: feature %s reads column %q, which %s does not have", v.Name, feat.Name, feat.Column, v.SourceDef().Path)
					continue
				}
				if got := columnType(f); got != feat.Type {
					t.Errorf("view %s: feature %s is %s, but column %s holds %s", v.Name, feat.Name, feat.Type, feat.Column, got)
				}
			}
		}
	})

	t.Run("inputs", func(t *testing.T) {
		// Each input reads, from the newest rows, the value the server
		// would give the model: the stored value's Number as float32.
		pop := d.pop
		for i := 0; i < 50; i++ {
			u := &pop.users[(i*37)%len(pop.users)]
			it := &pop.items[(i*11)%len(pop.items)]
			hour := i % 24
			for j, in := range p.Ranker(RankerName).Inputs {
				var want float32
				switch in.Side {
				case larder.SideRequest:
					if in.Request != "hour_of_day" {
						t.Fatalf("unexpected request input %s", in.Ref)
					}
					want = float32(hour)
				case larder.SideContext:
					want = columnNumber(t, &u.row, in.View.Features[in.Feature])
				case larder.SideCandidate:
					want = columnNumber(t, &it.row, in.View.Features[in.Feature])
				}
				if got := rankerInputs[j].value(&u.row, &it.row, hour); got != want {
					t.Fatalf("input %s of user %d, item %d = %v; the view holds %v", in.Ref, u.row.UserID, it.row.ItemID, got, want)
				}
			}
		}
	})
}

// streamOf returns the stream that feeds view name, or nil.
func streamOf(p *larder.Project, name string) *larder.Stream {
	for _, s := range p.Streams {
		if s.View == name {
			return s
		}
	}
	return nil
}

func refs(inputs []larder.RankerInput) []string {
	out := make([]string, len(inputs))
	for i, in := range inputs {
		out[i] = in.Ref
	}
	return out
}

// columnType returns the larder type a Parquet column maps to.
func columnType(f parquet.Field) larder.Type {
	if !f.Leaf() {
		if hasLogical[*format.ListType](f) {
			if elem := f.Fields()[0].Fields()[0]; elem.Leaf() && elem.Type().Kind() == parquet.Float {
				return larder.TypeFloat32Vector
			}
		}
		return larder.TypeInvalid
	}
	switch f.Type().Kind() {
	case parquet.Int64:
		if f.Type().LogicalType() == nil || hasLogical[*format.IntType](f) {
			return larder.TypeInt64
		}
	case parquet.Double:
		return larder.TypeFloat64
	case parquet.Float:
		return larder.TypeFloat32
	case parquet.Boolean:
		return larder.TypeBool
	case parquet.ByteArray:
		if hasLogical[*format.StringType](f) {
			return larder.TypeString
		}
		return larder.TypeBytes
	}
	return larder.TypeInvalid
}

// columnNumber returns the value of the struct field that writes
// feature f's column, as the view stores it and the server reads it.
func columnNumber(tb testing.TB, row any, f larder.Feature) float32 {
	tb.Helper()
	rv := reflect.ValueOf(row).Elem()
	for i := 0; i < rv.NumField(); i++ {
		tag, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("parquet"), ",")
		if tag != f.Column {
			continue
		}
		fv := rv.Field(i)
		var v larder.Value
		switch f.Type {
		case larder.TypeInt64:
			v = larder.Int64Value(fv.Int())
		case larder.TypeFloat64:
			v = larder.Float64Value(fv.Float())
		case larder.TypeFloat32:
			v = larder.Float32Value(float32(fv.Float()))
		case larder.TypeBool:
			v = larder.BoolValue(fv.Bool())
		}
		n, ok := v.Number()
		if !ok {
			tb.Fatalf("feature %s (%s) is not numeric", f.Name, f.Type)
		}
		return float32(n)
	}
	tb.Fatalf("no field of %T writes column %s", row, f.Column)
	return 0
}
